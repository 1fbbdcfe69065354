"""``sockkit`` with SIGALRM arriving every ``$SOCKKIT_ALARM_INTERVAL`` seconds.

SIGALRM's default action ends a process, and a signal that is ignored never
interrupts a system call; so to find out whether a server survives signals
landing mid-transfer (EINTR), this runs the very same ``main()`` with a no-op
handler and an interval timer installed first.
"""

from __future__ import annotations

import os
import signal
import sys

from sockkit.cli import main


def _ignore(signum: int, frame: object) -> None:
    pass


if __name__ == "__main__":
    interval = float(os.environ["SOCKKIT_ALARM_INTERVAL"])
    signal.signal(signal.SIGALRM, _ignore)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    sys.exit(main(sys.argv[1:]))
