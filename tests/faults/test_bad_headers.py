"""Bad headers on task messages: the worker counts attempts only from a sane value,
parks what cannot succeed, keeps every header it was given, and stays up.

`x-warren-attempts` is warren's own retry counter; anything but a non-negative
integer there counts as 0 (a fresh task), so a failing task is still retried
at most MAX_ATTEMPTS times. A task that arrives with the counter already at
or past MAX_ATTEMPTS is parked at its first failure.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any

import pytest

from testbed.processes import Service, ServiceFactory
from tests.support.amqp import connect, drain, publish_tasks, ready_count, wait_for_count
from tests.support.faults import event_names, metric, settled, wait_until
from tests.support.rawheaders import Raw, RawProperties, double, single

JSON = "application/json"
MAX_ATTEMPTS = 3
CASE = "x-test-case"
ATTEMPTS = "x-warren-attempts"
FAIL = json.dumps({"type": "fail", "args": {"message": "boom"}}).encode()
NOOP = json.dumps({"type": "noop"}).encode()

# Every AMQP field-table value type pika can send (not floats: see below), to be carried
# through retry and park.
EXOTIC: dict[str, Any] = {
    "bytes": b"\x00\xffraw",
    "when": datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
    "decimal": Decimal("12.34"),
    "table": {"nested": {"deeper": [1, "two", None]}},
    "array": [1, Decimal("2.5"), "x", b"y", {"k": True}],
    "void": None,
    "flag": False,
    "big": 2**40,
    "unicode": "zürich / 東京 / 🐇",
}

# (case, headers, expected attempts on the parked copy, went through the retry queue)
FAILING: list[tuple[str, dict[str, Any] | None, int, bool]] = [
    ("attempts is a string", {ATTEMPTS: "2"}, 3, True),
    ("attempts is negative", {ATTEMPTS: -5}, 3, True),
    # pika decodes a double as a truncated integer: 2.5 counts as 2 attempts already.
    ("attempts is a double", {ATTEMPTS: double(2.5)}, 3, False),
    ("attempts is bytes", {ATTEMPTS: b"2"}, 3, True),
    ("attempts is void", {ATTEMPTS: None}, 3, True),
    ("attempts is a table", {ATTEMPTS: {"n": 1}}, 3, True),
    ("attempts is an array", {ATTEMPTS: [1, 2]}, 3, True),
    ("attempts is a decimal", {ATTEMPTS: Decimal("2")}, 3, True),
    ("attempts is a bool", {ATTEMPTS: True}, 3, True),
    ("attempts already at MAX_ATTEMPTS", {ATTEMPTS: MAX_ATTEMPTS}, MAX_ATTEMPTS + 1, False),
    ("attempts far past MAX_ATTEMPTS", {ATTEMPTS: 10**6}, 10**6 + 1, False),
    ("attempts is a 64-bit long", {ATTEMPTS: 2**40}, 2**40 + 1, False),
    ("no headers at all", None, 3, True),
    ("every value type", dict(EXOTIC), 3, True),
    ("a thousand headers", {f"h{i:04}": i for i in range(1000)}, 3, True),
    ("a 64 KB header value", {"big-text": "z" * 65_536}, 3, True),
    # Other clients send doubles and floats; pika decodes them (as truncated integers).
    ("a double and a float from another client",
     {"ratio": double(0.25), "weight": single(2.5)}, 3, True),
]

# Good tasks with odd headers: the headers must not stop them from being done.
SUCCEEDING: list[tuple[str, dict[str, Any]]] = [
    ("good task, attempts is a string", {ATTEMPTS: "lots"}),
    ("good task, attempts past MAX_ATTEMPTS", {ATTEMPTS: 99}),
    ("good task, every value type", dict(EXOTIC)),
]


def exited(service: Service) -> bool:
    return service.process is not None and service.process.poll() is not None


def publish(url: str, body: bytes, case: str, headers: dict[str, Any] | None,
            message_id: str | None = None) -> None:
    conn = connect(url)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare("task_queue", durable=True)
        all_headers = {**(headers or {}), CASE: case}
        channel.basic_publish("", "task_queue", body, RawProperties(
            content_type=JSON, delivery_mode=2, message_id=message_id, headers=all_headers))
    finally:
        conn.close()


def test_bad_attempt_headers_are_bounded_and_every_header_survives(
        services: ServiceFactory, amqp_url: str) -> None:
    worker = services.start("worker", MAX_ATTEMPTS=str(MAX_ATTEMPTS), RETRY_DELAY_MS="100")
    for case, headers, _, _ in FAILING:
        # One case without a message_id: the worker must still manage it.
        publish(amqp_url, FAIL, case, headers,
                message_id=None if case == "no headers at all" else case)
    for case, headers in SUCCEEDING:
        publish(amqp_url, NOOP, case, headers, message_id=case)
    publish_tasks(amqp_url, [("noop", {})])  # a plain good task behind them all

    assert wait_for_count(amqp_url, "task_queue.dead", len(FAILING), timeout_s=60) == len(
        FAILING)
    parked = {props.headers[CASE]: (props, body) for props, body in
              drain(amqp_url, "task_queue.dead")}
    assert sorted(parked) == sorted(case for case, *_ in FAILING)
    for case, headers, attempts, retried in FAILING:
        props, body = parked[case]
        assert body == FAIL, case  # parked byte for byte
        assert props.headers[ATTEMPTS] == attempts, (case, props.headers[ATTEMPTS])
        assert props.headers["x-warren-reason"].startswith(f"failed {attempts} times: "), case
        assert ("x-death" in props.headers) == retried, case  # through task_queue.retry?
        for key, value in (headers or {}).items():
            if key != ATTEMPTS and not isinstance(value, Raw):
                assert props.headers[key] == value, (case, key)
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}')
               == len(SUCCEEDING) + 1, 20, "the good tasks")
    parked_count = settled(lambda: metric(worker, 'warren_worker_tasks_total{outcome="parked"}'),
                           len(FAILING))
    assert parked_count == len(FAILING)
    assert metric(worker, 'warren_worker_tasks_total{outcome="rejected"}') == 0
    # Bounded: no case was tried more than MAX_ATTEMPTS times in all.
    assert metric(worker, 'warren_worker_tasks_total{outcome="retried"}') <= 2 * len(FAILING)
    assert ready_count(amqp_url, "task_queue") == 0
    assert ready_count(amqp_url, "task_queue.retry") == 0
    assert worker.process is not None and worker.process.poll() is None
    assert worker.probe("/readyz") == 200
    assert event_names(worker).count("consuming") == 1  # never lost its connection


@pytest.mark.parametrize("headers", [
    pytest.param({ATTEMPTS: 2**63 - 1}, id="attempts-at-2**63-1"),
    pytest.param({"ratio": double(1e300)}, id="double-1e300"),
])
def test_a_header_pika_cannot_encode_again_is_parked_and_the_worker_survives(
        services: ServiceFactory, amqp_url: str, headers: dict[str, Any]) -> None:
    """A failing task whose retry or parked copy pika cannot encode: x-warren-attempts =
    2**63-1 (attempts+1 no longer fits AMQP's 64-bit signed integer), or a double of
    1e300 from another client (pika decodes doubles as Python ints). Found here: pika
    raises struct.error while publishing the copy on the I/O thread, the worker process
    dies (exit 1), and the message goes back to the queue to kill the next worker."""
    worker = services.start("worker", MAX_ATTEMPTS=str(MAX_ATTEMPTS), RETRY_DELAY_MS="100")
    publish(amqp_url, FAIL, "unencodable", headers, message_id="max")
    publish_tasks(amqp_url, [("noop", {})])
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1 or exited(worker), 10,
               "the task to be parked (or the worker to die)")
    assert not exited(worker), worker.log()[-2000:]
    assert ready_count(amqp_url, "task_queue.dead") == 1
    assert worker.probe("/readyz") == 200
    [(props, _)] = drain(amqp_url, "task_queue.dead")
    assert props.headers["x-warren-reason"].startswith("failed ")
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 10,
               "the good task behind it")


def test_a_forged_x_death_header_does_not_break_the_retry_queue(
        services: ServiceFactory, amqp_url: str) -> None:
    """`x-death` belongs to the broker, but a producer can set it. The worker copies a
    failing task's headers into its retry copy; when that copy expires, RabbitMQ 3.10
    dead-letters it and crashes on the malformed x-death (rabbit_dead_letter
    function_clause): task_queue.retry restarts until it gives up, and every later
    retry of every task is nacked, in a tight loop. `["not-a-table"]` and
    `[{"queue": "task_queue.retry", "reason": "expired", "count": "many"}]` both do it."""
    worker = services.start("worker", MAX_ATTEMPTS=str(MAX_ATTEMPTS), RETRY_DELAY_MS="100")
    publish(amqp_url, FAIL, "forged x-death", {"x-death": ["not-a-table"]},
            message_id="forged")
    publish(amqp_url, FAIL, "honest failure", None, message_id="honest")
    assert wait_for_count(amqp_url, "task_queue.dead", 2, timeout_s=6) == 2
    assert worker.probe("/readyz") == 200
    assert ready_count(amqp_url, "task_queue.retry") == 0
