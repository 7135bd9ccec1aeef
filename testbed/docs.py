"""`python -m testbed.docs`: regenerate the metric tables in the docs from the code.

The names, types, labels and help texts of warren's own metrics live once, in
`worker/metrics.py`, `producer/metrics.py` and `rpc_server/metrics.py`. README.md and
docs/MONITORING.md carry a table generated from them between marker comments;
tests/unit/test_docs.py fails when a table is stale or a doc names a metric that does not
exist. `--check` exits 1 instead of writing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType

from prometheus_client.metrics import MetricWrapperBase

from producer import metrics as producer_metrics
from rpc_server import metrics as rpc_metrics
from warren.tally import TallyCounter, TallyHistogram
from worker import metrics as worker_metrics

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", REPO / "docs" / "MONITORING.md")
BEGIN, END = "<!-- metrics:begin (python -m testbed.docs) -->", "<!-- metrics:end -->"
SERVICES: tuple[tuple[str, ModuleType], ...] = (
    ("worker", worker_metrics), ("producer", producer_metrics), ("rpc_server", rpc_metrics))


Defined = MetricWrapperBase | TallyCounter | TallyHistogram


def described(metric: Defined) -> tuple[str, str, tuple[str, ...], str]:
    """(exposed name, type, label names, help text) of a prometheus_client metric or a tally."""
    if isinstance(metric, TallyCounter):
        return metric.name, "counter", (metric.label,) if metric.label else (), \
            metric.documentation
    if isinstance(metric, TallyHistogram):
        return metric.name, "histogram", (), metric.documentation
    name = f"{metric._name}_total" if metric._type == "counter" else metric._name
    return name, metric._type, tuple(metric._labelnames), metric._documentation


def metrics() -> list[tuple[str, Defined]]:
    """(service, metric) for every metric the services define, in module order."""
    found: list[tuple[str, Defined]] = []
    for service, module in SERVICES:
        seen = set()
        for value in vars(module).values():
            if isinstance(value, Defined) and id(value) not in seen:
                seen.add(id(value))
                found.append((service, value))
    return found


def table() -> str:
    rows = ["| service | metric | type | labels | meaning |", "| --- | --- | --- | --- | --- |"]
    for service, metric in metrics():
        name, kind, labelnames, documentation = described(metric)
        labels = ", ".join(f"`{label}`" for label in labelnames)
        rows.append(f"| {service} | `{name}` | {kind} | {labels} | {documentation} |")
    return "\n".join(rows)


def render(text: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _m: f"{BEGIN}\n{table()}\n{END}", text)


def main(argv: list[str]) -> int:
    stale = [path for path in DOCS if render(path.read_text()) != path.read_text()]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(REPO)}: metric table is stale (python -m testbed.docs)")
        return 1 if stale else 0
    for path in stale:
        path.write_text(render(path.read_text()))
        print(f"rewrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
