"""TASK_ISOLATION=process: each lane runs its tasks in a child process of its own.

A child holds its own interpreter and GIL, so a task that holds the GIL, leaks, crashes
(segfault, `os._exit`, an OOM kill) or ignores its time limit touches only the child:
the parent keeps its connection and heartbeats, counts the attempt, and starts a new
child. Children come from a forkserver (a clean single-threaded process forked once):
forking the worker itself, with pika's and the runner's threads, could copy a held lock.

The soft time limit is SIGUSR1, raised as TimeLimitExceeded in the child's main thread
(a signal also interrupts `time.sleep`); the hard limit is SIGKILL. Recycling
(MAX_TASKS_PER_CHILD, MAX_MEMORY_PER_CHILD_MB) replaces a child after the task in hand.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import structlog

from warren.logs import configure_logging
from warren.messages import Task
from warren.settings import Settings
from worker import tasks
from worker.execution import LogContext, Outcome, run_task

log = structlog.get_logger("worker")

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.05
READY = "ready"  # the child's first message: handlers installed, TASK_MODULES imported
START_TIMEOUT_S = 60.0  # past this, the job is sent anyway and `run` sees what became of it


@dataclass(frozen=True)
class Job:
    task: Task
    message_id: str  # "" when the message has none: then the task has no idempotency key
    task_id: str  # what log lines name the task by: the message_id, else "tag-<delivery tag>"


@dataclass(frozen=True)
class Done:
    outcome: Outcome
    rss_bytes: int


# -- the child's side ----------------------------------------------------------------------

class _Running:
    active = False


def _soft_limit(_signum: int, _frame: object) -> None:
    if _Running.active:  # a late signal, after the task returned, is ignored
        raise tasks.TimeLimitExceeded("soft time limit reached")


def child_main(conn: Connection, settings: Settings) -> None:
    """The child's loop: receive a Job, run it, send back Done; None ends it."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which drains
    signal.signal(signal.SIGUSR1, _soft_limit)
    configure_logging(settings, service="worker-child")
    tasks.dot_seconds = settings.dot_seconds
    for module in settings.task_modules:
        importlib.import_module(module)
    conn.send(READY)
    while (job := conn.recv()) is not None:
        conn.send(Done(_run(job), rss_bytes()))
        sys.stdout.flush()


def _run(job: Job) -> Outcome:
    tasks.set_current_task_id(job.message_id)
    with LogContext(job.task_id):
        try:
            _Running.active = True
            try:
                return run_task(tasks.registry, job.task)
            finally:
                _Running.active = False
        except tasks.TimeLimitExceeded:  # the signal landed between the task and here
            return Outcome("failed", job.task.type, "time limit: stopped at the soft limit")


def rss_bytes() -> int:
    """This process' resident set now (Linux /proc), 0 where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def die_with_parent() -> None:
    """Linux: SIGKILL this child when the worker dies, so no task outlives its parent."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# -- the parent's side -------------------------------------------------------------------

def start_forkserver() -> None:
    """Start the children's forkserver now, from the calling thread (the main thread).

    Its preload, worker.forkserver_guard, makes it die with the worker, and the children
    die with it: a worker killed with SIGKILL leaves no task running behind it, to be run
    again by the worker that gets its messages. PR_SET_PDEATHSIG fires when the thread
    that forked goes, not the process: hence the main thread, never a lane's. The preload
    also imports what every child needs once, in the forkserver, not in each child."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["worker.forkserver_guard"])
    from multiprocessing import forkserver

    forkserver.ensure_running()



class ChildProcess:
    """One lane's child: started on first use, replaced after a death or a recycle."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("forkserver")
        self._process: Any = None
        self._conn: Connection | None = None
        self._tasks = 0
        self._hard_stopped = False
        self._ready = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Have a child ready for the next job: started, its signal handler installed and
        TASK_MODULES imported. A time limit counts the task, not a start-up that a busy
        machine made slow (a soft limit sent before the handler would kill the child)."""
        if self._process is not None and not self._process.is_alive():
            # Died between tasks (an OOM kill, a stray signal): no task of ours to blame.
            log.warning("task_child_died_idle", exitcode=self._process.exitcode)
            self._discard()
        conn = self._ensure()
        if self._ready:
            return
        with contextlib.suppress(EOFError, OSError):  # a child that died: `run` reports it
            if conn.poll(START_TIMEOUT_S):
                conn.recv()
        self._ready = True

    def run(self, job: Job) -> tuple[Outcome, int]:
        """Run `job` in the child; (outcome, child's RSS in bytes)."""
        self.start()
        conn = self._ensure()
        started = time.perf_counter()
        self._hard_stopped = False
        try:
            conn.send(job)
            done = self._receive(conn)
        except (EOFError, OSError, BrokenPipeError):
            return self._died(job, time.perf_counter() - started), 0
        self._tasks += 1
        return done.outcome, done.rss_bytes

    def _receive(self, conn: Connection) -> Done:
        """The job's Done (EOFError when the child died); a late READY is passed over."""
        while True:
            while not conn.poll(_POLL_S):
                if not self._process.is_alive():
                    break
            message = conn.recv()
            if message != READY:
                return message

    def _died(self, job: Job, elapsed_s: float) -> Outcome:
        self._process.join(5)
        code = self._process.exitcode
        self._discard()
        if self._hard_stopped:
            return Outcome("failed", job.task.type,
                           f"time limit: ended after {elapsed_s:.1f}s (the task ignored the "
                           "soft limit)", elapsed_s)
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exited {code}")
        return Outcome("failed", job.task.type, f"the task's process died: {how}", elapsed_s)

    def soft_stop(self) -> None:
        self._signal(signal.SIGUSR1)

    def hard_stop(self) -> None:
        self._hard_stopped = True
        self._signal(signal.SIGKILL)

    def recycle_reason(self, rss: int) -> str:
        """Why the child should be replaced now ("" when it should not)."""
        s = self.settings
        if s.max_tasks_per_child and self._tasks >= s.max_tasks_per_child:
            return f"{self._tasks} tasks (MAX_TASKS_PER_CHILD={s.max_tasks_per_child})"
        if s.max_memory_per_child_mb and rss > s.max_memory_per_child_mb * 2**20:
            return (f"{rss / 2**20:.0f} MB resident "
                    f"(MAX_MEMORY_PER_CHILD_MB={s.max_memory_per_child_mb})")
        return ""

    def close(self, timeout_s: float = 5.0) -> None:
        """End the child after the task in hand (the next one starts a new child)."""
        if self._conn is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self._conn.send(None)
        if self._process is not None:
            self._process.join(timeout_s)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
        self._discard()

    def _ensure(self) -> Connection:
        if self._conn is None:
            parent, child = self._context.Pipe()
            self._process = self._context.Process(target=child_main, args=(child, self.settings),
                                                  name="warren-task-child", daemon=True)
            self._process.start()
            child.close()
            self._conn, self._tasks, self._ready = parent, 0, False
        return self._conn

    def _signal(self, signum: int) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._process = None
