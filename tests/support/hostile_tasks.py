"""Tasks that misbehave the ways user code does, for the containment tests.

Loaded into test workers with TASK_MODULES=tests.support.hostile_tasks.
"""

from __future__ import annotations

import os
import signal

from worker.tasks import task


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
    raise ValueError(f"unknown kind {kind!r}")
