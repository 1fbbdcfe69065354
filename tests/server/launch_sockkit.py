"""Run ``sockkit`` with this folder on ``sys.path``, so ``sample_services:...`` names resolve.

Used as ``python tests/server/launch_sockkit.py serve ...``: the same ``main()``
as ``python -m sockkit``, so exit codes and output are the command's own.
"""

from __future__ import annotations

import sys

from sockkit.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
