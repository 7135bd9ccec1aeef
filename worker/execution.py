"""Running one task, wherever it runs (a lane's thread or its child process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from warren.amqp.wire import printable
from warren.errors import MalformedMessage
from warren.logs import bind_task_id, unbind_task_id
from warren.messages import Task
from worker.policy import Result
from worker.tasks import TaskRegistry, TimeLimitExceeded

SOFT_LIMIT_ERROR = "time limit: stopped at the soft limit"


class Outcome(NamedTuple):
    result: Result
    task_type: str = ""
    error: str = ""
    duration_s: float = 0.0


class LogContext:
    """`with LogContext(task_id):` binds the task's id for every log line inside, and puts
    back what was bound before (warren.logs.bind_task_id: structlog's generator-based
    `bound_contextvars` costs 15 µs, more than a no-op task's own run)."""

    __slots__ = ("_task_id", "_token")

    def __init__(self, task_id: str | None) -> None:
        self._task_id = task_id

    def __enter__(self) -> None:
        self._token = bind_task_id(self._task_id)

    def __exit__(self, *_exc: object) -> None:
        unbind_task_id(self._token)


def message_of(exc: BaseException) -> str:
    """An exception's text, fit for a header or a log line, whatever it holds."""
    try:
        return printable(str(exc))
    except Exception:  # a __str__ that raises must not take the runner down
        return "<unprintable>"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {message_of(exc)}"


def run_task(registry: TaskRegistry, task: Task,
             running: Callable[[bool], None] = lambda _inside: None) -> Outcome:
    """Check and run `task`; never raises. `running(True/False)` brackets the task's own code,
    so that a soft time limit is only ever raised inside it."""
    started = time.perf_counter()
    try:
        call = registry.resolve(task)
        running(True)
        try:
            call()
        finally:
            running(False)
        result: Result = "done"
        error = ""
    except TimeLimitExceeded:
        result, error = "failed", SOFT_LIMIT_ERROR
    except MalformedMessage as exc:
        result, error = "malformed", message_of(exc)
    except BaseException as exc:  # sys.exit(), KeyboardInterrupt... from a task: its failure
        result, error = "failed", describe(exc)
    return Outcome(result, task.type, error, time.perf_counter() - started)
