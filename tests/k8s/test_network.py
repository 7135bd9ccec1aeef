"""NetworkPolicies: ingress closed by default; AMQP only from warren's pods; metrics only
from the monitoring namespace; the management API only from KEDA."""

from __future__ import annotations

from collections.abc import Iterator

from tests.k8s.manifests import Obj, ident, of_kind, pod_templates, selects

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


def test_management_api_only_from_keda(objects: list[Obj]) -> None:
    opened = [(p, r) for p, r in _rules(objects) if MANAGEMENT in _ports(r)]
    assert bool(opened) == bool(of_kind(objects, "ScaledObject"))
    for policy, rule in opened:
        assert rule["from"] == [_namespace("keda")], ident(policy)


def test_the_metrics_policy_covers_every_warren_pod(objects: list[Obj]) -> None:
    policies = [p for p, r in _rules(objects) if 9100 in _ports(r)]
    for owner, template in pod_templates(objects):
        pod_labels = template["metadata"]["labels"]
        if any(p.get("name") == "metrics" for c in template["spec"]["containers"]
               for p in c.get("ports") or []):
            assert any(selects(p["spec"]["podSelector"], pod_labels) for p in policies), ident(
                owner)
