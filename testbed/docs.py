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
from worker import metrics as worker_metrics

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", REPO / "docs" / "MONITORING.md")
BEGIN, END = "<!-- metrics:begin (python -m testbed.docs) -->", "<!-- metrics:end -->"
SERVICES: tuple[tuple[str, ModuleType], ...] = (
    ("worker", worker_metrics), ("producer", producer_metrics), ("rpc_server", rpc_metrics))


def exposed_name(metric: MetricWrapperBase) -> str:
    name = metric._name
    return f"{name}_total" if metric._type == "counter" else name


def metrics() -> list[tuple[str, MetricWrapperBase]]:
    """(service, metric) for every metric the services define, in module order."""
    found = []
    for service, module in SERVICES:
        seen = set()
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase) and id(value) not in seen:
                seen.add(id(value))
                found.append((service, value))
    return found


def table() -> str:
    rows = ["| service | metric | type | labels | meaning |", "| --- | --- | --- | --- | --- |"]
    for service, metric in metrics():
        labels = ", ".join(f"`{label}`" for label in metric._labelnames) or ""
        rows.append(f"| {service} | `{exposed_name(metric)}` | {metric._type} | {labels} | "
                    f"{metric._documentation} |")
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
