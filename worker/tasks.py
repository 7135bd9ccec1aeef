"""The task registry, and the built-in tasks.

Add your own with the decorator; arguments come from the message's `args`
object, and annotated `int`/`float`/`str`/`bool` parameters are checked before
the task runs, so a wrongly typed message is parked at once instead of retried:

    from worker.tasks import task

    @task("resize")
    def resize(url: str, width: int = 640) -> None:
        ...

Raise `BadArguments` for values that can never work (parked at once); any
other exception counts as a failure and is retried up to MAX_ATTEMPTS.

A time limit (`@task("resize", time_limit=30)`, else TASK_TIME_LIMIT_S) first raises
`TimeLimitExceeded` inside the task, so it can clean up; a task still running
TASK_TIME_LIMIT_GRACE_S later is ended (see worker/lanes.py). Either way the attempt
failed with the reason `time limit`.

`@task("lookup", inline=True)` declares a task bounded: it never blocks and never runs
long, whatever its arguments. Once such a type is seen to finish in well under a
millisecond, the worker may run it on its I/O thread, skipping the hand-off to a lane
and back (most of a tiny task's cost); there no time limit or watchdog can stop it, and
the connection's heartbeats wait for it. Every other task runs in a lane.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from warren.errors import MalformedMessage
from warren.messages import DOTS_TASK, Task

TaskFn = Callable[..., object]


_current_task_id: ContextVar[str] = ContextVar("warren_task_id", default="")


def current_task_id() -> str:
    """The running task's message_id: a key for idempotent side effects."""
    return _current_task_id.get()


def set_current_task_id(task_id: str) -> None:
    _current_task_id.set(task_id)


class BadArguments(MalformedMessage):
    """The task's arguments can never work; the message is parked without retries."""


class TimeLimitExceeded(Exception):
    """Raised inside a task that reached its time limit: clean up and let it propagate."""


_CHECKED_TYPES: dict[Any, tuple[type, ...]] = {
    int: (int,), float: (int, float), str: (str,), bool: (bool,),
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
}


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class Registered:
    name: str
    fn: TaskFn
    signature: inspect.Signature
    time_limit_s: float | None = None
    inline: bool = False  # bounded whatever its arguments: may run on the I/O thread
    _names: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _required: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Signature.bind costs more than a no-op task: when every parameter is a plain
        # named one, two set checks say the same, and bind only words the refusal.
        params = self.signature.parameters.values()
        plain = all(p.kind in _NAMED for p in params)
        names = frozenset(p.name for p in params) if plain else None
        required = frozenset(p.name for p in params if p.default is p.empty)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_required", required)

    def check(self, args: dict[str, Any]) -> None:
        names = self._names
        if names is None or not (self._required <= args.keys() <= names):
            try:
                args = self.signature.bind(**args).arguments
            except TypeError as exc:
                raise BadArguments(f"bad arguments for {self.name!r}: {exc}") from None
        parameters = self.signature.parameters
        for name, value in args.items():
            _check_type(self.name, name, value, parameters[name].annotation)


def _check_type(task: str, name: str, value: object, annotation: object) -> None:
    allowed = _CHECKED_TYPES.get(annotation)
    if allowed is None:
        return
    is_bool = isinstance(value, bool)
    if not isinstance(value, allowed) or (is_bool and bool not in allowed):
        raise BadArguments(
            f"bad arguments for {task!r}: {name} must be {allowed[-1].__name__}, "
            f"got {type(value).__name__}"
        )


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Registered] = {}

    def task(self, name: str, *, time_limit: float | None = None,
             inline: bool = False) -> Callable[[TaskFn], TaskFn]:
        """Register a task; `time_limit` (seconds) overrides TASK_TIME_LIMIT_S for it;
        `inline` declares it bounded (see the module's docstring)."""
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit of {name!r} must be positive, got {time_limit}")

        def register(fn: TaskFn) -> TaskFn:
            self._tasks[name] = Registered(name, fn, inspect.signature(fn), time_limit, inline)
            return fn

        return register

    def time_limit_s(self, task_type: str, default_s: float) -> float | None:
        """The task's own limit, else `default_s`; None when neither is set (0 = off)."""
        registered = self._tasks.get(task_type)
        if registered is not None and registered.time_limit_s is not None:
            return registered.time_limit_s
        return default_s or None

    def may_run_inline(self, task_type: str) -> bool:
        """Registered with `inline=True`: bounded whatever its arguments."""
        registered = self._tasks.get(task_type)
        return registered is not None and registered.inline

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def resolve(self, task: Task) -> Callable[[], object]:
        """Check the task and return a call that runs it; raises MalformedMessage."""
        registered = self._tasks.get(task.type)
        if registered is None:
            raise MalformedMessage(f"unknown task type {task.type!r}")
        registered.check(task.args)
        return lambda: registered.fn(**task.args)


registry = TaskRegistry()
task = registry.task

# The tutorial's unit of work per dot; the worker sets it from DOT_SECONDS.
dot_seconds = 1.0
_MAX_SLEEP_S = 3600.0
_MAX_CPU_ROUNDS = 50_000_000


@task("sleep")
def sleep(seconds: float) -> None:
    """Simulated I/O-bound work."""
    if not 0 <= seconds <= _MAX_SLEEP_S:
        raise BadArguments(f"seconds must be within 0..{_MAX_SLEEP_S:g}, got {seconds}")
    _sleep(seconds)


@task("cpu")
def cpu(rounds: int) -> str:
    """CPU-bound work: chained SHA-256 rounds."""
    if not 0 <= rounds <= _MAX_CPU_ROUNDS:
        raise BadArguments(f"rounds must be within 0..{_MAX_CPU_ROUNDS}, got {rounds}")
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@task("fail")
def fail(message: str = "requested failure") -> None:
    """Always raises: for testing retries and parking."""
    raise RuntimeError(message)


@task("noop", inline=True)
def noop() -> None:
    """Does nothing: for measuring the worker's own overhead."""


@task(DOTS_TASK)
def dots(count: int) -> None:
    """The tutorial's plain-text task: one unit of work per dot in the body."""
    _sleep(count * dot_seconds)


def _sleep(seconds: float) -> None:
    """Sleep in short slices: a time limit raised in a thread lands between two of them."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
