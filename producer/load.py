"""What the producer sends: the tutorial's one message, or a generated load."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from warren.amqp import Outgoing
from warren.messages import JSON, TEXT, encode_task, task_properties


@dataclass(frozen=True)
class Route:
    """Where messages go: the default exchange and the task queue, or a named exchange."""

    routing_key: str
    exchange: str = ""
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadSpec:
    count: int  # 0 = endless (stop with Ctrl-C / SIGTERM)
    task_type: str = "sleep"
    args: dict[str, Any] = field(default_factory=dict)
    pad_bytes: int = 0
    heavy_light: tuple[float, float] | None = None  # (heavy_s, light_s), alternating


def text_message(text: str, route: Route) -> Outgoing:
    return Outgoing(text.encode(), task_properties(TEXT, headers=route.headers or None),
                    route.routing_key, route.exchange)


def generate(spec: LoadSpec, route: Route) -> Iterator[Outgoing]:
    counter = itertools.count() if spec.count == 0 else iter(range(spec.count))
    for index in counter:
        task_type, args = _task_for(spec, index)
        extra = {"pad": "x" * spec.pad_bytes} if spec.pad_bytes else {}
        body = encode_task(task_type, args, seq=index, **extra)
        yield Outgoing(body, task_properties(JSON, headers=route.headers or None),
                       route.routing_key, route.exchange)


def _task_for(spec: LoadSpec, index: int) -> tuple[str, dict[str, Any]]:
    if spec.heavy_light is None:
        return spec.task_type, spec.args
    heavy_s, light_s = spec.heavy_light
    # The tutorial's case: odd messages heavy, even ones light.
    return "sleep", {"seconds": heavy_s if index % 2 == 0 else light_s}


def parse_args_json(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("--args must be a JSON object")
    return value
