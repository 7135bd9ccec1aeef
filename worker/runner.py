"""The runner thread: decode, run, and hand results back to the I/O thread in batches.

One wake-up of the I/O thread per batch, not per task: under load the runner
finishes tasks faster than the I/O thread can be woken, and the batch becomes
a single `basic.ack(multiple=True)`.

When the runner was idle (prefetch 1, or a queue running dry), the I/O thread
waits up to INLINE_WAIT_S for the result instead of going back to its loop:
a quick task is then settled without a second wake-up, which is most of the
round trip when tasks take microseconds. A task that takes longer is left to
the runner and handed back as usual, so heartbeats never wait more than that.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pika
import pika.exceptions as pex
import structlog
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from warren.amqp import UNDECODABLE_HEADERS
from warren.errors import MalformedMessage
from warren.messages import decode_task
from worker import metrics
from worker.tasks import TaskRegistry, set_current_task_id

log = structlog.get_logger("worker")

Kind = Literal["done", "failed", "malformed"]
INLINE_WAIT_S = 0.01


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


Finished = tuple[Delivery, Outcome]


class Runner:
    def __init__(self, registry: TaskRegistry, max_body_bytes: int,
                 settle: Callable[[list[Finished]], None]) -> None:
        self.registry = registry
        self.max_body_bytes = max_body_bytes
        self.settle = settle
        self.jobs: queue.Queue[Delivery | None] = queue.Queue()
        self._lock = threading.Condition()
        self._finished: list[Finished] = []
        self._wake_pending = False
        self._outstanding = 0  # submitted, not yet handed back
        self._inline_waiting = False
        self._thread = threading.Thread(target=self._loop, name="task-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.jobs.put(None)

    def submit(self, delivery: Delivery, wait_s: float = INLINE_WAIT_S) -> list[Finished]:
        """Queue a delivery; if the runner was idle, wait briefly and return quick results."""
        with self._lock:
            inline = self._outstanding == 0 and wait_s > 0
            self._outstanding += 1
            self._inline_waiting = inline
        self.jobs.put(delivery)
        if not inline:
            return []
        with self._lock:
            self._lock.wait_for(lambda: bool(self._finished), timeout=wait_s)
            self._inline_waiting = False
            batch, self._finished = self._finished, []
        return batch

    def take_finished(self) -> list[Finished]:
        """Called on the I/O thread: everything finished since the last call."""
        with self._lock:
            batch, self._finished = self._finished, []
            self._wake_pending = False
        return batch

    def take_not_started(self) -> list[Delivery]:
        out = []
        while True:
            try:
                delivery = self.jobs.get_nowait()
            except queue.Empty:
                return out
            if delivery is None:
                self.jobs.put(None)
                return out
            self._done_with(delivery)
            out.append(delivery)

    def reset(self) -> None:
        """A new connection: results and bookkeeping of the old one are void."""
        with self._lock:
            self._finished = []
            self._wake_pending = False

    def _done_with(self, _delivery: Delivery) -> None:
        with self._lock:
            self._outstanding = max(0, self._outstanding - 1)

    def _loop(self) -> None:
        while (delivery := self.jobs.get()) is not None:
            if not delivery.channel.is_open:
                self._done_with(delivery)  # its connection is gone; the broker requeued it
                continue
            # No message_id, no idempotency key: a delivery tag repeats on every channel.
            set_current_task_id(delivery.properties.message_id or "")
            with structlog.contextvars.bound_contextvars(task_id=delivery.task_id):
                try:
                    outcome = self.execute(delivery)
                except Exception as exc:  # one message must never kill the runner thread
                    log.exception("task_runner_error")
                    outcome = Outcome("failed", error=f"{type(exc).__name__}: {exc}")
            self._hand_back(delivery, outcome)

    def execute(self, delivery: Delivery) -> Outcome:
        if (delivery.properties.headers or {}).get(UNDECODABLE_HEADERS):
            return Outcome("malformed", error="headers could not be decoded")
        try:
            task = decode_task(delivery.body, delivery.properties.content_type,
                               max_bytes=self.max_body_bytes)
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
        with self._lock:
            self._outstanding = max(0, self._outstanding - 1)
            self._finished.append((delivery, outcome))
            if self._inline_waiting:
                self._lock.notify()
                return  # the I/O thread is waiting for exactly this
            if self._wake_pending:
                return  # the I/O thread will take this one with the batch it was woken for
            self._wake_pending = True
        try:
            delivery.connection.add_callback_threadsafe(self._settle_batch)
        except (pex.AMQPError, RuntimeError, ValueError, OSError):
            dropped = self.take_finished()
            log.warning("results_dropped", count=len(dropped),
                        reason="connection closed; the broker redelivers")

    def _settle_batch(self) -> None:
        self.settle(self.take_finished())
