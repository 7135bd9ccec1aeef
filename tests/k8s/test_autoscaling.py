"""Autoscalers: they target a Deployment that exists, own its replica count alone,
and scale on task_queue's whole backlog (ready + unacked)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.k8s.manifests import Obj, config, find, ident, of_kind

Build = Callable[[str], list[Obj]]


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


def test_scaled_object_bounds(objects: list[Obj]) -> None:
    for scaled in of_kind(objects, "ScaledObject"):
        spec = scaled["spec"]
        # Documented choice: no scale-to-zero (docs/KUBERNETES.md).
        assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 60


def test_keda_counts_unacked_messages_too(objects: list[Obj]) -> None:
    for scaled in of_kind(objects, "ScaledObject"):
        (trigger,) = scaled["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "rabbitmq"
        assert meta["protocol"] == "http", "over amqp KEDA sees ready messages only"
        assert meta["mode"] == "QueueLength"
        assert meta["queueName"] == config(objects)["TASK_QUEUE"]
        assert float(meta["value"]) > 0 and float(meta["activationValue"]) >= 0
        assert "host" not in meta, "the host carries credentials: TriggerAuthentication only"


def test_keda_reads_the_management_url_from_the_secret(objects: list[Obj]) -> None:
    for scaled in of_kind(objects, "ScaledObject"):
        (trigger,) = scaled["spec"]["triggers"]
        auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert auth is not None, ident(scaled)
        (ref,) = auth["spec"]["secretTargetRef"]
        assert ref["parameter"] == "host"
        assert (ref["name"], ref["key"]) == ("warren-credentials", "RABBITMQ_MANAGEMENT_URL")


def test_hpa_reads_the_same_backlog(objects: list[Obj]) -> None:
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "External"
        external = metric["external"]
        assert external["metric"]["name"] == "rabbitmq_detailed_queue_messages"
        selector = external["metric"]["selector"]["matchLabels"]
        assert selector == {"queue": config(objects)["TASK_QUEUE"]}
        assert external["target"]["type"] == "AverageValue"


def test_both_autoscaler_components_scale_alike(build: Build) -> None:
    (scaled,) = of_kind(build("production"), "ScaledObject")
    (hpa,) = of_kind(build("base+hpa"), "HorizontalPodAutoscaler")
    keda_spec, hpa_spec = scaled["spec"], hpa["spec"]
    assert (keda_spec["minReplicaCount"], keda_spec["maxReplicaCount"]) == (
        hpa_spec["minReplicas"], hpa_spec["maxReplicas"])
    assert float(keda_spec["triggers"][0]["metadata"]["value"]) == float(
        hpa_spec["metrics"][0]["external"]["target"]["averageValue"])
    assert keda_spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa_spec[
        "behavior"]
