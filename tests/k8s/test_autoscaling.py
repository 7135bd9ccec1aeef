"""Autoscalers: they target a Deployment that exists, own its replica count alone, scale on
task_queue's whole backlog (ready + unacked) as Prometheus has it from RabbitMQ's
prometheus plugin (never the management API, whose counts RabbitMQ 4.x can switch off),
and carry the numbers the simulation chose (bench/autoscale_report.py, CHOSEN)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from bench.autoscale_report import CHOSEN
from tests.k8s.backlog import (
    READY,
    UNACKED,
    adapter_query,
    adapter_rule,
    expected_vhost,
    keda_trigger,
    selectors,
)
from tests.k8s.manifests import SCRAPE_JOBS, Obj, config, find, ident, of_kind

Build = Callable[[str], list[Obj]]
PROMETHEUS_PORT = 9090
MONITORING = "monitoring"  # where the NetworkPolicies let metrics readers in from


def _targets(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(autoscaler, its scaleTargetRef) for every ScaledObject and HPA."""
    kinds = ("ScaledObject", "HorizontalPodAutoscaler")
    return [(o, o["spec"]["scaleTargetRef"]) for o in objects if o["kind"] in kinds]


def test_autoscalers_target_a_deployment_that_exists(objects: list[Obj]) -> None:
    for scaler, ref in _targets(objects):
        kind = ref.get("kind", "Deployment")  # KEDA's default
        assert (kind, ref.get("apiVersion", "apps/v1")) == ("Deployment", "apps/v1")
        target = find(objects, kind, ref["name"])
        assert target is not None, f"{ident(scaler)} targets missing {kind}/{ref['name']}"
        assert "replicas" not in target["spec"], f"{ident(target)}: apply would reset the count"


def test_one_autoscaler_per_deployment(objects: list[Obj]) -> None:
    counts = Counter(ref["name"] for _, ref in _targets(objects))
    assert [name for name, n in counts.items() if n > 1] == []


# ---- the signal ---------------------------------------------------------------------------

def _check_backlog_query(query: str, objects: list[Obj], namespace: str) -> None:
    """Ready plus unacked of the one queue the workers consume, in this namespace's broker,
    as the rabbitmq-detailed scrape job has them; both summed over the broker's pods."""
    found = selectors(query)
    assert set(found) == {READY, UNACKED}, f"counts ready and unacked, nothing else: {query}"
    want = {"job": "rabbitmq-detailed", "namespace": namespace, "vhost": expected_vhost(),
            "queue": config(objects)["TASK_QUEUE"]}
    assert want["job"] in SCRAPE_JOBS
    for name, labels in found.items():
        assert labels == want, name
    compact = "".join(query.split())
    assert compact.startswith(f"sum({READY}{{") and f")+sum({UNACKED}{{" in compact, query
    for fallback in ("orvector(", "absent("):
        assert fallback not in compact, "a missing series must fail the query, not read as 0"


def test_keda_reads_ready_and_unacked_from_prometheus(objects: list[Obj]) -> None:
    for scaled in of_kind(objects, "ScaledObject"):
        trigger = keda_trigger(objects)
        assert trigger["type"] == "prometheus", "the management API reads nothing on 4.x"
        assert trigger.get("metricType", "AverageValue") == "AverageValue"
        _check_backlog_query(trigger["metadata"]["query"], objects,
                             scaled["metadata"]["namespace"])


def test_an_empty_answer_is_an_error_not_zero(objects: list[Obj]) -> None:
    """KEDA's default (ignoreNullValues true) reads a lost series as 0: scale to the minimum
    while work piles up. As an error, the fallback holds the count instead."""
    for scaled in of_kind(objects, "ScaledObject"):
        assert keda_trigger(objects)["metadata"]["ignoreNullValues"] == "false"
        fallback = scaled["spec"]["fallback"]
        assert fallback["behavior"] in ("currentReplicas", "currentReplicasIfHigher")
        assert fallback["replicas"] <= scaled["spec"]["minReplicaCount"], "hold, don't jump"


def test_keda_asks_the_prometheus_the_policies_admit(objects: list[Obj]) -> None:
    """prometheus-operated is the Service the Prometheus Operator makes beside every
    Prometheus; it must be in the namespace that may scrape the broker."""
    for _ in of_kind(objects, "ScaledObject"):
        url = urlsplit(keda_trigger(objects)["metadata"]["serverAddress"])
        assert (url.scheme, url.port) == ("http", PROMETHEUS_PORT)
        assert url.hostname == f"prometheus-operated.{MONITORING}.svc"
        scrapers = [rule["from"] for policy in of_kind(objects, "NetworkPolicy")
                    for rule in policy["spec"].get("ingress") or []
                    if any(p["port"] == 15692 for p in rule["ports"])]
        assert scrapers == [[{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": MONITORING}}}]]


def test_nothing_reads_the_management_api(objects: list[Obj]) -> None:
    for scaled in of_kind(objects, "ScaledObject"):
        assert [t["type"] for t in scaled["spec"]["triggers"]] == ["prometheus"]
    assert of_kind(objects, "TriggerAuthentication") == []


def test_a_ready_only_query_is_caught(build: Build) -> None:
    objects = copy.deepcopy(build("production"))
    trigger = keda_trigger(objects)
    trigger["metadata"]["query"] = trigger["metadata"]["query"].split("+")[0]
    with pytest.raises(AssertionError):
        test_keda_reads_ready_and_unacked_from_prometheus(objects)


def test_hpa_reads_the_same_backlog(build: Build) -> None:
    objects = build("base+hpa")
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    external = metric["external"]
    assert external["target"]["type"] == "AverageValue"
    selector = external["metric"]["selector"]["matchLabels"]
    assert selector == {"queue": config(objects)["TASK_QUEUE"]}
    rule = adapter_rule(external["metric"]["name"])
    query = adapter_query(rule, hpa["metadata"]["namespace"], selector)
    _check_backlog_query(query, objects, hpa["metadata"]["namespace"])
    assert READY in rule["seriesQuery"] and 'job="rabbitmq-detailed"' in rule["seriesQuery"]


# ---- the numbers: the simulated policy ----------------------------------------------------

def _behavior() -> dict[str, object]:
    return {"scaleUp": CHOSEN.up.as_manifest(), "scaleDown": CHOSEN.down.as_manifest()}


def test_the_scaled_object_is_the_simulated_policy(objects: list[Obj]) -> None:
    for scaled in of_kind(objects, "ScaledObject"):
        spec = scaled["spec"]
        meta = keda_trigger(objects)["metadata"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
            CHOSEN.min_replicas, CHOSEN.max_replicas)
        assert float(meta["threshold"]) == CHOSEN.target
        assert float(meta["activationThreshold"]) == CHOSEN.activation
        assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (
            CHOSEN.polling_s, CHOSEN.cooldown_s)
        assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == _behavior()


def test_the_hpa_is_the_simulated_policy(build: Build) -> None:
    (hpa,) = of_kind(build("base+hpa"), "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (
        max(1, CHOSEN.min_replicas), CHOSEN.max_replicas)
    assert float(spec["metrics"][0]["external"]["target"]["averageValue"]) == CHOSEN.target
    assert spec["behavior"] == _behavior()


def test_a_changed_window_is_caught(build: Build) -> None:
    objects = copy.deepcopy(build("production"))
    (scaled,) = of_kind(objects, "ScaledObject")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["stabilizationWindowSeconds"] = 300
    with pytest.raises(AssertionError):
        test_the_scaled_object_is_the_simulated_policy(objects)


def test_a_busy_worker_keeps_keda_active(objects: list[Obj]) -> None:
    """With minReplicaCount 0, KEDA stops the last worker once the query is at or below
    activationThreshold: one unacked message (a task in progress) must stay above it."""
    for _ in of_kind(objects, "ScaledObject"):
        assert float(keda_trigger(objects)["metadata"]["activationThreshold"]) < 1
