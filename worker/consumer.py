"""The consumer: pika's I/O on the main thread, tasks on a runner thread, acks handed back.

BlockingConnection is not thread-safe, so the runner never touches the channel:
it hands each result back with `connection.add_callback_threadsafe`, and the
I/O loop keeps servicing heartbeats however long a task runs.
"""

from __future__ import annotations

import copy
import json
import queue
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Literal

import pika
import pika.exceptions as pex
import structlog
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from warren.consuming import ConsumerHooks, Consuming, run_consumer
from warren.errors import ConnectionLost, ExitCode, MalformedMessage
from warren.health import Health
from warren.messages import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    REASON_HEADER,
    WORKER_HEADER,
    attempts_of,
    decode_task,
)
from warren.settings import Settings
from warren.topology import apply_bindings, declare_events_exchange, declare_task_queues
from worker import metrics
from worker.tasks import TaskRegistry, set_current_task_id

log = structlog.get_logger("worker")

Kind = Literal["done", "failed", "malformed"]


@dataclass(frozen=True)
class Delivery:
    connection: BlockingConnection
    channel: BlockingChannel
    tag: int
    properties: pika.BasicProperties
    body: bytes

    @property
    def task_id(self) -> str:
        return self.properties.message_id or f"tag-{self.tag}"


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    task_type: str = ""
    error: str = ""
    duration_s: float = 0.0


class Worker:
    def __init__(self, settings: Settings, health: Health, stop: threading.Event,
                 registry: TaskRegistry) -> None:
        self.settings = settings
        self.health = health
        self.stop = stop
        self.registry = registry
        self._jobs: queue.Queue[Delivery | None] = queue.Queue()
        self._unsettled: set[int] = set()
        self._side: BlockingChannel | None = None
        self._events: BlockingChannel | None = None
        self._cancelled_by_broker = False

    # -- the restart loop -------------------------------------------------
    def run(self) -> ExitCode:
        runner = threading.Thread(target=self._run_tasks, name="task-runner", daemon=True)
        runner.start()
        metrics.PREFETCH.set(self.settings.prefetch)
        hooks = ConsumerHooks(start=self._start, drain=self._drain, tick=self._check_cancelled,
                              session_ended=self._end_session)
        try:
            run_consumer(self.settings, "worker", self.health, self.stop, hooks)
        finally:
            self._jobs.put(None)
        log.info("worker_stopped")
        return ExitCode.OK

    def _start(self, conn: BlockingConnection) -> Consuming:
        channel = conn.channel()
        declare_task_queues(channel, self.settings)
        declare_events_exchange(channel, self.settings)
        apply_bindings(channel, self.settings.task_queue, self.settings.bindings)
        channel.basic_qos(prefetch_count=self.settings.prefetch)
        self._side = conn.channel()
        self._side.confirm_delivery()  # a retry or parked copy must be safe before the ack
        self._events = conn.channel()
        self._cancelled_by_broker = False
        channel.add_on_cancel_callback(self._on_broker_cancel)
        tag = channel.basic_consume(self.settings.task_queue, partial(self._on_message, conn))
        metrics.CONNECTED.set(1)
        log.info("consuming", queue=self.settings.task_queue, prefetch=self.settings.prefetch)
        return Consuming(channel, tag)

    def _end_session(self) -> None:
        metrics.CONNECTED.set(0)
        metrics.IN_FLIGHT.dec(len(self._unsettled))
        self._unsettled.clear()  # the broker requeues whatever the lost connection held

    def _check_cancelled(self) -> None:
        if self._cancelled_by_broker:
            raise ConnectionLost("the broker cancelled our consumer (queue deleted?)")

    def _on_broker_cancel(self, _frame: object) -> None:
        self._cancelled_by_broker = True

    # -- deliveries ---------------------------------------------------------
    def _on_message(self, conn: BlockingConnection, channel: BlockingChannel,
                    method: pika.spec.Basic.Deliver, properties: pika.BasicProperties,
                    body: bytes) -> None:
        metrics.IN_FLIGHT.inc()
        if method.redelivered:
            metrics.REDELIVERIES.inc()
        self._unsettled.add(method.delivery_tag)
        self._jobs.put(Delivery(conn, channel, method.delivery_tag, properties, body))

    def _drain(self, conn: BlockingConnection, consuming: Consuming) -> None:
        """Stop taking work, hand back what has not started, finish what is in hand."""
        consuming.channel.basic_cancel(consuming.consumer_tag)
        self._requeue_not_started(consuming.channel)
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        while self._unsettled and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        if self._unsettled:
            log.warning("shutdown_grace_exceeded", unsettled=len(self._unsettled),
                        grace_s=self.settings.shutdown_grace_s)

    def _requeue_not_started(self, channel: BlockingChannel) -> None:
        while True:
            try:
                delivery = self._jobs.get_nowait()
            except queue.Empty:
                return
            if delivery is None:
                continue
            channel.basic_nack(delivery.tag, requeue=True)
            self._forget(delivery.tag)

    def _forget(self, tag: int) -> None:
        if tag in self._unsettled:
            self._unsettled.discard(tag)
            metrics.IN_FLIGHT.dec()

    # -- the runner thread ----------------------------------------------------
    def _run_tasks(self) -> None:
        while (delivery := self._jobs.get()) is not None:
            if not delivery.channel.is_open:
                continue  # its connection is gone; the broker has requeued it
            set_current_task_id(delivery.task_id)
            with structlog.contextvars.bound_contextvars(task_id=delivery.task_id):
                outcome = self._execute(delivery)
            self._hand_back(delivery, outcome)

    def _execute(self, delivery: Delivery) -> Outcome:
        try:
            task = decode_task(delivery.body, delivery.properties.content_type,
                               max_bytes=self.settings.max_body_bytes)
        except MalformedMessage as exc:
            return Outcome("malformed", error=str(exc))
        started = time.perf_counter()
        kind: Kind = "done"
        error = ""
        try:
            self.registry.resolve(task)()
        except MalformedMessage as exc:
            kind, error = "malformed", str(exc)
        except Exception as exc:
            kind, error = "failed", f"{type(exc).__name__}: {exc}"
        duration = time.perf_counter() - started
        metrics.TASK_DURATION.observe(duration)
        metrics.BUSY.inc(duration)
        return Outcome(kind, task.type, error, duration)

    def _hand_back(self, delivery: Delivery, outcome: Outcome) -> None:
        try:
            delivery.connection.add_callback_threadsafe(partial(self._settle, delivery, outcome))
        except (pex.AMQPError, RuntimeError, ValueError, OSError):
            log.warning("result_dropped", reason="connection closed; the broker redelivers",
                        task_id=delivery.task_id)

    # -- settling, back on the I/O thread -----------------------------------
    def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        if delivery.tag not in self._unsettled or not delivery.channel.is_open:
            return
        bound = log.bind(task_id=delivery.task_id, task_type=outcome.task_type)
        try:
            result = self._settle_outcome(delivery, outcome, bound)
        except (pex.NackError, pex.UnroutableError) as exc:
            bound.error("side_publish_failed", error=type(exc).__name__)
            delivery.channel.basic_nack(delivery.tag, requeue=True)
            self._forget(delivery.tag)
            return
        delivery.channel.basic_ack(delivery.tag)
        self._forget(delivery.tag)
        metrics.TASKS.labels(result).inc()
        self._emit_event(result, delivery, outcome)

    def _settle_outcome(self, delivery: Delivery, outcome: Outcome,
                        bound: structlog.typing.FilteringBoundLogger) -> str:
        if outcome.kind == "done":
            bound.debug("task_done", duration_s=round(outcome.duration_s, 4))
            return "done"
        if outcome.kind == "malformed":
            bound.warning("task_rejected", reason=outcome.error)
            self._park(delivery, f"rejected: {outcome.error}", attempts_of(delivery.properties))
            return "rejected"
        attempts = attempts_of(delivery.properties) + 1
        if attempts >= self.settings.max_attempts:
            bound.error("task_parked", attempts=attempts, error=outcome.error)
            self._park(delivery, f"failed {attempts} times: {outcome.error}", attempts)
            return "parked"
        bound.warning("task_retry", attempts=attempts, error=outcome.error,
                      delay_ms=self.settings.retry_delay_ms)
        self._retry(delivery, outcome.error, attempts)
        return "retried"

    def _copy_properties(self, delivery: Delivery,
                         headers: dict[str, object]) -> pika.BasicProperties:
        props = copy.copy(delivery.properties)
        props.headers = {**(props.headers or {}), **headers,
                         WORKER_HEADER: self.settings.worker_id}
        props.delivery_mode = pika.DeliveryMode.Persistent.value
        props.expiration = None
        return props

    def _retry(self, delivery: Delivery, error: str, attempts: int) -> None:
        props = self._copy_properties(delivery, {ATTEMPTS_HEADER: attempts, ERROR_HEADER: error})
        props.expiration = str(self.settings.retry_delay_ms)
        self._publish_side(self.settings.retry_queue, delivery.body, props)

    def _park(self, delivery: Delivery, reason: str, attempts: int) -> None:
        props = self._copy_properties(delivery, {ATTEMPTS_HEADER: attempts, REASON_HEADER: reason})
        self._publish_side(self.settings.dead_queue, delivery.body, props)

    def _publish_side(self, queue_name: str, body: bytes, props: pika.BasicProperties) -> None:
        assert self._side is not None
        self._side.basic_publish("", queue_name, body, props, mandatory=True)

    def _emit_event(self, result: str, delivery: Delivery, outcome: Outcome) -> None:
        """Best-effort lifecycle event on the fanout events exchange (not confirmed)."""
        if not self.settings.events_exchange or self._events is None:
            return
        event = {"event": result, "task_id": delivery.task_id, "type": outcome.task_type,
                 "worker": self.settings.worker_id, "duration_s": round(outcome.duration_s, 6),
                 "error": outcome.error or None}
        self._events.basic_publish(self.settings.events_exchange, result,
                                   json.dumps(event).encode(),
                                   pika.BasicProperties(content_type="application/json"))
