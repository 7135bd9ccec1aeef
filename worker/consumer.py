"""The consumer: pika's I/O on the main thread, tasks on a runner thread, acks handed back.

BlockingConnection is not thread-safe, so the runner never touches the channel:
results come back through `connection.add_callback_threadsafe` (see runner.py)
and the I/O loop keeps servicing heartbeats however long a task runs.
"""

from __future__ import annotations

import threading
import time
from functools import partial

import pika
import pika.exceptions as pex
import structlog
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from warren.amqp import deferred
from warren.consuming import ConsumerHooks, Consuming, run_consumer
from warren.errors import ConnectionLost, ExitCode
from warren.health import Health
from warren.messages import attempts_of
from warren.settings import Settings
from warren.topology import apply_bindings, declare_events_exchange, declare_task_queues
from worker import metrics
from worker.prefetch import MIN_CHANGE_INTERVAL_S, AdaptivePrefetch
from worker.runner import INLINE_WAIT_S, Delivery, Finished, Outcome, Runner
from worker.side import SidePublisher
from worker.tasks import TaskRegistry

log = structlog.get_logger("worker")


class Worker:
    def __init__(self, settings: Settings, health: Health, stop: threading.Event,
                 registry: TaskRegistry) -> None:
        self.settings = settings
        self.health = health
        self.stop = stop
        self.runner = Runner(registry, settings.max_body_bytes, self._settle)
        self.adaptive = (AdaptivePrefetch(settings.prefetch_max)
                         if settings.prefetch == "auto" else None)
        self._unsettled: set[int] = set()
        self._side: SidePublisher | None = None
        self._channel: BlockingChannel | None = None
        self._consumer_tag = ""
        self._cancelled_by_broker = False
        self._prefetch_changed_at = 0.0

    @property
    def prefetch(self) -> int:
        return self.adaptive.current if self.adaptive else int(self.settings.prefetch)

    # -- the restart loop -------------------------------------------------
    def run(self) -> ExitCode:
        self.runner.start()
        hooks = ConsumerHooks(start=self._start, drain=self._drain, tick=self._tick,
                              session_ended=self._end_session)
        try:
            run_consumer(self.settings, "worker", self.health, self.stop, hooks)
        finally:
            self.runner.stop()
        log.info("worker_stopped")
        return ExitCode.OK

    def _start(self, conn: BlockingConnection) -> Consuming:
        channel = conn.channel()
        declare_task_queues(channel, self.settings)
        declare_events_exchange(channel, self.settings)
        apply_bindings(channel, self.settings.task_queue, self.settings.bindings)
        self._side = SidePublisher(conn, self.settings)
        self._channel = channel
        self._cancelled_by_broker = False
        self.runner.reset()  # results of a lost connection: the broker redelivers those
        channel.add_on_cancel_callback(self._on_broker_cancel)
        self._consume(conn, channel, self.prefetch)
        metrics.CONNECTED.set(1)
        log.info("consuming", queue=self.settings.task_queue, prefetch=self.settings.prefetch)
        return Consuming(channel, self._consumer_tag)

    def _consume(self, conn: BlockingConnection, channel: BlockingChannel, prefetch: int) -> None:
        channel.basic_qos(prefetch_count=prefetch)
        self._consumer_tag = channel.basic_consume(self.settings.task_queue,
                                                   partial(self._on_message, conn))
        metrics.PREFETCH.set(prefetch)

    def _end_session(self) -> None:
        metrics.CONNECTED.set(0)
        metrics.IN_FLIGHT.dec(len(self._unsettled))
        self._unsettled.clear()  # the broker requeues whatever the lost connection held
        self._channel = None

    def _tick(self) -> None:
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
        # Waiting in place only pays when the broker sends nothing more until this ack
        # (prefetch 1); with a deeper window it would undo the batching of acks.
        wait_s = INLINE_WAIT_S if self.prefetch == 1 else 0.0
        quick = self.runner.submit(Delivery(conn, channel, method.delivery_tag, properties, body),
                                   wait_s)
        if quick:
            self._settle(quick)

    def _drain(self, conn: BlockingConnection, consuming: Consuming) -> None:
        """Stop taking work, hand back what has not started, finish what is in hand."""
        consuming.channel.basic_cancel(self._consumer_tag)
        for delivery in self.runner.take_not_started():
            consuming.channel.basic_nack(delivery.tag, requeue=True)
            self._forget([delivery.tag])
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        while self._unsettled and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        if self._unsettled:
            log.warning("shutdown_grace_exceeded", unsettled=len(self._unsettled),
                        grace_s=self.settings.shutdown_grace_s)

    def _forget(self, tags: list[int]) -> None:
        for tag in tags:
            if tag in self._unsettled:
                self._unsettled.discard(tag)
                metrics.IN_FLIGHT.dec()

    # -- settling, back on the I/O thread -----------------------------------
    def _settle(self, batch: list[Finished]) -> None:
        channel = self._channel
        current = [(d, o) for d, o in batch if d.channel is channel and d.tag in self._unsettled]
        if channel is None or not channel.is_open or not current:
            return
        acks = [d.tag for d, o in current if self._settle_one(d, o)]
        self._ack(channel, acks)
        self._adapt_prefetch(current)

    def _settle_one(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Publish what the outcome needs; True when the delivery may be acked."""
        assert self._side is not None
        try:
            result = self._result_of(delivery, outcome)
        except (pex.NackError, pex.UnroutableError) as exc:
            log.error("side_publish_failed", error=type(exc).__name__, task_id=delivery.task_id)
            delivery.channel.basic_nack(delivery.tag, requeue=True)
            self._forget([delivery.tag])
            return False
        metrics.OUTCOME[result].inc()
        self._side.event(result, delivery, outcome)
        return True

    def _result_of(self, delivery: Delivery, outcome: Outcome) -> str:
        assert self._side is not None
        if outcome.kind == "done":
            return "done"
        bound = log.bind(task_id=delivery.task_id, task_type=outcome.task_type)
        if outcome.kind == "malformed":
            bound.warning("task_rejected", reason=outcome.error)
            self._side.park(delivery, f"rejected: {outcome.error}",
                            attempts_of(delivery.properties))
            return "rejected"
        attempts = attempts_of(delivery.properties) + 1
        if attempts >= self.settings.max_attempts:
            bound.error("task_parked", attempts=attempts, error=outcome.error)
            self._side.park(delivery, f"failed {attempts} times: {outcome.error}", attempts)
            return "parked"
        bound.warning("task_retry", attempts=attempts, error=outcome.error,
                      delay_ms=self.settings.retry_delay_ms)
        self._side.retry(delivery, outcome.error, attempts)
        return "retried"

    def _ack(self, channel: BlockingChannel, tags: list[int]) -> None:
        """One `multiple` ack when the batch is the oldest deliveries held, else one each."""
        if not tags:
            return
        tags.sort()
        core = deferred(channel)
        if len(tags) > 1 and tags == sorted(self._unsettled)[: len(tags)]:
            core.basic_ack(tags[-1], multiple=True)
        else:
            for tag in tags:
                core.basic_ack(tag)
        self._forget(tags)

    def _adapt_prefetch(self, batch: list[Finished]) -> None:
        if self.adaptive is None or self._channel is None:
            return
        for _, outcome in batch:
            self.adaptive.observe(outcome.duration_s)
        new = self.adaptive.change()
        now = time.monotonic()
        if new is None or now - self._prefetch_changed_at < MIN_CHANGE_INTERVAL_S:
            return
        self._prefetch_changed_at = now
        # A consumer's prefetch is fixed when it starts: re-consume with the new one.
        # pika hands back (requeues) deliveries that arrived but were not yet dispatched.
        conn = batch[0][0].connection
        self._channel.basic_cancel(self._consumer_tag)
        self.adaptive.current = new
        self._consume(conn, self._channel, new)
        log.info("prefetch_adapted", prefetch=new, slowest_s=round(self.adaptive.slowest_s or 0, 5))
