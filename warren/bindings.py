"""BINDINGS: how a worker's queue is bound to exchanges, parsed once at start.

Entries are separated by `;`, each `exchange:type:spec`:

    logs:fanout                     every message published to `logs`
    alerts:direct:error             exact routing key
    weather:topic:europe.*          topic pattern (`*` one word, `#` zero or more)
    docs:headers:x-match=any,format=pdf,type=report   header match (all by default)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")


@dataclass(frozen=True)
class Binding:
    exchange: str
    kind: str
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


def parse_bindings(raw: str) -> tuple[Binding, ...]:
    return tuple(_parse_one(entry.strip()) for entry in raw.split(";") if entry.strip())


def _parse_one(entry: str) -> Binding:
    exchange, _, rest = entry.partition(":")
    kind, _, spec = rest.partition(":")
    if not exchange or exchange.startswith("amq."):
        raise ValueError(f"{entry!r}: needs an exchange name (not amq.*)")
    if kind not in EXCHANGE_TYPES:
        raise ValueError(f"{entry!r}: type must be one of {', '.join(EXCHANGE_TYPES)}")
    if kind == "headers":
        return Binding(exchange, kind, arguments=_header_match(entry, spec))
    if kind in ("direct", "topic") and not spec:
        raise ValueError(f"{entry!r}: a {kind} binding needs a routing key")
    return Binding(exchange, kind, routing_key=spec)


def _header_match(entry: str, spec: str) -> dict[str, Any]:
    args: dict[str, Any] = {"x-match": "all"}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{entry!r}: header matches are key=value, got {pair!r}")
        args[key] = value
    if args["x-match"] not in ("all", "any"):
        raise ValueError(f"{entry!r}: x-match must be all or any")
    if len(args) == 1:
        raise ValueError(f"{entry!r}: a headers binding needs at least one key=value")
    return args
