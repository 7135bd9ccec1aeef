"""Build monitoring/grafana/dashboards/warren.json, the "warren — fair dispatch" dashboard.

The JSON is generated so that every PromQL expression sits in one readable place; the
committed file is what Grafana loads. After editing this script run

    python monitoring/grafana/build_dashboard.py

and commit both. tests/monitoring checks the JSON is up to date with this script, that
its structure holds, and runs every query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "warren-prometheus"}
UID = "warren-fair-dispatch"
TITLE = "warren — fair dispatch"
OUT = Path(__file__).resolve().parent / "dashboards" / "warren.json"

Panel = dict[str, Any]
Target = tuple[str, str]  # (PromQL, legend)

# Selectors shared by the panels. $queue and $instance are the template variables.
W = 'job="worker", instance=~"$instance"'
Q = 'queue=~"$queue"'
RI = "$__rate_interval"


def per_worker(metric: str, extra: str = "") -> str:
    """Rate of a worker counter, one series per worker process."""
    sel = f"{W}, {extra}" if extra else W
    return f"sum by (instance) (rate({metric}{{{sel}}}[{RI}]))"


def jain(per_instance: str) -> str:
    """Jain's fairness index (Σx)² / (n·Σx²) of a per-instance vector: 1 = equal shares."""
    x = per_instance
    return f"sum({x}) ^ 2 / (count({x}) * sum(({x}) ^ 2))"


def quantile(q: float, bucket_metric: str, selector: str = "") -> str:
    series = f"{bucket_metric}{{{selector}}}" if selector else bucket_metric
    return f"histogram_quantile({q}, sum by (le) (rate({series}[{RI}])))"


BUSY = per_worker("warren_worker_busy_seconds_total")
DONE = per_worker("warren_worker_tasks_total", 'outcome="done"')


class Layout:
    """Hands out panel ids and grid positions, left to right, top to bottom."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.newline()
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_height = max(self.row_height, h)
        return pos

    def newline(self) -> None:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def targets(items: list[Target]) -> list[dict[str, Any]]:
    return [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
         "legendFormat": legend, "range": True}
        for i, (expr, legend) in enumerate(items)
    ]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute",
            "steps": [{"value": value, "color": color} for value, color in steps]}


GREEN = thresholds((None, "green"))


def row(layout: Layout, title: str) -> Panel:
    layout.newline()
    panel = {"id": layout.take_id(), "type": "row", "title": title, "collapsed": False,
             "gridPos": layout.place(24, 1), "panels": []}
    layout.newline()
    return panel


def stat(layout: Layout, title: str, description: str, expr: str, unit: str = "short",
         steps: dict[str, Any] = GREEN, decimals: int | None = None) -> Panel:
    defaults: dict[str, Any] = {"unit": unit, "thresholds": steps, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "id": layout.take_id(), "type": "stat", "title": title, "description": description,
        "datasource": DATASOURCE, "gridPos": layout.place(4, 4),
        "targets": targets([(expr, title)]),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                    "textMode": "value", "orientation": "auto"},
    }


def timeseries(layout: Layout, title: str, description: str, items: list[Target],
               unit: str = "short", w: int = 12, max_value: float | None = None,
               overrides: list[dict[str, Any]] | None = None) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit, "min": 0, "thresholds": GREEN, "color": {"mode": "palette-classic"},
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                   "showPoints": "never", "spanNulls": False},
    }
    if max_value is not None:
        defaults["max"] = max_value
    return {
        "id": layout.take_id(), "type": "timeseries", "title": title,
        "description": description, "datasource": DATASOURCE, "gridPos": layout.place(w, 8),
        "targets": targets(items),
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["mean", "lastNotNull", "max"], "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def dashed(name_regex: str) -> dict[str, Any]:
    """Draw the series whose name matches as a dashed line (a limit, not a measurement)."""
    return {"matcher": {"id": "byRegexp", "options": name_regex},
            "properties": [{"id": "custom.lineStyle",
                            "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "custom.fillOpacity", "value": 0}]}


def overview(layout: Layout) -> Iterator[Panel]:
    yield row(layout, "Overview")
    yield stat(layout, "Workers up", "Worker processes Prometheus scrapes successfully.",
               f'count(up{{{W}}} == 1)', steps=thresholds((None, "red"), (1, "green")))
    yield stat(layout, "Consumers on $queue",
               "Consumers the broker counts on the selected queue(s).",
               f"sum(rabbitmq_detailed_queue_consumers{{{Q}}})",
               steps=thresholds((None, "red"), (1, "green")))
    yield stat(layout, "Ready", "Messages waiting in the selected queue(s).",
               f"sum(rabbitmq_detailed_queue_messages_ready{{{Q}}})")
    yield stat(layout, "Unacked", "Messages delivered to workers and not yet acknowledged.",
               f"sum(rabbitmq_detailed_queue_messages_unacked{{{Q}}})")
    yield stat(layout, "Parked", "Tasks in the parking queue(s) <queue>.dead: failed every try.",
               'sum(rabbitmq_detailed_queue_messages{queue=~"($queue)[.]dead"})',
               steps=thresholds((None, "green"), (1, "red")))
    yield stat(layout, "Fairness (busy)",
               "Jain's index of the workers' busy ratios: 1 = every worker equally busy, "
               "1/n = one worker does everything.", jain(BUSY), unit="none", decimals=2,
               steps=thresholds((None, "red"), (0.8, "orange"), (0.95, "green")))


def queue_row(layout: Layout) -> Iterator[Panel]:
    yield row(layout, "Queue")
    yield timeseries(layout, "Queue depth: ready vs unacked",
                     "Ready = waiting for a worker; unacked = in a worker's hands. With fair "
                     "dispatch (prefetch 1) unacked stays near the number of workers.", [
                         (f"sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{Q}}})",
                          "{{queue}} ready"),
                         (f"sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{Q}}})",
                          "{{queue}} unacked"),
                     ])
    yield timeseries(layout, "Publish vs ack rate",
                     "Messages in (routed by the broker, confirmed to the producer) against "
                     "messages out (acknowledged, tasks done). In > out for long = backlog.", [
                         (f"sum(rate(rabbitmq_global_messages_routed_total[{RI}]))",
                          "routed (broker)"),
                         (f"sum(rate(warren_producer_confirmed_total[{RI}]))",
                          "confirmed (producer)"),
                         (f"sum(rate(rabbitmq_global_messages_acknowledged_total[{RI}]))",
                          "acknowledged (broker)"),
                         (f'sum(rate(warren_worker_tasks_total{{outcome="done"}}[{RI}]))',
                          "done (workers)"),
                     ], unit="reqps")


def fairness_row(layout: Layout) -> Iterator[Panel]:
    yield row(layout, "Workers: fair dispatch")
    yield timeseries(layout, "Per-worker throughput (tasks done/s)",
                     "Tasks each worker finished per second. Equal lines are NOT the goal "
                     "when tasks differ in length: compare the busy ratio.",
                     [(DONE, "{{instance}}")], unit="reqps")
    yield timeseries(layout, "Per-worker busy ratio",
                     "Share of time each worker spends running a task. Fair dispatch: all "
                     "near 100 % while there is a backlog.",
                     [(BUSY, "{{instance}}")], unit="percentunit", max_value=1)
    yield timeseries(layout, "Per-worker in flight vs prefetch",
                     "Deliveries each worker holds (solid) against its prefetch limit "
                     "(dashed; 0 = unlimited). Prefetch 0 lets one worker hoard the queue.", [
                         (f"sum by (instance) (warren_worker_tasks_in_flight{{{W}}})",
                          "{{instance}} in flight"),
                         (f"max by (instance) (warren_worker_prefetch{{{W}}})",
                          "{{instance}} prefetch"),
                     ], overrides=[dashed(".* prefetch$")])
    yield timeseries(layout, "Fairness across workers (Jain's index)",
                     "(Σx)² / (n·Σx²) over workers: 1 = equal, 1/n = one worker does "
                     "everything. Busy-ratio fairness is what fair dispatch promises.", [
                         (jain(BUSY), "busy ratio"),
                         (jain(DONE), "tasks done"),
                     ], unit="none", max_value=1)


def worker_health_row(layout: Layout) -> Iterator[Panel]:
    yield row(layout, "Workers: health")
    yield timeseries(layout, "Workers and consumers",
                     "Worker processes up (Prometheus) against consumers the broker sees "
                     "on the queue; a gap means a worker is up but not consuming.", [
                         (f'count(up{{{W}}} == 1)', "workers up"),
                         (f"sum(warren_worker_connected{{{W}}})", "workers connected"),
                         (f"sum by (queue) (rabbitmq_detailed_queue_consumers{{{Q}}})",
                          "{{queue}} consumers"),
                     ], w=8)
    yield timeseries(layout, "Redeliveries",
                     "Deliveries flagged redelivered: a worker died or a channel closed "
                     "with tasks in hand, and the broker gave them to someone else.", [
                         (per_worker("warren_worker_redeliveries_total"), "{{instance}}"),
                         (f"sum(rate(rabbitmq_global_messages_redelivered_total[{RI}]))",
                          "broker total"),
                     ], unit="reqps", w=8)
    yield timeseries(layout, "Task outcomes",
                     "Settled tasks by outcome: done, retried (failed, will be tried "
                     "again), parked (failed for good), rejected (malformed).", [
                         (f"sum by (outcome) (rate(warren_worker_tasks_total{{{W}}}[{RI}]))",
                          "{{outcome}}"),
                     ], unit="reqps", w=8)
    yield timeseries(layout, "Retry and parking queues",
                     "Messages waiting out their retry delay (<queue>.retry) and parked "
                     "for good (<queue>.dead).", [
                         ('sum by (queue) (rabbitmq_detailed_queue_messages'
                          '{queue=~"($queue)[.](retry|dead)"})', "{{queue}}"),
                     ], w=12)
    yield timeseries(layout, "Task duration p50 / p99",
                     "How long tasks take to run, across the selected workers.", [
                         (quantile(0.5, "warren_worker_task_duration_seconds_bucket", W), "p50"),
                         (quantile(0.99, "warren_worker_task_duration_seconds_bucket", W),
                          "p99"),
                     ], unit="s", w=12)


def producer_row(layout: Layout) -> Iterator[Panel]:
    yield row(layout, "Producer")
    yield timeseries(layout, "Producer publishes and confirms",
                     "basic.publish calls and the broker's answers. Nacked messages are "
                     "re-sent; returned ones were unroutable.", [
                         (f"sum(rate(warren_producer_published_total[{RI}]))", "published"),
                         (f"sum(rate(warren_producer_confirmed_total[{RI}]))", "confirmed"),
                         (f"sum(rate(warren_producer_nacked_total[{RI}]))", "nacked"),
                         (f"sum(rate(warren_producer_returned_total[{RI}]))", "returned"),
                     ], unit="reqps")
    yield timeseries(layout, "Publisher confirm latency p50 / p99",
                     "From basic.publish to the broker's confirm: the broker's write path.", [
                         (quantile(0.5, "warren_producer_confirm_latency_seconds_bucket"),
                          "p50"),
                         (quantile(0.99, "warren_producer_confirm_latency_seconds_bucket"),
                          "p99"),
                     ], unit="s")


def rpc_row(layout: Layout) -> Iterator[Panel]:
    yield row(layout, "RPC")
    yield timeseries(layout, "RPC requests by outcome",
                     "Requests the RPC server handled: ok, error (answered with an error), "
                     "dropped (could not be answered).", [
                         (f"sum by (outcome) (rate(warren_rpc_requests_total[{RI}]))",
                          "{{outcome}}"),
                     ], unit="reqps", w=8)
    yield timeseries(layout, "RPC latency p50 / p99",
                     "Time the server takes per request (the client adds the round trip).", [
                         (quantile(0.5, "warren_rpc_request_duration_seconds_bucket"), "p50"),
                         (quantile(0.99, "warren_rpc_request_duration_seconds_bucket"), "p99"),
                     ], unit="s", w=8)
    yield timeseries(layout, "RPC queue",
                     "Requests waiting on rpc_queue and the servers consuming it.", [
                         ('sum(rabbitmq_detailed_queue_messages_ready{queue="rpc_queue"})',
                          "ready"),
                         ('sum(rabbitmq_detailed_queue_consumers{queue="rpc_queue"})',
                          "consumers"),
                     ], w=8)


def variables() -> list[dict[str, Any]]:
    return [
        _query_variable("queue", "Queue", "label_values(rabbitmq_detailed_queue_messages_ready, "
                        "queue)", all_value=".+", current="task_queue"),
        _query_variable("instance", "Worker", 'label_values(up{job="worker"}, instance)',
                        all_value=".*", current=None),
    ]


def _query_variable(name: str, label: str, query: str, all_value: str,
                    current: str | None) -> dict[str, Any]:
    selected = ({"selected": True, "text": [current], "value": [current]} if current
                else {"selected": True, "text": ["All"], "value": ["$__all"]})
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": query, "definition": query, "refresh": 2, "regex": "", "sort": 1,
        "multi": True, "includeAll": True, "allValue": all_value, "current": selected,
        "options": [], "hide": 0,
    }


def dashboard() -> dict[str, Any]:
    layout = Layout()
    panels: list[Panel] = []
    for section in (overview, queue_row, fairness_row, worker_health_row, producer_row,
                    rpc_row):
        panels.extend(section(layout))
    return {
        "uid": UID, "title": TITLE, "description": "RabbitMQ work queue and every warren "
        "worker: is the work shared fairly?", "tags": ["warren", "rabbitmq"],
        "timezone": "browser", "editable": True, "graphTooltip": 1, "schemaVersion": 38,
        "version": 1, "refresh": "10s", "time": {"from": "now-30m", "to": "now"},
        "fiscalYearStartMonth": 0, "liveNow": False, "links": [],
        "annotations": {"list": []}, "templating": {"list": variables()}, "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
