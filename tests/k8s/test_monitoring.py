"""PodMonitors scrape what the dashboards and alert rules read, under the job names
monitoring/prometheus/prometheus.yml and docker-compose.yml use."""

from __future__ import annotations

from pathlib import Path

from tests.k8s.manifests import (
    REPO,
    SCRAPE_JOBS,
    Obj,
    find,
    ident,
    load_yaml_stream,
    of_kind,
    pods_selected,
    port_number,
)

PROMETHEUS_YML = REPO / "monitoring" / "prometheus" / "prometheus.yml"
DETAILED_FAMILIES = {"queue_coarse_metrics", "queue_consumer_count"}
OPERATOR_METRICS_PORT = "prometheus"  # the port name the Cluster Operator gives 15692


def _job(endpoint: Obj) -> str | None:
    for relabel in endpoint.get("relabelings") or []:
        if relabel.get("targetLabel") == "job" and relabel.get("action", "replace") in (
                "replace", "Replace"):
            return str(relabel["replacement"])
    return None


def _endpoints(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    monitors = of_kind(objects, "PodMonitor")
    return [(m, e) for m in monitors for e in m["spec"]["podMetricsEndpoints"]]


def test_job_names_are_the_shared_ones(objects: list[Obj]) -> None:
    endpoints = _endpoints(objects)
    if not endpoints:
        assert not any(o["kind"] == "ScaledObject" for o in objects), "production scrapes"
        return
    jobs = [_job(e) for _, e in endpoints]
    assert sorted(j for j in jobs if j) == sorted(SCRAPE_JOBS), "one endpoint per job"


def test_every_endpoint_port_exists_on_the_pods_it_selects(objects: list[Obj]) -> None:
    for monitor, endpoint in _endpoints(objects):
        pods = pods_selected(objects, monitor["spec"]["selector"])
        if not pods:  # the RabbitmqCluster's pods are made by the operator
            assert find(objects, "RabbitmqCluster", "rabbitmq") is not None, ident(monitor)
            assert endpoint["port"] == OPERATOR_METRICS_PORT, ident(monitor)
            continue
        for owner, template in pods:
            port = endpoint["port"]
            numbers = {port_number(c, port) for c in template["spec"]["containers"]}
            assert numbers - {None}, f"{ident(monitor)}: no port {port} on {ident(owner)}"


def test_detailed_endpoint_asks_for_per_queue_families(objects: list[Obj]) -> None:
    for _, endpoint in _endpoints(objects):
        if _job(endpoint) == "rabbitmq-detailed":
            assert endpoint["path"] == "/metrics/detailed"
            assert set(endpoint["params"]["family"]) == DETAILED_FAMILIES


def _compose_style_jobs(path: Path) -> dict[str, dict[str, object]]:
    (doc,) = load_yaml_stream(path.read_text())
    return {c["job_name"]: c for c in doc["scrape_configs"]}


def test_prometheus_config_in_monitoring_uses_the_same_jobs(objects: list[Obj]) -> None:
    # The file ships in the repo: its absence is a broken checkout, not a reason to skip.
    assert PROMETHEUS_YML.is_file(), f"{PROMETHEUS_YML.relative_to(REPO)} is missing"
    theirs = _compose_style_jobs(PROMETHEUS_YML)
    assert set(theirs) >= SCRAPE_JOBS
    for _, endpoint in _endpoints(objects):
        job = _job(endpoint)
        assert job is not None
        assert endpoint.get("path", "/metrics") == theirs[job].get("metrics_path", "/metrics")
        their_params = theirs[job].get("params") or {}
        assert isinstance(their_params, dict)
        assert {k: set(v) for k, v in (endpoint.get("params") or {}).items()} == {
            k: set(v) for k, v in their_params.items()}, job
