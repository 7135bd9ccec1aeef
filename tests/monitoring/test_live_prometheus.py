"""The dashboard and the alerts against a real Prometheus scraping a real stack.

A private RabbitMQ node, four `python -m worker` processes (PREFETCH=1), an RPC server
with a client calling it, and a producer publishing faster than the workers can work,
so a backlog builds. A private Prometheus (1 s scrapes, the compose job names, static
targets, the real rule files) scrapes them all. Once it has a full rate window of the
four workers busy, one instant is fixed and every panel query and every alert
expression is evaluated at it through /api/v1/query.

The stack runs twice: on Debian's RabbitMQ (3.10 on bookworm, classic queues) and on
RabbitMQ 4.x in Docker (quorum queues, no management metrics collection). Each time
Prometheus 2.x and 3.x scrape it side by side and every test runs against both.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.monitoring.containers import build_info
from tests.monitoring.live import RATE_INTERVAL, RunningStack, Stack, StackSpec, running_stack
from tests.monitoring.prom_api import PromApi
from tests.monitoring.prom_tools import PromRelease
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

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

WORKERS = 4
FAIR = StackSpec(
    workers=WORKERS, prefetch=1, rpc=True,
    # 120 tasks/s of alternating 0.1 s / 0.02 s sleeps: 4 workers manage about 66/s.
    producer_args=("--count", "0", "--rate", "120", "--heavy-light", "0.1", "0.02"),
    conditions=('sum(rabbitmq_detailed_queue_messages_ready{queue="task_queue"}) > 100',
                f"sum(rate(warren_rpc_requests_total[{RATE_INTERVAL}])) > 0"),
)


@dataclass(frozen=True)
class BrokerCase:
    fixture: str
    queue_type: str
    major: str | None = None  # the RabbitMQ major version the node must report
    conditions: tuple[str, ...] = ()  # more PromQL the stack must satisfy


BROKERS = {
    # Debian's package: 3.10 on bookworm (4.0 on trixie), classic queues as the seeds use
    "rabbitmq-debian": BrokerCase("monitoring_node", "classic"),
    # what users pull, with the queue type RabbitMQ's current tutorials use; 4.x labels
    # each queue with its type, so the stack proves it runs quorum queues
    "rabbitmq-4x": BrokerCase("monitoring_node_4x", "quorum", "4", (
        'rabbitmq_detailed_queue_info{queue="task_queue",queue_type="rabbit_quorum_queue"}',)),
}


@pytest.fixture(scope="module", params=sorted(BROKERS))
def running(request: pytest.FixtureRequest, prometheus_releases: list[PromRelease],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    case = BROKERS[request.param]
    node = request.getfixturevalue(case.fixture)
    version = build_info(f"http://127.0.0.1:{node.prometheus_port}").get("rabbitmq_version", "")
    assert case.major is None or version.startswith(f"{case.major}."), (
        f"{case.fixture} runs RabbitMQ {version!r}")
    spec = replace(FAIR, queue_type=case.queue_type, conditions=FAIR.conditions + case.conditions)
    with running_stack(prometheus_releases, node, tmp_path_factory.mktemp(request.param),
                       spec) as stack:
        yield stack


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


def test_the_server_is_the_release_it_claims(stack: Stack) -> None:
    buildinfo = stack.api.get("/api/v1/status/buildinfo")["data"]
    assert buildinfo["version"] == stack.release.version, buildinfo


def test_every_target_is_scraped(stack: Stack) -> None:
    """Prometheus 3 fails a scrape whose Content-Type it does not know (2.x guessed): the
    broker's and the services' answers must be accepted as they are."""
    targets = stack.api.get("/api/v1/targets", state="active")["data"]["activeTargets"]
    jobs = {target["labels"]["job"] for target in targets}
    assert jobs == set(JOB_NAMES), jobs
    bad = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets
           if t["health"] != "up" or t["lastError"]]
    assert not bad, bad


def broker_series_used(api: PromApi) -> set[str]:
    """rabbitmq_* names in the dashboard's queries and variables and in the loaded rules."""
    dashboard = load_dashboard()
    texts = [q.expr for q in panel_queries(dashboard)]
    texts += [v["query"] for v in dashboard["templating"]["list"]]
    texts += [rule["query"] for rule in loaded_alerting_rules(api)]
    return {name for text in texts for name in re.findall(r"\brabbitmq_\w+", text)}


def test_the_broker_exports_every_series_used(stack: Stack) -> None:
    """Names and labels the dashboard and the rules rely on, as this broker exports them."""
    used = broker_series_used(stack.api)
    assert {"rabbitmq_detailed_queue_messages_ready",
            "rabbitmq_global_messages_acknowledged_total"} <= used, used
    for name in sorted(used):
        series = [s["metric"] for s in stack.api.vector(name, stack.at)]
        assert series, f"the broker exports no {name}"
        if name.startswith("rabbitmq_detailed_queue_"):
            unlabelled = [labels for labels in series if not {"vhost", "queue"} <= labels.keys()]
            assert not unlabelled, f"{name} without vhost/queue: {unlabelled}"


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
    # A backlogged worker is busy nearly all the time: ~0.95 on a quiet machine; a loaded
    # one delays every hand-off (0.63-0.79 seen with a load average of 30 on 2 cores).
    assert all(value > 0.5 for value in busy.values()), busy
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
