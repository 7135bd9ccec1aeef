"""What each overlay promises: dev is small and fixed, production is replicated,
autoscaled, monitored and bigger."""

from __future__ import annotations

from collections.abc import Callable

from tests.k8s.manifests import Obj, config, find, of_kind, quantity

Build = Callable[[str], list[Obj]]


def _worker(objects: list[Obj]) -> Obj:
    worker = find(objects, "Deployment", "worker")
    assert worker is not None
    return worker


def _limits(objects: list[Obj], name: str) -> dict[str, float]:
    deployment = find(objects, "Deployment", name)
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {k: quantity(v) for k, v in container["resources"]["limits"].items()}


def test_dev(build: Build) -> None:
    objects = build("dev")
    assert _worker(objects)["spec"]["replicas"] == 2
    assert of_kind(objects, "ScaledObject") == of_kind(objects, "HorizontalPodAutoscaler") == []
    assert config(objects)["QUEUE_TYPE"] == "classic"


def test_production(build: Build) -> None:
    objects = build("production")
    assert config(objects)["QUEUE_TYPE"] == "quorum"
    assert len(of_kind(objects, "ScaledObject")) == 1
    assert of_kind(objects, "HorizontalPodAutoscaler") == []
    assert len(of_kind(objects, "PodMonitor")) == 5
    assert "replicas" not in _worker(objects)["spec"], "the autoscaler owns the count"


def test_production_has_higher_limits_than_dev(build: Build) -> None:
    for name in ("worker", "producer", "rpc-server"):
        dev, prod = _limits(build("dev"), name), _limits(build("production"), name)
        assert all(prod[r] > dev[r] for r in ("cpu", "memory")), name


def test_workers_have_a_disruption_budget_that_never_blocks_a_drain(build: Build) -> None:
    for variant in ("dev", "production"):
        objects = build(variant)
        budget = find(objects, "PodDisruptionBudget", "worker")
        assert budget is not None, variant
        assert budget["spec"]["selector"] == _worker(objects)["spec"]["selector"]
        assert "minAvailable" not in budget["spec"], "would block drains at 1 replica"
        assert budget["spec"]["maxUnavailable"] >= 1
