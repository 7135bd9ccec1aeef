"""Tasks that misbehave the ways user code does, for the containment tests.

Loaded into test workers with TASK_MODULES=tests.support.hostile_tasks.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import time

import structlog

from worker.tasks import task

_LEAKED: list[bytes] = []


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be shown")


@task("suicide")
def suicide() -> None:
    """What an OOM kill or a segfault in a C extension does to a worker."""
    os.kill(os.getpid(), signal.SIGKILL)


@task("raise_odd")
def raise_odd(kind: str) -> None:
    """Raise an exception whose text no encoder or logger expects."""
    if kind == "surrogate":
        raise RuntimeError("lone surrogate \udcff and NUL \x00")
    if kind == "huge":
        raise RuntimeError("x" * 10_000_000)
    if kind == "unprintable":
        raise Unprintable()
    if kind == "bytes":
        raise RuntimeError(b"\xff\xfe")
    if kind == "exit":
        raise SystemExit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise ValueError(f"unknown kind {kind!r}")


@task("stubborn")
def stubborn(seconds: float) -> None:
    """Ignores every exception, the soft time limit included, and goes on sleeping."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except BaseException:  # that is the point of this task
            continue


@task("limited", time_limit=0.5)
def limited(seconds: float) -> None:
    """A task with its own time limit, shorter than the worker's default."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


@task("gil")
def gil(length: int) -> None:
    """A regular expression that backtracks for seconds without releasing the GIL."""
    re.match(r"(a+)+$", "a" * length + "!")


@task("gil_hold")
def gil_hold(seconds: int) -> None:
    """What a C extension that never releases the GIL does, for a fixed time on any CPU:
    libc's sleep called through PyDLL, which keeps the GIL for the whole call."""
    ctypes.PyDLL(None).sleep(seconds)


@task("leak")
def leak(megabytes: int, path: str = "") -> None:
    """Keeps `megabytes` more of memory for good; records its pid when given a path."""
    _LEAKED.append(os.urandom(megabytes * 2**20))
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()}\n")


@task("speak")
def speak(words: str) -> None:
    """Logs from inside the task: the line carries the task's id, in a lane or a child."""
    structlog.get_logger("task").info("task_says", words=words)
