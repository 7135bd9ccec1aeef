"""Build monitoring/grafana/dashboards/warren.json, the "warren — fair dispatch" dashboard.

The dashboard is code on Grafana's own Foundation SDK (`grafana-foundation-sdk`, the
release generated for Grafana 11.6, the version compose runs): its typed builders and
enums make the panels, its models and encoder write the JSON Grafana loads. Every
PromQL expression sits in this file. After editing it run

    .venv/bin/python monitoring/grafana/build_dashboard.py

(the SDK comes with the project's `monitoring` extra, part of `dev`) and commit both.
tests/monitoring checks the JSON is up to date with this script, that it survives a
round trip through the SDK's typed models, that its structure holds, and runs every
query against a real Prometheus 2.x and 3.x.

Broker series are aggregated to (vhost, queue) or below: RabbitMQ 3.10 and 4.x export
the same per-queue names and labels, and anything else a 4.x node or a scrape config
adds (instance per cluster node, rabbitmq_endpoint, ...) is summed away.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="warren-prometheus")
UID = "warren-fair-dispatch"
TITLE = "warren — fair dispatch"
OUT = Path(__file__).resolve().parent / "dashboards" / "warren.json"

Target = tuple[str, str]  # (PromQL, legend)
Item = dash.Row | stat.Panel | timeseries.Panel

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
    # `by (le)` only: Prometheus 3 stores le="1.0" where 2.x kept "1", and nothing here
    # matches a bucket by its value.
    series = f"{bucket_metric}{{{selector}}}" if selector else bucket_metric
    return f"histogram_quantile({q}, sum by (le) (rate({series}[{RI}])))"


BUSY = per_worker("warren_worker_busy_seconds_total")
DONE = per_worker("warren_worker_tasks_total", 'outcome="done"')


class PanelIds:
    """Grafana wants a unique id per panel; the SDK leaves numbering to the caller."""

    def __init__(self) -> None:
        self.last = 0

    def take(self) -> int:
        self.last += 1
        return self.last


def queries(items: list[Target]) -> list[Builder[Dataquery]]:
    return [
        prometheus.Dataquery().ref_id(chr(ord("A") + i)).datasource(DATASOURCE).expr(expr)
        .legend_format(legend).range()
        for i, (expr, legend) in enumerate(items)
    ]


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Colour steps; the first one's value is None (Grafana's -Infinity base)."""
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps])


GREEN = ((None, "green"),)


def row(ids: PanelIds, title: str) -> dash.Row:
    return dash.Row(title).id(ids.take())


def stat_panel(ids: PanelIds, title: str, description: str, expr: str, unit: str = "short",
               steps: tuple[tuple[float | None, str], ...] = GREEN,
               decimals: int | None = None) -> stat.Panel:
    panel = (
        stat.Panel().id(ids.take()).title(title).description(description)
        .datasource(DATASOURCE).span(4).height(4).targets(queries([(expr, title)]))
        .unit(unit).thresholds(thresholds(*steps))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("")
                        .values(False))
        .color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.AREA)
        .justify_mode(common.BigValueJustifyMode.AUTO).text_mode(common.BigValueTextMode.VALUE)
        .orientation(common.VizOrientation.AUTO)
    )
    return panel.decimals(decimals) if decimals is not None else panel


def timeseries_panel(ids: PanelIds, title: str, description: str, items: list[Target],
                     unit: str = "short", w: int = 12,
                     max_value: float | None = None) -> timeseries.Panel:
    panel = (
        timeseries.Panel().id(ids.take()).title(title).description(description)
        .datasource(DATASOURCE).span(w).height(8).targets(queries(items))
        .unit(unit).min(0).thresholds(thresholds(*GREEN))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(common.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER).span_nulls(False)
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM).calcs(["mean", "lastNotNull", "max"])
                .show_legend(True))
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                 .sort(common.SortOrder.DESCENDING))
    )
    return panel.max(max_value) if max_value is not None else panel


def dashed(panel: timeseries.Panel, name_regex: str) -> timeseries.Panel:
    """Draw the series whose name matches as a dashed line (a limit, not a measurement)."""
    return panel.override_by_regexp(name_regex, [
        model.DynamicConfigValue(id_val="custom.lineStyle",
                                 value=common.LineStyle(fill="dash", dash=[10, 10])),
        model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    ])


def overview(ids: PanelIds) -> Iterator[Item]:
    yield row(ids, "Overview")
    yield stat_panel(ids, "Workers up", "Worker processes Prometheus scrapes successfully.",
                     f"count(up{{{W}}} == 1)", steps=((None, "red"), (1, "green")))
    yield stat_panel(ids, "Consumers on $queue",
                     "Consumers the broker counts on the selected queue(s).",
                     f"sum(rabbitmq_detailed_queue_consumers{{{Q}}})",
                     steps=((None, "red"), (1, "green")))
    yield stat_panel(ids, "Ready", "Messages waiting in the selected queue(s).",
                     f"sum(rabbitmq_detailed_queue_messages_ready{{{Q}}})")
    yield stat_panel(ids, "Unacked", "Messages delivered to workers and not yet acknowledged.",
                     f"sum(rabbitmq_detailed_queue_messages_unacked{{{Q}}})")
    yield stat_panel(ids, "Parked",
                     "Tasks in the parking queue(s) <queue>.dead: failed every try.",
                     'sum(rabbitmq_detailed_queue_messages{queue=~"($queue)[.]dead"})',
                     steps=((None, "green"), (1, "red")))
    yield stat_panel(ids, "Fairness (busy)",
                     "Jain's index of the workers' busy ratios: 1 = every worker equally busy, "
                     "1/n = one worker does everything.", jain(BUSY), unit="none", decimals=2,
                     steps=((None, "red"), (0.8, "orange"), (0.95, "green")))


def queue_row(ids: PanelIds) -> Iterator[Item]:
    yield row(ids, "Queue")
    yield timeseries_panel(
        ids, "Queue depth: ready vs unacked",
        "Ready = waiting for a worker; unacked = in a worker's hands. With fair "
        "dispatch (prefetch 1) unacked stays near the number of workers.", [
            (f"sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{Q}}})",
             "{{queue}} ready"),
            (f"sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{Q}}})",
             "{{queue}} unacked"),
        ])
    yield timeseries_panel(
        ids, "Publish vs ack rate",
        "Messages in (routed by the broker, confirmed to the producer) against "
        "messages out (acknowledged, tasks done). In > out for long = backlog.", [
            (f"sum(rate(rabbitmq_global_messages_routed_total[{RI}]))", "routed (broker)"),
            (f"sum(rate(warren_producer_confirmed_total[{RI}]))", "confirmed (producer)"),
            (f"sum(rate(rabbitmq_global_messages_acknowledged_total[{RI}]))",
             "acknowledged (broker)"),
            (f'sum(rate(warren_worker_tasks_total{{outcome="done"}}[{RI}]))', "done (workers)"),
        ], unit="reqps")


def fairness_row(ids: PanelIds) -> Iterator[Item]:
    yield row(ids, "Workers: fair dispatch")
    yield timeseries_panel(
        ids, "Per-worker throughput (tasks done/s)",
        "Tasks each worker finished per second. Equal lines are NOT the goal "
        "when tasks differ in length: compare the busy ratio.",
        [(DONE, "{{instance}}")], unit="reqps")
    yield timeseries_panel(
        ids, "Per-worker busy ratio",
        "Share of time each worker spends running a task. Fair dispatch: all "
        "near 100 % while there is a backlog.",
        [(BUSY, "{{instance}}")], unit="percentunit", max_value=1)
    yield dashed(timeseries_panel(
        ids, "Per-worker in flight vs prefetch",
        "Deliveries each worker holds (solid) against its prefetch limit "
        "(dashed; 0 = unlimited). Prefetch 0 lets one worker hoard the queue.", [
            (f"sum by (instance) (warren_worker_tasks_in_flight{{{W}}})",
             "{{instance}} in flight"),
            (f"max by (instance) (warren_worker_prefetch{{{W}}})", "{{instance}} prefetch"),
        ]), ".* prefetch$")
    yield timeseries_panel(
        ids, "Fairness across workers (Jain's index)",
        "(Σx)² / (n·Σx²) over workers: 1 = equal, 1/n = one worker does "
        "everything. Busy-ratio fairness is what fair dispatch promises.", [
            (jain(BUSY), "busy ratio"),
            (jain(DONE), "tasks done"),
        ], unit="none", max_value=1)


def worker_health_row(ids: PanelIds) -> Iterator[Item]:
    yield row(ids, "Workers: health")
    yield timeseries_panel(
        ids, "Workers and consumers",
        "Worker processes up (Prometheus) against consumers the broker sees "
        "on the queue; a gap means a worker is up but not consuming.", [
            (f"count(up{{{W}}} == 1)", "workers up"),
            (f"sum(warren_worker_connected{{{W}}})", "workers connected"),
            (f"sum by (queue) (rabbitmq_detailed_queue_consumers{{{Q}}})", "{{queue}} consumers"),
        ], w=8)
    yield timeseries_panel(
        ids, "Redeliveries",
        "Deliveries flagged redelivered: a worker died or a channel closed "
        "with tasks in hand, and the broker gave them to someone else.", [
            (per_worker("warren_worker_redeliveries_total"), "{{instance}}"),
            (f"sum(rate(rabbitmq_global_messages_redelivered_total[{RI}]))", "broker total"),
        ], unit="reqps", w=8)
    yield timeseries_panel(
        ids, "Task outcomes",
        "Settled tasks by outcome: done, retried (failed, will be tried "
        "again), parked (failed for good), rejected (malformed).", [
            (f"sum by (outcome) (rate(warren_worker_tasks_total{{{W}}}[{RI}]))", "{{outcome}}"),
        ], unit="reqps", w=8)
    yield timeseries_panel(
        ids, "Retry and parking queues",
        "Messages waiting out their retry delay (<queue>.retry) and parked "
        "for good (<queue>.dead).", [
            ('sum by (queue) (rabbitmq_detailed_queue_messages{queue=~"($queue)[.](retry|dead)"})',
             "{{queue}}"),
        ], w=12)
    yield timeseries_panel(
        ids, "Task duration p50 / p99", "How long tasks take to run, across the selected workers.",
        [
            (quantile(0.5, "warren_worker_task_duration_seconds_bucket", W), "p50"),
            (quantile(0.99, "warren_worker_task_duration_seconds_bucket", W), "p99"),
        ], unit="s", w=12)
    yield timeseries_panel(
        ids, "Oldest task in flight",
        "How long the task each worker has been running the longest has run so far: a line "
        "that keeps climbing is a stuck task (alert WarrenTaskStuck; its id and type are in "
        "the worker's task_slow log line).", [
            (f"max by (instance) (warren_worker_oldest_task_age_seconds{{{W}}})", "{{instance}}"),
        ], unit="s", w=24)


def producer_row(ids: PanelIds) -> Iterator[Item]:
    yield row(ids, "Producer")
    yield timeseries_panel(
        ids, "Producer publishes and confirms",
        "basic.publish calls and the broker's answers. Nacked messages are "
        "re-sent; returned ones were unroutable.", [
            (f"sum(rate(warren_producer_published_total[{RI}]))", "published"),
            (f"sum(rate(warren_producer_confirmed_total[{RI}]))", "confirmed"),
            (f"sum(rate(warren_producer_nacked_total[{RI}]))", "nacked"),
            (f"sum(rate(warren_producer_returned_total[{RI}]))", "returned"),
        ], unit="reqps")
    yield timeseries_panel(
        ids, "Publisher confirm latency p50 / p99",
        "From basic.publish to the broker's confirm: the broker's write path.", [
            (quantile(0.5, "warren_producer_confirm_latency_seconds_bucket"), "p50"),
            (quantile(0.99, "warren_producer_confirm_latency_seconds_bucket"), "p99"),
        ], unit="s")


def rpc_row(ids: PanelIds) -> Iterator[Item]:
    yield row(ids, "RPC")
    yield timeseries_panel(
        ids, "RPC requests by outcome",
        "Requests the RPC server handled: ok, error (answered with an error), "
        "dropped (could not be answered).", [
            (f"sum by (outcome) (rate(warren_rpc_requests_total[{RI}]))", "{{outcome}}"),
        ], unit="reqps", w=8)
    yield timeseries_panel(
        ids, "RPC latency p50 / p99",
        "Time the server takes per request (the client adds the round trip).", [
            (quantile(0.5, "warren_rpc_request_duration_seconds_bucket"), "p50"),
            (quantile(0.99, "warren_rpc_request_duration_seconds_bucket"), "p99"),
        ], unit="s", w=8)
    yield timeseries_panel(
        ids, "RPC queue", "Requests waiting on rpc_queue and the servers consuming it.", [
            ('sum(rabbitmq_detailed_queue_messages_ready{queue="rpc_queue"})', "ready"),
            ('sum(rabbitmq_detailed_queue_consumers{queue="rpc_queue"})', "consumers"),
        ], w=8)


def query_variable(name: str, label: str, query: str, all_value: str,
                   current: str | None) -> dash.QueryVariable:
    selected = (model.VariableOption(selected=True, text=[current], value=[current]) if current
                else model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    return (
        dash.QueryVariable(name).label(label).datasource(DATASOURCE).query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
        .all_value(all_value).current(selected).options([]).regex("")
        .hide(model.VariableHide.DONT_HIDE)
    )


def variables() -> list[dash.QueryVariable]:
    return [
        query_variable("queue", "Queue",
                       "label_values(rabbitmq_detailed_queue_messages_ready, queue)",
                       all_value=".+", current="task_queue"),
        query_variable("instance", "Worker", 'label_values(up{job="worker"}, instance)',
                       all_value=".*", current=None),
    ]


def build() -> dash.Dashboard:
    """The dashboard builder; rows and panels are laid out by the SDK, left to right."""
    ids = PanelIds()
    builder = (
        dash.Dashboard(TITLE).uid(UID)
        .description("RabbitMQ work queue and every warren worker: is the work shared fairly?")
        .tags(["warren", "rabbitmq"]).timezone("browser").editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR).refresh("10s").time("now-30m", "now")
        .fiscal_year_start_month(0).live_now(False).version(1).links([]).annotations([])
        .variables(list(variables()))
    )
    for section in (overview, queue_row, fairness_row, worker_health_row, producer_row,
                    rpc_row):
        for item in section(ids):
            if isinstance(item, dash.Row):
                builder.with_row(item)
            else:
                builder.with_panel(item)
    return builder


def render() -> str:
    # Sorted keys: the file does not churn when an SDK release reorders its fields.
    return JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False).encode(build().build()) + "\n"


def main() -> int:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
