"""`python -m bench.autoscale_report`: every arrival trace against every scaling policy.

Writes bench/results/autoscale.md, autoscale.json and one plot per trace
(autoscale-<trace>.png). No broker: the model is bench/autoscale_sim.py, fed with the
per-task overhead measured by bench/scaling.py (results/scaling.json).

The task mix is a choice, stated here and in docs/KUBERNETES.md: durations lognormal
with a median of 1 s and sigma 1.5 (mean ~3 s; 1.6 % of tasks run longer than 25 s,
0.07 % would run past 120 s and are cut there). 120 s is the longest expected task: the
stand-in for TASK_TIME_LIMIT_S. CHOSEN is what k8s/ ships; tests/k8s hold the manifests
to it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench.autoscale_sim import (
    DEFAULT_UP,
    RESULTS,
    SCRAPE_INTERVAL_S,
    STATS_INTERVAL_S,
    SYNC_PERIOD_S,
    Autoscaler,
    Cluster,
    Outcome,
    Policy,
    Rules,
    TaskMix,
    Trace,
    arrivals,
    measured_overhead_s,
    simulate,
)

OVERHEAD_S, MEASURED_RATE = measured_overhead_s()
MIX = TaskMix("mixed", median_s=1.0, sigma=1.5, cap_s=120.0, overhead_s=OVERHEAD_S)
# The benchmark's own workload, at the measured rate (90.2 tasks/s per worker).
SLEEP_10MS = TaskMix("sleep 10 ms", median_s=0.010, sigma=0.0, cap_s=1.0, overhead_s=OVERHEAD_S)

DAY_S = 86_400
TRACES = (
    Trace("steady", 3600, lambda t: 4.0),
    Trace("burst", 2700, lambda t: 20.0 if 600 <= t < 660 else 2.0, burst=(600, 660)),
    Trace("daily", DAY_S, lambda t: 8.0 * (0.55 - 0.45 * math.cos(2 * math.pi * t / DAY_S))),
    Trace("to-zero", 3600, lambda t: 0.0 if 900 <= t < 2700 else 4.0),
)
TRACE_TEXT = {
    "steady": "4 workers' worth for an hour",
    "burst": "2 workers' worth, 10x (20) for one minute at 10:00, 45 min in all",
    "daily": "a 24 h wave from 0.8 (night) to 8 (noon) workers' worth",
    "to-zero": "4 workers' worth, nothing from 15 to 45 min, then 4 again",
}

ONE_PER_MINUTE = Rules(300, (Policy("Pods", 1, 60),))
BEFORE = Autoscaler("before", 10, 1, 20, Rules(0, (Policy("Pods", 4, 30),)), ONE_PER_MINUTE,
                    polling_s=10)
CHOSEN = Autoscaler("chosen", 10, 1, 20, DEFAULT_UP, Rules(600, (Policy("Percent", 10, 60),)),
                    polling_s=10)
POLICIES = (
    BEFORE,
    Autoscaler("hpa-defaults", 10, 1, 20, polling_s=10),
    replace(BEFORE, name="fast-up", up=DEFAULT_UP),
    replace(BEFORE, name="slow-down", down=CHOSEN.down),
    CHOSEN,
    replace(CHOSEN, name="chosen, target 5", target=5),
    replace(CHOSEN, name="chosen, target 20", target=20),
    replace(CHOSEN, name="chosen, min 0", min_replicas=0),
)
POLICY_TEXT = {
    "before": "the manifests before #18: up 4 pods/30 s; down after 300 s, 1 pod/60 s",
    "hpa-defaults": "no behavior: up max(4 pods, 100 %)/15 s; down after 300 s, 100 %/15 s",
    "fast-up": "before, with the default scale-up",
    "slow-down": "before, with the chosen scale-down",
    "chosen": "up max(4 pods, 100 %)/15 s; down after 600 s, 10 %/60 s (at least 1 pod)",
}
GRACE_S = 120.0  # SHUTDOWN_GRACE_S chosen: the longest expected task (MIX.cap_s)
OLD_GRACE_S = 25.0  # SHUTDOWN_GRACE_S before #18
STARTUP_S = 10
SEEDS = (1, 2, 3)


@dataclass
class Row:
    """One (trace, policy) over all seeds: means."""

    trace: str
    policy: str
    peak: float
    wait_s: float
    drain_s: float | None
    pod_hours: float
    scale_downs: float
    mid_task: float
    cut_old: float
    cut_new: float


def run_one(spec: Autoscaler, trace: Trace, mix: TaskMix, cluster: Cluster) -> list[Outcome]:
    return [simulate(spec, arrivals(trace, mix.per_worker_rate, seed), mix, cluster)
            for seed in SEEDS]


def summarize(trace: Trace, spec: Autoscaler, outs: Sequence[Outcome], mix: TaskMix) -> Row:
    drains = [o.drain_s(trace.burst) for o in outs] if trace.burst else []
    mid_task = statistics.mean(o.removed_busy for o in outs)
    return Row(
        trace=trace.name, policy=spec.name,
        peak=statistics.mean(o.peak_backlog for o in outs),
        wait_s=statistics.mean(o.mean_wait_s for o in outs),
        drain_s=(None if not drains or None in drains
                 else statistics.mean(d for d in drains if d is not None)),
        pod_hours=statistics.mean(o.replica_s for o in outs) / 3600,
        scale_downs=statistics.mean(o.scale_downs for o in outs),
        mid_task=mid_task,
        cut_old=mid_task * mix.residual_over(OLD_GRACE_S),
        cut_new=mid_task * mix.residual_over(GRACE_S))


def matrix(policies: Sequence[Autoscaler], mix: TaskMix, cluster: Cluster
           ) -> tuple[list[Row], dict[tuple[str, str], Outcome]]:
    rows, first = [], {}
    for trace in TRACES:
        for spec in policies:
            outs = run_one(spec, trace, mix, cluster)
            rows.append(summarize(trace, spec, outs, mix))
            first[trace.name, spec.name] = outs[0]
    return rows, first


def table(rows: Sequence[Row], unit: str = "") -> str:
    head = ("| trace | policy | peak backlog | mean wait s | burst drained after s | "
            "pod-hours | scale-downs | pods removed mid-task | tasks cut short, grace 25 s | "
            "grace 120 s |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        drain = "—" if r.drain_s is None else f"{r.drain_s:.0f}"
        lines.append(f"| {r.trace} | {r.policy} | {r.peak:.0f}{unit} | {r.wait_s:.1f} | {drain} | "
                     f"{r.pod_hours:.2f} | {r.scale_downs:.0f} | {r.mid_task:.1f} | "
                     f"{r.cut_old:.2f} | {r.cut_new:.2f} |")
    return "\n".join(lines)


def sensitivity(mix: TaskMix) -> list[dict[str, Any]]:
    """Start-up delay: 10 s (image cached) against 60 s (pulled, or a new node)."""
    out = []
    for startup in (10, 60):
        for spec in (BEFORE, CHOSEN):
            for trace in (TRACES[0], TRACES[1]):
                row = summarize(trace, spec, run_one(spec, trace, mix,
                                                     Cluster(startup, GRACE_S)), mix)
                out.append({"start-up s": startup, "trace": trace.name, "policy": spec.name,
                            "peak backlog": round(row.peak),
                            "mean wait s": round(row.wait_s, 1),
                            "burst drained after s": "—" if row.drain_s is None
                            else round(row.drain_s),
                            "pod-hours": round(row.pod_hours, 2)})
    return out


def fast_tasks() -> list[Row]:
    """The measured workload itself: the threshold must scale with the per-worker rate."""
    scaled = round(30 * SLEEP_10MS.per_worker_rate)  # 30 s of work per worker, as CHOSEN
    specs = (replace(CHOSEN, name="chosen (target 10)"),
             replace(CHOSEN, name=f"chosen, target {scaled}", target=scaled))
    rows = []
    for trace in (TRACES[0], TRACES[1], TRACES[3]):
        for spec in specs:
            rows.append(summarize(trace, spec, run_one(spec, trace, SLEEP_10MS,
                                                       Cluster(STARTUP_S, GRACE_S)), SLEEP_10MS))
    return rows


def plot(trace: Trace, outcomes: dict[tuple[str, str], Outcome], names: Sequence[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = 60 if trace.duration_s > 4 * 3600 else 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    styles = ("-", "-", "-", "--")  # the last one (min 0) often lies on top of "chosen"
    for name, style in zip(names, styles, strict=True):
        out = outcomes[trace.name, name]
        xs = [t / 3600 if step > 1 else t / 60 for t in range(0, trace.duration_s, step)]
        top.plot(xs, [max(out.backlog[t:t + step]) for t in range(0, trace.duration_s, step)],
                 style, label=name, linewidth=1)
        bottom.step(xs, [max(out.pods[t:t + step]) for t in range(0, trace.duration_s, step)],
                    style, where="post", label=name, linewidth=1)
    top.set_ylabel("backlog (ready + unacked)")
    bottom.set_ylabel("worker pods")
    bottom.set_xlabel("hours" if step > 1 else "minutes")
    top.set_title(f"{trace.name}: {TRACE_TEXT[trace.name]} (seed {SEEDS[0]})")
    top.legend(fontsize=8)
    fig.tight_layout()
    name = f"autoscale-{trace.name}.png"
    fig.savefig(RESULTS / name, dpi=90)
    plt.close(fig)
    return name


def write(rows: list[Row], fast: list[Row], sens: list[dict[str, Any]], pngs: list[str],
          elapsed_s: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    params = {
        "task mix": {"name": MIX.name, "median s": MIX.median_s, "sigma": MIX.sigma,
                     "longest task s": MIX.cap_s, "mean s": round(MIX.mean_s, 3),
                     "share over 25 s": round(MIX.share_over(25), 4),
                     "busy worker needs > 25 s more": round(MIX.residual_over(25), 4),
                     "per-worker tasks/s": round(MIX.per_worker_rate, 4)},
        "measured": {"source": "bench/results/scaling.json, prefetch 1, 1 worker, 10 ms tasks",
                     "tasks/s": MEASURED_RATE, "overhead per task s": round(OVERHEAD_S, 6)},
        "loop": {"hpa sync s": SYNC_PERIOD_S, "scrape s": SCRAPE_INTERVAL_S,
                 "queue stats s": STATS_INTERVAL_S, "tolerance": 0.1, "start-up s": STARTUP_S,
                 "SHUTDOWN_GRACE_S": GRACE_S, "seeds": list(SEEDS)},
        "policies": [asdict(p) for p in POLICIES],
    }
    doc = {"name": "autoscale", "params": params, "rows": [asdict(r) for r in rows],
           "fast tasks": [asdict(r) for r in fast], "start-up": sens, "plots": pngs,
           "seconds to run": round(elapsed_s, 1)}
    (RESULTS / "autoscale.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "autoscale.md").write_text(_markdown(rows, fast, sens, pngs, elapsed_s))


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _markdown(rows: list[Row], fast: list[Row], sens: list[dict[str, Any]], pngs: list[str],
              elapsed_s: float) -> str:
    policies = "\n".join(f"- `{k}`: {v}" for k, v in POLICY_TEXT.items())
    traces = "\n".join(f"- `{k}`: {v}" for k, v in TRACE_TEXT.items())
    return f"""### autoscale: the KEDA/HPA loop, simulated (bench/autoscale_sim.py)

Task mix: lognormal durations, median {MIX.median_s:g} s, sigma {MIX.sigma:g}, cut at
{MIX.cap_s:g} s: mean {MIX.mean_s:.2f} s, {100 * MIX.share_over(25):.1f} % of tasks longer
than 25 s, but a busy worker is in a task with more than 25 s to go
{100 * MIX.residual_over(25):.1f} % of the time (long tasks hold workers longest). Per
worker {MIX.per_worker_rate:.3f} tasks/s: 1 / (mean + {1000 * OVERHEAD_S:.2f} ms), the
overhead measured by `scaling` (one worker, PREFETCH=1, 10 ms tasks: {MEASURED_RATE} tasks/s).
Loop: HPA sync {SYNC_PERIOD_S} s, scrape {SCRAPE_INTERVAL_S} s, queue stats
{STATS_INTERVAL_S} s old, tolerance 0.1, start-up {STARTUP_S} s, max 20 pods, means of
seeds {", ".join(map(str, SEEDS))}. Rates are in workers' worth of work.

Traces:
{traces}

Policies (all target 10 messages per worker, min 1, max 20, unless named):
{policies}

{table(rows)}

"tasks cut short" are expected counts: pods removed while holding a task, times the chance
that the task needed longer than SHUTDOWN_GRACE_S (then it is handed back and run again).
The chosen SHUTDOWN_GRACE_S is {GRACE_S:g} s, the longest expected task: none are cut.
"mean wait" is Little's law: backlog-seconds over tasks (queueing plus the task itself).

Start-up delay ({GRACE_S:g} s grace):

{markdown_table(sens)}

The benchmark's own tasks (10 ms sleeps, {SLEEP_10MS.per_worker_rate:.1f} tasks/s per
worker): a target of 10 messages is 0.1 s of work, far below what the loop can see
(scrape, stats and sync add up to ~35 s); the target must scale with the rate.

{table(fast)}

Plots: {", ".join(pngs)}. Ran in {elapsed_s:.0f} s.
"""


def main() -> int:
    argparse.ArgumentParser(prog="python -m bench.autoscale_report",
                            description=__doc__).parse_args()
    started = time.monotonic()
    rows, first = matrix(POLICIES, MIX, Cluster(STARTUP_S, GRACE_S))
    fast = fast_tasks()
    sens = sensitivity(MIX)
    shown = ("before", "hpa-defaults", "chosen", "chosen, min 0")
    RESULTS.mkdir(parents=True, exist_ok=True)
    pngs = [plot(trace, first, shown) for trace in TRACES]
    elapsed = time.monotonic() - started
    write(rows, fast, sens, pngs, elapsed)
    print(table(rows))
    print(f"({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
