"""The log-linear histogram against exact percentiles of the same values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockkit.bench import Histogram
from sockkit.bench._histogram import SUB, bucket_index, bucket_range

values = st.lists(st.integers(min_value=0, max_value=10**11), min_size=1, max_size=400)
quantiles = st.sampled_from([0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0])


def exact(data: list[int], q: float) -> int:
    ordered = sorted(data)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


@given(values, quantiles)
@settings(max_examples=300, deadline=None)
def test_percentile_is_within_the_bucket_precision_of_the_exact_one(
    data: list[int], q: float
) -> None:
    hist = Histogram()
    hist.record_many(data)
    want = exact(data, q)
    got = hist.percentile(q)
    assert got is not None
    # Half a bucket: a bucket is at most 1/SUB of its values wide, small values are exact.
    assert abs(got - want) <= want / (2 * SUB) + 1


@given(values)
@settings(max_examples=100, deadline=None)
def test_agrees_with_numpy_inverted_cdf(data: list[int]) -> None:
    np = pytest.importorskip("numpy")
    hist = Histogram()
    hist.record_many(data)
    for q in (0.5, 0.9, 0.99):
        want = int(np.percentile(np.array(data, dtype=np.int64), q * 100, method="inverted_cdf"))
        got = hist.percentile(q)
        assert got is not None
        assert abs(got - want) <= want / (2 * SUB) + 1


@given(st.integers(min_value=0, max_value=2**46))
def test_every_value_lands_in_the_bucket_whose_range_holds_it(value: int) -> None:
    low, high = bucket_range(bucket_index(value))
    assert low <= value <= high
    assert high - low <= max(low // SUB, 0)


def test_buckets_are_contiguous() -> None:
    previous_high = -1
    for index in range(0, 40 * SUB):
        low, high = bucket_range(index)
        assert low == previous_high + 1
        previous_high = high


@given(values, values)
@settings(max_examples=50, deadline=None)
def test_merge_equals_recording_everything_in_one(a: list[int], b: list[int]) -> None:
    one, two, both = Histogram(), Histogram(), Histogram()
    one.record_many(a)
    two.record_many(b)
    both.record_many(a + b)
    one.merge(Histogram.from_dict(two.to_dict()))
    assert one.counts == both.counts
    assert (one.min, one.max) == (both.min, both.max)
    assert one.percentile(0.99) == both.percentile(0.99)


def test_empty_histogram_has_no_percentiles_and_bad_quantiles_are_refused() -> None:
    hist = Histogram()
    assert hist.percentile(0.5) is None
    with pytest.raises(ValueError):
        hist.percentile(0)
