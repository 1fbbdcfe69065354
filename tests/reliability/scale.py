"""How big each case runs: :data:`CI` for the test suite, :data:`FULL` for the recorded figures.

The pass rules are the same at both scales; only counts and durations change.
Timeouts that a target is stated against (idle 3 s -> closed within 4 s) keep
their full-scale value in CI, so the target means the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CI", "FULL", "Scale"]

MB = 1024 * 1024


@dataclass(frozen=True)
class Scale:
    name: str
    #: 1. idle clients that connect and send nothing; new-client probes meanwhile.
    idle_clients: int
    probes: int
    #: 2. --max-conns, and how many clients beyond it.
    max_conns: int
    extra_conns: int
    #: 4. clients held against a server limited to 64 descriptors, and for how long.
    emfile_clients: int
    emfile_seconds: float
    #: 5. connects in one second while a client pings every 10 ms.
    storm_connects: int
    #: 6. fork churn: connect/close cycles and the time they are spread over.
    churn_cycles: int
    churn_seconds: float
    #: 7. how long a chargen client holds still without reading, and --send-timeout.
    never_read_seconds: float
    send_timeout: float
    #: 8. bytes a client tries to push at echo without ever reading.
    flood_bytes: int
    #: 9. the over-long chat line.
    chat_line_bytes: int
    #: 10. slowloris chat clients, the gap between their bytes, and --line-timeout.
    slowloris_clients: int
    slowloris_gap: float
    line_timeout: float
    #: 11. read-then-reset cycles against chargen.
    resets: int
    #: 13. bytes echoed under SIGALRM.
    eintr_bytes: int
    #: 14. downloads in flight at SIGTERM, their size, and --drain-timeout.
    downloads: int
    download_bytes: int
    drain_timeout: float
    #: 15. datagrams sent at 10,000/s from one source, and --dgram-rate.
    dgram_flood: int
    dgram_rate: int
    #: 16. hypothesis examples per fuzz target.
    fuzz_examples: int
    #: 17. soak length and the warm-up excluded from its slopes.
    soak_seconds: float
    soak_warmup: float
    #: Pause between the soak load's rounds (0.005 s is about 400 round trips a second).
    soak_pace: float
    #: Security: server start-ups watched for a wider socket file mode.
    umask_startups: int


FULL = Scale(
    name="full",
    idle_clients=1000,
    probes=20,
    max_conns=100,
    extra_conns=50,
    emfile_clients=200,
    emfile_seconds=3.0,
    storm_connects=2000,
    churn_cycles=1000,
    churn_seconds=10.0,
    never_read_seconds=30.0,
    send_timeout=5.0,
    flood_bytes=100 * MB,
    chat_line_bytes=10 * MB,
    slowloris_clients=500,
    slowloris_gap=2.0,
    line_timeout=5.0,
    resets=1000,
    eintr_bytes=100 * MB,
    downloads=10,
    download_bytes=50 * MB,
    drain_timeout=3.0,
    dgram_flood=10_000,
    dgram_rate=100,
    fuzz_examples=1_000_000,
    soak_seconds=600.0,
    soak_warmup=120.0,
    soak_pace=0.005,
    umask_startups=200,
)

CI = Scale(
    name="ci",
    idle_clients=200,
    probes=20,
    max_conns=20,
    extra_conns=10,
    emfile_clients=100,
    emfile_seconds=2.0,
    storm_connects=400,
    churn_cycles=300,
    churn_seconds=3.0,
    never_read_seconds=3.0,
    send_timeout=1.0,
    flood_bytes=64 * MB,
    chat_line_bytes=10 * MB,
    slowloris_clients=40,
    slowloris_gap=0.5,
    line_timeout=2.0,
    resets=150,
    eintr_bytes=16 * MB,
    downloads=4,
    download_bytes=8 * MB,
    drain_timeout=2.0,
    dgram_flood=3000,
    dgram_rate=100,
    fuzz_examples=150,
    soak_seconds=20.0,
    soak_warmup=6.0,
    soak_pace=0.02,
    umask_startups=8,
)
