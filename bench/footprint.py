"""e. footprint: a worker's resident memory and CPU seconds per 1,000 tasks."""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from pathlib import Path

from bench.common import Bench, Outcome, goal, prepublish, start_workers, wait_drained

TICKS = os.sysconf("SC_CLK_TCK")
ROUNDS = 3


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def measure(bench: Bench, kind: str, prefetch: str, count: int) -> dict:
    url = bench.vhost()
    if kind == "warren":
        start_workers(bench, url, 1, prefetch)
    else:
        bench.spawn(["-m", "bench.plain", "consumer", url, prefetch])
        time.sleep(1.5)  # the plain consumer has no readiness probe
    pid = bench.procs[-1].pid
    idle_rss, cpu_before = rss_mb(pid), cpu_s(pid)
    body = json.dumps({"type": "noop", "args": {}}).encode()
    prepublish(url, [body] * count)
    wait_drained(bench, url)
    result = {"consumer": kind, "prefetch": prefetch, "tasks": count,
              "RSS idle MB": round(idle_rss, 1), "RSS after MB": round(rss_mb(pid), 1),
              "CPU s / 1000 tasks": round((cpu_s(pid) - cpu_before) * 1000 / count, 3)}
    bench.procs[-1].send_signal(signal.SIGINT if kind == "plain" else signal.SIGTERM)
    bench.stop_all()
    return result


def run(bench: Bench) -> Outcome:
    count = 2_000 if bench.quick else 10_000
    rows = [{"round": n, **measure(bench, kind, prefetch, count)}
            for n in range(1, ROUNDS + 1)
            for kind, prefetch in (("warren", "1"), ("warren", "auto"), ("plain", "1"),
                                   ("plain", "50"))]
    worst = max(r["RSS after MB"] for r in rows if r["consumer"] == "warren")
    ratios = [cpu_per_1000(rows, n, "warren") / cpu_per_1000(rows, n, "plain")
              for n in range(1, ROUNDS + 1)]
    goals = [goal("warren worker RSS after the run, MB", worst, 40.0, False),
             goal("warren / plain CPU per 1,000 tasks at prefetch 1 (median of rounds)",
                  statistics.median(ratios), 1.3, False)]
    notes = ["One consumer process; RSS from /proc/<pid>/status, CPU from /proc/<pid>/stat "
             "(user + system) across the run, tasks pre-published. The configurations "
             f"alternate, {ROUNDS} rounds: single runs on 2026-12-07 gave 0.214-0.265 CPU s "
             "for warren at prefetch 1 and 0.197-0.262 for plain pika. warren / plain at "
             "prefetch 1 per round: "
             + ", ".join(f"{r:.2f}" for r in ratios) + "."]
    return Outcome("footprint", "e. footprint: one consumer, no-op tasks", rows, goals, notes)


def cpu_per_1000(rows: list[dict], round_no: int, consumer: str) -> float:
    return next(r["CPU s / 1000 tasks"] for r in rows
                if r["round"] == round_no and r["consumer"] == consumer
                and r["prefetch"] == "1")
