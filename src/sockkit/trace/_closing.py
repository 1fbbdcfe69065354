"""Simultaneous close: two FINs that cross on the wire, made to happen every time.

On loopback a FIN is delivered before the ``shutdown()`` that sent it
returns, so the peer is in CLOSE-WAIT before it can send its own FIN, and
two threads released together cross only now and then.  There is no netem
on these kernels, but there is the token-bucket queue (tbf).  Played in a
private network namespace -- so no other program's loopback traffic is
slowed -- the scenario puts a slow tbf queue on that namespace's ``lo``,
spends its tokens with one filler datagram, and then shuts both ends down
one after the other.  The first FIN waits in the queue for tokens, the
second joins it, and each arrives while its receiver is already in
FIN-WAIT-1: both go to CLOSING, then TIME-WAIT.  It needs the ``tc``
command (iproute2); without it, the scenario says so and stops.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from contextlib import ExitStack
from dataclasses import replace

from sockkit.trace._kernel import Address
from sockkit.trace._stage import Recording, ScenarioError, Stage
from sockkit.trace._states import TcpState

__all__ = ["simultaneous_close"]

HOST = "127.0.0.1"
#: 64 kbit/s (8 bytes a millisecond) with a 200-byte bucket: each filler datagram holds
#: the queue ~24 ms, each 66-byte segment ~8 ms.  The second close has ~100 ms to
#: happen, and every segment is answered well inside TCP's 200 ms minimum
#: retransmission timeout, so nothing is sent twice.
_QUEUE = ("tbf", "rate", "64kbit", "burst", "200", "latency", "20s")
_FILLER = 150  # bytes of datagram payload (192 on the wire): one empties the bucket
_FILLERS = 4


def _tc(*args: str) -> None:
    tc = shutil.which(
        "tc", path=os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))
    )
    if tc is None:
        raise ScenarioError(
            "simultaneous-close needs the 'tc' command (iproute2) to hold the first FIN"
            " until the second is sent; it is not installed"
        )
    done = subprocess.run([tc, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip() or "failed").splitlines()[0]
        raise ScenarioError(f"simultaneous-close cannot queue packets on lo here: tc {reason}")


#: a machine so busy that the second close waits past the queue's hold gets more tries
_ATTEMPTS = 3


def simultaneous_close() -> Recording:
    """Record a simultaneous close; call it only inside a private network namespace.

    Raises :class:`ScenarioError` when the FINs did not cross in any attempt.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        recording = _attempt()
        last = recording.snapshots[-1] if recording.snapshots else None
        if last is not None and {state for _, state in last.states} == {TcpState.TIME_WAIT}:
            if attempt > 1:
                notes = (*recording.notes, f"the FINs crossed on attempt {attempt}")
                return replace(recording, notes=notes)
            return recording
    raise ScenarioError(
        f"simultaneous-close: the two FINs did not cross in {_ATTEMPTS} attempts"
        " (the machine was too busy to close both ends within ~100 ms)"
    )


def _attempt() -> Recording:
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind((HOST, 0))
        listener.listen(1)
        server: Address = listener.getsockname()
        client_sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        client_sock.bind((HOST, 0))
        client: Address = client_sock.getsockname()
        sink = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sink.bind((HOST, 0))
        stage = stack.enter_context(Stage("simultaneous-close", server[1]))
        stage.connection(client, server)
        stage.look()
        client_sock.connect(server)
        conn = stack.enter_context(listener.accept()[0])
        stage.look({client: {TcpState.ESTABLISHED}, server: {TcpState.ESTABLISHED}})
        _tc("qdisc", "add", "dev", "lo", "root", *_QUEUE)
        stack.callback(_tc, "qdisc", "del", "dev", "lo", "root")
        for _ in range(_FILLERS):  # spend the tokens, and keep the queue busy a while
            sink.sendto(b"x" * _FILLER, sink.getsockname())
        client_sock.shutdown(socket.SHUT_WR)  # FIN queued behind the fillers...
        conn.shutdown(socket.SHUT_WR)  # ...and the other FIN right behind it
        # crossed, both end in TIME-WAIT; if not, the second closer ends CLOSED
        done = {TcpState.TIME_WAIT, TcpState.CLOSED}
        stage.look({client: done, server: done})
        stage.notes.append(
            "in a private network namespace, a slow tbf queue on its lo held the first FIN"
            " until the second close had sent the other one"
        )
        return stage.finish()
