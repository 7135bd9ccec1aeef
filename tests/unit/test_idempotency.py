"""worker.idempotency: skip what was done, commit effects and keys together, across processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from warren.messages import Task
from worker.idempotency import (
    IdempotencyStore,
    MissingKey,
    SQLiteStore,
    exactly_once,
    idempotent,
    message_key,
)
from worker.tasks import BadArguments, TaskRegistry, set_current_task_id


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "app.db")


@pytest.fixture(autouse=True)
def no_task_id() -> None:
    set_current_task_id("")


def add_effects_table(store: SQLiteStore) -> None:
    store.connection().execute("CREATE TABLE IF NOT EXISTS effects (key TEXT, n INTEGER)")


def effects(path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT key, n FROM effects"))
    finally:
        db.close()


def test_the_store_uses_wal_and_full_sync_by_default(store: SQLiteStore) -> None:
    db = store.connection()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_remember_reports_whether_the_key_is_new(store: SQLiteStore) -> None:
    assert not store.seen("m1")
    assert store.remember("m1") is True
    assert store.remember("m1") is False
    assert store.seen("m1") and store.count() == 1 and store.keys() == {"m1"}


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain SQL identifier"):
        SQLiteStore(tmp_path / "x.db", table="done; DROP TABLE x")
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        SQLiteStore(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]


def test_once_commits_the_effect_and_the_key_together(store: SQLiteStore) -> None:
    add_effects_table(store)
    for _ in range(3):
        with store.once("m1") as claim:
            if not claim.already_done:
                claim.db.execute("INSERT INTO effects VALUES ('m1', 1)")
    assert effects(Path(store.path)) == [("m1", 1)]
    assert store.keys() == {"m1"}


def test_a_failing_body_rolls_back_its_writes_and_leaves_no_key(store: SQLiteStore) -> None:
    add_effects_table(store)
    with pytest.raises(RuntimeError), store.once("m1") as claim:
        claim.db.execute("INSERT INTO effects VALUES ('m1', 1)")
        raise RuntimeError("the task failed half-way")
    assert effects(Path(store.path)) == []
    assert not store.seen("m1")
    with store.once("m1") as claim:  # the retry runs, and the connection is usable again
        assert not claim.already_done


def test_exactly_once_runs_a_redelivered_message_once(store: SQLiteStore) -> None:
    add_effects_table(store)
    registry = TaskRegistry()

    @registry.task("credit")
    @exactly_once(store)
    def credit(db: sqlite3.Connection, account: str, cents: int) -> str:
        db.execute("INSERT INTO effects VALUES (?, ?)", (account, cents))
        return "credited"

    results = []
    for message_id in ("m1", "m1", "m2", "m1"):  # m1 redelivered twice
        set_current_task_id(message_id)
        results.append(registry.resolve(Task("credit", {"account": "acc", "cents": 5}))())
    assert results == ["credited", None, "credited", None]
    assert effects(Path(store.path)) == [("acc", 5), ("acc", 5)]
    assert store.keys() == {"m1", "m2"}


def test_exactly_once_keeps_the_registry_argument_checks(store: SQLiteStore) -> None:
    registry = TaskRegistry()

    @registry.task("credit")
    @exactly_once(store)
    def credit(db: sqlite3.Connection, account: str, cents: int) -> None:
        """Credit an account."""

    assert credit.__doc__ == "Credit an account."
    with pytest.raises(BadArguments, match="cents must be int, got str"):
        registry.resolve(Task("credit", {"account": "a", "cents": "5"}))
    with pytest.raises(BadArguments, match="db"):
        registry.resolve(Task("credit", {"db": 1, "account": "a", "cents": 5}))


def test_exactly_once_needs_a_parameter_for_the_connection(store: SQLiteStore) -> None:
    with pytest.raises(TypeError, match="first parameter"):
        exactly_once(store)(lambda: None)


def test_idempotent_skips_done_keys_and_retries_failures(store: SQLiteStore) -> None:
    calls: list[str] = []

    @idempotent(store)
    def send_mail(to: str, fail: bool = False) -> str:
        calls.append(to)
        if fail:
            raise RuntimeError("smtp down")
        return "sent"

    set_current_task_id("m1")
    with pytest.raises(RuntimeError):
        send_mail("ann", fail=True)
    assert send_mail("ann") == "sent"  # the failed attempt recorded nothing
    assert send_mail("ann") is None  # the redelivery is skipped
    assert calls == ["ann", "ann"]


def test_idempotent_takes_a_business_key(store: SQLiteStore) -> None:
    calls: list[str] = []

    @idempotent(store, key=lambda order_id, **_: f"order:{order_id}")
    def ship(order_id: str, note: str = "") -> None:
        calls.append(order_id)

    ship("o1")  # no message id needed with a key function
    ship("o1", note="again")
    ship("o2")
    assert calls == ["o1", "o2"]
    assert store.keys() == {"order:o1", "order:o2"}


def test_idempotent_works_with_any_store_that_fits_the_protocol() -> None:
    class MemoryStore:
        def __init__(self) -> None:
            self.done: set[str] = set()

        def seen(self, key: str) -> bool:
            return key in self.done

        def remember(self, key: str) -> bool:
            new = key not in self.done
            self.done.add(key)
            return new

    memory: IdempotencyStore = MemoryStore()
    calls = []
    task = idempotent(memory)(lambda: calls.append(1))
    set_current_task_id("m1")
    task()
    task()
    assert calls == [1]


@pytest.mark.parametrize("task_id", ["", "tag-17"])
def test_a_message_without_id_is_parked_rather_than_run_unprotected(
        store: SQLiteStore, task_id: str) -> None:
    set_current_task_id(task_id)  # "tag-17": the runner's stand-in when message_id is missing
    with pytest.raises(MissingKey, match="no message_id"):
        message_key()
    ran = []
    with pytest.raises(BadArguments):  # BadArguments: parked at once, never retried
        idempotent(store)(lambda: ran.append(1))()
    assert not ran


def test_forget_before_prunes_old_keys(store: SQLiteStore) -> None:
    store.remember("old")
    cutoff = time.time()
    time.sleep(0.01)
    store.remember("new")
    assert store.forget_before(cutoff) == 1
    assert store.keys() == {"new"}


def test_threads_get_their_own_connections(store: SQLiteStore) -> None:
    add_effects_table(store)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for n in range(50):
                with store.once(f"k{n}") as claim:
                    if not claim.already_done:
                        claim.db.execute("INSERT INTO effects VALUES (?, ?)", (f"k{n}", n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(effects(Path(store.path))) == 50


def _claim_all(path: str, keys: list[str]) -> None:
    store = SQLiteStore(path)
    for key in keys:
        with store.once(key) as claim:
            if not claim.already_done:
                claim.db.execute("INSERT INTO effects VALUES (?, ?)", (key, os.getpid()))


def test_several_processes_sharing_one_database_write_each_key_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    add_effects_table(SQLiteStore(path))
    keys = [f"m{n}" for n in range(300)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_claim_all, args=(str(path), keys[::step]))
             for step in (1, 1, 2, 3)]  # every key raced by at least two processes
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    rows = effects(path)
    assert sorted(key for key, _ in rows) == sorted(keys)


def _die_inside_a_claim(path: str) -> None:
    store = SQLiteStore(path)
    with store.once("m1") as claim:
        claim.db.execute("INSERT INTO effects VALUES ('m1', 1)")
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies before the commit


def test_a_worker_killed_inside_a_claim_leaves_neither_effect_nor_key(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    store = SQLiteStore(path, busy_timeout_s=5)
    add_effects_table(store)
    proc = multiprocessing.get_context("spawn").Process(target=_die_inside_a_claim,
                                                        args=(str(path),))
    proc.start()
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    assert effects(path) == [] and not store.seen("m1")
    with store.once("m1") as claim:  # its lock died with it: the redelivery proceeds
        assert not claim.already_done
        claim.db.execute("INSERT INTO effects VALUES ('m1', 2)")
    assert effects(path) == [("m1", 2)]
