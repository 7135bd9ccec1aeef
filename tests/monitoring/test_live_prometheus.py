"""The dashboard and the alerts against a real Prometheus scraping a real stack, no Docker.

A private RabbitMQ node, four `python -m worker` processes (PREFETCH=1), an RPC server
with a client calling it, and a producer publishing faster than the workers can work,
so a backlog builds. A private Prometheus (1 s scrapes, the compose job names, static
targets, the real rule files) scrapes them all. Once it has a full rate window of the
four workers busy, one instant is fixed and every panel query and every alert
expression is evaluated at it through /api/v1/query.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.broker import LocalBroker
from tests.monitoring.live import RATE_INTERVAL, Stack, StackSpec, running_stack
from tests.monitoring.prom_api import PromApi
from tests.monitoring.support import (
    JOB_NAMES,
    PROMETHEUS_YML,
    alert_names,
    detailed_families,
    job_names,
    load_dashboard,
    panel_queries,
    substitute,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(150)]

WORKERS = 4
FAIR = StackSpec(
    workers=WORKERS, prefetch=1, rpc=True,
    # 120 tasks/s of alternating 0.1 s / 0.02 s sleeps: 4 workers manage about 66/s.
    producer_args=("--count", "0", "--rate", "120", "--heavy-light", "0.1", "0.02"),
    conditions=('sum(rabbitmq_detailed_queue_messages_ready{queue="task_queue"}) > 100',
                f"sum(rate(warren_rpc_requests_total[{RATE_INTERVAL}])) > 0"),
)


@pytest.fixture(scope="module")
def stack(prometheus_binary: str, monitoring_node: LocalBroker,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(prometheus_binary, monitoring_node, tmp_path_factory.mktemp("fair"),
                       FAIR) as running:
        yield running


def test_config_uses_the_compose_job_names() -> None:
    compose = set(job_names(PROMETHEUS_YML.read_text())) - {"prometheus"}
    assert compose == set(JOB_NAMES)
    assert detailed_families(PROMETHEUS_YML.read_text()) == [
        "queue_coarse_metrics", "queue_consumer_count"]


def test_every_panel_query_evaluates(stack: Stack) -> None:
    failures = []
    for query in panel_queries(load_dashboard()):
        answer = stack.api.query(substitute(query.expr, stack.variables), stack.at)
        if answer.get("status") != "success" or answer.get("warnings"):
            failures.append(f"panel {query.panel_id} {query.title!r} {query.ref_id}: {answer}")
    assert not failures, "\n".join(failures)


def test_queue_depth_panel_shows_the_backlog(stack: Stack) -> None:
    ready = stack.panel("Queue depth", "A")
    unacked = stack.panel("Queue depth", "B")
    assert ready.get("task_queue", 0) > 100, ready
    # prefetch 1: each worker holds at most one delivery
    assert 1 <= unacked.get("task_queue", 0) <= WORKERS, unacked


def test_per_worker_panels_show_four_workers(stack: Stack) -> None:
    expected = stack.worker_targets()
    throughput = stack.panel("Per-worker throughput")
    busy = stack.panel("Per-worker busy ratio")
    in_flight = stack.panel("Per-worker in flight", "A")
    prefetch = stack.panel("Per-worker in flight", "B")
    for name, series in [("throughput", throughput), ("busy", busy),
                         ("in flight", in_flight), ("prefetch", prefetch)]:
        assert set(series) == expected, f"{name}: {series}"
    assert all(value > 0 for value in throughput.values()), throughput
    assert all(value > 0.7 for value in busy.values()), busy
    assert all(0 <= value <= 1 for value in in_flight.values()), in_flight
    assert set(prefetch.values()) == {1.0}, prefetch


def test_fairness_is_near_one_under_fair_dispatch(stack: Stack) -> None:
    jain_busy = stack.panel("Fairness across workers", "A")["total"]
    jain_done = stack.panel("Fairness across workers", "B")["total"]
    assert 0.9 <= jain_busy <= 1.0 + 1e-9, jain_busy
    assert 1 / WORKERS < jain_done <= 1.0 + 1e-9, jain_done
    assert stack.panel("Fairness (busy)")["total"] == pytest.approx(jain_busy)


def test_overview_counts(stack: Stack) -> None:
    assert stack.panel("Workers up")["total"] == WORKERS
    assert stack.panel("Consumers on $queue")["total"] == WORKERS
    assert stack.panel("Parked")["total"] == 0


def test_producer_and_rpc_panels_have_data(stack: Stack) -> None:
    assert stack.panel("Producer publishes", "B")["total"] > 0  # confirmed
    assert stack.panel("Publish vs ack rate", "C")["total"] > 0  # broker acks
    assert stack.panel("RPC requests by outcome")["ok"] > 0
    assert stack.panel("RPC latency", "B")["total"] > 0  # p99


def loaded_alerting_rules(api: PromApi) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        groups = api.get("/api/v1/rules", type="alert")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "0001").startswith("20") for rule in rules):
            return rules
        assert time.monotonic() < deadline, f"rules not evaluated: {rules}"
        time.sleep(0.5)


def test_every_alert_expression_evaluates(stack: Stack) -> None:
    rules = loaded_alerting_rules(stack.api)
    assert sorted(rule["name"] for rule in rules) == sorted(alert_names())
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        answer = stack.api.query(rule["query"], stack.at)
        assert answer.get("status") == "success", f"{rule['name']}: {answer}"


def active_alerts(api: PromApi) -> dict[str, str]:
    """{alertname or alertname/queue: state} of the pending and firing alerts."""
    alerts = api.get("/api/v1/alerts")["data"]["alerts"]
    return {"/".join(filter(None, (a["labels"]["alertname"], a["labels"].get("queue")))):
            a["state"] for a in alerts}


def test_backlog_alert_goes_pending_and_nothing_is_down(stack: Stack) -> None:
    deadline = time.monotonic() + 10
    states = active_alerts(stack.api)
    backlog = "WarrenTaskBacklogGrowing/task_queue"
    while states.get(backlog) != "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        states = active_alerts(stack.api)
    assert states.get(backlog) == "pending", states
    quiet = ("WarrenWorkerDown", "WarrenWorkerDisconnected", "WarrenBrokerDown",
             "WarrenQueueNoConsumers", "WarrenParkedMessages", "WarrenRpcErrorRate",
             "WarrenRpcLatencyP99High", "WarrenUnackedStuck", "WarrenProducerReturned")
    loud = [name for name in states if name.split("/")[0] in quiet]
    assert not loud, states
