"""How sockkit holds up: hostile clients, overload, faults and fuzzing, on every engine.

Each case is one function ``case(engine, scale) -> Verdict`` (see ``catalogue``),
run at CI scale by ``test_reliability.py`` and at full scale by
``benchmarks/reliability.py``, which writes ``benchmarks/RELIABILITY.md``.
Cases talk to a real ``sockkit serve`` process and measure it through /proc,
so they hold whatever the engines look like inside.
"""
