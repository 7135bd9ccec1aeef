"""The producer's generated load: each body is exactly what `encode_task` makes of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from producer.load import LoadSpec, Route, generate
from warren.messages import encode_task


@pytest.mark.parametrize("spec", [
    LoadSpec(count=12, task_type="noop"),
    LoadSpec(count=12, task_type="sleep", args={"seconds": 0.5}),
    # args holding the very text the template splits on, and a pad after seq
    LoadSpec(count=12, task_type="noop", args={"seq": 0, "note": '"seq": 0'}, pad_bytes=7),
    LoadSpec(count=12, task_type="ignored", heavy_light=(1.0, 0.1)),
])
def test_each_body_is_what_encode_task_makes(spec: LoadSpec) -> None:
    for index, message in enumerate(generate(spec, Route("task_queue"))):
        if spec.heavy_light:
            seconds = spec.heavy_light[index % 2]
            task_type, args = "sleep", {"seconds": seconds}
        else:
            task_type, args = spec.task_type, spec.args
        extra: dict[str, Any] = {"pad": "x" * spec.pad_bytes} if spec.pad_bytes else {}
        assert message.body == encode_task(task_type, args, seq=index, **extra)
        assert json.loads(message.body)["seq"] == index
    assert index == spec.count - 1


def test_every_message_has_its_own_id_and_the_route() -> None:
    route = Route("logs", exchange="topic_logs", headers={"x": 1})
    messages = list(generate(LoadSpec(count=100, task_type="noop"), route))
    assert len({m.properties.message_id for m in messages}) == 100
    assert {(m.exchange, m.routing_key) for m in messages} == {("topic_logs", "logs")}
    assert all(m.properties.headers == {"x": 1} for m in messages)
