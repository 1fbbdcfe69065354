"""One relayed stream connection: two directions, each through its toxics.

Rules of a direction (``upstream`` = client to target, ``downstream`` back):

- With no toxic touching it and nobody watching the bytes, it takes the
  fast path: the native copy loop (:mod:`sockkit.relay._pump_native`) when
  it is built, else splice driven from Python.  A toxic or observer added
  at run time takes the direction back (:meth:`Link.recheck`), with the
  bytes the fast path held, so the change applies from the next bytes on;
  once the direction is plain again it returns to the fast path.
- Otherwise a reader cuts each chunk where a conditional toxic starts to
  apply, decides what each piece becomes (dropped by ``timeout``, cut by
  ``limit_data``, held by ``latency``), and queues it; a writer sends queued
  pieces in order when due, paced by ``bandwidth`` and cut by ``slicer``.
  The queue is bounded, so a slow consumer stops the reader, not memory.
- End of stream becomes a half-close of the other side once every byte
  before it is written (after ``slow_close``'s delay).  The connection ends
  when both directions have ended; a reset or error on either side aborts both.
- ``reset_peer`` and ``timeout`` are timers per connection, armed when the
  toxic applies (at once, or when its byte or pattern condition is met).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Sequence

from sockkit.relay._host import Observer, ProxyView
from sockkit.relay._pump_native import NativePump, native_usable
from sockkit.relay._pump_splice import SplicePump, splice_usable
from sockkit.relay._sides import Side
from sockkit.relay._toxics import Toxic, write_pieces

__all__ = ["Link", "Observer"]


_QUEUE = 16  # pieces held per direction: at most 1 MiB before the reader stops
_PATTERN_TAIL = 1024  # longest pattern a condition may wait for
_LINGER_RESET = struct.pack("ii", 1, 0)
_EOF = b""
_CLOSE = None


class _Fast:
    """Queued after the last held piece: the direction may return to the fast path."""


_FAST = _Fast()
_Queue = asyncio.Queue[tuple[float, bytes | _Fast | None, Sequence[Toxic]]]


class _Closed(Exception):
    """The connection was ended on purpose (limit_data, timeout)."""


class Link:
    """A client connection and its connection to the target."""

    def __init__(
        self,
        proxy: ProxyView,
        number: int,
        client: Side,
        upstream: Side,
        peer: str,
        rng: random.Random,
    ) -> None:
        self.proxy = proxy
        self.number = number
        self.client = client
        self.upstream = upstream
        self.peer = peer
        self.rng = rng
        self.started = time.monotonic()
        self._read = {"upstream": 0, "downstream": 0}  # bytes taken from the source
        self._sent = {"upstream": 0, "downstream": 0}  # bytes written to the destination
        self._pumps: dict[str, NativePump | SplicePump] = {}  # directions on the fast path now
        self._draws: dict[tuple[str, int], bool] = {}
        self._seen: set[tuple[str, int]] = set()
        self._tails = {"upstream": b"", "downstream": b""}
        self._limits: dict[tuple[str, int], int] = {}
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._due = {"upstream": 0.0, "downstream": 0.0}
        self.task: asyncio.Task[None] | None = None
        self.reason: str | None = None
        self._resetting = False
        self._plain_cache: dict[str, tuple[int, bool]] = {}

    @property
    def read(self) -> dict[str, int]:
        """Bytes taken from the source, per direction, so far."""
        return {way: n + self.pumped(way) for way, n in self._read.items()}

    @property
    def sent(self) -> dict[str, int]:
        """Bytes written to the destination, per direction, so far."""
        return {way: n + self.pumped(way) for way, n in self._sent.items()}

    def paths(self) -> dict[str, str]:
        """Where each direction's bytes go now: ``native``, ``splice`` or ``python``."""
        return {
            way: self._pumps[way].kind if way in self._pumps else "python" for way in self._read
        }

    def recheck(self) -> None:
        """The proxy's toxics or observers changed: hand back fast directions they now touch."""
        for way, pump in list(self._pumps.items()):
            if not self._plain(way):
                pump.stop()

    def pumped(self, way: str) -> int:
        """Bytes the running fast path of ``way`` moved, not yet added to the totals."""
        pump = self._pumps.get(way)
        return pump.moved if pump is not None else 0

    # -- which toxics apply -------------------------------------------------

    def hits(self, toxic: Toxic) -> bool:
        """Whether ``toxic`` affects this connection (toxicity drawn once per version)."""
        key = (toxic.name, toxic.serial)
        hit = self._draws.get(key)
        if hit is None:
            hit = toxic.applies_to_connection(self.number) and (
                toxic.toxicity >= 1.0 or self.rng.random() < toxic.toxicity
            )
            self._draws[key] = hit
        return hit

    def toxics(self, way: str) -> list[Toxic]:
        return [t for t in self.proxy.toxics if t.stream == way and self.hits(t)]

    def active_toxics(self) -> list[str]:
        return [t.name for t in self.proxy.toxics if self.hits(t)]

    def arm_timers(self) -> None:
        """Start reset_peer/timeout timers of toxics that apply without a byte condition."""
        for toxic in self.proxy.toxics:
            if toxic.type in ("reset_peer", "timeout") and self.hits(toxic):
                if "after_bytes" not in toxic.when and "pattern" not in toxic.when:
                    self._arm(toxic)

    def _arm(self, toxic: Toxic) -> None:
        key = (toxic.name, toxic.serial)
        if key in self._timers:
            return
        if toxic.type == "timeout" and not toxic.attr("timeout"):
            self._timers[key] = asyncio.get_running_loop().call_later(1e9, lambda: None)
            return
        age = time.monotonic() - self.started
        wait = max(0.0, toxic.when.get("after_seconds", 0) - age) + toxic.attr("timeout") / 1000
        self._schedule(toxic, time.monotonic() + wait)

    def _schedule(self, toxic: Toxic, due: float) -> None:
        key = (toxic.name, toxic.serial)
        wait = max(0.0, due - time.monotonic())
        self._timers[key] = asyncio.get_running_loop().call_later(wait, self._fire, toxic, due)

    def _fire(self, toxic: Toxic, due: float) -> None:
        if toxic not in self.proxy.toxics:
            return  # removed or changed since it was armed
        if time.monotonic() < due:
            # uvloop measures timers from the loop's cached clock, so one may fire early
            return self._schedule(toxic, due)
        action = self.reset if toxic.type == "reset_peer" else self.close
        action(f"{toxic.type} {toxic.name}")

    def _pieces(self, way: str, data: bytes) -> list[tuple[bytes, list[Toxic]]]:
        """``data`` cut where conditional toxics start, each piece with the toxics on it."""
        toxics = self.toxics(way)
        if not toxics:
            return [(data, [])]
        base = self.read[way]
        age = time.monotonic() - self.started
        tail = self._tails[way]
        window = tail + data
        self._tails[way] = window[-_PATTERN_TAIL:]
        starts: list[tuple[int, Toxic]] = []
        for toxic in toxics:
            if age < toxic.when.get("after_seconds", 0):
                continue
            start = max(0, toxic.when.get("after_bytes", 0) - base)
            pattern = toxic.when.get("pattern")
            key = (toxic.name, toxic.serial)
            if pattern is not None and key not in self._seen:
                found = window.find(pattern.encode())
                if found < 0:
                    continue
                self._seen.add(key)
                start = max(start, found + len(pattern) - len(tail))
            if start < len(data) or (start == len(data) and not data):
                starts.append((start, toxic))
        cuts = sorted({0, *(s for s, _ in starts)})
        out = []
        for i, cut in enumerate(cuts):
            end = cuts[i + 1] if i + 1 < len(cuts) else len(data)
            out.append((data[cut:end], [t for s, t in starts if s <= cut]))
        return out

    # -- running --------------------------------------------------------------

    async def run(self) -> None:
        """Relay both directions until both end, one side fails, or a toxic ends it."""
        self.arm_timers()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._direction("upstream", self.client, self.upstream))
                group.create_task(self._direction("downstream", self.upstream, self.client))
        except* _Closed:
            pass
        except* OSError as errors:
            exc = errors.exceptions[0]
            self.reason = self.reason or (getattr(exc, "strerror", None) or str(exc)).lower()
            self._abort()
        finally:
            for handle in self._timers.values():
                handle.cancel()
            for side in (self.client, self.upstream):
                side.close()

    def close(self, reason: str, *, cancel: bool = True) -> None:
        """End the connection now with FIN on both sides (unless it is being reset)."""
        if self._resetting:
            return
        self.reason = self.reason or reason
        for side in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                side.sock.shutdown(socket.SHUT_RDWR)
        if cancel and self.task is not None:
            self.task.cancel()

    def reset(self, reason: str) -> None:
        """End the connection now with RST on both sides."""
        self._resetting = True
        self.reason = self.reason or reason
        self._abort()
        if self.task is not None:
            self.task.cancel()

    def _abort(self) -> None:
        for side in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                side.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)

    def _plain(self, way: str) -> bool:
        """No toxic touches ``way`` and nobody watches: splice may carry it.

        Asked before every splice turn, so the answer is kept until the proxy's
        toxics or observers change (``generation``).
        """
        generation = self.proxy.generation
        cached = self._plain_cache.get(way)
        if cached is not None and cached[0] == generation:
            return cached[1]
        plain = not self.proxy.observers and not self.toxics(way)
        self._plain_cache[way] = (generation, plain)
        return plain

    async def _direction(self, way: str, src: Side, dst: Side) -> None:
        held = b""  # bytes the fast path had read and not written when it handed back
        while True:
            if not held and self._fast_possible(way, src, dst):
                done, held = await self._fast(way, src, dst)
                if done:
                    return dst.half_close()
            if not await self._filtered(way, src, dst, held):
                return
            held = b""

    def _fast_possible(self, way: str, src: Side, dst: Side) -> bool:
        return src.plain and dst.plain and splice_usable(src.sock, dst.sock) and self._plain(way)

    async def _fast(self, way: str, src: Side, dst: Side) -> tuple[bool, bytes]:
        """Run ``way`` on the fast path: (its stream ended, bytes held when it handed back)."""
        pump: NativePump | SplicePump
        if native_usable():
            pump = NativePump(src.sock, dst.sock)
        else:
            pump = SplicePump(src.sock, dst.sock, lambda: self._plain(way), self.proxy)
        self._pumps[way] = pump
        try:
            done = await pump.run()
        finally:
            # the pump counts on its own; its bytes join the totals once
            del self._pumps[way]
            self._read[way] += pump.moved + len(pump.pending)
            self._sent[way] += pump.moved
            self.proxy.count(way, pump.moved)
        return done, pump.pending

    async def _filtered(self, way: str, src: Side, dst: Side, held: bytes) -> bool:
        """Carry ``way`` through its toxics, ``held`` first: True when it may go fast again."""
        queue: _Queue = asyncio.Queue(_QUEUE)
        writer = asyncio.ensure_future(self._write(way, dst, queue))
        try:
            while not writer.done():
                if held:
                    data, held = held, b""
                    self._read[way] -= len(data)  # counted when the fast path read it
                elif self._fast_possible(way, src, dst):
                    await queue.put((0.0, _FAST, ()))
                    await writer
                    return True
                else:
                    data = await src.recv()
                pieces = self._pieces(way, data)
                self._read[way] += len(data)
                for piece, toxics in pieces:
                    due, piece, stop = self._apply(way, piece, toxics)
                    if piece or not data:
                        await queue.put((due, piece, toxics))
                    if stop:
                        await queue.put((due, _CLOSE, ()))
                        break
                else:
                    if data:
                        continue
                break
            await writer
            return False
        finally:
            if not writer.done():
                writer.cancel()

    def _apply(self, way: str, data: bytes, toxics: Sequence[Toxic]) -> tuple[float, bytes, bool]:
        """What ``data`` becomes through ``toxics``: (when it is due, the bytes, stop after).

        ``data`` empty stands for the end of the stream.
        """
        stop = False
        delay = 0.0
        for toxic in toxics:
            kind = toxic.type
            if kind == "reset_peer" and not toxic.attr("timeout"):
                self.reset(f"reset_peer {toxic.name}")
                return self._due[way], b"", False
            if kind in ("reset_peer", "timeout"):
                self._arm(toxic)
                if kind == "timeout" and data:
                    return self._due[way], b"", False  # held forever: dropped
            elif kind == "limit_data" and data:
                key = (toxic.name, toxic.serial)
                left = self._limits.setdefault(key, int(toxic.attr("bytes")))
                data = data[:left]
                self._limits[key] = left - len(data)
                if self._limits[key] <= 0:
                    self.reason = self.reason or f"limit_data {toxic.name}"
                    stop = True
            elif kind == "latency":
                jitter = toxic.attr("jitter")
                delay += (toxic.attr("latency") + self.rng.uniform(-jitter, jitter)) / 1000
            elif kind == "slow_close" and not data:
                delay += toxic.attr("delay") / 1000
        due = max(self._due[way], time.monotonic() + max(0.0, delay))
        self._due[way] = due
        return due, data, stop

    async def _write(
        self,
        way: str,
        dst: Side,
        queue: _Queue,
    ) -> None:
        slot = 0.0  # when the bandwidth schedule lets the next byte out
        while True:
            due, data, toxics = await queue.get()
            await _until(due)
            if data is _CLOSE:
                self.close(self.reason or "closed by a toxic", cancel=False)
                raise _Closed
            if isinstance(data, _Fast):
                return
            if not data:
                return dst.half_close()
            rate = next((t.attr("rate") * 1000 for t in toxics if t.type == "bandwidth"), 0.0)
            slicer = next((t for t in toxics if t.type == "slicer"), None)
            for piece, pause in write_pieces(data, slicer, rate, self.rng):
                if rate:
                    now = time.monotonic()
                    slot = now if now - slot > 0.05 else slot  # idle: start a new schedule
                    slot += len(piece) / rate
                    await _until(slot)
                elif pause:
                    await asyncio.sleep(pause)
                for observe in self.proxy.observers:
                    observe(self, way, self.sent[way], piece)
                await dst.send(piece)
                self._sent[way] += len(piece)
                self.proxy.count(way, len(piece))


async def _until(when: float) -> None:
    """Sleep until the monotonic clock reaches ``when`` (the loop may wake a little early)."""
    while (wait := when - time.monotonic()) > 0:
        await asyncio.sleep(wait)
