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


@pytest.mark.parametrize(("argv", "says"), [
    (["--count", "-1"], "argument --count: must be at least 0, got -1"),
    (["--count", "ten"], "argument --count: must be an integer, got 'ten'"),
    (["--size", "-5"], "argument --size: must be at least 0"),
    (["--window", "0"], "argument --window: must be at least 1"),
    (["--count", "1", "--args", "[1]"], "argument --args: must be a JSON object"),
    (["--count", "1", "--args", '{"n": NaN}'], "argument --args: NaN is not JSON"),
    (["--count", "1", "--heavy-light", "1", "0.1", "--args", "{}"], "would be ignored"),
])
def test_the_producer_refuses_bad_options_by_name(
        argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from producer.cli import run_cli
    from warren.settings import Settings

    settings = Settings.from_env({"AMQP_URL": "amqp://u:p@127.0.0.1:1/%2F"})
    with pytest.raises(SystemExit) as exited:
        run_cli(settings, threading.Event(), argv)
    assert exited.value.code == 2 and says in capsys.readouterr().err
