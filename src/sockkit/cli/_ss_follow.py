"""``sockkit ss --watch`` and ``sockkit ss -E``: the two ways ss output keeps coming."""

from __future__ import annotations

import argparse
import json
import sys
import time

from sockkit._errors import SockkitError, translate_os_error
from sockkit.inspect import (
    Annotations,
    SocketQuery,
    SocketTable,
    destroyed_sockets,
    event_to_dict,
    format_event,
    format_table,
    record_from_row,
    record_to_dict,
    watch_sockets,
)

__all__ = ["follow_events", "watch"]


def _deadline(args: argparse.Namespace) -> float | None:
    return time.monotonic() + args.duration if args.duration is not None else None


def watch(args: argparse.Namespace, query: SocketQuery, table: SocketTable) -> int:
    """Print each change between listings until --count/--duration or Ctrl-C; exit status 0."""
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    arrow = "→" if encoding == "utf8" else "->"
    printed = 0
    started = False
    try:
        for events in watch_sockets(query, args.watch, until=_deadline(args), table=table):
            if not started:
                started = True
                sys.stderr.write(f"sockkit ss: watching every {args.watch:g} s\n")
                sys.stderr.flush()
            for event in events:
                line = json.dumps(event_to_dict(event)) if args.json else format_event(event, arrow)
                sys.stdout.write(line + "\n")
                printed += 1
                if args.count is not None and printed >= args.count:
                    sys.stdout.flush()
                    return 0
            if events:
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    return 0


def follow_events(
    args: argparse.Namespace, query: SocketQuery, annotate: Annotations | None
) -> int:
    """Print TCP/UDP sockets as the kernel destroys them (``ss -E``); exit status 0.

    The FILTER applies to each; stops after --count sockets, --duration or Ctrl-C.
    """
    from sockkit.inspect import event_groups

    if not event_groups(query):
        raise SockkitError("-E follows TCP and UDP sockets only; nothing selected to follow")
    keep = None
    if query.expression is not None:
        from sockkit.inspect import compile_predicate

        keep = compile_predicate(query.expression)
    printed = 0
    started = False
    header = not args.no_header and not args.json
    try:
        for rows, lost in destroyed_sockets(query, until=_deadline(args)):
            if not started:
                # the groups are joined: from here on no destroyed socket is missed
                started = True
                sys.stderr.write("sockkit ss: following destroyed sockets\n")
                sys.stderr.flush()
            if lost:
                sys.stderr.write("sockkit ss: the kernel dropped some events (too many at once)\n")
                sys.stderr.flush()
            if keep is not None:
                rows = list(filter(keep, rows))
            if args.count is not None:
                rows = rows[: args.count - printed]
            if args.json:
                for row in rows:
                    sys.stdout.write(json.dumps(record_to_dict(record_from_row(row))) + "\n")
            elif rows:
                sys.stdout.write(
                    format_table(
                        rows,
                        netid_column=len(query.netids) > 1,
                        header=header and printed == 0,
                        annotate=annotate,
                    )
                )
            printed += len(rows)
            sys.stdout.flush()
            if args.count is not None and printed >= args.count:
                return 0
    except OSError as exc:
        raise translate_os_error(exc, "join the socket-destroy groups of", "sock_diag") from exc
    except KeyboardInterrupt:
        pass
    return 0
