"""Lanes run tasks one at a time each; the watchdog enforces time limits and spots stuck tasks.

A lane is a thread that takes deliveries from the runner's queue and runs each task, in
that thread (TASK_ISOLATION=thread) or in the lane's child process (=process, see
child.py). CONCURRENCY sets the number of lanes.

Time limits (the task's own `time_limit`, else TASK_TIME_LIMIT_S): at the limit the
watchdog raises TimeLimitExceeded inside the task (a thread: an asynchronous exception,
the way Dramatiq's TimeLimit does it, seen at the task's next Python bytecode; a child:
SIGUSR1, which also interrupts a sleep). TASK_TIME_LIMIT_GRACE_S later, a task still
running is ended: a child is killed; a thread cannot be, so it is abandoned (its result
is ignored when it comes) and the lane gets a new thread. Either way the delivery is
settled as a failed attempt with the reason `time limit`. A thread that holds the GIL
stops the watchdog too: only isolation ends such a task on time.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from typing import TYPE_CHECKING

import structlog

from warren.amqp.wire import text
from warren.errors import MalformedMessage
from warren.messages import decode_message
from warren.settings import Settings
from worker.child import ChildProcess, Job, rss_bytes
from worker.execution import (
    SOFT_LIMIT_ERROR,
    LogContext,
    Outcome,
    describe,
    message_of,
    run_task,
)
from worker.tasks import TaskRegistry, TimeLimitExceeded, set_current_task_id

if TYPE_CHECKING:
    from worker.runner import Delivery, Runner

log = structlog.get_logger("worker")

WATCHDOG_TICK_S = 0.1


class Lane:
    def __init__(self, runner: Runner, index: int, child: ChildProcess | None) -> None:
        self.runner = runner
        self.index = index
        self.child = child
        self.lock = threading.Lock()
        self.delivery: Delivery | None = None  # the delivery whose task runs now
        self.task_type = ""
        self.started_at = 0.0
        self.limit_s: float | None = None
        self.inside = False  # the task's own code is running (a soft limit may be raised)
        self.soft_sent = self.hard_sent = self.warned = self.abandoned = False
        self.thread = threading.Thread(target=self._loop, name=f"task-lane-{index}",
                                       daemon=True)

    @property
    def registry(self) -> TaskRegistry:
        return self.runner.registry

    @property
    def settings(self) -> Settings:
        return self.runner.settings

    def start(self) -> Lane:
        self.thread.start()
        return self

    def _loop(self) -> None:
        while (delivery := self.runner.next_job()) is not None:
            try:
                outcome = self._run(delivery)
            except TimeLimitExceeded:  # a soft limit that landed just after the task
                outcome = Outcome("failed", self.task_type, SOFT_LIMIT_ERROR)
            if not self._finish():
                return  # abandoned meanwhile: the watchdog settled the delivery
            self.runner.hand_back(delivery, outcome)
            self._recycle_if_due()
        if self.child is not None:
            self.child.close()

    def _run(self, delivery: Delivery) -> Outcome:
        message = delivery.message
        message_id = text(message.properties.message_id)
        set_current_task_id(message_id)  # no message_id, no idempotency key
        with LogContext(delivery.task_id):
            try:
                task = decode_message(message, max_bytes=self.settings.max_body_bytes)
            except MalformedMessage as exc:
                return Outcome("malformed", error=message_of(exc))
            if self.child is not None:
                # Before the time limits' clock starts. A failure shows again, contained,
                # when the job is sent (`_execute`).
                with contextlib.suppress(Exception):
                    self.child.start()
            self._begin(delivery, task.type)
            try:
                outcome = self._execute(Job(task, message_id, delivery.task_id))
            except BaseException as exc:  # one message must never kill the lane
                log.exception("task_runner_error")
                outcome = Outcome("failed", task.type, describe(exc))
        self.runner.count_busy(outcome.duration_s, outcome.task_type)
        return outcome

    def _execute(self, job: Job) -> Outcome:
        if self.child is None:
            return run_task(self.registry, job.task, self._mark_inside)
        outcome, rss = self.child.run(job)
        self._child_rss = rss
        return outcome

    def _mark_inside(self, inside: bool) -> None:
        self.inside = inside

    def _begin(self, delivery: Delivery, task_type: str) -> None:
        limit = self.registry.time_limit_s(task_type, self.settings.task_time_limit_s)
        with self.lock:
            self.delivery, self.task_type, self.limit_s = delivery, task_type, limit
            self.started_at = time.monotonic()
            self.soft_sent = self.hard_sent = self.warned = False

    def _finish(self) -> bool:
        """The task is over: False when the watchdog abandoned this lane meanwhile."""
        with self.lock:
            if self.abandoned:
                return False
            soft_sent, self.delivery, self.started_at = self.soft_sent, None, 0.0
        if soft_sent and self.child is None:
            _clear_async_exception(self.thread)
        return True

    def _recycle_if_due(self) -> None:
        if self.child is not None:
            reason = self.child.recycle_reason(getattr(self, "_child_rss", 0))
            if reason:
                log.info("child_recycled", lane=self.index, reason=reason)
                self.child.close()
            return
        self.runner.count_done_in_process()

    # -- called by the watchdog, under self.lock ---------------------------------------
    def soft_stop(self) -> None:
        self.soft_sent = True
        if self.child is not None:
            self.child.soft_stop()
        elif self.inside:
            _raise_in(self.thread, TimeLimitExceeded)

    def hard_stop(self) -> Delivery | None:
        """End the task: kill the child, or abandon this thread. Returns the delivery the
        caller must settle (a thread's), else None (the lane settles a child's itself)."""
        self.hard_sent = True
        if self.child is not None:
            self.child.hard_stop()
            return None
        self.abandoned = True
        return self.delivery


class Watchdog:
    """One thread per worker: time limits, the slow-task warning, the oldest task's age."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.settings = runner.settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="task-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def oldest_age_s(self) -> float:
        now = time.monotonic()
        ages = [now - lane.started_at for lane in self.runner.lanes if lane.started_at]
        return max(ages, default=0.0)

    def _loop(self) -> None:
        while not self._stop.wait(WATCHDOG_TICK_S):
            now = time.monotonic()
            for lane in list(self.runner.lanes):
                self._check(lane, now)

    def _check(self, lane: Lane, now: float) -> None:
        s = self.settings
        with lane.lock:
            if lane.delivery is None or lane.abandoned:
                return
            age, limit, delivery = now - lane.started_at, lane.limit_s, lane.delivery
            warn = bool(s.task_warn_after_s) and age >= s.task_warn_after_s and not lane.warned
            lane.warned = lane.warned or warn
            if limit and age >= limit and not lane.soft_sent:
                lane.soft_stop()
            abandoned = None
            if limit and age >= limit + s.task_time_limit_grace_s and not lane.hard_sent:
                abandoned = lane.hard_stop()
                log.error("task_time_limit_ended", task_id=delivery.task_id,
                          task_type=lane.task_type, age_s=round(age, 1), limit_s=limit,
                          isolation=s.task_isolation)
        if warn:
            log.warning("task_slow", task_id=delivery.task_id, task_type=lane.task_type,
                        age_s=round(age, 1), lane=lane.index)
        if abandoned is not None:
            self.runner.replace_lane(lane, abandoned, Outcome(
                "failed", lane.task_type,
                f"time limit: still running {age:.1f}s after a {limit:g}s limit; "
                "its thread was abandoned", age))


def _raise_in(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                   ctypes.py_object(exc_type))


def _clear_async_exception(thread: threading.Thread) -> None:
    """Drop a soft-limit exception sent but not yet raised: the task is already over."""
    if thread.ident is not None:
        with contextlib.suppress(Exception):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), None)


def process_rss_bytes() -> int:
    return rss_bytes()
