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

import structlog

from warren.amqp import Message
from warren.amqp.wire import printable, text
from warren.errors import MalformedMessage
from warren.messages import decode_task
from worker import metrics
from worker.policy import Result
from worker.tasks import TaskRegistry, set_current_task_id

log = structlog.get_logger("worker")

INLINE_WAIT_S = 0.01
Wake = Callable[[Callable[[], None]], bool]  # run a callable on the I/O thread; False if gone


@dataclass(frozen=True)
class Delivery:
    message: Message
    session: int  # delivery tags repeat on every connection: a tag means something only here

    @property
    def tag(self) -> int:
        return self.message.tag

    @property
    def task_id(self) -> str:
        return text(self.message.properties.message_id) or f"tag-{self.message.tag}"


@dataclass(frozen=True)
class Outcome:
    result: Result
    task_type: str = ""
    error: str = ""
    duration_s: float = 0.0


Finished = tuple[Delivery, Outcome]


def message_of(exc: BaseException) -> str:
    """An exception's text, fit for a header or a log line, whatever it holds."""
    try:
        return printable(str(exc))
    except Exception:  # a __str__ that raises must not take the runner down
        return "<unprintable>"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {message_of(exc)}"


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
        self._session = 0
        self._wake: Wake = lambda _callback: False
        self._thread = threading.Thread(target=self._loop, name="task-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.jobs.put(None)

    def new_session(self, session: int, wake: Wake) -> None:
        """A new connection: results and bookkeeping of the old one are void."""
        with self._lock:
            self._session, self._wake = session, wake
            self._finished = []
            self._wake_pending = False

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
            self._done_with()
            out.append(delivery)

    def _done_with(self) -> None:
        with self._lock:
            self._outstanding = max(0, self._outstanding - 1)

    def _loop(self) -> None:
        while (delivery := self.jobs.get()) is not None:
            if delivery.session != self._session:
                self._done_with()  # its connection is gone; the broker requeued it
                continue
            # No message_id, no idempotency key: a delivery tag repeats on every channel.
            set_current_task_id(text(delivery.message.properties.message_id))
            with structlog.contextvars.bound_contextvars(task_id=delivery.task_id):
                try:
                    outcome = self.execute(delivery.message)
                except Exception as exc:  # one message must never kill the runner thread
                    log.exception("task_runner_error")
                    outcome = Outcome("failed", error=describe(exc))
            self._hand_back(delivery, outcome)

    def execute(self, message: Message) -> Outcome:
        try:
            task = decode_task(message.body, text(message.properties.content_type) or None,
                               max_bytes=self.max_body_bytes)
        except MalformedMessage as exc:
            return Outcome("malformed", error=message_of(exc))
        started = time.perf_counter()
        result: Result = "done"
        error = ""
        try:
            self.registry.resolve(task)()
        except MalformedMessage as exc:
            result, error = "malformed", message_of(exc)
        except Exception as exc:
            result, error = "failed", describe(exc)
        duration = time.perf_counter() - started
        metrics.TASK_DURATION.observe(duration)
        metrics.BUSY.inc(duration)
        return Outcome(result, task.type, error, duration)

    def _hand_back(self, delivery: Delivery, outcome: Outcome) -> None:
        with self._lock:
            self._outstanding = max(0, self._outstanding - 1)
            if delivery.session != self._session:
                return  # the broker has requeued it with its connection
            self._finished.append((delivery, outcome))
            if self._inline_waiting:
                self._lock.notify()
                return  # the I/O thread is waiting for exactly this
            if self._wake_pending:
                return  # the I/O thread will take this one with the batch it was woken for
            self._wake_pending = True
            wake = self._wake
        if not wake(self._settle_batch):
            dropped = self.take_finished()
            log.warning("results_dropped", count=len(dropped),
                        reason="connection closed; the broker redelivers")

    def _settle_batch(self) -> None:
        self.settle(self.take_finished())
