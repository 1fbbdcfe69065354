"""Run ``sockkit`` with the tests' reference engine registered beside the real ones.

Used as ``python tests/server/launch_sockkit.py serve ...``: the same ``main()``
as ``python -m sockkit``, so exit codes and output are the command's own.
"""

from __future__ import annotations

import sys

from sockkit.cli import main
from sockkit.engines import ENGINES

ENGINES.setdefault("reference", "reference_engine:ReferenceEngine")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
