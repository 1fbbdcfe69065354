"""toxiproxy's HTTP API over a :class:`~sockkit.relay._registry.Registry`.

A small HTTP/1.1 server on asyncio: keep-alive, ``Content-Length`` or
chunked bodies, JSON in and out.  Routes are toxiproxy's, plus
``GET /metrics`` (Prometheus text) and ``GET|DELETE
/proxies/{name}/connections[/{id}]`` for live connections.  A request that
cannot be served gets an error answer; the proxies relay on regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from sockkit.relay._log import event
from sockkit.relay._registry import ApiError, Registry

__all__ = ["serve_api"]

_MAX_LINE = 8192  # a request or header line; toxiproxy's requests are far smaller
_MAX_HEADERS = 100
_MAX_BODY = 1 << 20  # a populate of a few thousand proxies fits
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
}

Handler = Callable[[Registry, list[str], Any], Awaitable[tuple[int, Any]]]


async def _index(reg: Registry, _: list[str], __: Any) -> tuple[int, Any]:
    return 200, reg.index()


async def _create(reg: Registry, _: list[str], body: Any) -> tuple[int, Any]:
    return 201, (await reg.create(body)).to_json()


async def _populate(reg: Registry, _: list[str], body: Any) -> tuple[int, Any]:
    if isinstance(body, dict) and "proxies" in body:
        body = body["proxies"]
    return 201, {"proxies": [p.to_json() for p in await reg.populate(body)]}


async def _show(reg: Registry, args: list[str], _: Any) -> tuple[int, Any]:
    return 200, reg.get(args[0]).to_json()


async def _update(reg: Registry, args: list[str], body: Any) -> tuple[int, Any]:
    return 200, (await reg.update(args[0], body)).to_json()


async def _delete(reg: Registry, args: list[str], _: Any) -> tuple[int, Any]:
    await reg.delete(args[0])
    return 204, None


async def _toxics(reg: Registry, args: list[str], _: Any) -> tuple[int, Any]:
    return 200, [t.to_json() for t in reg.get(args[0]).toxics]


async def _toxic_add(reg: Registry, args: list[str], body: Any) -> tuple[int, Any]:
    return 200, reg.add_toxic(args[0], body).to_json()


async def _toxic_show(reg: Registry, args: list[str], _: Any) -> tuple[int, Any]:
    return 200, reg.toxic(args[0], args[1]).to_json()


async def _toxic_update(reg: Registry, args: list[str], body: Any) -> tuple[int, Any]:
    return 200, reg.update_toxic(args[0], args[1], body).to_json()


async def _toxic_remove(reg: Registry, args: list[str], _: Any) -> tuple[int, Any]:
    reg.remove_toxic(args[0], args[1])
    return 204, None


async def _reset(reg: Registry, _: list[str], __: Any) -> tuple[int, Any]:
    await reg.reset()
    return 204, None


async def _version(reg: Registry, _: list[str], __: Any) -> tuple[int, Any]:
    return 200, reg.version()


async def _metrics(reg: Registry, _: list[str], __: Any) -> tuple[int, Any]:
    return 200, reg.metrics()


async def _connections(reg: Registry, args: list[str], _: Any) -> tuple[int, Any]:
    return 200, reg.connections(args[0])


async def _connection_close(reg: Registry, args: list[str], _: Any) -> tuple[int, Any]:
    if not args[1].isdigit():
        raise ApiError(404, "connection not found")
    reg.close_connection(args[0], int(args[1]))
    return 204, None


_NAME = r"([^/]+)"
_ROUTES: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
    (re.compile(r"/proxies"), {"GET": _index, "POST": _create}),
    (re.compile(r"/populate"), {"POST": _populate}),
    (re.compile(r"/reset"), {"POST": _reset}),
    (re.compile(r"/version"), {"GET": _version}),
    (re.compile(r"/metrics"), {"GET": _metrics}),
    (
        re.compile(rf"/proxies/{_NAME}"),
        {"GET": _show, "POST": _update, "PATCH": _update, "DELETE": _delete},
    ),
    (re.compile(rf"/proxies/{_NAME}/toxics"), {"GET": _toxics, "POST": _toxic_add}),
    (
        re.compile(rf"/proxies/{_NAME}/toxics/{_NAME}"),
        {
            "GET": _toxic_show,
            "POST": _toxic_update,
            "PATCH": _toxic_update,
            "DELETE": _toxic_remove,
        },
    ),
    (re.compile(rf"/proxies/{_NAME}/connections"), {"GET": _connections}),
    (re.compile(rf"/proxies/{_NAME}/connections/{_NAME}"), {"DELETE": _connection_close}),
]


async def dispatch(reg: Registry, method: str, path: str, raw: bytes) -> tuple[int, Any]:
    """Answer one request: (status, JSON value or text).  Never raises for bad input."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    for pattern, methods in _ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        handler = methods.get(method)
        if handler is None:
            return 405, ApiError(405, f"{method} is not allowed on {path}").to_json()
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                return 400, ApiError(400, f"bad request body: {exc}").to_json()
            except RecursionError:
                # json.loads recurses per nesting level: '[' * 100000 fits in the
                # body limit and would otherwise end the connection's task
                return 400, ApiError(400, "bad request body: nested too deeply").to_json()
        elif method in ("POST", "PATCH"):
            body = {}
        try:
            return await handler(reg, [unquote(g) for g in match.groups()], body)
        except ApiError as exc:
            return exc.status, exc.to_json()
    return 404, ApiError(404, f"no such endpoint: {path}").to_json()


async def serve_api(reg: Registry, host: str, port: int) -> asyncio.Server:
    """Start answering on ``host:port``; the caller closes the returned server."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await _one_request(reg, reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ValueError as exc:
            event(logging.DEBUG, f"api: bad request: {exc}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(connection, host, port, limit=_MAX_LINE)


async def _one_request(
    reg: Registry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    """Read, answer; False when the connection should close."""
    line = await reader.readline()
    if not line:
        return False
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError(f"malformed request line {line[:80]!r}")
    method, path, version = parts
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        key, _, value = header.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    else:
        raise ValueError("too many headers")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        raw = await _chunked(reader)
    else:
        length = int(headers.get("content-length", "0") or 0)
        if length < 0:
            raise ValueError(f"negative Content-Length {length}")
        if length > _MAX_BODY:
            await _answer(writer, 413, ApiError(413, "request body too large").to_json(), False)
            return False
        raw = await reader.readexactly(length) if length else b""
    status, answer = await dispatch(reg, method.upper(), path, raw)
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    await _answer(writer, status, answer, keep)
    return keep


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size < 0:
            raise ValueError(f"negative chunk size {size}")
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        if len(body) + size > _MAX_BODY:
            raise ValueError("request body too large")
        body += await reader.readexactly(size)
        await reader.readline()


async def _answer(writer: asyncio.StreamWriter, status: int, answer: Any, keep: bool) -> None:
    if status == 204 or answer is None:
        payload, kind = b"", "application/json"
    elif isinstance(answer, str):
        payload, kind = answer.encode(), "text/plain; version=0.0.4"
    else:
        payload, kind = json.dumps(answer).encode() + b"\n", "application/json"
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {kind}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
