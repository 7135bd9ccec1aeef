"""End to end: `docker compose up --build --scale worker=4`, for real.

One stack for the module (see conftest.py); the tests run in file order and
the last one stops the workers. Every service runs but Grafana, which has no
image on this machine; its dashboard's queries run against the real Prometheus.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections import Counter
from typing import Any

import pika
import pika.exceptions as pex
import pytest

from tests.e2e.events import EventTap, count_done, duplicates
from tests.e2e.stack import REPO, SERVICES, WORKERS, Stack, wait_for

pytestmark = pytest.mark.timeout(600)

FAIR_TASKS = 400
HEAVY_S, LIGHT_S = 0.2, 0.02
# Each worker's busy seconds must lie within this fraction of the mean. Measured
# here with PREFETCH=1: worst deviation 3-10 % over repeated runs. With unlimited
# prefetch the broker deals the alternating heavy/light tasks round-robin, so two
# workers get every heavy task: deviations near +-80 %, far outside this bound.
FAIR_BOUND = 0.35
STOP_TASKS, STOP_TASK_S = 40, 1.0
GRACE_S = 35.0  # stop_grace_period in docker-compose.yml


def _ps(stack: Stack) -> list[dict[str, Any]]:
    out = stack.compose("ps", "--all", "--format", "json").stdout.strip()
    if out.startswith("["):  # older Compose v2 printed one array
        rows: list[dict[str, Any]] = json.loads(out)
        return rows
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_every_service_is_up_and_healthy(stack: Stack) -> None:
    rows = _ps(stack)
    by_service: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_service.setdefault(row["Service"], []).append(row)
    assert sorted(by_service) == sorted(SERVICES)
    assert len(by_service["worker"]) == WORKERS
    for row in rows:
        assert row["State"] == "running", row
        assert row["Health"] == "healthy", row
    # The well-known guest account must not work from the network.
    guest = f"amqp://guest:guest@127.0.0.1:{stack.env['AMQP_HOST_PORT']}/%2F"
    with pytest.raises(pex.AMQPConnectionError):
        pika.BlockingConnection(pika.URLParameters(guest)).close()
    # ...while the credentials given through the environment do.
    pika.BlockingConnection(pika.URLParameters(stack.amqp_url)).close()
    print(f"\n[e2e] up --build --wait to all healthy: {stack.up_seconds:.1f}s", file=sys.stderr)


def test_prometheus_scrapes_every_service_and_the_queue(stack: Stack) -> None:
    def workers_up() -> list[dict[str, Any]] | None:
        up = [t for t in stack.targets("worker") if t["health"] == "up"]
        return up if len(up) == WORKERS else None

    wait_for(f"{WORKERS} healthy worker targets in Prometheus", workers_up, timeout=45)
    for job in ("rabbitmq", "rabbitmq-detailed", "producer", "rpc_server"):
        wait_for(f"Prometheus target {job} up",
                 lambda job=job: any(t["health"] == "up" for t in stack.targets(job)), 45)
    for series in ("rabbitmq_detailed_queue_messages_ready",
                   "rabbitmq_detailed_queue_messages_unacked"):
        wait_for(f"{series} for task_queue",
                 lambda series=series: stack.prom_query(f'{series}{{queue="task_queue"}}'), 30)


def test_rpc_adds_through_the_stack(stack: Stack) -> None:
    out = stack.exec("rpc_server", "python", "-m", "rpc_server.client", "2", "3").stdout
    assert out.strip() == "5"


def _dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in sorted((REPO / "monitoring" / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        values = {}
        for var in dashboard.get("templating", {}).get("list", []):
            current = var.get("current", {}).get("value")
            if var.get("includeAll") and var.get("allValue"):
                values[var["name"]] = var["allValue"]
            elif isinstance(current, list) and current:
                values[var["name"]] = "|".join(current)
            elif isinstance(current, str):
                values[var["name"]] = current
        panels = list(dashboard.get("panels", []))
        while panels:
            panel = panels.pop()
            panels.extend(panel.get("panels", []))  # collapsed rows nest their panels
            for target in panel.get("targets", []):
                if target.get("expr"):
                    expr = _substitute(target["expr"], values)
                    queries.append((f"{path.name}: {panel.get('title')}", expr))
    return queries


def _substitute(expr: str, values: dict[str, str]) -> str:
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "30s", expr)
    for name, value in values.items():
        expr = re.sub(r"\$\{" + name + r"(:[a-z]+)?\}|\$" + name + r"\b", value, expr)
    assert "$" not in expr, f"unresolved variable in {expr!r}"
    return expr


def test_dashboard_queries_return_data(stack: Stack) -> None:
    """Grafana cannot run here: every panel's query runs against the real Prometheus."""
    queries = _dashboard_queries()
    if not queries:
        pytest.fail("no dashboard under monitoring/grafana/dashboards has a PromQL query")
    deadline = time.monotonic() + 60  # rates need two scrapes of each target
    pending = queries
    while pending and time.monotonic() < deadline:
        pending = [(title, expr) for title, expr in pending if not stack.prom_query(expr)]
        if pending:
            time.sleep(2)
    assert not pending, "dashboard queries without data:\n" + "\n".join(
        f"  {title}: {expr}" for title, expr in pending)


def _drain(stack: Stack, timeout: float = 60) -> None:
    wait_for("task_queue to drain", lambda: stack.queue_counts("task_queue") == (0, 0),
             timeout=timeout, interval=0.5)


def _worker_hosts(stack: Stack) -> set[str]:
    return {stack.inspect(cid)["Config"]["Hostname"] for cid in stack.container_ids("worker")}


def test_400_tasks_are_all_done_with_a_fair_share_per_worker(stack: Stack) -> None:
    stack.compose("stop", "producer")  # the demo load would blur the measurement
    _drain(stack)
    with EventTap(stack.amqp_url) as tap:
        started = time.monotonic()
        out = stack.compose("run", "--rm", "--no-deps", "-T", "producer",
                            "python", "-m", "producer", "--count", str(FAIR_TASKS),
                            "--heavy-light", str(HEAVY_S), str(LIGHT_S), timeout=180).stdout
        assert f"confirmed {FAIR_TASKS}," in out, out
        events = tap.collect(lambda evs: count_done(evs) >= FAIR_TASKS, timeout=120)
        events = tap.settle(quiet_s=1.0)
        elapsed = time.monotonic() - started

    done = [e for e in events if e.event == "done"]
    assert not [e for e in events if e.event != "done"], "tasks that failed or were parked"
    assert not duplicates(events), "tasks done twice"
    if len({e.task_id for e in done}) != FAIR_TASKS:  # tell lost events from lost tasks
        counted = [stack.worker_metric(i, 'warren_worker_tasks_total{outcome="done"}')
                   for i in range(1, WORKERS + 1)]
        pytest.fail(f"{len({e.task_id for e in done})} of {FAIR_TASKS} done events; the "
                    f"workers count {counted} done in all; task_queue (ready, unacked) "
                    f"{stack.queue_counts('task_queue')}; events per worker "
                    f"{Counter(e.worker for e in done)}")
    assert stack.queue_counts("task_queue") == (0, 0)

    busy: dict[str, float] = {}
    tasks: dict[str, int] = {}
    for e in done:
        busy[e.worker] = busy.get(e.worker, 0.0) + e.duration_s
        tasks[e.worker] = tasks.get(e.worker, 0) + 1
    # WORKER_ID defaults to <hostname>-<pid>; a container's hostname is its short id.
    hosts = {worker.rsplit("-", 1)[0] for worker in busy}
    assert hosts == _worker_hosts(stack), "events from other than the 4 worker containers"
    assert len(busy) == WORKERS, f"not every worker took tasks: {tasks}"
    mean = statistics.fmean(busy.values())
    deviation = {w: (b - mean) / mean for w, b in busy.items()}
    report = ", ".join(f"{w}: {busy[w]:.2f}s/{tasks[w]} tasks ({deviation[w]:+.0%})"
                       for w in sorted(busy))
    print(f"\n[e2e] {FAIR_TASKS} tasks in {elapsed:.1f}s; busy per worker: {report}",
          file=sys.stderr)
    worst = max(abs(d) for d in deviation.values())
    assert worst <= FAIR_BOUND, (
        f"unfair dispatch: a worker is {worst:.0%} off the mean busy time "
        f"(bound {FAIR_BOUND:.0%}): {report}")


def test_stop_is_graceful_and_redelivers_nothing(stack: Stack) -> None:
    """`docker compose stop worker` mid-batch: tasks in hand finish, every worker exits 0."""
    _drain(stack)
    with EventTap(stack.amqp_url) as tap:
        stack.compose("run", "--rm", "--no-deps", "-T", "producer",
                      "python", "-m", "producer", "--count", str(STOP_TASKS),
                      "--args", json.dumps({"seconds": STOP_TASK_S}), timeout=120)
        # Every worker has finished one task and is in the middle of its next one.
        tap.collect(lambda evs: count_done(evs) >= WORKERS, timeout=30)
        started = time.monotonic()
        stack.compose("stop", "worker", timeout=GRACE_S * 3)
        stop_s = time.monotonic() - started
        events = tap.settle()
        done_before_restart = {e.task_id for e in events if e.event == "done"}

        containers = stack.container_ids("worker", all_states=True)
        assert len(containers) == WORKERS
        for cid in containers:
            state = stack.inspect(cid)["State"]
            assert state["Status"] == "exited", state
            assert state["ExitCode"] == 0, f"worker {cid[:12]} exited with {state['ExitCode']}"
            assert not state["OOMKilled"]
        assert stop_s < GRACE_S, f"stop took {stop_s:.1f}s: workers were killed, not stopped"
        logs = stack.compose("logs", "--no-color", "worker").stdout
        assert "shutdown_grace_exceeded" not in logs
        assert logs.count('"worker_stopped"') >= WORKERS

        ready, unacked = stack.queue_counts("task_queue")
        assert unacked == 0
        assert len(done_before_restart) + ready == STOP_TASKS, (
            f"{len(done_before_restart)} done + {ready} waiting != {STOP_TASKS}")
        assert ready > 0, "the batch ended before the stop: nothing was in flight"

        stack.compose("up", "-d", "--no-build", "--no-recreate", "--wait",
                      "--scale", f"worker={WORKERS}", "worker", timeout=180)
        events = tap.collect(lambda evs: len({e.task_id for e in evs if e.event == "done"})
                             >= STOP_TASKS, timeout=60)
        events = tap.settle(quiet_s=1.0)

    assert not duplicates(events), "a task was done twice"
    assert len({e.task_id for e in events if e.event == "done"}) == STOP_TASKS
    assert stack.queue_counts("task_queue") == (0, 0)
    for index in range(1, WORKERS + 1):
        assert stack.worker_metric(index, "warren_worker_redeliveries_total") == 0
    print(f"\n[e2e] compose stop worker: {stop_s:.1f}s, {len(done_before_restart)} done "
          f"before, {STOP_TASKS - len(done_before_restart)} after the restart", file=sys.stderr)

