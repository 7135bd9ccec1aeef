"""What settling a task publishes besides the ack: retry copies, parked copies, events.

Retry and parked copies go through a confirm-mode channel and are confirmed
before the original is acked, so a failing task is never lost between queues.
Events are best effort.
"""

from __future__ import annotations

import copy
import json

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from warren.amqp import deferred
from warren.messages import ATTEMPTS_HEADER, ERROR_HEADER, REASON_HEADER, WORKER_HEADER
from warren.settings import Settings
from worker.runner import Delivery, Outcome

PERSISTENT = pika.DeliveryMode.Persistent.value
EVENT_PROPS = pika.BasicProperties(content_type="application/json")


class SidePublisher:
    def __init__(self, connection: BlockingConnection, settings: Settings) -> None:
        self.settings = settings
        self._confirmed: BlockingChannel = connection.channel()
        self._confirmed.confirm_delivery()
        self._events: BlockingChannel = connection.channel()

    def retry(self, delivery: Delivery, error: str, attempts: int) -> None:
        props = self._copy(delivery, {ATTEMPTS_HEADER: attempts, ERROR_HEADER: error})
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
        props.headers = {**(props.headers or {}), **headers,
                         WORKER_HEADER: self.settings.worker_id}
        props.delivery_mode = PERSISTENT
        props.expiration = None
        return props

    def _publish(self, queue: str, body: bytes, props: pika.BasicProperties) -> None:
        self._confirmed.basic_publish("", queue, body, props, mandatory=True)
