"""Small AMQP helpers for tests: publish, count, read parked messages, watch events."""

from __future__ import annotations

import json
import time
from typing import Any

import pika

from warren.messages import encode_task, task_properties


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def publish_tasks(url: str, tasks: list[tuple[str, dict[str, Any]]],
                  queue: str = "task_queue", declare: bool = True) -> list[str]:
    """Publish with confirms; returns the message ids in order.

    `declare=False` when the worker already declared the queue with other arguments
    (quorum): a plain re-declare would be refused with 406.
    """
    conn = connect(url)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        if declare:
            channel.queue_declare(queue, durable=True)
        ids = []
        for task_type, args in tasks:
            props = task_properties()
            channel.basic_publish("", queue, encode_task(task_type, args), props)
            ids.append(props.message_id)
        return ids
    finally:
        conn.close()


def publish_raw(url: str, body: bytes, queue: str = "task_queue", declare: bool = True,
                **props: Any) -> None:
    """One message with confirms; `declare=False` where the queue exists with arguments."""
    conn = connect(url)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        if declare:
            channel.queue_declare(queue, durable=True)
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, **props))
    finally:
        conn.close()


def ready_count(url: str, queue: str) -> int:
    conn = connect(url)
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def wait_for_count(url: str, queue: str, expected: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        count = ready_count(url, queue)
        if count == expected:
            return count
        time.sleep(0.2)
    return count


def drain(url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take every ready message off a queue (acked)."""
    conn = connect(url)
    out = []
    try:
        channel = conn.channel()
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((props, body))
    finally:
        conn.close()


class EventWatcher:
    """Binds an exclusive queue to the workers' fanout events exchange."""

    def __init__(self, url: str, exchange: str = "warren.events") -> None:
        self.conn = connect(url)
        self.channel = self.conn.channel()
        self.channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, exchange)
        self.events: list[dict[str, Any]] = []
        self._stream = self.channel.consume(self.queue, auto_ack=True, inactivity_timeout=0.2)

    def collect(self, count: int, timeout_s: float, event: str = "done") -> list[dict[str, Any]]:
        """Events named `event` read so far, once there are `count` of them or at the timeout.

        One consumer for the watcher's life: cancelling an auto-ack consumer drops what
        pika had received but not handed over, so a second collect would miss events."""
        deadline = time.monotonic() + timeout_s
        seen = sum(1 for e in self.events if e["event"] == event)
        while seen < count and time.monotonic() <= deadline:
            method, _props, body = next(self._stream)
            if method is not None:
                self.events.append({**json.loads(body), "received_at": time.monotonic()})
                seen += self.events[-1]["event"] == event
        return [e for e in self.events if e["event"] == event]

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()
