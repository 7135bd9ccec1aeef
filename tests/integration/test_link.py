"""warren.amqp.link against a real broker: what pika's defaults would get wrong for a worker."""

from __future__ import annotations

import socket
import time

import pika

from warren.amqp.link import Link, Message, Outgoing

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


def test_an_in_io_pass_consumer_gets_every_delivery_and_a_cancel_hands_none_back(
        amqp_url: str) -> None:
    """`in_io_pass`: deliveries reach `on_message` from inside pika's read, with a time-
    limited pump as the only driver; a cancel still flags nothing redelivered."""
    queue = "link_in_io_pass"
    _fill(amqp_url, queue)
    link = Link(pika.BlockingConnection(pika.URLParameters(amqp_url)))
    try:
        channel = link.channel("consuming link_in_io_pass")
        channel.qos(MESSAGES // 2)
        received: list[Message] = []
        tag = channel.consume(queue, received.append, in_io_pass=True)
        deadline = time.monotonic() + 5
        while len(received) < MESSAGES // 2 and time.monotonic() < deadline:
            link.pump(0.05)
        assert len(received) == MESSAGES // 2, "the prefetch window did not fill"
        channel.cancel(tag)
        for message in received:
            channel.ack(message.tag)
        link.pump(0.2)
        left = _drain_flags(amqp_url, queue)
        assert [m.body for m in received] == [str(n).encode() for n in range(len(received))]
        assert len(received) + len(left) == MESSAGES
        assert not any(left) and not any(m.redelivered for m in received)
    finally:
        link.close()


def _cut(link: Link) -> None:
    """End the TCP connection under pika, as a killed process would: whatever pika still
    holds unsent is lost, what the kernel has is delivered before the FIN."""
    link._connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)


def _ready_once_gone(url: str, queue: str) -> int:
    """Ready messages in `queue` once its consumer's connection is gone (and what that
    connection held unacked is back in the queue)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        deadline = time.monotonic() + 10
        while True:
            result = channel.queue_declare(queue, passive=True).method
            if result.consumer_count == 0 or time.monotonic() > deadline:
                return int(result.message_count)
            time.sleep(0.05)
    finally:
        conn.close()


def test_flush_sends_an_ack_at_once_without_a_pump(amqp_url: str) -> None:
    """A worker at prefetch 1 flushes its ack: the broker sends the next task only once it
    has it. Acked and flushed, then cut off: the message is gone. Acked, not flushed (the
    control): the ack was still in pika's buffer, and the broker requeues the message."""
    for flush, expected_ready in ((True, 0), (False, 1)):
        queue = f"link_flush_{flush}"
        conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        conn.channel().queue_declare(queue, durable=True)
        conn.channel().basic_publish("", queue, b"task")
        conn.close()
        link = Link(pika.BlockingConnection(pika.URLParameters(amqp_url)))
        channel = link.channel(f"consuming {queue}")
        channel.qos(1)
        received: list[Message] = []
        channel.consume(queue, received.append, in_io_pass=True)
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            link.pump(0.05)
        assert received, "the message never arrived"
        channel.ack(received[0].tag)
        if flush:
            link.flush()
        _cut(link)
        assert _ready_once_gone(amqp_url, queue) == expected_ready, f"flush={flush}"


def _count_sends(link: Link) -> list[int]:
    """The byte count of every `send` the link's transport makes from now on."""
    transport = link._connection._impl._transport
    send = transport._sigint_safe_send
    sizes: list[int] = []

    def counted(sock: socket.socket, data: bytes) -> int:
        sizes.append(len(data))
        return send(sock, data)

    transport._sigint_safe_send = counted
    return sizes


def test_frames_queued_in_one_pass_leave_in_few_sends_whole_and_in_order(amqp_url: str) -> None:
    """pika sends each frame with its own syscall, three per publish; the link joins what
    one pass queued. Bodies from empty to several frames long (frame_max split) arrive
    whole and in order, and 300 publishes take under a third of pika's 900 sends."""
    queue = "link_coalesced"
    bodies = [b"x" * (200_000 if n % 150 == 7 else n * 997 % 2000) + str(n).encode()
              for n in range(300)]
    link = Link(pika.BlockingConnection(pika.URLParameters(amqp_url)))
    try:
        channel = link.channel("publishing to link_coalesced")
        channel.queue_declare(queue, durable=True)
        sizes = _count_sends(link)
        for body in bodies:
            channel.publish(Outgoing(body, pika.BasicProperties(), queue))
        while link._connection._impl._transport.get_write_buffer_size():
            link.pump(0.05)
        sends = len(sizes)
        got = []
        while len(got) < len(bodies):
            message = channel.get(queue)
            assert message is not None, f"only {len(got)} of {len(bodies)} arrived"
            got.append(message.body)
            channel.ack(message.tag)
    finally:
        link.close()
    assert got == bodies
    assert 0 < sends < len(bodies) // 3, f"{sends} sends for {len(bodies)} publishes"
