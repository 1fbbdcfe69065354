"""How the fork server process starts: at-fork hooks held back while it runs one thread.

``threading`` and ``logging`` (which ``import sockkit``
loads) register ``os.register_at_fork`` hooks that repair what *other*
threads may have held at the fork.  They cost every child more than all of
sockkit's own code: measured, an idle child of the fork server writes 1,016 KiB
with them and 504 KiB without, and fork + exit + wait takes 1,190 us against
580.  The fork server runs one thread, so there is nothing to repair:
:data:`BOOTSTRAP` (how the serving process starts :mod:`._zygote`) holds back the hooks
that importing the fork server registers, and :class:`HeldForkHooks` runs them
around a fork only if a thread exists after all (a service module that
started one).  Hooks registered later (by the service's own imports) run as
usual.
"""

from __future__ import annotations

import _thread
import os
from collections.abc import Callable, Sequence

__all__ = ["BOOTSTRAP", "HeldForkHooks", "Hook"]

#: ``python -c BOOTSTRAP ARGS`` starts the fork server with the at-fork hooks
#: that importing it registers held back (see the module docstring).
BOOTSTRAP = """\
import os, sys
held = []
register = os.register_at_fork
os.register_at_fork = lambda **hooks: held.append(hooks)
try:
    import sockkit.engines._zygote as zygote
finally:
    os.register_at_fork = register
sys.exit(zygote.main(sys.argv[1:], held))
"""

Hook = Callable[[], object]


class HeldForkHooks:
    """At-fork hooks held back from ``os.register_at_fork``, run by :meth:`fork` only when needed."""

    def __init__(self, held: Sequence[dict[str, Hook]]) -> None:
        # The order os.fork() would use: "before" hooks last-registered first.
        self.before = [hooks["before"] for hooks in reversed(held) if "before" in hooks]
        self.in_parent = [hooks["after_in_parent"] for hooks in held if "after_in_parent" in hooks]
        self.in_child = [hooks["after_in_child"] for hooks in held if "after_in_child" in hooks]

    def fork(self) -> int:
        """``os.fork()``, with the held hooks around it if any thread but this one runs."""
        if _thread._count() == 0:  # threads besides the main one
            return os.fork()
        for hook in self.before:
            hook()
        try:
            pid = os.fork()
        except OSError:
            for hook in self.in_parent:
                hook()
            raise
        for hook in self.in_child if pid == 0 else self.in_parent:
            hook()
        return pid
