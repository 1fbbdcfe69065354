"""Backplanes: what lets a chat room span processes and hosts (Redis pub/sub).

The chat service itself stays sans-I/O (:class:`sockkit.services.ChatRoom`
talks to the small :class:`~sockkit.services._chat.Backplane` interface); the
network side lives here.  Needs the optional ``redis`` package.
"""

from __future__ import annotations

from sockkit.backplane._redis import RedisBackplane, RedisURL, parse_redis_url

__all__ = ["RedisBackplane", "RedisURL", "parse_redis_url"]
