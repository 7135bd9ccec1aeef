"""The Grafana dashboard and provisioning hold together, without Grafana.

The dashboard is built with Grafana's Foundation SDK (test_dashboard_sdk checks it
against the SDK's models). Structure: unique panel ids, one datasource uid shared with
provisioning, a query in every panel, the template variables, job and metric names
that exist. Every query also goes through promtool's PromQL parser here (2.x and 3.x);
test_live_prometheus runs them against real data.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.monitoring.prom_tools import MAJORS, need_release
from tests.monitoring.support import (
    BUILD_SCRIPT,
    DASHBOARD_JSON,
    DATASOURCES_DIR,
    JOB_NAMES,
    PROMETHEUS_YML,
    PROVIDERS_DIR,
    all_panels,
    job_names,
    load_dashboard,
    panel_queries,
    rule_files,
    substitute,
    yaml_scalar,
)
from tests.support.needs import need

TITLE = "warren — fair dispatch"
UID = "warren-fair-dispatch"  # bookmarks and links to /d/<uid> rely on it
VARIABLES = {"queue", "instance"}
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
TEST_VALUES = {**GRAFANA_BUILTINS, "queue": "task_queue", "instance": ".*"}
REQUIRED_PANELS = (
    "Queue depth: ready vs unacked", "Publish vs ack rate", "Per-worker throughput",
    "Per-worker in flight vs prefetch", "Per-worker busy ratio", "Fairness",
    "Workers up", "Redeliveries", "Parked", "RPC requests", "RPC latency p50 / p99",
)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def datasource_uid() -> str:
    uids = [uid for path in sorted(DATASOURCES_DIR.glob("*.yml"))
            for uid in yaml_scalar(path.read_text(), "uid")]
    assert len(uids) == 1, f"expected one provisioned datasource uid, found {uids}"
    return uids[0]


def test_json_is_what_the_build_script_renders() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILD_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD_JSON.read_text(encoding="utf-8") == module.render(), (
        "warren.json is stale: run `.venv/bin/python monitoring/grafana/build_dashboard.py`")


def test_title_uid_and_required_panels(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == TITLE
    assert dashboard["uid"] == UID
    titles = [panel["title"] for panel in all_panels(dashboard)]
    missing = [want for want in REQUIRED_PANELS if not any(want in t for t in titles)]
    assert not missing, f"panels missing: {missing}"


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"panel {panel['id']} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]


def test_every_panel_has_a_query(dashboard: dict[str, Any]) -> None:
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        exprs = [target.get("expr", "").strip() for target in panel.get("targets", [])]
        assert exprs and all(exprs), f"panel {panel['id']} {panel['title']!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"panel {panel['id']}: duplicate refIds"


def test_datasource_uid_matches_provisioning(dashboard: dict[str, Any]) -> None:
    uid = datasource_uid()
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, f"panel {panel['id']}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, f"panel {panel['id']} {target['refId']}"
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, f"variable {variable['name']}"


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) >= VARIABLES
    assert "rabbitmq_detailed_queue_messages_ready" in variables["queue"]["query"]
    assert 'job="worker"' in variables["instance"]["query"]
    used: set[str] = set()
    for panel in all_panels(dashboard):
        texts = [panel["title"]] + [t["expr"] for t in panel.get("targets", [])]
        for text in texts:
            used |= {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", text)}
    unknown = used - set(variables) - set(GRAFANA_BUILTINS)
    assert not unknown, f"queries use undefined variables: {unknown}"
    assert used >= VARIABLES, "every variable should filter something"


def test_provisioning_points_at_the_dashboards() -> None:
    providers = "\n".join(p.read_text() for p in sorted(PROVIDERS_DIR.glob("*.yml")))
    assert yaml_scalar(providers, "path") == ["/var/lib/grafana/dashboards"]
    assert yaml_scalar(providers, "type") == ["file"]
    datasources = "\n".join(p.read_text() for p in sorted(DATASOURCES_DIR.glob("*.yml")))
    assert yaml_scalar(datasources, "type") == ["prometheus"]
    assert yaml_scalar(datasources, "url") == ["http://prometheus:9090"]


def test_job_names_are_the_shared_ones(dashboard: dict[str, Any]) -> None:
    compose_jobs = set(job_names(PROMETHEUS_YML.read_text()))
    assert set(JOB_NAMES) <= compose_jobs, f"prometheus.yml lacks {set(JOB_NAMES) - compose_jobs}"
    texts = [q.expr for q in panel_queries(dashboard)]
    texts += [v["query"] for v in dashboard["templating"]["list"]]
    texts += [path.read_text() for path in rule_files()]
    for text in texts:
        for matcher in re.findall(r'job=~?"([^"]+)"', text):
            names = matcher.split("|")
            assert set(names) <= set(JOB_NAMES), f"unknown job {matcher!r} in {text[:80]!r}"


@pytest.mark.parametrize("major", MAJORS, ids=lambda major: f"promtool{major}")
def test_every_query_parses(tmp_path: Path, dashboard: dict[str, Any], major: int) -> None:
    """Each query (variables substituted) as a recording rule through `promtool check rules`."""
    promtool = need_release(major).promtool
    rules = [{"record": f"panel_{q.panel_id}_{q.ref_id}", "expr": substitute(q.expr, TEST_VALUES)}
             for q in panel_queries(dashboard)]
    path = tmp_path / "panels.yml"
    path.write_text(json.dumps({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def referenced_warren_series(dashboard: dict[str, Any]) -> set[str]:
    texts = [q.expr for q in panel_queries(dashboard)] + [p.read_text() for p in rule_files()]
    return {name for text in texts for name in re.findall(r"\bwarren_\w+", text)}


def exported_series(package: str) -> set[str]:
    """Sample names the package's metrics export, found by importing its modules."""
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",), "summary": ("", "_count", "_sum")}
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


@pytest.mark.parametrize("package", ["worker", "producer", "rpc_server"])
def test_warren_series_exist_in_the_code(dashboard: dict[str, Any], package: str) -> None:
    prefix = {"worker": "warren_worker_", "producer": "warren_producer_",
              "rpc_server": "warren_rpc_"}[package]
    wanted = {name for name in referenced_warren_series(dashboard) if name.startswith(prefix)}
    assert wanted, f"the dashboard and rules use no {prefix}* series"
    exported = exported_series(package)
    have_any = any(name.startswith(prefix) for name in exported)
    need(have_any, f"{package} exports no {prefix}* metrics yet")
    missing = wanted - exported
    assert not missing, f"dashboard/rules use series {package} does not export: {missing}"
