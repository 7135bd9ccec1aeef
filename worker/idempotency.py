"""Exactly-once effects on top of at-least-once delivery: skip a task whose message was done.

RabbitMQ hands a message out again whenever its ack did not make it: a worker
killed after the work but before the ack, a connection lost, a broker crash.
The redelivery keeps its `message_id`, so the id is the key that tells a repeat
from new work (`worker.tasks.current_task_id()` gives it to a running task).

Two levels, for two kinds of effect:

- `@idempotent(store)`: look the key up, skip if done, else run and then record
  the key. Works with any `IdempotencyStore` (SQLite here; Redis `SET NX` or a
  Postgres `INSERT ... ON CONFLICT DO NOTHING` fit the same two methods). A
  crash between the effect and the record repeats the effect once more, and two
  workers that hold the same message at the same moment both run it: use it for
  effects outside your database (an e-mail, an HTTP call) where that rare
  repeat is acceptable.
- `@exactly_once(store)` (or `with store.once(key)`): for effects written to the
  same SQLite database as the store. The task's writes and its key commit in one
  transaction, so they happen together or not at all, and a repeat finds the
  key and writes nothing:

      from worker.idempotency import SQLiteStore, exactly_once
      from worker.tasks import task

      store = SQLiteStore("/var/lib/app/app.db")

      @task("credit")
      @exactly_once(store)
      def credit(db: sqlite3.Connection, account: str, cents: int) -> None:
          db.execute("UPDATE accounts SET cents = cents + ? WHERE id = ?", (cents, account))

Both need a `message_id` on every message (warren's producer always sets one);
a message without one is parked at once rather than run without protection.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import structlog

from worker.tasks import BadArguments, current_task_id

log = structlog.get_logger("worker.idempotency")

T = TypeVar("T")
KeyFn = Callable[..., str]
Synchronous = Literal["FULL", "NORMAL"]

# The runner names a delivery without a message_id "tag-<delivery tag>": a tag is
# reused by every channel, so it would make two different messages look alike.
_TAG_FALLBACK = re.compile(r"tag-\d+")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingKey(BadArguments):
    """The message carries no message_id: it cannot be told apart from a repeat."""


class IdempotencyStore(Protocol):
    """Where the keys of done tasks live; both calls must be safe across processes."""

    def seen(self, key: str) -> bool:
        """True if `key` was recorded as done."""
        ...

    def remember(self, key: str) -> bool:
        """Record `key` as done; False if it already was (another worker got there first)."""
        ...


@dataclass(frozen=True)
class Claim:
    """What `SQLiteStore.once` hands the task: its transaction, and whether to act at all."""

    key: str
    db: sqlite3.Connection
    already_done: bool


class SQLiteStore:
    """Done keys in a SQLite table: WAL mode, so several worker processes on one host share it.

    `synchronous="FULL"` (the default) syncs every commit to disk, so a recorded
    key and the effects committed with it survive a power cut, not just a killed
    process; "NORMAL" survives killed processes only and commits ~5x faster.
    Each thread gets its own connection (sqlite3 connections must not cross threads).
    """

    def __init__(self, path: str | Path, *, table: str = "warren_done",
                 synchronous: Synchronous = "FULL", busy_timeout_s: float = 30.0) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"table must be a plain SQL identifier, got {table!r}")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = str(path)
        self.table = table
        self.synchronous = synchronous
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        with self._transaction() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                       "(key TEXT PRIMARY KEY, done_at REAL NOT NULL) WITHOUT ROWID")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after a fork)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = self._open()
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly, so that a claim
        # takes the write lock up front (BEGIN IMMEDIATE) instead of upgrading later,
        # which is where two writers would deadlock and one would fail with "locked".
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        _enable_wal(db, self.busy_timeout_s)
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # also after a failed COMMIT, or the next BEGIN would fail
                db.execute("ROLLBACK")
            raise

    def seen(self, key: str) -> bool:
        row = self.connection().execute(
            f"SELECT 1 FROM {self.table} WHERE key = ?", (key,)).fetchone()
        return row is not None

    def remember(self, key: str) -> bool:
        with self._transaction() as db:
            return self._insert(db, key)

    def _insert(self, db: sqlite3.Connection, key: str) -> bool:
        cursor = db.execute(f"INSERT OR IGNORE INTO {self.table} (key, done_at) VALUES (?, ?)",
                            (key, time.time()))
        return cursor.rowcount == 1

    @contextlib.contextmanager
    def once(self, key: str) -> Iterator[Claim]:
        """One transaction for the task's own writes and its key; skip them if the key is there.

        The write lock is held from the look-up to the commit, so keep the body to
        database writes: do slow work (downloads, computation) before entering.
        """
        with self._transaction() as db:
            done = self.seen(key)
            yield Claim(key, db, already_done=done)
            if not done:
                self._insert(db, key)

    def count(self) -> int:
        return int(self.connection().execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def keys(self) -> set[str]:
        return {row[0] for row in self.connection().execute(f"SELECT key FROM {self.table}")}

    def forget_before(self, timestamp: float) -> int:
        """Drop keys recorded before `timestamp` (epoch seconds); returns how many.

        A key is only needed while its message can still come back: keep keys
        longer than a message can sit in the queue, retries and parking included.
        """
        with self._transaction() as db:
            return db.execute(f"DELETE FROM {self.table} WHERE done_at < ?",
                              (timestamp,)).rowcount

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def message_key() -> str:
    """The running task's message_id; raises MissingKey when the message has none."""
    key = current_task_id()
    if not key or _TAG_FALLBACK.fullmatch(key):
        raise MissingKey("the message has no message_id, so a repeat cannot be recognised; "
                         "publish it with one (warren's producer always does)")
    return key


def _key_for(key_fn: KeyFn | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if key_fn is None:
        return message_key()
    key = key_fn(*args, **kwargs)
    if not key:
        raise MissingKey("the key function returned an empty key")
    return key


def idempotent(store: IdempotencyStore, *, key: KeyFn | None = None
               ) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Run the task unless its key is already recorded; record it after a successful run.

    `key` (called with the task's arguments) replaces the message_id when the
    business has a better one, e.g. `key=lambda order_id, **_: f"order:{order_id}"`.
    A failing task records nothing, so its retry runs again.
    """

    def decorate(fn: Callable[..., T]) -> Callable[..., T | None]:
        @functools.wraps(fn)  # keeps the signature: the registry checks arguments against it
        def wrapper(*args: Any, **kwargs: Any) -> T | None:
            task_key = _key_for(key, args, kwargs)
            if store.seen(task_key):
                log.info("task_skipped_done_before", key=task_key)
                return None
            result = fn(*args, **kwargs)
            if not store.remember(task_key):
                # Two workers held the same message at once (a redelivery after a lost
                # connection while the first copy still ran): the effect happened twice.
                log.warning("task_done_twice", key=task_key)
            return result

        return wrapper

    return decorate


def exactly_once(store: SQLiteStore, *, key: KeyFn | None = None
                 ) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Run the task inside `store.once(key)`, passing the transaction as its first argument.

    The task writes through that connection only; its writes and the key commit
    together. A repeat of a done message runs nothing and returns None.
    """

    def decorate(fn: Callable[..., T]) -> Callable[..., T | None]:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        if not params:
            raise TypeError(f"{fn.__name__} must take the database connection as its first "
                            "parameter")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T | None:
            task_key = _key_for(key, args, kwargs)
            with store.once(task_key) as claim:
                if claim.already_done:
                    log.info("task_skipped_done_before", key=task_key)
                    return None
                return fn(claim.db, *args, **kwargs)

        # The message's `args` fill every parameter but the connection: the registry
        # checks them against this signature, not the undecorated one.
        wrapper.__signature__ = signature.replace(parameters=params[1:])  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _enable_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """Switch to WAL, waiting out another process doing the same.

    The switch takes an exclusive lock without going through the busy handler, so two
    workers opening a new database at once can get "database is locked" here. The
    mode is persistent: once one of them has switched, the others find WAL and go on.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
