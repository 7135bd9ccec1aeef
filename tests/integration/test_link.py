"""warren.amqp.link against a real broker: what pika's defaults would get wrong for a worker."""

from __future__ import annotations

import time

import pika

from warren.amqp.link import Link, Message

MESSAGES = 200


def _fill(url: str, queue: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()
        for n in range(MESSAGES):
            channel.basic_publish("", queue, str(n).encode())
    finally:
        conn.close()


def _drain_flags(url: str, queue: str) -> list[bool]:
    """The redelivered flag of every message left in `queue`, taken with basic.get."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    flags = []
    try:
        channel = conn.channel()
        while True:
            method, _props, _body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return flags
            flags.append(method.redelivered)
    finally:
        conn.close()


def test_a_cancel_hands_deliveries_on_their_way_to_the_consumer_not_back(amqp_url: str) -> None:
    """pika's own cancel rejects with requeue what arrives before the cancel-ok, which flags
    those messages redelivered: a worker would count an attempt for tasks it never ran."""
    queue = "link_cancel"
    _fill(amqp_url, queue)
    link = Link(pika.BlockingConnection(pika.URLParameters(amqp_url)))
    try:
        channel = link.channel("consuming link_cancel")
        channel.qos(MESSAGES)
        received: list[Message] = []
        tag = channel.consume(queue, received.append)
        # Cancel at once: the broker is already sending up to MESSAGES deliveries.
        channel.cancel(tag)
        for message in received:
            channel.ack(message.tag)
        link.pump(0.2)
        left = _drain_flags(amqp_url, queue)
        assert not any(left), f"{sum(left)} of {len(left)} left messages flagged redelivered"
        assert len(received) + len(left) == MESSAGES
        assert received, "nothing arrived before the cancel took effect: nothing was tested"
        assert not any(m.redelivered for m in received)
    finally:
        link.close()


def test_a_cancel_from_inside_a_delivery_callback_loses_nothing(amqp_url: str) -> None:
    """A worker changes its prefetch (cancel, consume again) from a delivery's callback,
    where pika dispatches nothing nested: what waits for dispatch must still reach it."""
    queue = "link_cancel_nested"
    _fill(amqp_url, queue)
    link = Link(pika.BlockingConnection(pika.URLParameters(amqp_url)))
    try:
        channel = link.channel("consuming link_cancel_nested")
        channel.qos(MESSAGES)
        received: list[Message] = []
        tags: list[str] = []

        def on_message(message: Message) -> None:
            received.append(message)
            if len(received) == 1:
                channel.cancel(tags[0])

        tags.append(channel.consume(queue, on_message))
        for _ in range(20):
            link.pump(0.05)
        for message in received:
            channel.ack(message.tag)
        link.pump(0.2)
        assert link.is_open
        left = _drain_flags(amqp_url, queue)
        assert not any(left), f"{sum(left)} of {len(left)} left messages flagged redelivered"
        assert len(received) + len(left) == MESSAGES
        assert not any(m.redelivered for m in received)
    finally:
        link.close()


def test_serve_returns_on_a_delivery_at_once_and_when_idle_within_its_bound(
        amqp_url: str) -> None:
    """The session loop's `serve`: a delivery ends the wait, and an idle link still comes
    back within `most_s` every time (the standing timer is set again after it rang)."""
    queue = "link_serve"
    link = Link(pika.BlockingConnection(pika.URLParameters(amqp_url)))
    try:
        channel = link.channel("consuming link_serve")
        channel.queue_declare(queue, durable=True)
        received: list[Message] = []
        channel.consume(queue, received.append, auto_ack=True)
        waits = []
        for _ in range(3):
            started = time.monotonic()
            link.serve(0.3)
            waits.append(time.monotonic() - started)
        assert not received
        assert all(w < 0.6 for w in waits), f"idle serve waited {waits}"
        assert sum(waits) > 0.3, f"idle serve did not wait at all: {waits}"
        _fill(amqp_url, queue)
        started = time.monotonic()
        while not received:
            link.serve(5.0)
        assert time.monotonic() - started < 2.0, "a delivery did not end the wait"
    finally:
        link.close()
