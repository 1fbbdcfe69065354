"""sockkit relay ctl: drive a running relay's toxiproxy API from the shell."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from sockkit._errors import ConnectError, SockkitError, UsageError
from sockkit.cli._parser import non_negative_number

DESCRIPTION = """\
Talk to 'sockkit relay --api' (or toxiproxy itself) over its HTTP API:
list proxies, add and remove them, add and remove toxics, list and close
live connections. The API address comes from --api, else $SOCKKIT_RELAY_API,
else 127.0.0.1:8474.
"""

EXAMPLES = """\
examples:
  sockkit relay ctl list
  sockkit relay ctl add redis 127.0.0.1:26379 127.0.0.1:6379
  sockkit relay ctl toxic add redis latency latency=100 jitter=10 --stream downstream
  sockkit relay ctl toxic add redis reset_peer timeout=0 --until-connection 2
  sockkit relay ctl toxic rm redis latency_downstream
  sockkit relay ctl conns redis
  sockkit relay ctl disable redis          refuse connections until 'enable'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=os.environ.get("SOCKKIT_RELAY_API", "127.0.0.1:8474"))
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="proxies and their toxics")
    add = sub.add_parser("add", help="create a proxy: NAME LISTEN UPSTREAM")
    add.add_argument("name")
    add.add_argument("listen")
    add.add_argument("upstream")
    for action, text in (
        ("rm", "delete a proxy"),
        ("enable", "listen again"),
        ("disable", "stop listening, close its connections"),
        ("conns", "live connections of a proxy"),
    ):
        sub.add_parser(action, help=text).add_argument("name")
    kill = sub.add_parser("kill", help="close one live connection: NAME ID")
    kill.add_argument("name")
    kill.add_argument("id")
    sub.add_parser("reset", help="enable every proxy and remove every toxic")
    toxic = sub.add_parser("toxic", help="toxic add|rm")
    tsub = toxic.add_subparsers(dest="toxic_action", required=True, metavar="add|rm")
    tadd = tsub.add_parser("add", help="PROXY TYPE [KEY=VALUE ...]")
    tadd.add_argument("proxy")
    tadd.add_argument("type")
    tadd.add_argument("attributes", nargs="*", metavar="KEY=VALUE")
    tadd.add_argument("--name")
    tadd.add_argument("--stream", choices=["upstream", "downstream"], default="downstream")
    tadd.add_argument("--toxicity", type=non_negative_number, default=1.0)
    for cond in ("from-connection", "until-connection", "after-bytes"):
        tadd.add_argument(f"--{cond}", type=int)
    tadd.add_argument("--after-seconds", type=non_negative_number)
    tadd.add_argument("--pattern")
    trm = tsub.add_parser("rm", help="PROXY TOXIC")
    trm.add_argument("proxy")
    trm.add_argument("toxic")


def run(args: argparse.Namespace) -> int:
    api = args.api if "://" in args.api else f"http://{args.api}"
    action = args.action
    if action == "list":
        _print_proxies(_call(api, "GET", "/proxies"))
    elif action == "add":
        body = {"name": args.name, "listen": args.listen, "upstream": args.upstream}
        proxy = _call(api, "POST", "/proxies", body)
        print(f"{proxy['name']}: {proxy['listen']} -> {proxy['upstream']}")
    elif action == "rm":
        _call(api, "DELETE", f"/proxies/{args.name}")
    elif action in ("enable", "disable"):
        _call(api, "POST", f"/proxies/{args.name}", {"enabled": action == "enable"})
    elif action == "reset":
        _call(api, "POST", "/reset")
    elif action == "conns":
        for conn in _call(api, "GET", f"/proxies/{args.name}/connections"):
            toxics = ",".join(conn["toxics"]) or "-"
            print(
                f"{conn['id']:>5}  {conn['peer']:<24} age={conn['age']:.1f}s"
                f" up={conn['bytes_upstream']} down={conn['bytes_downstream']} toxics={toxics}"
            )
    elif action == "kill":
        _call(api, "DELETE", f"/proxies/{args.name}/connections/{args.id}")
    elif args.toxic_action == "add":
        toxic = _call(api, "POST", f"/proxies/{args.proxy}/toxics", _toxic_body(args))
        print(f"{args.proxy}: {_toxic_text(toxic)}")
    else:
        _call(api, "DELETE", f"/proxies/{args.proxy}/toxics/{args.toxic}")
    return 0


def _toxic_body(args: argparse.Namespace) -> dict[str, Any]:
    attributes: dict[str, float] = {}
    for item in args.attributes:
        key, eq, value = item.partition("=")
        try:
            attributes[key] = float(value) if "." in value else int(value)
        except ValueError:
            raise UsageError(f"bad attribute {item!r}: expected KEY=NUMBER") from None
        if not math.isfinite(attributes[key]):
            raise UsageError(f"bad attribute {item!r}: expected a finite number")
        if not eq:
            raise UsageError(f"bad attribute {item!r}: expected KEY=NUMBER")
    body: dict[str, Any] = {
        "type": args.type,
        "stream": args.stream,
        "toxicity": args.toxicity,
        "attributes": attributes,
    }
    if args.name:
        body["name"] = args.name
    when = {
        key: getattr(args, key)
        for key in (
            "from_connection",
            "until_connection",
            "after_bytes",
            "after_seconds",
            "pattern",
        )
        if getattr(args, key) is not None
    }
    if when:
        body["when"] = when
    return body


def _toxic_text(toxic: dict[str, Any]) -> str:
    attrs = " ".join(f"{k}={v}" for k, v in toxic.get("attributes", {}).items())
    when = " ".join(f"{k}={v}" for k, v in toxic.get("when", {}).items())
    extra = f" when {when}" if when else ""
    return (
        f"{toxic['name']} ({toxic['type']} {toxic['stream']}"
        f" toxicity={toxic['toxicity']}) {attrs}{extra}"
    )


def _print_proxies(proxies: dict[str, Any]) -> None:
    if not proxies:
        print("no proxies")
        return
    width = max(len(name) for name in proxies)
    for name, proxy in proxies.items():
        state = "" if proxy["enabled"] else "  (disabled)"
        print(f"{name:<{width}}  {proxy['listen']} -> {proxy['upstream']}{state}")
        for toxic in proxy.get("toxics", []):
            print(f"{'':<{width}}    {_toxic_text(toxic)}")
    sys.stdout.flush()


def _call(api: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(api + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            message = raw.decode(errors="replace").strip() or exc.reason
        raise SockkitError(f"{method} {path}: {exc.code} {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectError(f"cannot reach the relay API at {api}: {reason}") from None
    return json.loads(raw) if raw.strip() else None
