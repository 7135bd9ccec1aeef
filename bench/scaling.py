"""d. scaling: 10 ms sleep tasks with 1, 2, 4, 8, 16 workers — throughput against linear."""

from __future__ import annotations

import json
import time

from bench.common import RESULTS, Bench, Events, Outcome, goal, prepublish, start_workers

TASK_S = 0.01
PER_WORKER = 300  # about 3 s of work for each worker, whatever their number


def one_run(bench: Bench, workers: int, prefetch: str) -> float:
    url = bench.vhost()
    start_workers(bench, url, workers, prefetch)
    count = PER_WORKER * workers
    body = json.dumps({"type": "sleep", "args": {"seconds": TASK_S}}).encode()
    events = Events(url)
    started = time.time()  # all workers are consuming: publishing starts the clock
    prepublish(url, [body] * count)
    done = events.collect(count, timeout_s=300)  # the end is the last task's done event
    bench.stop_all()
    assert len(done) == count, f"{len(done)} of {count} done"
    return count / (max(e["at"] for e in done) - started)


def plot(counts: list[int], series: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    base = max(s[0] for s in series.values())
    ax.plot(counts, [base * n for n in counts], "k--", label="linear (from 1 worker)")
    for label, rates in series.items():
        ax.plot(counts, rates, "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("workers")
    ax.set_ylabel("tasks per second")
    ax.set_title(f"{TASK_S * 1000:.0f} ms tasks: throughput against worker count")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=100)
    plt.close(fig)


def run(bench: Bench) -> Outcome:
    counts = [1, 2, 4] if bench.quick else [1, 2, 4, 8, 16]
    series: dict[str, list[float]] = {}
    rows = []
    for prefetch in ("1", "auto"):
        rates = [one_run(bench, n, prefetch) for n in counts]
        series[f"PREFETCH={prefetch}"] = rates
        for n, rate in zip(counts, rates, strict=True):
            rows.append({"prefetch": prefetch, "workers": n, "tasks/s": round(rate, 1),
                         "ideal tasks/s": round(n / TASK_S),
                         "of linear": round(rate / (rates[0] * n), 3)})
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(counts, series)
    def worst(prefetch: str) -> float:
        return min(r["of linear"] for r in rows if r["prefetch"] == prefetch and r["workers"] <= 8)

    goals = [goal("auto: worst share of linear up to 8 workers", worst("auto"), 0.9),
             goal("prefetch 1: worst share of linear up to 8 workers", worst("1"), 0.9)]
    notes = ["All workers are consuming before the tasks are published; the clock runs from "
             "the first publish to the last task's done event. 'of linear' compares with "
             "the 1-worker rate times the worker count. Plot: scaling.png."]
    return Outcome("scaling", "d. scaling: 10 ms sleep tasks", rows, goals, notes)
