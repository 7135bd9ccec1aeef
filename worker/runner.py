"""The runner: deliveries to lanes, results back to the I/O thread in batches.

One wake-up of the I/O thread per batch, not per task: under load the lanes
finish tasks faster than the I/O thread can be woken, and the batch becomes
a single `basic.ack(multiple=True)`.

When the runner was idle (prefetch 1, or a queue running dry), the I/O thread
waits up to INLINE_WAIT_S for the result instead of going back to its loop:
a quick task is then settled without a second wake-up, which is most of the
round trip when tasks take microseconds. A task that takes longer is left to
its lane and handed back as usual, so heartbeats never wait more than that.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import structlog

from warren.amqp import Message
from warren.amqp.wire import text
from warren.errors import MalformedMessage
from warren.messages import decode_message
from warren.settings import Settings
from worker import metrics
from worker.child import ChildProcess, start_forkserver
from worker.execution import LogContext, Outcome, run_task
from worker.lanes import Lane, Watchdog, process_rss_bytes
from worker.policy import Facts
from worker.tasks import TaskRegistry, set_current_task_id

log = structlog.get_logger("worker")

INLINE_WAIT_S = 0.01
NO_PAST = Facts()
FAST_S = 0.0005  # a task type whose runs take well under a millisecond (median)...
FAST_MAX_S = 0.005  # ...and never more than this (a GC pause is fine, real work is not)...
FAST_AFTER = 16  # ...over this many runs in a row may run on the I/O thread
Wake = Callable[[Callable[[], None]], bool]  # run a callable on the I/O thread; False if gone


class Delivery(NamedTuple):
    message: Message
    session: int  # delivery tags repeat on every connection: a tag means something only here
    facts: Facts = NO_PAST  # what the delivery says of its past (worker/policy.py)

    @property
    def tag(self) -> int:
        return self.message.tag

    @property
    def task_id(self) -> str:
        return text(self.message.properties.message_id) or f"tag-{self.message.tag}"


Finished = tuple[Delivery, Outcome]


class Runner:
    def __init__(self, registry: TaskRegistry, settings: Settings,
                 settle: Callable[[list[Finished]], None],
                 recycle: Callable[[str], None] = lambda _reason: None) -> None:
        self.registry = registry
        self.settings = settings
        self.settle = settle
        self.recycle = recycle  # thread isolation: the worker process itself is recycled
        self.jobs: queue.Queue[Delivery | None] = queue.Queue()
        self._lock = threading.Condition()
        self._finished: list[Finished] = []
        self._wake_pending = False
        self._outstanding = 0  # submitted, not yet handed back
        self._inline_waiting = False
        self._session = 0
        self._wake: Wake = lambda _callback: False
        self._done_in_process = 0
        self._recycling = False
        self.busy_s = 0.0  # seconds spent running tasks, every lane together
        self._recent: dict[str, deque[float]] = {}  # task type -> its last durations
        self._fast: set[str] = set()
        self.lanes = [Lane(self, index, self._child()) for index in range(settings.concurrency)]
        self.watchdog = Watchdog(self)

    def _child(self) -> ChildProcess | None:
        return ChildProcess(self.settings) if self.settings.task_isolation == "process" else None

    def start(self) -> None:
        if self.settings.task_isolation == "process":
            start_forkserver()
        for lane in self.lanes:
            lane.start()
        self.watchdog.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """No more tasks: each lane ends after the task in hand (its child with it)."""
        self.watchdog.stop()
        for _ in self.lanes:
            self.jobs.put(None)
        deadline = time.monotonic() + timeout_s
        for lane in list(self.lanes):
            lane.thread.join(max(0.0, deadline - time.monotonic()))

    def new_session(self, session: int, wake: Wake) -> None:
        """A new connection: results and bookkeeping of the old one are void."""
        with self._lock:
            self._session, self._wake = session, wake
            self._finished = []
            self._wake_pending = False
        self._release_stale()

    def _release_stale(self) -> None:
        """A lane still running a task of an old session must not hold up the new one's
        deliveries: the old delivery went back to the broker with its channel (a consumer
        timeout, a lost connection), and whatever waited behind the lane would time out in
        turn. A thread is abandoned (it runs on; its result is dropped), a child is killed
        (the lane goes on with a new child)."""
        for lane in list(self.lanes):
            with lane.lock:
                delivery = lane.delivery
                if delivery is None or lane.abandoned or delivery.session == self._session:
                    continue
                log.warning("task_released", task_id=delivery.task_id, task_type=lane.task_type,
                            reason="its delivery went back to the broker with the old channel")
                abandoned = lane.hard_stop()
            if abandoned is not None:
                self.replace_lane(lane, abandoned, Outcome("failed", lane.task_type,
                                                           "released with its session"))

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

    def next_job(self) -> Delivery | None:
        """For a lane: the next delivery of the current session, or None to stop (also once
        the process is being recycled: what waits is handed back by the drain)."""
        while not self._recycling and (delivery := self.jobs.get()) is not None:
            if delivery.session == self._session:
                return delivery
            self._done_with()  # its connection is gone; the broker requeued it
        return None

    def replace_lane(self, lane: Lane, delivery: Delivery, outcome: Outcome) -> None:
        """The watchdog abandoned `lane`'s thread: settle its delivery, start a new thread."""
        fresh = Lane(self, lane.index, lane.child)
        self.lanes[self.lanes.index(lane)] = fresh
        fresh.start()
        self.hand_back(delivery, outcome)

    def count_busy(self, duration_s: float, task_type: str = "") -> None:
        """A task ran for `duration_s`: the duration histogram, busy seconds and the fast
        types (the lock serializes the tallies' updates: lanes and the I/O thread count)."""
        with self._lock:
            metrics.TASK_DURATION.observe(duration_s)
            metrics.BUSY.inc(duration_s)
            self.busy_s += duration_s
            if not self.registry.may_run_inline(task_type):
                return  # its duration says nothing of its next run: never on the I/O thread
            recent = self._recent.get(task_type)
            if recent is None:
                recent = self._recent[task_type] = deque(maxlen=FAST_AFTER)
            recent.append(duration_s)
            if duration_s >= FAST_MAX_S:
                self._fast.discard(task_type)
            elif (task_type not in self._fast and len(recent) == FAST_AFTER
                  and max(recent) < FAST_MAX_S and sorted(recent)[FAST_AFTER // 2] < FAST_S):
                self._fast.add(task_type)

    def run_inline(self, delivery: Delivery) -> Finished | None:
        """On the I/O thread, with no lane busy: run a task of a type seen to finish in well
        under a millisecond right here, without the hand-off to a lane and back (two thread
        switches, most of such a task's cost). None: it goes to a lane. Only a type
        registered `inline=True` (bounded whatever its arguments) qualifies: a `sleep` that
        ran in 0 s forty times may sleep for minutes next, beyond any time limit's reach.
        One run past FAST_MAX_S takes a type off the list."""
        if not self._fast or self._outstanding or self.settings.task_isolation != "thread":
            return None
        message = delivery.message
        try:
            task = decode_message(message, max_bytes=self.settings.max_body_bytes)
        except MalformedMessage:
            return None
        if task.type not in self._fast:
            return None
        set_current_task_id(text(message.properties.message_id))
        with LogContext(delivery.task_id):
            outcome = run_task(self.registry, task)
        self.count_busy(outcome.duration_s, task.type)
        self.count_done_in_process()
        return delivery, outcome

    def count_done_in_process(self) -> None:
        """Thread isolation: recycle the worker process itself when a ceiling is reached."""
        self._done_in_process += 1
        s = self.settings
        reason = ""
        if s.max_tasks_per_child and self._done_in_process >= s.max_tasks_per_child:
            reason = f"{self._done_in_process} tasks (MAX_TASKS_PER_CHILD={s.max_tasks_per_child})"
        elif s.max_memory_per_child_mb:
            rss = process_rss_bytes()
            if rss > s.max_memory_per_child_mb * 2**20:
                reason = (f"{rss / 2**20:.0f} MB resident "
                          f"(MAX_MEMORY_PER_CHILD_MB={s.max_memory_per_child_mb})")
        if reason and not self._recycling:
            self._recycling = True
            self.recycle(reason)

    def hand_back(self, delivery: Delivery, outcome: Outcome) -> None:
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
