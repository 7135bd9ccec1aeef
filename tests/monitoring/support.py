"""Shared by the monitoring tests: where the files are, and reading them without PyYAML.

The YAML files under monitoring/ are ours, so the few facts the tests need from them
(job names, alert names, the datasource uid) are read with anchored regular expressions;
promtool validates the files as a whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
GRAFANA_DIR = MONITORING / "grafana"
DASHBOARD_JSON = GRAFANA_DIR / "dashboards" / "warren.json"
DATASOURCES_DIR = GRAFANA_DIR / "provisioning" / "datasources"
PROVIDERS_DIR = GRAFANA_DIR / "provisioning" / "dashboards"
BUILD_SCRIPT = GRAFANA_DIR / "build_dashboard.py"

# The job names compose, k8s and the dashboard share (DESIGN.md, issue 5).
JOB_NAMES = ("rabbitmq", "rabbitmq-detailed", "worker", "producer", "rpc_server")


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int
    title: str
    ref_id: str
    expr: str


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def alert_names() -> list[str]:
    names: list[str] = []
    for path in rule_files():
        names += re.findall(r"^\s*- alert:\s*(\S+)\s*$", path.read_text(), re.MULTILINE)
    return names


def job_names(config_text: str) -> list[str]:
    return re.findall(r"^\s*- job_name:\s*\"?([\w.-]+)\"?\s*$", config_text, re.MULTILINE)


def detailed_families(config_text: str) -> list[str]:
    """The `family:` params of the rabbitmq-detailed job, as written in prometheus.yml."""
    match = re.search(r"^\s*family:\s*\[([^\]]*)\]\s*$", config_text, re.MULTILINE)
    return [part.strip() for part in match.group(1).split(",")] if match else []


def yaml_scalar(text: str, key: str) -> list[str]:
    """Every `key: value` in a small YAML file, quotes stripped."""
    pattern = rf"^\s*(?:- )?{re.escape(key)}:\s*[\"']?([^\"'#\s]+)[\"']?\s*(?:#.*)?$"
    return re.findall(pattern, text, re.MULTILINE)


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those nested in collapsed rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel["id"], panel["title"], target["refId"], target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana's $name / ${name} the way Grafana would for one selected value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
