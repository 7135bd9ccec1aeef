"""NetworkPolicies: ingress closed by default; AMQP only from warren's pods; metrics only
from the monitoring namespace; the management API from nowhere. The addon for the
monitoring namespace lets KEDA, and only KEDA, query Prometheus."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.k8s.backlog import keda_trigger
from tests.k8s.manifests import K8S, Obj, ident, kustomize, labels, of_kind, pod_templates, selects
from tests.k8s.test_schemas import validation_errors

AMQP, MANAGEMENT = 5672, 15672
METRICS = {9100, 15692}
WARREN_PODS = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "warren"}}}


def _namespace(name: str) -> dict[str, object]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _rules(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for policy in of_kind(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress") or []:
            yield policy, rule


def _ports(rule: Obj) -> set[int]:
    ports = set()
    for port in rule["ports"]:
        first = port["port"]
        ports |= set(range(first, port.get("endPort", first) + 1))
    return ports


def test_ingress_is_denied_by_default(objects: list[Obj]) -> None:
    defaults = [p for p in of_kind(objects, "NetworkPolicy")
                if p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"]]
    assert len(defaults) == 1 and not defaults[0]["spec"].get("ingress")


def test_every_rule_names_its_sources_and_ports(objects: list[Obj]) -> None:
    for policy, rule in _rules(objects):
        assert rule.get("from"), f"{ident(policy)}: a rule without `from` admits everyone"
        assert rule.get("ports"), f"{ident(policy)}: a rule without `ports` opens all ports"
        assert all(isinstance(p["port"], int) for p in rule["ports"]), ident(policy)
        assert not any("ipBlock" in peer for peer in rule["from"]), ident(policy)


def test_amqp_only_from_warren_pods(objects: list[Obj]) -> None:
    opened = [(p, r) for p, r in _rules(objects) if AMQP in _ports(r)]
    assert opened, "nothing may reach the broker"
    for policy, rule in opened:
        assert rule["from"] == [WARREN_PODS], ident(policy)


def test_metrics_only_from_the_monitoring_namespace(objects: list[Obj]) -> None:
    opened = [(p, r) for p, r in _rules(objects) if METRICS & _ports(r)]
    assert {port for _, r in opened for port in _ports(r)} >= METRICS
    for policy, rule in opened:
        assert rule["from"] == [_namespace("monitoring")], ident(policy)


def test_nothing_opens_the_management_api(objects: list[Obj]) -> None:
    """KEDA reads Prometheus; people use `kubectl port-forward` (not subject to policies)."""
    assert [ident(p) for p, r in _rules(objects) if MANAGEMENT in _ports(r)] == []


def test_the_metrics_policy_covers_every_warren_pod(objects: list[Obj]) -> None:
    policies = [p for p, r in _rules(objects) if 9100 in _ports(r)]
    for owner, template in pod_templates(objects):
        pod_labels = template["metadata"]["labels"]
        if any(p.get("name") == "metrics" for c in template["spec"]["containers"]
               for p in c.get("ports") or []):
            assert any(selects(p["spec"]["podSelector"], pod_labels) for p in policies), ident(
                owner)


# ---- k8s/addons: objects for other namespaces, applied by their owners -----------------

ADDONS = sorted(p for p in (K8S / "addons").iterdir() if (p / "kustomization.yaml").is_file())
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}  # what the Prometheus Operator sets


@pytest.fixture(scope="module")
def addon_builds(kubectl: str) -> dict[str, list[Obj]]:
    return {path.name: kustomize(kubectl, path) for path in ADDONS}


@pytest.mark.parametrize("path", ADDONS, ids=lambda p: p.name)
def test_addons_build_validate_and_stay_out_of_warren(path: Path,
                                                      addon_builds: dict[str, list[Obj]]) -> None:
    objects = addon_builds[path.name]
    assert objects
    for obj in objects:
        assert validation_errors(obj) == [], ident(obj)
        assert obj["metadata"]["namespace"] != "warren", "addons are for other namespaces"
        assert labels(obj).get("app.kubernetes.io/part-of") == "warren", ident(obj)


def test_keda_may_query_prometheus_and_nothing_more(addon_builds: dict[str, list[Obj]],
                                                    build: Callable[[str], list[Obj]]) -> None:
    (policy,) = addon_builds["prometheus-from-keda"]
    server = urlsplit(keda_trigger(build("production"))["metadata"]["serverAddress"])
    # prometheus-operated.<namespace>.svc: the policy must live where Prometheus runs.
    assert policy["metadata"]["namespace"] == str(server.hostname).split(".")[1]
    assert policy["spec"]["podSelector"] == {"matchLabels": PROMETHEUS_POD}
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [_namespace("keda")]
    assert _ports(rule) == {server.port}
