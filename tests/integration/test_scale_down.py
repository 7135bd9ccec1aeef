"""Scale-down on a real broker: a worker told to stop (SIGTERM, as Kubernetes sends it)
finishes and acks the task in hand, hands back what it has not started and what outlasts
SHUTDOWN_GRACE_S, and no task is lost or run to completion twice.

test_work_queue.py already covers a classic queue's task finishing inside the grace; this
file adds the quorum queue production runs, a task longer than the grace, prefetched tasks,
an idle worker, and the time a worker takes to exit after its grace, against the margin the
manifests leave before SIGKILL (tests/k8s/test_scale_down.py, EXIT_MARGIN_S).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testbed.processes import Service, ServiceFactory
from testbed.record_tasks import read_records
from tests.k8s.test_scale_down import EXIT_MARGIN_S
from tests.support.amqp import publish_tasks, ready_count

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

GRACE_S = 2.0  # SHUTDOWN_GRACE_S of the worker that is stopped: short, to keep tests short


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def metric(service: Service, name: str) -> float:
    return service.metrics().get(name, 0.0)


def done(service: Service) -> float:
    return metric(service, 'warren_worker_tasks_total{outcome="done"}')


def stop(service: Service) -> tuple[int, float]:
    """SIGTERM, as the kubelet sends it; (exit code, seconds until the process was gone)."""
    started = time.monotonic()
    service.signal(signal.SIGTERM)
    code = service.wait(timeout_s=GRACE_S + 3 * EXIT_MARGIN_S)
    return code, time.monotonic() - started


def publish(url: str, tasks: list[tuple[str, dict[str, Any]]], queue_type: str) -> list[str]:
    # A quorum task_queue exists already (the worker declared it): a plain declare would 406.
    return publish_tasks(url, tasks, declare=queue_type == "classic")


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_task_longer_than_the_grace_is_handed_back_and_done_once(
        services: ServiceFactory, amqp_url: str, tmp_path: Path, queue_type: str) -> None:
    out = tmp_path / "records"
    victim = services.start("worker", SHUTDOWN_GRACE_S=str(GRACE_S), QUEUE_TYPE=queue_type)
    [task_id] = publish(amqp_url, [("record", {"path": str(out), "seconds": GRACE_S + 3})],
                        queue_type)
    wait_until(lambda: metric(victim, "warren_worker_tasks_in_flight") == 1, 10, "task in hand")
    # SIGTERM at once (starting the other worker first took seconds on a loaded machine,
    # and the task ended inside the grace).
    code, took = stop(victim)
    assert code == 0
    after_grace = took - GRACE_S  # measured here: ~0.4 s
    assert 0 <= after_grace < 2.5, f"{took:.2f}s: gone at the grace, not at the task's end"
    assert after_grace <= EXIT_MARGIN_S, "the manifests' margin before SIGKILL is too short"
    assert "shutdown_grace_exceeded" in victim.log()

    survivor = services.start("worker", QUEUE_TYPE=queue_type)
    wait_until(lambda: done(survivor) == 1, 20, "the survivor to finish the task")
    assert read_records(str(out)) == [(task_id, survivor.process.pid)], "done once, elsewhere"
    assert metric(survivor, "warren_worker_redeliveries_total") == 1
    assert ready_count(amqp_url, "task_queue") == 0
    time.sleep(1.0)  # nothing else turns up: the victim's half-run left no result behind
    assert len(read_records(str(out))) == 1


def test_a_task_within_the_grace_finishes_and_acks_on_a_quorum_queue(
        services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "records"
    worker = services.start("worker", SHUTDOWN_GRACE_S="10", QUEUE_TYPE="quorum")
    [task_id] = publish(amqp_url, [("record", {"path": str(out), "seconds": 2.0})], "quorum")
    wait_until(lambda: metric(worker, "warren_worker_tasks_in_flight") == 1, 10, "task in hand")
    code, took = stop(worker)
    assert code == 0 and took < 10
    assert read_records(str(out)) == [(task_id, worker.process.pid)]
    assert ready_count(amqp_url, "task_queue") == 0, "acked: nothing came back"
    assert "shutdown_grace_exceeded" not in worker.log()


def test_prefetched_tasks_go_back_at_once_and_each_runs_once(
        services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "records"
    victim = services.start("worker", PREFETCH="3", SHUTDOWN_GRACE_S="10")
    ids = publish(amqp_url, [("record", {"path": str(out), "seconds": 2.0})] * 3, "classic")
    wait_until(lambda: metric(victim, "warren_worker_tasks_in_flight") == 3, 10,
               "one task running, two waiting in the worker")
    # SIGTERM at once: anything slow between here and the signal (starting the other
    # worker on a loaded machine took seconds) lets the running task end and the next start.
    code, took = stop(victim)
    assert code == 0 and took < 2.0 + EXIT_MARGIN_S  # waited for the running task only
    assert ready_count(amqp_url, "task_queue") == 2, "the two unstarted tasks went back"
    survivor = services.start("worker")
    wait_until(lambda: done(survivor) == 2, 20, "the two handed-back tasks")
    records = read_records(str(out))
    assert sorted(key for key, _ in records) == sorted(ids), "each task done exactly once"
    assert [pid for _, pid in records].count(victim.process.pid) == 1
    assert ready_count(amqp_url, "task_queue") == 0


def test_an_idle_worker_stops_at_once(services: ServiceFactory) -> None:
    worker = services.start("worker", SHUTDOWN_GRACE_S="120")
    code, took = stop(worker)
    assert code == 0
    assert took < 3.0, "scaling down an idle worker should cost nothing"
