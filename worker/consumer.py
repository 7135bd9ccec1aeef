"""The consumer: pika's I/O on the main thread, tasks on a runner thread, acks handed back.

BlockingConnection is not thread-safe, so the runner never touches the connection:
results come back through the link's `call_threadsafe` (see runner.py) and the I/O loop
keeps servicing heartbeats however long a task runs. What happens to each delivery is
decided in policy.py; this module carries the decision out: an ack, or a copy (retry,
park, again) published by the outbox with confirms and only then the ack. Nothing is
published on this connection (see outbox.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection
from functools import partial

import structlog

from warren.amqp import (
    PERSISTENT,
    BasicProperties,
    Channel,
    Link,
    Message,
    Outgoing,
    run_sessions,
)
from warren.amqp.wire import encoded_size, printable, republished, text
from warren.errors import ExitCode, MalformedMessage, Refused
from warren.health import Health
from warren.messages import (
    ACQUIRED_HEADER,
    ATTEMPTS_HEADER,
    BROKER_HEADERS,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    HEADERS_DROPPED_HEADER,
    LAST_FAILED_HEADER,
    REASON_HEADER,
    USER_ID_HEADER,
    WORKER_HEADER,
    decode_message,
)
from warren.settings import Settings
from warren.topology import apply_bindings, declare_events_exchange, declare_task_queues
from worker import metrics, policy
from worker.execution import Outcome
from worker.outbox import Outbox
from worker.prefetch import MIN_CHANGE_INTERVAL_S, AdaptivePrefetch
from worker.runner import INLINE_WAIT_S, Delivery, Finished, Runner
from worker.tasks import TaskRegistry

log = structlog.get_logger("worker")

EVENT_PROPS = BasicProperties(content_type="application/json")
LONG_MAX = 2**63 - 1  # the largest integer an AMQP table holds
FRAME_MAX = 131_072  # RabbitMQ's default, when no connection says otherwise
FRAME_OVERHEAD = 8 + 12  # frame header and end, content header's class, weight and body size
STATUS_EVERY_S = 2.0  # a `worker` event this often: what `warren status` lists


class Worker:
    def __init__(self, settings: Settings, health: Health, stop: threading.Event,
                 registry: TaskRegistry) -> None:
        self.settings = settings
        self.health = health
        self.stop = stop
        self.runner = Runner(registry, settings, self._settle, self._recycle)
        metrics.OLDEST_TASK_AGE.set_function(self.runner.watchdog.oldest_age_s)
        metrics.IN_FLIGHT.set_function(lambda: len(self._unsettled))
        self.outbox = Outbox(settings)
        self.adaptive = (AdaptivePrefetch(settings.prefetch_max, lanes=settings.concurrency)
                         if settings.prefetch == "auto" else None)
        self._unsettled: set[int] = set()
        self._link: Link | None = None
        self._channel: Channel | None = None
        self._session = 0
        self._consumer_tag = ""
        self._prefetch_changed_at = 0.0
        self._prefetch_due: int | None = None  # the prefetch a pending change applies
        self._counts: dict[str, int] = dict.fromkeys(metrics.OUTCOMES, 0)
        self._quorum = settings.queue_type == "quorum"
        self._stop_deadline = 0.0
        self._status_at = 0.0
        self._status_done = 0
        self._held_most = 0

    @property
    def prefetch(self) -> int:
        return self.adaptive.current if self.adaptive else int(self.settings.prefetch)

    def run(self) -> ExitCode:
        self._warn_if_lanes_starve()
        self.runner.start()
        self.outbox.start()
        try:
            run_sessions(self.settings, "worker", self.stop, self)
        finally:
            # One grace period in all: what the drain left of it goes to the outbox.
            deadline = self._stop_deadline or time.monotonic() + self.settings.shutdown_grace_s
            self.runner.stop(timeout_s=max(0.5, deadline - time.monotonic()))
            self.outbox.close(deadline)
        log.info("worker_stopped")
        return ExitCode.OK

    def _warn_if_lanes_starve(self) -> None:
        prefetch, lanes = self.settings.prefetch, self.settings.concurrency
        if prefetch != "auto" and 0 < int(prefetch) < lanes:
            log.warning("prefetch_below_concurrency", prefetch=int(prefetch), concurrency=lanes,
                        meaning=f"at most {prefetch} of the {lanes} lanes can be busy")

    def _recycle(self, reason: str) -> None:
        """MAX_TASKS_PER_CHILD / MAX_MEMORY_PER_CHILD_MB with thread isolation: this process
        drains as on SIGTERM and exits 0, for its supervisor to start a fresh one."""
        log.info("worker_recycling", reason=reason)
        self.stop.set()

    # -- the session ----------------------------------------------------------------------
    def open(self, link: Link) -> None:
        channel = link.channel(f"consuming {self.settings.task_queue!r}")
        declare_task_queues(channel, self.settings)
        declare_events_exchange(channel, self.settings)
        apply_bindings(channel, self.settings.task_queue, self.settings.bindings)
        channel.watch()  # a consumer timeout or a deleted queue: start over, at once
        self._session += 1
        self._link, self._channel = link, channel
        self.runner.new_session(self._session, link.call_threadsafe)
        self._consume(self.prefetch)
        metrics.CONNECTED.set(1)
        self.health.set_ready(True)
        log.info("consuming", queue=self.settings.task_queue, prefetch=self.settings.prefetch)

    def _consume(self, prefetch: int) -> None:
        assert self._channel is not None
        self._channel.qos(prefetch)
        self._consumer_tag = self._channel.consume(self.settings.task_queue, self._on_message,
                                                   in_io_pass=True)
        metrics.PREFETCH.set(prefetch)

    def tick(self) -> None:
        failure = self.outbox.failure
        if failure is not None:  # it cannot publish retries or parked copies: stop here
            raise Refused(f"worker outbox: {failure}",
                          getattr(failure, "exit_code", ExitCode.UNAVAILABLE))
        if self.settings.events_exchange and time.monotonic() >= self._status_at + STATUS_EVERY_S:
            self._publish_status()

    def _publish_status(self) -> None:
        """A `worker` event: who this worker is and how it is doing (`warren status`)."""
        now = time.monotonic()
        elapsed, self._status_at = now - self._status_at, now
        done, self._status_done = self._counts["done"] - self._status_done, self._counts["done"]
        # The most held at once since the last event: sampled right after an ack, the count
        # of the moment would read 0 for a worker that is never idle.
        in_flight, self._held_most = max(self._held_most, len(self._unsettled)), 0
        body = {"event": "worker", "worker": self.settings.worker_id,
                "queue": self.settings.task_queue, "in_flight": in_flight,
                "prefetch": self.prefetch, "lanes": len(self.runner.lanes),
                "isolation": self.settings.task_isolation, **self._counts,
                "done_per_s": round(done / elapsed, 3) if elapsed < 60 else 0.0,
                "busy_s": round(self.runner.busy_s, 3),
                "oldest_task_s": round(self.runner.watchdog.oldest_age_s(), 3)}
        self.outbox.events([Outgoing(json.dumps(body).encode(), EVENT_PROPS, "worker",
                                     self.settings.status_exchange)])

    def finished(self) -> bool:
        return False

    def drain(self, link: Link) -> None:
        """Stop taking work, hand back what has not started, finish what is in hand."""
        self.health.set_ready(False)
        assert self._channel is not None
        self._channel.cancel(self._consumer_tag)
        for delivery in self.runner.take_not_started():
            self._hand_back(delivery)
        deadline = self._stop_deadline = time.monotonic() + self.settings.shutdown_grace_s
        while self._unsettled and time.monotonic() < deadline:
            link.pump(0.1)
        if self._unsettled:
            log.warning("shutdown_grace_exceeded", unsettled=len(self._unsettled),
                        grace_s=self.settings.shutdown_grace_s)

    def closed(self) -> None:
        self.health.set_ready(False)
        metrics.CONNECTED.set(0)
        self._unsettled.clear()  # the broker requeues whatever the lost connection held
        self._link = self._channel = None
        self._prefetch_due = None  # its timer went with the connection

    # -- deliveries -----------------------------------------------------------------------
    def _on_message(self, message: Message) -> None:
        if message.redelivered:
            metrics.REDELIVERIES.inc()
        self._unsettled.add(message.tag)
        self._held_most = max(self._held_most, len(self._unsettled))
        delivery = Delivery(message, self._session, _facts(message, self._quorum))
        decision = policy.on_arrival(delivery.facts, self.settings.max_attempts)
        if decision.action != "run":
            outcome = Outcome("failed", self._task_type_of(message))
            self._carry_out_safely(delivery, decision, outcome)
            return
        inline = self.runner.run_inline(delivery)
        if inline is not None:
            self._settle([inline])
            return
        # Waiting in place only pays when the broker sends nothing more until this ack
        # (prefetch 1); with a deeper window it would undo the batching of acks.
        wait_s = INLINE_WAIT_S if self.prefetch == 1 and len(self.runner.lanes) == 1 else 0.0
        quick = self.runner.submit(delivery, wait_s)
        if quick:
            self._settle(quick)

    def _task_type_of(self, message: Message) -> str:
        """The type a delivery settled without running names (for its event and log line);
        "" when the body does not decode, which its parked reason then says."""
        try:
            return decode_message(message, max_bytes=self.settings.max_body_bytes).type
        except MalformedMessage:
            return ""

    def _settle(self, batch: list[Finished]) -> None:
        """Results from the runner, back on the I/O thread: carry out each one's decision."""
        current = [(d, o) for d, o in batch
                   if d.session == self._session and d.tag in self._unsettled]
        if self._channel is None or not current:
            return
        acks = []
        for delivery, outcome in current:
            decision = policy.on_result(delivery.facts, outcome.result,
                                        outcome.error, self.settings.max_attempts)
            if decision.action == "ack":
                acks.append(delivery.tag)
                self._record(delivery, decision, outcome)
            else:
                self._carry_out_safely(delivery, decision, outcome)
        self._ack(acks)
        self._adapt_prefetch(current)

    def _carry_out(self, delivery: Delivery, decision: policy.Decision, outcome: Outcome) -> None:
        """Publish the copy the decision calls for; the original is acked once it is confirmed."""
        queue, headers, drop, expiration = self._copy_plan(decision)
        headers.update(_failure_times(delivery.message))
        headers[WORKER_HEADER] = self.settings.worker_id
        properties = self._copy_properties(delivery, headers, drop, expiration=expiration)
        confirmed = partial(self._copy_confirmed, self._link, self._session, delivery.tag)
        self.outbox.send(Outgoing(delivery.message.body, properties, queue), confirmed)
        self._record(delivery, decision, outcome)

    def _copy_properties(self, delivery: Delivery, headers: dict[str, object],
                         drop: Collection[str], **changes: object) -> BasicProperties:
        """The copy's properties: the original's, warren's headers, and no `user_id` (the
        broker refuses one that is not the publisher's: it travels as a header instead).
        They must fit one frame: warren's texts are cut, or at worst the original's
        headers left out (said in a header), rather than have the broker refuse the copy."""
        original = delivery.message.properties
        if original.user_id is not None:
            headers = {**headers, USER_ID_HEADER: original.user_id}
        changes = {"delivery_mode": PERSISTENT, "user_id": None, **changes}
        properties = republished(original, set_headers=headers, drop=drop, **changes)
        limit = (self._link.frame_max if self._link else FRAME_MAX) - FRAME_OVERHEAD
        over = encoded_size(properties) - limit
        if over <= 0:
            return properties
        for key in (REASON_HEADER, ERROR_HEADER):
            if isinstance(headers.get(key), str):
                headers = {**headers, key: str(headers[key])[: max(0, 200 - over)]}
        properties = republished(original, set_headers=headers, drop=drop, **changes)
        if encoded_size(properties) <= limit:
            return properties
        dropped = {**headers, HEADERS_DROPPED_HEADER: encoded_size(original)}
        return republished(_without_headers(original), set_headers=dropped, **changes)

    def _copy_plan(self, decision: policy.Decision
                   ) -> tuple[str, dict[str, object], frozenset[str], str | None]:
        """(queue, headers to set, headers to drop, expiration) for the decision's copy."""
        s = self.settings
        attempts = {ATTEMPTS_HEADER: min(decision.attempts, LONG_MAX)}
        if decision.action == "park":
            return s.dead_queue, {**attempts, REASON_HEADER: decision.reason}, frozenset(), None
        counted = {**attempts, ERROR_HEADER: decision.reason}
        if decision.action == "retry":
            return s.retry_queue, counted, BROKER_HEADERS, str(s.retry_delay_ms)
        return s.task_queue, counted, BROKER_HEADERS, None  # "again"

    def _hand_back(self, delivery: Delivery) -> None:
        """An unstarted delivery at shutdown goes back as a fresh copy: it was not attempted."""
        properties = self._copy_properties(
            delivery, {ATTEMPTS_HEADER: min(delivery.facts.prior_failures, LONG_MAX)},
            {DELIVERY_COUNT_HEADER, ACQUIRED_HEADER},
            delivery_mode=delivery.message.properties.delivery_mode)
        self.outbox.send(Outgoing(delivery.message.body, properties, self.settings.task_queue),
                         partial(self._copy_confirmed, self._link, self._session, delivery.tag))

    def _copy_confirmed(self, link: Link | None, session: int, tag: int) -> None:
        """On the outbox thread: ack the original on the consuming connection's thread."""
        if link is not None:
            link.call_threadsafe(partial(self._ack_after_copy, session, tag))

    def _ack_after_copy(self, session: int, tag: int) -> None:
        if session == self._session and tag in self._unsettled and self._channel is not None:
            self._channel.ack(tag)
            self._forget([tag])

    def _record(self, delivery: Delivery, decision: policy.Decision, outcome: Outcome) -> None:
        self._counts[decision.outcome] += 1
        metrics.TASKS.inc(1, decision.outcome)
        if decision.outcome != "done":
            level = "error" if decision.action == "park" else "warning"
            getattr(log, level)(f"task_{decision.outcome}", task_id=delivery.task_id,
                                task_type=outcome.task_type, attempts=decision.attempts,
                                reason=decision.reason)
        if self.settings.events_exchange and self.outbox.events_wanted():
            self.outbox.events([self._event(delivery, decision, outcome)])

    def _event(self, delivery: Delivery, decision: policy.Decision, outcome: Outcome) -> Outgoing:
        body = {"event": decision.outcome, "task_id": delivery.task_id,
                "type": outcome.task_type, "worker": self.settings.worker_id,
                "duration_s": round(outcome.duration_s, 6),
                "finished_at": round(time.time(), 6), "error": decision.reason or None}
        return Outgoing(json.dumps(body).encode(), EVENT_PROPS, decision.outcome,
                        self.settings.events_exchange)

    def _carry_out_safely(self, delivery: Delivery, decision: policy.Decision,
                          outcome: Outcome) -> None:
        """Whatever a message holds must not take the I/O thread down: park it plainly."""
        try:
            self._carry_out(delivery, decision, outcome)
        except Exception as exc:
            log.exception("settle_failed", task_id=delivery.task_id)
            reason = printable(f"internal error while settling: {type(exc).__name__}: {exc}")
            plain = BasicProperties(
                delivery_mode=PERSISTENT, message_id=text(delivery.message.properties.message_id),
                headers={REASON_HEADER: reason, WORKER_HEADER: self.settings.worker_id})
            self.outbox.send(Outgoing(delivery.message.body, plain, self.settings.dead_queue),
                             partial(self._copy_confirmed, self._link, self._session,
                                     delivery.tag))

    def _ack(self, tags: list[int]) -> None:
        """One `multiple` ack when the batch is the oldest deliveries held, else one each."""
        if not tags or self._channel is None:
            return
        tags.sort()
        if len(tags) > 1 and tags == sorted(self._unsettled)[: len(tags)]:
            self._channel.ack(tags[-1], multiple=True)
        else:
            for tag in tags:
                self._channel.ack(tag)
        self._forget(tags)
        if self.prefetch == 1 and self._link is not None:
            self._link.flush()  # the broker sends the next task only once it has this ack

    def _forget(self, tags: list[int]) -> None:
        for tag in tags:
            self._unsettled.discard(tag)

    def _adapt_prefetch(self, batch: list[Finished]) -> None:
        if self.adaptive is None or self._channel is None:
            return
        lowest = self.adaptive.observe_all(outcome.duration_s for _, outcome in batch)
        current = self.adaptive.current
        wanted = lowest if lowest < current else self.adaptive.target()
        if self._prefetch_due is not None:  # a change is on its way: it applies the lower
            self._prefetch_due = min(self._prefetch_due, wanted)
            return
        # Opening waits out the interval (each change is a cancel and a consume); closing
        # does not: every moment at the wider prefetch takes deliveries that a slow task
        # would hold back from idle workers.
        now = time.monotonic()
        if wanted == current or (wanted > current
                                 and now - self._prefetch_changed_at < MIN_CHANGE_INTERVAL_S):
            return
        self._prefetch_changed_at = now
        self._prefetch_due = wanted
        # Deliveries run inside pika's I/O pass, where the link takes no synchronous call.
        assert self._link is not None
        self._link.call_later(0, partial(self._change_prefetch, self._session))

    def _change_prefetch(self, session: int) -> None:
        """A consumer's prefetch is fixed when it starts: re-consume with the new one, never
        wider than when it was scheduled (only a close skips the interval). Not once the
        drain has begun (`stop`): the consumer is cancelled for good then."""
        due, self._prefetch_due = self._prefetch_due, None
        if (due is None or self.adaptive is None or session != self._session
                or self._channel is None or self.stop.is_set()):
            return
        new = min(due, self.adaptive.target())
        if new == self.adaptive.current:
            return
        self._channel.cancel(self._consumer_tag)
        self.adaptive.current = new
        self._consume(new)
        log.info("prefetch_adapted", prefetch=new, slowest_s=round(self.adaptive.slowest_s or 0, 5))


def _without_headers(properties: BasicProperties) -> BasicProperties:
    fields = {name: getattr(properties, name) for name in _FIELDS}
    return BasicProperties(**fields)


_FIELDS = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
           "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id",
           "cluster_id")


def _failure_times(message: Message) -> dict[str, object]:
    """When the task first failed (kept from an earlier copy) and now, in epoch seconds."""
    now = int(time.time())
    first = (message.properties.headers or {}).get(FIRST_FAILED_HEADER)
    valid = isinstance(first, int) and not isinstance(first, bool) and 0 < first <= now
    return {FIRST_FAILED_HEADER: first if valid else now, LAST_FAILED_HEADER: now}


def _facts(message: Message, quorum: bool) -> policy.Facts:
    props = message.properties
    return policy.facts_of(props.headers, message.redelivered, quorum=quorum,
                           headers_undecodable=getattr(props, "headers_undecodable", False))
