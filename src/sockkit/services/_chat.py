"""chat: line-based rooms.  Every line a client sends reaches every other client.

A :class:`ChatRoom` is shared by all connections of one server; each
connection is a :class:`ChatService` that joins it on ``connected`` and leaves
it in ``closed``.  A line from ``127.0.0.1:41122`` reaches the others as
``[127.0.0.1:41122] hello\\n``; with ``notices`` on, joins and leaves are
announced as ``* 127.0.0.1:41122 joined\\n`` / ``* ... left\\n``.  Notices
are off by default: each one goes to every member, so N clients joining cost
N² deliveries, which a room of 10,000 idle connections cannot afford.

Rules and limits, and why:

- A line ends at ``\\n`` (a ``\\r`` before it is kept, so CRLF clients round
  trip).  A partial line waits in the sender's buffer until its newline; at
  EOF a trailing partial line is delivered with a ``\\n`` added.
- A line longer than ``max_line`` bytes (64 KiB by default) closes the
  sender's connection with a ``close_reason``; lines before it in the same
  read are still delivered, and no one else notices.  Without the limit one
  client could make the server buffer any amount while it waits for a newline.
- An incomplete line is announced to the driver through ``partial_input``
  (see :class:`~sockkit.services.Service`), so ``--line-timeout`` can close a
  client that dribbles a line byte by byte (slowloris) while its idle timer
  never fires.
- Each member's undelivered output is capped at ``queue_cap`` bytes (1 MiB by
  default).  A member that stops reading would otherwise make every other
  member's lines pile up in memory; past the cap it is dropped with a reason.
- Delivery to another member: append to its queue, set its ``producing`` and
  call its ``wakeup`` -- after the room's lock is released, because a driver
  may act on a wakeup at once.

The room's lock guards membership and every member's queue: thread engines
call different members from different threads at the same time.

Across processes and hosts a room may have a :class:`Backplane` (Redis
pub/sub: :mod:`sockkit.backplane`).  The room stays sans-I/O: it hands every
line it spreads to ``backplane.publish`` (which must not block) and the
backplane hands lines from other servers to :meth:`ChatRoom.receive_remote`
from its own thread.  A server's own lines reach its members in-process and
are never taken back from the backplane, so no sender hears itself.
"""

from __future__ import annotations

import threading
from typing import Protocol

from sockkit.services._base import CLOSE, Service

__all__ = ["DEFAULT_MAX_LINE", "DEFAULT_QUEUE_CAP", "Backplane", "ChatRoom", "ChatService"]

DEFAULT_MAX_LINE = 64 * 1024
DEFAULT_QUEUE_CAP = 1024 * 1024


class Backplane(Protocol):
    """Carries a room's lines to the same room on other servers (processes or hosts)."""

    def start(self, room: ChatRoom) -> None:
        """Begin carrying ``room``'s lines; called at every join, so it must be cheap when running.

        Called again in a forked process, it starts that process's own carrier.
        """

    def publish(self, message: bytes) -> None:
        """Send ``message`` (whole lines) to the other servers; must never block."""


class ChatRoom:
    """The members of one chat server; safe to use from any thread.

    Raises :class:`ValueError` for a ``max_line`` or ``queue_cap`` below 1.
    """

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        queue_cap: int = DEFAULT_QUEUE_CAP,
        notices: bool = False,
        backplane: Backplane | None = None,
    ) -> None:
        if max_line < 1 or queue_cap < 1:
            raise ValueError("max_line and queue_cap must be at least 1")
        self.max_line = max_line
        self.queue_cap = queue_cap
        self.notices = notices
        self.backplane = backplane
        self._lock = threading.Lock()
        # A dict rather than a set: members hear lines in the order they joined.
        self._members: dict[ChatService, None] = {}

    def __len__(self) -> int:
        return len(self._members)

    def peers(self) -> list[str]:
        """The peer addresses of the current members, in joining order."""
        with self._lock:
            return [member.peer for member in self._members]

    def join(self, member: ChatService) -> None:
        """Add ``member``; the others hear a join notice if ``notices`` is on."""
        if self.backplane is not None:
            self.backplane.start(self)
        with self._lock:
            self._members[member] = None
        if self.notices:
            self.broadcast(member, b"* " + member.peer_bytes + b" joined\n")

    def leave(self, member: ChatService) -> None:
        """Remove ``member`` if present (calling it twice is harmless)."""
        with self._lock:
            present = self._members.pop(member, False) is None
        if present and self.notices:
            self.broadcast(member, b"* " + member.peer_bytes + b" left\n")

    def broadcast(self, sender: ChatService, message: bytes) -> None:
        """Queue ``message`` for every member but ``sender``; drop members whose queue overflows.

        With a backplane the message goes to the other servers too.  Each
        dropped member's leave notice goes out in turn (a loop, not recursion:
        one notice may overflow yet another member).
        """
        self._spread(sender, message, publish=True)

    def receive_remote(self, message: bytes) -> None:
        """A line from another server (through the backplane): every member here hears it."""
        self._spread(None, message, publish=False)

    def notice(self, message: bytes) -> None:
        """A line from this server itself (``* ...``) to every member here, not published."""
        self._spread(None, message, publish=False)

    def _spread(self, sender: ChatService | None, message: bytes, publish: bool) -> None:
        outgoing = [(sender, message, publish)]
        while outgoing:
            sender, message, publish = outgoing.pop()
            if publish and self.backplane is not None:
                self.backplane.publish(message)
            for member in self._deliver(sender, message):
                if self.notices:
                    notice = b"* " + member.peer_bytes + b" left (not reading)\n"
                    outgoing.append((member, notice, True))

    def _deliver(self, sender: ChatService | None, message: bytes) -> list[ChatService]:
        """Queue ``message`` for the others, wake them; return the members dropped for overflow."""
        woken: list[ChatService] = []
        dropped: list[ChatService] = []
        size = len(message)
        with self._lock:
            for member in self._members:
                if member is sender:
                    continue
                if member.queued + size > self.queue_cap:
                    dropped.append(member)
                    continue
                member.queue.append(message)
                member.queued += size
                member.producing = True
                woken.append(member)
            for member in dropped:
                del self._members[member]
                member.queue.clear()
                member.queued = 0
                member.close_reason = (
                    f"chat output over {self.queue_cap} bytes: the peer is not reading"
                )
                member.state = CLOSE
                # producing makes the driver call produce(), which returns b""
                # and lets it see CLOSE (see the Service contract).
                member.producing = True
                woken.append(member)
        for member in woken:
            member.wakeup()
        return dropped


class ChatService(Service):
    """One member of a :class:`ChatRoom`: reads lines, hands out the other members' lines."""

    def __init__(self, room: ChatRoom) -> None:
        self.room = room
        self.peer = ""
        self.peer_bytes = b""
        self._prefix = b""
        self._buffer = bytearray()
        # Bytes at the start of _buffer already searched for a newline, so a
        # long line arriving in small pieces is scanned once, not once a piece.
        self._scanned = 0
        #: Incomplete lines begun so far; ``partial_input`` is the current one's number.
        self._lines_begun = 0
        #: Lines from other members not yet produced; guarded by the room's lock.
        #: A list, not a deque: an empty deque costs ~600 bytes per idle member,
        #: and produce() takes messages from the front in one slice anyway.
        self.queue: list[bytes] = []
        #: Total bytes in :attr:`queue`; guarded by the room's lock.
        self.queued = 0

    def connected(self, peer: str) -> bytes:
        self.peer = peer
        self.peer_bytes = peer.encode("utf-8", "backslashreplace")
        self._prefix = b"[" + self.peer_bytes + b"] "
        self.room.join(self)
        return b""

    def received(self, data: bytes) -> bytes:
        if self.state == CLOSE:
            return b""
        buffer = self._buffer
        had = len(buffer)
        buffer += data
        max_line = self.room.max_line
        prefix = self._prefix
        lines: list[bytes] = []
        start = 0
        scan = self._scanned
        while (newline := buffer.find(b"\n", scan)) >= 0:
            if newline - start > max_line:
                too_long = True
                break
            lines.append(prefix + buffer[start : newline + 1])
            start = scan = newline + 1
        else:
            too_long = len(buffer) - start > max_line
        if lines:
            self.room.broadcast(self, b"".join(lines))
        if too_long:
            self._too_long()
            return b""
        del buffer[:start]
        self._scanned = len(buffer)
        if not buffer:
            self.partial_input = 0
        elif start or not had:
            # A new incomplete line began in this call: a new value for the
            # driver's --line-timeout clock.
            self._lines_begun += 1
            self.partial_input = self._lines_begun
        return b""

    def eof_received(self) -> bytes:
        if self._buffer and self.state != CLOSE:
            self.room.broadcast(self, self._prefix + self._buffer + b"\n")
            self._buffer.clear()
        self.state = CLOSE
        return b""

    def produce(self, limit: int) -> bytes:
        with self.room._lock:
            queue = self.queue
            size = 0
            taken = 0
            for message in queue:
                if size + len(message) > limit:
                    break
                size += len(message)
                taken += 1
            parts = queue[:taken]
            del queue[:taken]
            if queue and size < limit:
                # Split the next message so the answer fills ``limit`` exactly.
                cut = limit - size
                parts.append(queue[0][:cut])
                queue[0] = queue[0][cut:]
                size = limit
            self.queued -= size
            if not queue:
                self.producing = False
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def closed(self) -> None:
        self.room.leave(self)

    def _too_long(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        self.close_reason = f"chat line longer than {self.room.max_line} bytes"
        self.state = CLOSE
        self.room.leave(self)
