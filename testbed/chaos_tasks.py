"""The chaos runs' task: log every execution, and make one exactly-once write per message.

Loaded into workers with TASK_MODULES=testbed.chaos_tasks, with CHAOS_LOG and
CHAOS_DB naming the run's files. The execution log shows what at-least-once
delivery really ran, repeats included; the `effects` table shows what
`worker.idempotency.exactly_once` leaves behind: one row per message.
"""

from __future__ import annotations

import os
import sqlite3
import time

from worker.idempotency import SQLiteStore, exactly_once, message_key
from worker.tasks import task

EFFECTS_TABLE = "effects"

STORE = SQLiteStore(os.environ.get("CHAOS_DB", "chaos.db"))
STORE.connection().execute(f"CREATE TABLE IF NOT EXISTS {EFFECTS_TABLE} "
                           "(key TEXT PRIMARY KEY, pid INTEGER NOT NULL)")


def append_execution(path: str, key: str) -> None:
    # O_APPEND writes of one short line are atomic, so many workers can share the file,
    # and a worker SIGKILLed mid-task leaves either the whole line or none of it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@exactly_once(STORE)
def write_effect(db: sqlite3.Connection) -> None:
    # A plain INSERT: a second row for one key would fail loudly, not hide.
    db.execute(f"INSERT INTO {EFFECTS_TABLE} (key, pid) VALUES (?, ?)",
               (message_key(), os.getpid()))


@task("chaos_record")
def chaos_record(seconds: float = 0.0) -> None:
    key = message_key()
    time.sleep(seconds)
    append_execution(os.environ.get("CHAOS_LOG", "chaos.log"), key)
    write_effect()

