"""Task bodies beyond tests/integration/test_bad_input.py's sixteen: each is parked at
once with its reason, byte for byte, and the worker goes on with the next task."""

from __future__ import annotations

import gzip
import json

import pytest

from testbed.processes import ServiceFactory
from tests.support.amqp import drain, publish_raw, publish_tasks, ready_count, wait_for_count
from tests.support.faults import event_names, metric, settled, wait_until
from warren.messages import Task, decode_task

JSON = "application/json"

# (case, body, content type, extra properties, what the parked reason must say)
MORE_BAD_BODIES: list[tuple[str, bytes, str | None, dict[str, str], str]] = [
    ("JSON null", b"null", JSON, {}, "must be an object, got NoneType"),
    ("NaN seconds", b'{"type": "sleep", "args": {"seconds": NaN}}', JSON, {},
     "seconds must be within 0..3600, got nan"),
    ("infinite rounds", b'{"type": "cpu", "args": {"rounds": 1e400}}', JSON, {},
     "rounds must be int, got float"),
    ("duplicate type key", b'{"type": "noop", "type": "launch_rockets"}', JSON, {},
     "unknown task type 'launch_rockets'"),
    ("ten thousand arguments",
     json.dumps({"type": "noop", "args": {f"a{i}": i for i in range(10_000)}}).encode(),
     JSON, {}, "unexpected keyword argument"),
    ("a 10 KB type name", json.dumps({"type": "t" * 10_000}).encode(), JSON, {},
     "unknown task type"),
    ("gzip-encoded body", gzip.compress(b'{"type": "noop"}'), JSON,
     {"content_encoding": "gzip"}, "not valid UTF-8"),
    ("NUL bytes in JSON", b'{"type": "no\x00op"}', JSON, {}, "invalid JSON"),
]


def test_more_malformed_bodies_are_parked_at_once(services: ServiceFactory,
                                                  amqp_url: str) -> None:
    worker = services.start("worker")
    for case, body, content_type, extra, _ in MORE_BAD_BODIES:
        publish_raw(amqp_url, body, content_type=content_type, message_id=case, **extra)
    publish_tasks(amqp_url, [("noop", {})])  # a good task behind them still runs
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 20,
               "the good task")
    assert wait_for_count(amqp_url, "task_queue.dead", len(MORE_BAD_BODIES)) == len(
        MORE_BAD_BODIES)
    found = {props.message_id: (props.headers["x-warren-reason"], body)
             for props, body in drain(amqp_url, "task_queue.dead")}
    for case, body, _, _, says in MORE_BAD_BODIES:
        reason, parked_body = found[case]
        assert reason.startswith("rejected: ") and says in reason, (case, reason[:200])
        assert parked_body == body, case
    rejected = settled(lambda: metric(worker, 'warren_worker_tasks_total{outcome="rejected"}'),
                       len(MORE_BAD_BODIES))
    assert rejected == len(MORE_BAD_BODIES)
    assert metric(worker, 'warren_worker_tasks_total{outcome="retried"}') == 0
    assert worker.probe("/readyz") == 200


def test_deeply_nested_json_is_parked_and_the_worker_carries_on(services: ServiceFactory,
                                                               amqp_url: str) -> None:
    """100,000 '[' (100 KB, well under MAX_BODY_BYTES): json.loads raises RecursionError,
    which decode_task does not turn into MalformedMessage. Found here: the exception
    kills the runner thread; the worker stays up and 'ready' but never settles this
    delivery nor runs another task, and a graceful stop waits out the whole grace."""
    worker = services.start("worker", SHUTDOWN_GRACE_S="2")
    publish_raw(amqp_url, b"[" * 100_000, content_type=JSON, message_id="deep")
    publish_tasks(amqp_url, [("noop", {})])
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 6,
               "the good task behind the deep one")
    [(props, _)] = drain(amqp_url, "task_queue.dead")
    assert props.headers["x-warren-reason"].startswith("rejected: invalid JSON")
    assert ready_count(amqp_url, "task_queue") == 0
    assert "Traceback" not in worker.log()
    assert event_names(worker).count("task_rejected") == 1


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "Application/JSON"])
def test_a_json_content_type_with_parameters_is_still_json(content_type: str) -> None:
    """Media types are case-insensitive and may carry parameters (RFC 9110 8.3.1).
    Found here: anything but the exact string 'application/json' makes a JSON body a
    plain-text 'dots' task, so a failing or unknown task is silently 'done'."""
    body = b'{"type": "launch_rockets"}'
    assert decode_task(body, JSON, max_bytes=1000) == Task("launch_rockets", {})
    assert decode_task(body, content_type, max_bytes=1000) == Task("launch_rockets", {})
