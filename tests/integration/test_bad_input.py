"""Poison and malformed tasks: bounded retries, then parked with the reason; nothing lost."""

from __future__ import annotations

import json

import pytest

from testbed.processes import ServiceFactory
from tests.support.amqp import drain, publish_raw, publish_tasks, wait_for_count
from tests.support.faults import metric, settled, wait_until

JSON = "application/json"

# (case, body, content type, what the parked reason must say)
BAD_INPUTS: list[tuple[str, bytes, str | None, str]] = [
    ("truncated JSON", b'{"type": "sleep",', JSON, "invalid JSON"),
    ("JSON array", b"[1, 2]", JSON, "must be an object"),
    ("JSON string", b'"sleep"', JSON, "must be an object"),
    # A +json type is JSON (RFC 6839): this ran as the tutorial's text, two dots, and was done.
    ("+json array", b'["a.", "b."]', "application/vnd.api+json", "must be an object"),
    ("no type", b'{"args": {}}', JSON, "'type' must be a non-empty string"),
    ("type not a string", b'{"type": 5}', JSON, "'type' must be a non-empty string"),
    ("args not an object", b'{"type": "sleep", "args": [1]}', JSON, "'args' must be an object"),
    ("unknown type", b'{"type": "launch_rockets"}', JSON, "unknown task type"),
    ("wrong argument type", b'{"type": "sleep", "args": {"seconds": "abc"}}', JSON,
     "seconds must be float"),
    ("bool for an int", b'{"type": "cpu", "args": {"rounds": true}}', JSON,
     "rounds must be int"),
    ("missing argument", b'{"type": "sleep", "args": {}}', JSON, "missing a required argument"),
    ("unexpected argument", b'{"type": "sleep", "args": {"seconds": 0, "x": 1}}', JSON,
     "unexpected keyword argument"),
    ("negative sleep", b'{"type": "sleep", "args": {"seconds": -1}}', JSON, "within 0..3600"),
    ("non-UTF-8 text", b"\xff\xfe hello...", None, "not valid UTF-8"),
    ("non-UTF-8 JSON", b'{"type": "\xff"}', JSON, "not valid UTF-8"),
    ("empty body", b"", None, "empty body"),
    ("oversized body", b"." * 5000, "text/plain", "exceeds MAX_BODY_BYTES=4096"),
]


def parked(amqp_url: str, count: int) -> list[tuple[object, bytes]]:
    assert wait_for_count(amqp_url, "task_queue.dead", count) == count
    return drain(amqp_url, "task_queue.dead")


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_poison_task_is_retried_then_parked_with_its_reason(services: ServiceFactory,
                                                            amqp_url: str,
                                                            queue_type: str) -> None:
    worker = services.start("worker", MAX_ATTEMPTS="3", RETRY_DELAY_MS="100",
                            QUEUE_TYPE=queue_type)
    [task_id] = publish_tasks(amqp_url, [("fail", {"message": "kaboom"})], declare=False)
    [(props, body)] = parked(amqp_url, 1)
    assert props.message_id == task_id
    assert props.headers["x-warren-attempts"] == 3
    assert "failed 3 times: RuntimeError: kaboom" in props.headers["x-warren-reason"]
    assert json.loads(body)["type"] == "fail"
    assert settled(lambda: metric(worker, 'warren_worker_tasks_total{outcome="parked"}'), 1) == 1
    assert metric(worker, 'warren_worker_tasks_total{outcome="retried"}') == 2
    assert worker.probe("/readyz") == 200
    assert wait_for_count(amqp_url, "task_queue", 0) == 0
    assert wait_for_count(amqp_url, "task_queue.retry", 0) == 0


def test_malformed_messages_are_parked_at_once_with_a_clear_reason(
        services: ServiceFactory, amqp_url: str) -> None:
    worker = services.start("worker", MAX_BODY_BYTES="4096")
    for case, body, content_type, _ in BAD_INPUTS:
        publish_raw(amqp_url, body, content_type=content_type, message_id=case)
    publish_tasks(amqp_url, [("noop", {})])  # a good task behind them still runs
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 20,
               "the good task")
    found = {props.message_id: (props.headers["x-warren-reason"], parked_body)
             for props, parked_body in parked(amqp_url, len(BAD_INPUTS))}
    for case, body, _, expected in BAD_INPUTS:
        reason, parked_body = found[case]
        assert expected in reason, f"{case}: {reason!r}"
        assert reason.startswith("rejected: ")
        assert parked_body == body  # parked as sent: nothing lost
    rejected = settled(lambda: metric(worker, 'warren_worker_tasks_total{outcome="rejected"}'),
                       len(BAD_INPUTS))
    assert rejected == len(BAD_INPUTS)
    assert metric(worker, 'warren_worker_tasks_total{outcome="retried"}') == 0
    assert worker.probe("/readyz") == 200
    assert worker.log().count('"task_rejected"') == len(BAD_INPUTS)
