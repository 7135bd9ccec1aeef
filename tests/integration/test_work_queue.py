"""The work queue on a real broker: delivery, fair dispatch, crashes, shutdown, heartbeats."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from testbed.processes import ServiceFactory
from testbed.record_tasks import read_records
from tests.support.amqp import EventWatcher, publish_tasks, ready_count, wait_for_count
from tests.support.faults import metric, wait_until


def records_of(path: Path) -> list[tuple[str, int]]:
    return read_records(str(path))


def run_heavy_light(services: ServiceFactory, amqp_url: str, *, workers: int, count: int,
                    prefetch: str) -> tuple[float, float, dict[str, float]]:
    """Returns (makespan, ideal, busy seconds per worker) for the tutorial's alternation."""
    for _ in range(workers):
        services.start("worker", PREFETCH=prefetch)
    watcher = EventWatcher(amqp_url)
    try:
        result = services.run("producer", "--count", str(count), "--heavy-light", "0.2", "0.02")
        assert result.returncode == 0, result.stderr
        events = watcher.collect(count, timeout_s=60)
    finally:
        watcher.close()
    assert len(events) == count, f"{len(events)} of {count} tasks done"
    # The workers' clocks: the test reads the events only once the producer is done.
    first_start = min(e["finished_at"] - e["duration_s"] for e in events)
    makespan = max(e["finished_at"] for e in events) - first_start
    busy: dict[str, float] = {}
    for e in events:
        busy[e["worker"]] = busy.get(e["worker"], 0.0) + e["duration_s"]
    return makespan, sum(busy.values()) / workers, busy


def test_published_tasks_are_done_and_acked(services: ServiceFactory, amqp_url: str,
                                            tmp_path: Path) -> None:
    worker = services.start("worker")
    out = tmp_path / "records"
    ids = publish_tasks(amqp_url, [("record", {"path": str(out)})] * 20)
    wait_until(lambda: len(records_of(out)) >= 20, 20, "20 records")
    assert sorted(k for k, _ in records_of(out)) == sorted(ids)
    assert wait_for_count(amqp_url, "task_queue", 0) == 0
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 20, 5,
               "done counter")
    assert metric(worker, "warren_worker_tasks_in_flight") == 0


def test_fair_dispatch_with_prefetch_1_is_near_ideal(services: ServiceFactory,
                                                     amqp_url: str) -> None:
    makespan, ideal, busy = run_heavy_light(services, amqp_url, workers=2, count=80,
                                            prefetch="1")
    assert len(busy) == 2
    # Fair dispatch is an even share of the work: each worker's busy time within 10 % of
    # the ideal (round-robin gives one worker 10x the other's, see below). The makespan is
    # the benchmark's (bench/fairness.py, a quiet machine): under CI's load it also holds
    # the stalls of a machine booting six RabbitMQ nodes beside it (both workers busy
    # 5.03 s of an ideal 5.03 s, makespan 6.22 s, 2026-12-08).
    assert max(busy.values()) <= 1.10 * ideal, f"busy {busy} vs ideal {ideal:.2f}s"
    assert makespan < 2 * ideal, f"makespan {makespan:.2f}s vs ideal {ideal:.2f}s ({busy})"


def test_unlimited_prefetch_shows_round_robin_imbalance(services: ServiceFactory,
                                                        amqp_url: str) -> None:
    makespan, ideal, busy = run_heavy_light(services, amqp_url, workers=2, count=40,
                                            prefetch="0")
    # Round-robin hands every heavy task to one worker: ~4 s of work against ~0.4 s.
    assert makespan >= 1.4 * ideal, f"makespan {makespan:.2f}s vs ideal {ideal:.2f}s ({busy})"
    # 10x on a quiet machine; a loaded one stretches the 20 ms sleeps (4.4x seen in CI).
    assert max(busy.values()) >= 3 * min(busy.values()), busy


def test_worker_killed_mid_task_loses_nothing(services: ServiceFactory, amqp_url: str,
                                              tmp_path: Path) -> None:
    victim = services.start("worker")
    survivor = services.start("worker")
    out = tmp_path / "records"
    ids = publish_tasks(amqp_url, [("record", {"path": str(out), "seconds": 1.0})] * 6)
    wait_until(lambda: metric(victim, "warren_worker_tasks_in_flight") == 1, 10,
               "the victim to hold a task")
    time.sleep(0.3)  # well inside the victim's 1 s task
    victim.signal(signal.SIGKILL)
    wait_until(lambda: {k for k, _ in records_of(out)} >= set(ids), 30, "every task done")
    assert wait_for_count(amqp_url, "task_queue", 0) == 0
    assert metric(survivor, "warren_worker_redeliveries_total") >= 1


def test_sigterm_finishes_the_task_in_hand_and_exits_0(services: ServiceFactory, amqp_url: str,
                                                       tmp_path: Path) -> None:
    worker = services.start("worker")
    out = tmp_path / "records"
    [task_id] = publish_tasks(amqp_url, [("record", {"path": str(out), "seconds": 2.0})])
    wait_until(lambda: metric(worker, "warren_worker_tasks_in_flight") == 1, 10, "task in hand")
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout_s=15) == 0
    assert time.monotonic() - started < 10  # SHUTDOWN_GRACE_S in the test env
    assert records_of(out) == [(task_id, worker.process.pid)]
    assert ready_count(amqp_url, "task_queue") == 0  # acked, so nothing was requeued
    assert "worker_stopped" in worker.log()


def test_task_longer_than_heartbeat_keeps_its_connection(services: ServiceFactory,
                                                         amqp_url: str, tmp_path: Path) -> None:
    worker = services.start("worker", AMQP_URL=amqp_url + "?heartbeat=1")
    out = tmp_path / "records"
    [task_id] = publish_tasks(amqp_url, [("record", {"path": str(out), "seconds": 3.5})])
    wait_until(lambda: records_of(out), 15, "the long task")
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 5,
               "the ack")
    assert [k for k, _ in records_of(out)] == [task_id]
    assert "broker_connection_lost" not in worker.log()
    assert metric(worker, "warren_worker_redeliveries_total") == 0
    assert ready_count(amqp_url, "task_queue") == 0


def test_adaptive_prefetch_grows_for_tiny_tasks_and_stays_at_one_for_long(
        services: ServiceFactory, amqp_url: str) -> None:
    # PREFETCH_MAX 8 needs the slowest of 16 noops under 31 ms (worker.prefetch): true
    # on a loaded CI machine too, where 32 (under 8 ms) was not always.
    worker = services.start("worker", PREFETCH="auto", PREFETCH_MAX="8")
    assert metric(worker, "warren_worker_prefetch") == 1
    publish_tasks(amqp_url, [("noop", {})] * 3000)
    wait_until(lambda: metric(worker, "warren_worker_prefetch") == 8, 20, "prefetch to grow")
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') >= 3000, 30,
               "the tiny tasks")
    publish_tasks(amqp_url, [("sleep", {"seconds": 0.3})] * 8)
    wait_until(lambda: metric(worker, "warren_worker_prefetch") == 1, 20, "prefetch to shrink")
    wait_until(lambda: ready_count(amqp_url, "task_queue") == 0, 20, "the queue to drain")
    assert '"prefetch_adapted"' in worker.log()


def test_adaptive_prefetch_keeps_every_lane_busy_with_long_tasks(
        services: ServiceFactory, amqp_url: str) -> None:
    """PREFETCH=auto never holds fewer deliveries than CONCURRENCY: 8 one-second tasks on
    4 lanes take about 2 s, not 8 (it used to shrink to 1 after the first long task)."""
    worker = services.start("worker", PREFETCH="auto", CONCURRENCY="4")
    assert metric(worker, "warren_worker_prefetch") == 4
    publish_tasks(amqp_url, [("sleep", {"seconds": 1.0})])
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 1, 10,
               "the first long task")
    started = time.monotonic()
    publish_tasks(amqp_url, [("sleep", {"seconds": 1.0})] * 8)
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}') == 9, 20,
               "the eight long tasks")
    assert time.monotonic() - started < 5.0
    assert metric(worker, "warren_worker_prefetch") == 4
