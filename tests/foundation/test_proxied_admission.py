"""Admission behind --proxy-protocol: the client the header names is counted, in any process."""

from __future__ import annotations

import os

from sockkit._accept import AccessList, Admission, Refusal
from sockkit._shared_peer_counts import SLOTS, SharedPeerCounts


class Trusted:
    def trusts(self, address: object) -> bool:
        return isinstance(address, tuple) and address[0] == "127.0.0.1"


PROXY = ("127.0.0.1", 5000)


def test_the_proxy_is_not_counted_and_each_client_has_its_own_limit() -> None:
    admission = Admission(max_conns_per_ip=2, proxies=Trusted())
    for _ in range(10):  # the proxy's address: never a per-address refusal
        assert admission.admit(PROXY) is None
    assert admission.counted(PROXY) is None
    assert admission.admit_client(("10.0.0.1", 1)) is None
    assert admission.admit_client(("10.0.0.1", 2)) is None
    assert admission.admit_client(("10.0.0.1", 3)) == Refusal.MAX_CONNS_PER_IP
    assert admission.admit_client(("10.0.0.2", 1)) is None
    admission.release(("10.0.0.1", 1))
    assert admission.admit_client(("10.0.0.1", 4)) is None
    assert admission.admit(("127.0.0.9", 1)) == Refusal.NOT_A_PROXY


def test_the_access_list_applies_to_the_client() -> None:
    admission = Admission(AccessList(deny=["10.0.0.0/8"]), proxies=Trusted())
    assert admission.admit(PROXY) is None
    assert admission.admit_client(("10.1.2.3", 1)) == Refusal.DENY
    assert admission.admit_client(("192.0.2.1", 1)) is None


def test_without_proxies_the_peer_is_counted_as_before() -> None:
    admission = Admission(max_conns_per_ip=1)
    assert admission.admit(("10.0.0.1", 1)) is None
    assert admission.counted(("10.0.0.1", 1)) == ("10.0.0.1", 1)
    assert admission.admit(("10.0.0.1", 2)) == Refusal.MAX_CONNS_PER_IP


def test_shared_counts_are_seen_and_changed_by_forked_children() -> None:
    counts = SharedPeerCounts(3)
    try:
        pid = os.fork()
        if pid == 0:
            ok = counts.take("10.0.0.1") and counts.take("10.0.0.1") and counts.take("::1")
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert counts.open_from("10.0.0.1") == 2 and counts.open_from("::1") == 1
        assert counts.take("10.0.0.1") and not counts.take("10.0.0.1")
        pid = os.fork()
        if pid == 0:
            counts.give_back("10.0.0.1")
            os._exit(0)
        os.waitpid(pid, 0)
        assert counts.open_from("10.0.0.1") == 2
    finally:
        counts.close()


def test_a_full_table_refuses_new_addresses_and_reuses_freed_entries() -> None:
    counts = SharedPeerCounts(1)
    try:
        hosts = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(SLOTS)]
        assert all(counts.take(host) for host in hosts)
        assert not counts.take("192.0.2.1")  # every entry holds a live count
        counts.give_back(hosts[7])
        assert counts.take("192.0.2.1")
        assert counts.open_from(hosts[8]) == 1 and counts.open_from(hosts[7]) == 0
    finally:
        counts.close()
