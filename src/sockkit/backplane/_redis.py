"""A chat room's backplane through Redis pub/sub: one channel, every server publishing and subscribed.

Each process that serves chat members (the server, each ``--workers``
worker, each ``--engine fork`` child) is one *origin* with a random id.  It
publishes every line its members send as ``ORIGIN SP LINES`` on the channel
``sockkit:chat:DB`` and hands every message from another origin to its room;
its own messages coming back are skipped, since its members heard them
in-process.  So a line reaches every member once and never its sender.

Two threads per process, started at the first join in that process (a fork
does not copy threads): a publisher draining a bounded outbox -- the room
calls :meth:`RedisBackplane.publish` from engine threads or an event loop and
must never wait for the network -- and a subscriber.  The room's wakeups are
thread-safe, so this works under every engine unchanged.

When Redis goes away the subscriber tells the room's members once, then
reconnects with a doubling back-off (0.1 s to 2 s); once subscribed again it
says so once.  Members stay connected throughout and are never subscribed
twice, so nothing is duplicated.  Lines sent while Redis is away reach this
process's members only (pub/sub keeps nothing for absent subscribers); the
notice says so, and they are counted, never buffered without bound.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sockkit._errors import SockkitError, UsageError

if TYPE_CHECKING:
    from sockkit.services import ChatRoom

__all__ = ["RedisBackplane", "RedisURL", "parse_redis_url"]

LOST_NOTICE = b"* chat backplane lost: lines reach this server's members only until it is back\n"
BACK_NOTICE = b"* chat backplane back\n"
#: Lines waiting to be published; past this a burst is dropped rather than held.
OUTBOX_CAP = 4 * 1024 * 1024
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 2.0
#: How long the first join in a process waits for the subscription, so that a
#: member who just connected hears the lines sent right after.
_SUBSCRIBE_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class RedisURL:
    host: str
    port: int
    db: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parse_redis_url(text: str) -> RedisURL:
    """``redis://HOST[:PORT][/DB]``; raise :class:`UsageError` naming what was expected."""
    expected = "expected redis://HOST:PORT[/DB]"
    if not text.startswith("redis://"):
        raise UsageError(f"bad backplane {text!r}: {expected}")
    rest = text[len("redis://") :]
    address, _, db_text = rest.partition("/")
    if address.startswith("["):
        host, _, port_text = address[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = address.rpartition(":") if ":" in address else (address, "", "")
    port_text = port_text or "6379"
    db_text = db_text or "0"
    if not host or not port_text.isdigit() or not db_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"bad backplane {text!r}: {expected}")
    return RedisURL(host, int(port_text), int(db_text))


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise SockkitError(
            "--backplane redis:// needs the redis package: pip install 'sockkit[redis]'"
        ) from None
    return redis


class RedisBackplane:
    """The Redis carrier of one chat room (see the module docstring).

    Call :meth:`check` before serving: it raises :class:`SockkitError` when Redis
    cannot be reached, so the server refuses to start rather than serve a room
    that is silently split.
    """

    def __init__(self, url: RedisURL | str, *, log: Any = None) -> None:
        self.url = url if isinstance(url, RedisURL) else parse_redis_url(url)
        self.channel = f"sockkit:chat:{self.url.db}"
        self.log = log
        self._pid = -1
        self._room: ChatRoom | None = None
        self._stop = threading.Event()
        #: Lines not published because Redis was away (this process).
        self.dropped = 0

    # -- life cycle -------------------------------------------------------

    def check(self) -> None:
        """PING Redis once; raise :class:`SockkitError` saying why it cannot be reached."""
        redis = _redis_module()
        client = self._client(redis)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise SockkitError(f"cannot reach the chat backplane {self.url}: {_why(exc)}") from None
        finally:
            client.close()

    def start(self, room: ChatRoom) -> None:
        if self._pid == os.getpid():
            return
        # First join in this process (or in a forked child, whose copy of the
        # parent's state has no threads): start this process's own carrier.
        self._pid = os.getpid()
        self._room = room
        self._origin = os.urandom(8).hex().encode()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._connected = False
        self._subscribed = threading.Event()
        redis = _redis_module()
        for target in (self._publish_loop, self._subscribe_loop):
            threading.Thread(
                target=target, args=(redis,), daemon=True, name="chat-backplane"
            ).start()
        self._subscribed.wait(_SUBSCRIBE_WAIT)

    def stop(self) -> None:
        """Stop this process's threads (they are daemons; a server exiting need not call this)."""
        self._stop.set()
        if self._pid == os.getpid():
            with self._lock:
                self._ready.notify_all()

    # -- publishing -------------------------------------------------------

    def publish(self, message: bytes) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            if not self._connected or self._outbox_bytes + len(message) > OUTBOX_CAP:
                self.dropped += 1
                return
            self._outbox.append(message)
            self._outbox_bytes += len(message)
            self._ready.notify()

    def _publish_loop(self, redis: Any) -> None:
        client = self._client(redis)
        while not self._stop.is_set():
            with self._lock:
                while not self._outbox and not self._stop.is_set():
                    self._ready.wait()
                batch = list(self._outbox)
                self._outbox.clear()
                self._outbox_bytes = 0
            if not batch:
                continue
            try:
                with client.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(self.channel, self._origin + b" " + message)
                    pipe.execute()
            except redis.RedisError:
                # The subscriber sees the same loss and tells the members; these
                # lines reached this server's members only.
                self.dropped += len(batch)
                with contextlib.suppress(Exception):
                    client.close()
                client = self._client(redis)

    # -- subscribing ------------------------------------------------------

    def _subscribe_loop(self, redis: Any) -> None:
        backoff = _BACKOFF_FIRST
        lost = False
        while not self._stop.is_set():
            client = self._client(redis, socket_timeout=None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self._set_connected(True)
                self._subscribed.set()
                if lost:
                    self._say(BACK_NOTICE)
                    lost = False
                backoff = _BACKOFF_FIRST
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._receive(message["data"])
            except (redis.RedisError, OSError, ValueError):
                self._set_connected(False)
                if not lost:
                    lost = True
                    self._say(LOST_NOTICE)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
                with contextlib.suppress(Exception):
                    client.close()

    def _receive(self, data: bytes) -> None:
        origin, _, lines = data.partition(b" ")
        if origin != self._origin and lines and self._room is not None:
            self._room.receive_remote(lines)

    def _set_connected(self, connected: bool) -> None:
        with self._lock:
            self._connected = connected

    def _say(self, notice: bytes) -> None:
        if self._room is not None:
            self._room.notice(notice)
        if self.log is not None:
            self.log(notice.decode().strip("* \n"))

    def _client(self, redis: Any, socket_timeout: float | None = 5.0) -> Any:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(
            host=self.url.host,
            port=self.url.port,
            db=self.url.db,
            socket_connect_timeout=5.0,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),  # this module does its own reconnecting
        )


def _why(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
