"""What settling a task publishes besides the ack: retry copies, parked copies, events.

Retry and parked copies go through a confirm-mode channel and are confirmed
before the original is acked, so a failing task is never lost between queues.
Events are best effort.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from warren.amqp import deferred
from warren.messages import ATTEMPTS_HEADER, ERROR_HEADER, REASON_HEADER, WORKER_HEADER
from warren.settings import Settings
from worker.runner import Delivery, Outcome

PERSISTENT = pika.DeliveryMode.Persistent.value
LONG_MAX = 2**63 - 1  # AMQP's largest integer
# Set by the broker when it dead-letters. A forged one in a retry copy crashes RabbitMQ
# 3.10's retry queue when it dead-letters the copy back (rabbit_dead_letter).
BROKER_HEADERS = frozenset({"x-death", "x-first-death-exchange", "x-first-death-queue",
                            "x-first-death-reason", "x-last-death-exchange",
                            "x-last-death-queue", "x-last-death-reason"})
EVENT_PROPS = pika.BasicProperties(content_type="application/json")


class SidePublisher:
    def __init__(self, connection: BlockingConnection, settings: Settings) -> None:
        self.settings = settings
        self._confirmed: BlockingChannel = connection.channel()
        self._confirmed.confirm_delivery()
        self._events: BlockingChannel = connection.channel()

    def retry(self, delivery: Delivery, error: str, attempts: int) -> None:
        props = self._copy(delivery, {ATTEMPTS_HEADER: attempts, ERROR_HEADER: error})
        props.headers = {k: v for k, v in props.headers.items() if k not in BROKER_HEADERS}
        props.expiration = str(self.settings.retry_delay_ms)
        self._publish(self.settings.retry_queue, delivery.body, props)

    def park(self, delivery: Delivery, reason: str, attempts: int) -> None:
        props = self._copy(delivery, {ATTEMPTS_HEADER: attempts, REASON_HEADER: reason})
        self._publish(self.settings.dead_queue, delivery.body, props)

    def event(self, result: str, delivery: Delivery, outcome: Outcome) -> None:
        if not self.settings.events_exchange:
            return
        body = {"event": result, "task_id": delivery.task_id, "type": outcome.task_type,
                "worker": self.settings.worker_id, "duration_s": round(outcome.duration_s, 6),
                "error": outcome.error or None}
        deferred(self._events).basic_publish(self.settings.events_exchange, result,
                                             json.dumps(body).encode(), EVENT_PROPS)

    def _copy(self, delivery: Delivery, headers: dict[str, object]) -> pika.BasicProperties:
        props = copy.copy(delivery.properties)
        props.headers = {**_encodable(props.headers or {}), **headers,
                         WORKER_HEADER: self.settings.worker_id}
        props.headers[ATTEMPTS_HEADER] = min(int(props.headers[ATTEMPTS_HEADER]), LONG_MAX)
        props.delivery_mode = PERSISTENT
        props.expiration = None
        return props

    def _publish(self, queue: str, body: bytes, props: pika.BasicProperties) -> None:
        self._confirmed.basic_publish("", queue, body, props, mandatory=True)


def _encodable(value: Any) -> Any:
    """pika decodes some values it cannot encode again: a double or a float arrives as an
    int of any size. Keep what does not fit an AMQP long as text."""
    if isinstance(value, dict):
        return {key: _encodable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    if isinstance(value, int) and not -LONG_MAX - 1 <= value <= LONG_MAX:
        return str(value)
    return value
