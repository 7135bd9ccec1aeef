"""Messages whose headers the worker's AMQP client cannot even decode.

RabbitMQ passes a content header through as it was published, so a producer
(in any language) can send a header pika fails on while parsing the frame: a
table nested deeper than Python's recursion limit, a timestamp past year 9999.
Left to itself, pika would drop the whole connection (StreamLostError) and the
broker would hand the message out again, and again.

- warren decodes properties leniently (warren/amqp/wire.py): such a message arrives
  flagged, its headers kept as bytes, and is parked at once with them, on classic queues
  too, which have no delivery limit of their own.
- Quorum queues count deliveries: with a `delivery-limit` policy the message is
  dead-lettered into task_queue.dead (warren's quorum task_queue has that DLX)
  and the work behind it goes on.
- A header that is not a valid AMQP table at all (an unknown type tag, a NaN
  double) never gets that far: the broker refuses the publish.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import pika.exceptions as pex
import pytest

from testbed.processes import ServiceFactory
from tests.support.amqp import connect, publish_tasks, ready_count
from tests.support.broker import BrokerUnderTest
from tests.support.faults import event_names, metric, wait_until
from tests.support.rawheaders import Raw, RawProperties, double, timestamp
from warren.messages import task_properties

NOOP = b'{"type": "noop"}'


@contextmanager
def deep_recursion(limit: int) -> Iterator[None]:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def nested(depth: int) -> dict[str, Any]:
    table: dict[str, Any] = {}
    inner = table
    for _ in range(depth):
        inner["n"] = {}
        inner = inner["n"]
    return table


POISONS: dict[str, Any] = {
    "nested-2000-deep": lambda: nested(2000),  # pika decodes tables recursively
    "timestamp-past-year-9999": lambda: {"x-when": timestamp(2**64 - 1)},
}


def publish_poison(url: str, name: str, queue_type: str) -> None:
    conn = connect(url)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        with deep_recursion(20_000):  # pika encodes recursively too
            channel.basic_publish("", "task_queue", NOOP, RawProperties(
                content_type="application/json", delivery_mode=2, message_id=name,
                headers=POISONS[name]()))
    finally:
        conn.close()
    assert queue_type in ("classic", "quorum")


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_classic_queue_an_undecodable_header_is_set_aside(
        services: ServiceFactory, amqp_url: str, poison: str) -> None:
    worker = services.start("worker")
    publish_poison(amqp_url, poison, "classic")
    publish_tasks(amqp_url, [("noop", {})])
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 6,
               "the good task behind the poison")
    assert ready_count(amqp_url, "task_queue") == 0


@pytest.fixture
def delivery_limit(broker: BrokerUnderTest, amqp_url: str) -> Iterator[int]:
    """A `delivery-limit` policy on task_queue in this test's vhost (quorum queues only)."""
    limit = 1
    vhost = unquote(amqp_url.rsplit("/", 1)[1])
    broker.private.ctl("set_policy", "-p", vhost, "--apply-to", "queues", "warren-limit",
                       "^task_queue$", f'{{"delivery-limit": {limit}}}')
    yield limit


def test_quorum_queue_with_a_delivery_limit_dead_letters_undecodable_messages(
        services: ServiceFactory, amqp_url: str, delivery_limit: int) -> None:
    worker = services.start("worker", QUEUE_TYPE="quorum")
    for poison in sorted(POISONS):
        publish_poison(amqp_url, poison, "quorum")
    conn = connect(amqp_url)  # a good task behind them; the worker declared the quorum queue
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish("", "task_queue", NOOP, task_properties())
    finally:
        conn.close()
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == len(POISONS), 60,
               "every poison to be dead-lettered")
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 20,
               "the good task behind them")
    assert ready_count(amqp_url, "task_queue") == 0
    # Each poison cost the worker its connection delivery-limit + 1 times at most (none
    # once the worker can set such a message aside itself: finding F3).
    lost = event_names(worker).count("broker_connection_lost")
    assert lost <= len(POISONS) * (delivery_limit + 1), lost
    assert worker.probe("/readyz") == 200


@pytest.mark.parametrize("value", [
    pytest.param(Raw(b"Z", b""), id="unknown-type-tag"),
    pytest.param(double(float("nan")), id="double-nan"),
])
def test_a_header_that_is_not_a_valid_table_is_refused_at_publish(
        services: ServiceFactory, amqp_url: str, value: Raw) -> None:
    worker = services.start("worker")
    conn = connect(amqp_url)
    channel = conn.channel()
    channel.confirm_delivery()
    channel.queue_declare("task_queue", durable=True)
    bad = RawProperties(content_type="application/json", delivery_mode=2,
                        headers={"x-bad": value})
    with pytest.raises((pex.AMQPConnectionError, pex.AMQPChannelError)):
        channel.basic_publish("", "task_queue", NOOP, bad)  # 541 INTERNAL_ERROR
    with contextlib.suppress(pex.AMQPError):
        conn.close()
    publish_tasks(amqp_url, [("noop", {})])
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 10,
               "the good task")
    assert ready_count(amqp_url, "task_queue") == 0
    assert event_names(worker).count("consuming") == 1  # the worker never noticed
