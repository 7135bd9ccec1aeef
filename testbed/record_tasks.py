"""A task that leaves a trace on disk, so tests can count exactly what was done.

Loaded into test workers with TASK_MODULES=testbed.record_tasks.
"""

from __future__ import annotations

import os
import time

from worker.tasks import current_task_id, task


@task("record")
def record(path: str, key: str = "", seconds: float = 0.0) -> None:
    """Append `key` (default: the message id) and this worker's pid to `path`."""
    key = key or current_task_id()
    time.sleep(seconds)
    # O_APPEND writes of one short line are atomic, so many workers can share the file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_records(path: str) -> list[tuple[str, int]]:
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [(key, int(pid)) for key, pid in (line.split() for line in fh if line.strip())]
