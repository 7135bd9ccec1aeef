"""Chaos runs: real workers and a real publisher under SIGKILLs and broker faults, then a check.

The check is the one Jepsen applies to queues. From the publisher's side we know
which messages it *attempted* and which the broker *acknowledged* (confirmed);
from the workers' execution log we know what was done and how often:

- lost:       acknowledged, never done — must be 0 for warren
- duplicated: done more than once — expected under at-least-once, and bounded
- unexpected: done, never attempted — must be 0
- recovered:  attempted, not acknowledged, done anyway — allowed

Shared by tests/chaos (CI-sized runs) and bench/soak.py (the 100,000-task run).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from testbed.broker import LocalBroker
from testbed.chaos_producer import message_id
from testbed.processes import Service
from testbed.record_tasks import read_records

FaultKind = Literal["kill", "restart"]
TASK_QUEUES = ("task_queue", "task_queue.retry", "task_queue.dead")
DEAD_QUEUE = TASK_QUEUES[2]
INTERRUPTED = "interrupted: delivered without a result"  # the worker's parked reason
CLI_ID = re.compile(r"[0-9a-f]{32}")  # the producer CLI's random message ids
RECOVERY_TIMEOUT_S = 60.0


# -- the checker --------------------------------------------------------------------

@dataclass(frozen=True)
class History:
    attempted: frozenset[str]  # ids the publisher tried to send
    acknowledged: frozenset[str]  # ids it was told are safe (a confirm; without confirms: sent)
    executions: Counter[str]  # id → how many times a consumer did it


@dataclass(frozen=True)
class Verdict:
    lost: frozenset[str]
    duplicated: dict[str, int]  # id → times done (only ids done twice or more)
    unexpected: frozenset[str]
    recovered: frozenset[str]
    done: int  # distinct ids done

    @property
    def extra_executions(self) -> int:
        """Executions beyond the first, over every duplicated id."""
        return sum(times - 1 for times in self.duplicated.values())

    def problems(self, duplicate_bound: int) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} lost (confirmed, never done), e.g. "
                         f"{sorted(self.lost)[:5]}")
        if self.unexpected:
            found.append(f"{len(self.unexpected)} unexpected (done, never published), e.g. "
                         f"{sorted(self.unexpected)[:5]}")
        if self.extra_executions > duplicate_bound:
            found.append(f"{self.extra_executions} duplicate executions exceed the bound "
                         f"of {duplicate_bound}")
        return found


def check(history: History) -> Verdict:
    done = set(history.executions)
    return Verdict(
        lost=frozenset(history.acknowledged - done),
        duplicated={key: n for key, n in history.executions.items() if n > 1},
        unexpected=frozenset(done - history.attempted),
        recovered=frozenset((history.attempted - history.acknowledged) & done),
        done=len(done),
    )


def assert_safe(verdict: Verdict, duplicate_bound: int) -> None:
    """Raise AssertionError naming every violation: loss, strangers, too many repeats."""
    problems = verdict.problems(duplicate_bound)
    assert not problems, "; ".join(problems)


def read_executions(path: Path) -> Counter[str]:
    return Counter(key for key, _pid in read_records(str(path)))


def read_ids(path: Path) -> frozenset[str]:
    return frozenset(path.read_text().split()) if path.exists() else frozenset()


def effect_keys(db_path: Path) -> list[str]:
    """Every key in the chaos task's effects table (a list: a repeated key would show twice)."""
    if not db_path.exists():
        return []
    db = sqlite3.connect(db_path)
    try:
        return [row[0] for row in db.execute("SELECT key FROM effects")]
    finally:
        db.close()


# -- the broker -------------------------------------------------------------------------

def vhost_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def queue_counts(node: LocalBroker, vhost: str) -> dict[str, tuple[int, int]]:
    """(ready, unacked) per queue of a vhost, straight from the node (no stats lag)."""
    out = node.ctl("list_queues", "-p", vhost, "-q", "--no-table-headers", "name",
                   "messages_ready", "messages_unacknowledged")
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


def inject_broker_fault(node: LocalBroker, kind: FaultKind) -> tuple[float, float, float]:
    """SIGKILL (a crash) or a graceful restart; returns when it went down, was down, was back."""
    down_at = time.monotonic()
    if kind == "kill":
        node.kill()
    else:
        node.stop()
    stopped_at = time.monotonic()
    node.start()
    return down_at, stopped_at, time.monotonic()


# -- workers ----------------------------------------------------------------------------

class WorkerPool:
    """`size` warren workers; a random one can be SIGKILLed and replaced at any moment."""

    def __init__(self, workdir: Path, env: dict[str, str], size: int, seed: int) -> None:
        self.workdir = workdir
        self.env = env
        self.size = size
        self.rng = random.Random(seed)
        self.kills = 0
        self.started = 0
        self._lock = threading.Lock()
        self._workers: list[Service] = []
        self.spared: Service | None = None  # the witness of a broker fault, not killed

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()
        for worker in self.current():
            worker.wait_ready()

    def _spawn(self) -> Service:
        log_path = self.workdir / f"worker-{self.started:03d}.log"
        self.started += 1
        worker = Service("worker", self.env, log_path).start()
        self._workers.append(worker)
        return worker

    def current(self) -> list[Service]:
        with self._lock:
            return list(self._workers)

    def kill_one(self) -> None:
        """SIGKILL a random worker (the OOM killer, a node lost) and start a replacement."""
        with self._lock:
            victim = self.rng.choice([w for w in self._workers if w is not self.spared])
            self._workers.remove(victim)
            victim.stop()  # SIGKILL, then reap
            self.kills += 1
            self._spawn()

    def spare(self, worker: Service | None) -> None:
        with self._lock:
            self.spared = worker

    def stop(self, timeout_s: float = 30.0) -> list[int]:
        """SIGTERM every worker (finish and ack what is in hand); returns their exit codes."""
        workers = self.current()
        for worker in workers:
            worker.signal(signal.SIGTERM)
        return [worker.wait(timeout_s) for worker in workers]

    def kill_all(self) -> None:
        for worker in self.current():
            worker.stop()


class Killer(threading.Thread):
    """Every `period_s`, SIGKILL a random worker of the pool and replace it."""

    def __init__(self, pool: WorkerPool, period_s: float) -> None:
        super().__init__(name="worker-killer", daemon=True)
        self.pool = pool
        self.period_s = period_s
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.wait(self.period_s):
                self.pool.kill_one()
        except BaseException as exc:  # reported by the run, not lost in a thread
            self.error = exc

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error


# -- recovery ---------------------------------------------------------------------------

@dataclass
class BrokerFault:
    kind: FaultKind
    at_confirmed: int  # the publisher's confirmed count when the fault struck
    stop_s: float  # how long the broker took to go down (a graceful stop is not instant)
    down_s: float  # from the fault to the broker answering AMQP again
    first_ready_s: float | None = None  # from its return to the first worker consuming
    first_done_s: float | None = None  # ... to the first task done
    witness_s: float | None = None  # ... to a worker that lived through the fault consuming


def measure_recovery(fault: BrokerFault, witness: Service, pool: WorkerPool,
                     executions: Path, back_at: float) -> None:
    """Fill in how long workers took to consume again after the broker came back.

    Replacement workers start with a fresh backoff, so the first consumer back says
    little about reconnecting; the witness (a worker that lived through the fault,
    spared by the killer until it is back) shows what the reconnect backoff costs.
    """
    size_at_return = _size(executions)
    deadline = back_at + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        now = time.monotonic() - back_at
        if fault.first_ready_s is None and any(w.probe("/readyz") == 200 for w in pool.current()):
            fault.first_ready_s = now
        if fault.first_done_s is None and _size(executions) > size_at_return:
            fault.first_done_s = now
        if fault.witness_s is None and witness.probe("/readyz") == 200:
            fault.witness_s = now
        if None not in (fault.first_ready_s, fault.first_done_s, fault.witness_s):
            return
        time.sleep(0.1)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# -- the run ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChaosPlan:
    tasks: int
    workers: int = 4
    prefetch: int = 10
    window: int = 500  # the publisher's confirms in flight
    rate: float = 400.0  # msg/s: slow enough that publishing spans every broker fault
    kill_every_s: float = 2.0
    # (share of tasks confirmed, fault): the broker is hit while the publisher is mid-run.
    faults: tuple[tuple[float, FaultKind], ...] = ((0.25, "kill"), (0.6, "restart"))
    cli_tasks: int = 0  # also run `python -m producer --count cli_tasks` through the faults
    cli_window: int = 100
    task_seconds: float = 0.0
    seed: int = 8
    drain_timeout_s: float = 120.0


def duplicate_bound(plan: ChaosPlan, kills: int, broker_faults: int) -> int:
    """The most repeated executions at-least-once delivery may cause in this run.

    - A SIGKILLed worker held at most `prefetch` unacked deliveries; any it had
      already run (the ack not yet sent) come back and run again.
    - A broker fault drops every connection at once: each worker's unacked
      deliveries (≤ prefetch) are redelivered, and each publisher re-sends what
      was not yet confirmed (≤ its window) — copies the broker may already have
      queued, which then run twice.
    """
    windows = plan.window + (plan.cli_window if plan.cli_tasks else 0)
    per_broker_fault = plan.workers * plan.prefetch + windows
    return kills * plan.prefetch + broker_faults * per_broker_fault


@dataclass
class ChaosResult:
    plan: ChaosPlan
    history: History
    verdict: Verdict
    worker_kills: int
    faults: list[BrokerFault]
    producer_exit: int
    producer_summary: str
    cli_exit: int | None
    cli_summary: str
    cli_confirmed: int
    cli_done: int
    effect_keys: list[str]
    queues_after: dict[str, tuple[int, int]]
    worker_exits: list[int]
    duration_s: float
    publish_s: float
    requeued: int = 0  # parked as interrupted, then requeued (README: after a fault)

    @property
    def duplicate_bound(self) -> int:
        return duplicate_bound(self.plan, self.worker_kills, len(self.faults))

    @property
    def confirmed(self) -> int:
        """Confirmed by the tracked publisher (the CLI's come in cli_confirmed)."""
        return len(self.history.acknowledged) - self.cli_done

    def row(self) -> dict[str, object]:
        """One line of figures, for bench/soak.py and docs/RELIABILITY.md."""
        return {
            "tasks": self.plan.tasks + self.plan.cli_tasks,
            "confirmed": self.confirmed + self.cli_confirmed,
            "worker kills": self.worker_kills,
            "broker faults": ", ".join(f.kind for f in self.faults),
            "lost": len(self.verdict.lost) + max(0, self.cli_confirmed - self.cli_done),
            "unexpected": len(self.verdict.unexpected),
            "duplicates": self.verdict.extra_executions,
            "dup bound": self.duplicate_bound,
            "idempotent rows": len(self.effect_keys),
            "parked interrupted, requeued": self.requeued,
            "first back (s)": _worst(f.first_ready_s for f in self.faults),
            "witness back (s)": _worst(f.witness_s for f in self.faults),
            "duration (s)": round(self.duration_s, 1),
        }


def _worst(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(max(known), 1) if known else None


class ChaosRun:
    """Start workers and publishers on `url`'s vhost, hit them as `plan` says, check the rest."""

    def __init__(self, node: LocalBroker, url: str, workdir: Path, plan: ChaosPlan) -> None:
        self.node = node
        self.url = url
        self.workdir = workdir
        self.plan = plan
        self.executions = workdir / "executions.log"
        self.db = workdir / "effects.db"
        self.confirmed_path = workdir / "confirmed.ids"
        self.prefix = f"chaos{plan.seed}"
        env = {"AMQP_URL": url, "PREFETCH": str(plan.prefetch), "SHUTDOWN_GRACE_S": "10",
               "TASK_MODULES": "testbed.chaos_tasks", "LOG_LEVEL": "INFO",
               "CHAOS_LOG": str(self.executions), "CHAOS_DB": str(self.db)}
        self.pool = WorkerPool(workdir, env, plan.workers, plan.seed)
        self.killer = Killer(self.pool, plan.kill_every_s)
        self.producer: Service | None = None
        self.cli: Service | None = None
        self.faults: list[BrokerFault] = []
        self.requeued = 0  # parked as interrupted, requeued as an operator would

    def run(self) -> ChaosResult:
        started = time.monotonic()
        try:
            self.pool.start()
            self._start_publishers()
            self.killer.start()
            for share, kind in self.plan.faults:
                self._fault_when_confirmed(int(share * self.plan.tasks), kind)
            publish_s = self._wait_publishers() - started
            self._wait_all_done()
            self.killer.finish()
            self._wait_queue_empty()
            worker_exits = self.pool.stop()
        finally:
            self.killer.halt.set()
            if self.killer.is_alive():  # it may be spawning a worker right now
                self.killer.join(timeout=30)
            self._kill_everything()
        return self._result(started, publish_s, worker_exits)

    # -- publishers --------------------------------------------------------------------
    def _start_publishers(self) -> None:
        env = {"AMQP_URL": self.url, "LOG_LEVEL": "INFO"}
        self.producer = Service("testbed.chaos_producer", env,
                                self.workdir / "producer.log", [
                                    "--count", str(self.plan.tasks), "--prefix", self.prefix,
                                    "--confirmed", str(self.confirmed_path),
                                    "--rate", str(self.plan.rate),
                                    "--window", str(self.plan.window),
                                    "--seconds", str(self.plan.task_seconds)]).start()
        if self.plan.cli_tasks:
            # The CLI spreads its share over the same time span as the tracked publisher.
            cli_rate = self.plan.rate * self.plan.cli_tasks / self.plan.tasks
            args = {"seconds": self.plan.task_seconds} if self.plan.task_seconds else {}
            self.cli = Service("producer", env, self.workdir / "producer-cli.log", [
                "--count", str(self.plan.cli_tasks), "--type", "chaos_record",
                "--args", json.dumps(args), "--rate", f"{cli_rate:.3f}",
                "--window", str(self.plan.cli_window)]).start()

    def _confirmed_now(self) -> int:
        assert self.producer is not None
        try:
            return int(self.producer.metrics().get("warren_producer_confirmed_total", 0))
        except OSError:
            return 0  # between its start and its metrics server answering

    def _wait_publishers(self) -> float:
        timeout_s = 120 + self.plan.tasks / self.plan.rate
        for service in (self.producer, self.cli):
            if service is not None:
                service.wait(timeout_s)
        return time.monotonic()

    # -- faults ---------------------------------------------------------------------------
    def _fault_when_confirmed(self, target: int, kind: FaultKind) -> None:
        assert self.producer is not None and self.producer.process is not None
        confirmed = self._confirmed_now()
        while confirmed < target:
            if self.producer.process.poll() is not None:
                last = self.producer.log().strip().rsplit("\n", 1)[-1]
                raise AssertionError(f"the publisher ended before the {kind} fault at "
                                     f"{target} confirmed: {last}")
            time.sleep(0.1)
            confirmed = self._confirmed_now()
        witness = self.pool.current()[0]
        self.pool.spare(witness)
        down_at, stopped_at, back_at = inject_broker_fault(self.node, kind)
        fault = BrokerFault(kind, confirmed, round(stopped_at - down_at, 2),
                            round(back_at - down_at, 2))
        measure_recovery(fault, witness, self.pool, self.executions, back_at)
        self.pool.spare(None)
        self.faults.append(fault)

    # -- the end ---------------------------------------------------------------------------
    def _wait_all_done(self) -> None:
        """Until every confirmed id (and the CLI's count) was done at least once."""
        confirmed = read_ids(self.confirmed_path)
        cli_confirmed = _confirmed_in(self.cli)
        deadline = time.monotonic() + self.plan.drain_timeout_s
        while time.monotonic() < deadline:
            self._requeue_interrupted()
            done = read_executions(self.executions)
            cli_done = sum(1 for key in done if CLI_ID.fullmatch(key))
            if confirmed <= done.keys() and cli_done >= cli_confirmed:
                return
            time.sleep(0.5)

    def _requeue_interrupted(self) -> None:
        """What an operator does after such a run (README): a task held by a worker that died
        MAX_ATTEMPTS times (here: a broker crash and two SIGKILLs in a row) is parked as
        `interrupted`, not lost; `warren dead requeue --reason interrupted` runs it again.
        Any other parked reason stays, and fails the run's checks."""
        if queue_counts(self.node, vhost_of(self.url)).get(DEAD_QUEUE, (0, 0))[0] == 0:
            return
        done = subprocess.run(
            [sys.executable, "-m", "warren.admin", "dead", "requeue", "--reason",
             INTERRUPTED, "--json"], env={**os.environ, "AMQP_URL": self.url},
            capture_output=True, text=True, timeout=60, check=True)
        self.requeued += int(json.loads(done.stdout)["requeued"])

    def _wait_queue_empty(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _total(queue_counts(self.node, vhost_of(self.url))) == 0:
                return
            time.sleep(0.5)

    def _kill_everything(self) -> None:
        self.pool.kill_all()
        for service in (self.producer, self.cli):
            if service is not None:
                service.stop()

    def _result(self, started: float, publish_s: float, worker_exits: list[int]) -> ChaosResult:
        assert self.producer is not None and self.producer.process is not None
        executions = read_executions(self.executions)
        summary = _summary_of(self.producer)
        attempted = frozenset(message_id(self.prefix, seq)
                              for seq in range(_published_total(summary)))
        cli_ids = frozenset(key for key in executions if CLI_ID.fullmatch(key))
        confirmed = read_ids(self.confirmed_path)
        # The CLI's ids are random and unknown to us: they count as attempted and
        # acknowledged when done, and its loss is checked by count (cli_confirmed).
        history = History(attempted | cli_ids, confirmed | cli_ids, executions)
        cli = self.cli
        return ChaosResult(
            plan=self.plan, history=history, verdict=check(history),
            worker_kills=self.pool.kills, faults=self.faults,
            producer_exit=self.producer.process.returncode, producer_summary=summary,
            cli_exit=cli.process.returncode if cli and cli.process else None,
            cli_summary=_summary_of(cli) if cli else "", cli_confirmed=_confirmed_in(cli),
            cli_done=len(cli_ids), effect_keys=effect_keys(self.db),
            queues_after=queue_counts(self.node, vhost_of(self.url)),
            worker_exits=worker_exits, duration_s=time.monotonic() - started,
            publish_s=publish_s, requeued=self.requeued,
        )


def _total(counts: dict[str, tuple[int, int]]) -> int:
    return sum(ready + unacked for name, (ready, unacked) in counts.items()
               if name in TASK_QUEUES)


def _summary_of(service: Service | None) -> str:
    """The publisher's last stdout line (`published N messages (...): confirmed N, ...`)."""
    if service is None:
        return ""
    lines = [line for line in service.log().splitlines() if line.startswith("published ")]
    return lines[-1] if lines else ""


def _confirmed_in(service: Service | None) -> int:
    match = re.search(r"confirmed (\d+)", _summary_of(service))
    return int(match.group(1)) if match else 0


def _published_total(summary: str) -> int:
    match = re.match(r"published (\d+) messages", summary)
    return int(match.group(1)) if match else 0


# -- helpers for the negative controls ------------------------------------------------

def start_workers(workdir: Path, url: str, count: int, prefetch: int = 10) -> WorkerPool:
    """Plain warren workers running the chaos task on `url`, nobody killing them."""
    env = {"AMQP_URL": url, "PREFETCH": str(prefetch), "LOG_LEVEL": "INFO",
           "TASK_MODULES": "testbed.chaos_tasks",
           "CHAOS_LOG": str(workdir / "executions.log"), "CHAOS_DB": str(workdir / "effects.db")}
    pool = WorkerPool(workdir, env, count, seed=0)
    pool.start()
    return pool


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def wait_drained(node: LocalBroker, url: str, executions: Path, timeout_s: float = 60.0) -> None:
    """Until the task queues are empty and the execution log stopped growing for a second."""
    deadline = time.monotonic() + timeout_s
    last_size, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = _size(executions)
        if size != last_size:
            last_size, still_since = size, time.monotonic()
        elif (time.monotonic() - still_since >= 1.0
              and _total(queue_counts(node, vhost_of(url))) == 0):
            return
        time.sleep(0.2)
    raise AssertionError(f"the queues did not drain within {timeout_s}s")
