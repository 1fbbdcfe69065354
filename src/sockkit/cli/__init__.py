"""The ``sockkit`` command line: ``main(argv) -> exit status``.

Each subcommand is a module here with ``DESCRIPTION``, ``EXAMPLES``,
``add_arguments(parser)`` and ``run(args) -> int``.  Only the module of the
command being run is imported, so ``sockkit ss`` starts fast.  Errors leave as
one ``sockkit: ...`` line on stderr with status 1 (runtime) or 2 (usage).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

from sockkit._errors import AddressInUseError, SockkitError
from sockkit._version import __version__
from sockkit.cli._parser import CommandParser, fail

__all__ = ["COMMANDS", "main"]

#: name -> one-line summary; each has a module ``sockkit.cli.<name>``.
COMMANDS: dict[str, str] = {
    "serve": "run a server (echo, discard, chargen, daytime, time, chat) on any engine",
    "connect": "netcat-style client: stdin to a socket, the socket to stdout",
    "listen": "netcat-style listener: accept peers and pump both ways",
    "relay": "forward connections or datagrams, with latency, throttling, resets and loss",
    "ss": "list the sockets on this machine, like ss / netstat",
    "trace": "a TCP connection's life on loopback, packet by packet, with both ends' states",
    "bench": "load-test a server and verify every byte; compare engines",
    "resolve": "getaddrinfo / getnameinfo as a table",
    "inet": "byte order and address conversion: pton, ntop, hton, ntoh, endian",
}

_TOP_HELP = """\
usage: sockkit [--version] COMMAND [ARGS...]

sockkit: socket servers, clients, inspection and load generation.

commands:
{commands}

Run 'sockkit COMMAND --help' for a command's options and examples.

examples:
  sockkit serve                       echo server on 127.0.0.1:7007
  sockkit connect 7007 < file         send a file, print the reply
  sockkit ss -tlnp                    listening TCP sockets with their processes
"""


def _top_help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items() if _exists(name)]
    return _TOP_HELP.format(commands="\n".join(lines))


def _exists(name: str) -> bool:
    return importlib.util.find_spec(f"sockkit.cli.{name}") is not None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sockkit command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write(_top_help())
        return 2
    name, rest = args[0], args[1:]
    if name in ("-h", "--help", "help"):
        sys.stdout.write(_top_help())
        return 0
    if name in ("-V", "--version"):
        print(f"sockkit {__version__}")
        return 0
    if name not in COMMANDS or not _exists(name):
        known = ", ".join(n for n in COMMANDS if _exists(n))
        return fail(f"unknown command {name!r}; expected one of: {known}", 2)
    module = importlib.import_module(f"sockkit.cli.{name}")
    # A command may route its first word to a module of its own (``relay ctl``).
    sub = getattr(module, "SUBCOMMANDS", {}).get(rest[0]) if rest else None
    if sub is not None:
        module, name, rest = importlib.import_module(sub), f"{name} {rest[0]}", rest[1:]
    parser = CommandParser(
        prog=f"sockkit {name}",
        description=module.DESCRIPTION,
        epilog=module.EXAMPLES,
        **getattr(module, "PARSER_OPTIONS", {}),
    )
    module.add_arguments(parser)
    try:
        ns = parser.parse_args(rest)
        ns.argv = [name, *rest]  # the command line as given, for serve's reload
        status: int = module.run(ns)
        sys.stdout.flush()  # here, so a reader that left is met inside this try
        return status
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except AddressInUseError as exc:
        return fail(_name_the_holder(exc), exc.exit_status)
    except SockkitError as exc:
        return fail(str(exc), exc.exit_status)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if not _stdout_gone():
            return fail(f"broken pipe: {exc.strerror or exc}", 1)
        # The reader of stdout left (``sockkit ss | head -1``): that is how such a
        # pipeline ends, so exit 0 quietly, as ss and ls do.
        _quiet_stdout()
        return 0


def _name_the_holder(exc: AddressInUseError) -> str:
    """The error message, plus the process holding the address when the inspector can see it."""
    from sockkit._endpoint import Endpoint

    if not isinstance(exc.endpoint, Endpoint):
        return str(exc)
    try:
        from sockkit.inspect import port_owner

        owner = port_owner(exc.endpoint)
    except (OSError, SockkitError, ValueError):
        owner = None  # the explanation is a courtesy; the error stands without it
    if not owner:
        return str(exc)
    # Naming the holder replaces the generic note a Unix socket's error carries.
    message = str(exc).removesuffix(" (a process is listening on it)")
    return f"{message} (held by {owner})"


def _stdout_gone() -> bool:
    """True if stdout is a pipe whose reader has closed it (poll says POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(mask & select.POLLERR for _, mask in poller.poll(0))
    except (OSError, ValueError):
        return False


def _quiet_stdout() -> None:
    # stdout's reader went away (`sockkit ss | head`): say nothing more.
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
