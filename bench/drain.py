"""a. drain: a backlog of persistent no-op tasks, 4 consumers — warren's worker vs the
tutorial's pika consumer, alternating in one run.

Two clocks: from starting the consumers (what a user waits for: process start, connect,
PREFETCH=auto's adaptation, all of it) and from the first consumer consuming (the steady
rate). 20,000 and 100,000 tasks; prefetch 1, 50 and auto (plain pika has no auto: it is
compared with plain at 50). Goals as in issue 19, as ratios within the run.
"""

from __future__ import annotations

import json
import signal
import tempfile
import time
from pathlib import Path

from bench.common import Bench, Outcome, first_consuming, goal, prepublish, wait_drained

CONSUMERS = 4
CONFIGS = (("plain", "1"), ("warren", "1"), ("plain", "50"), ("warren", "50"),
           ("warren", "auto"))


def drain_once(bench: Bench, kind: str, prefetch: str, count: int,
               logs: Path) -> tuple[float, float]:
    """(tasks/s from the consumers' start, tasks/s from the first consuming) to an empty queue."""
    url = bench.vhost()
    prepublish(url, [json.dumps({"type": "noop", "args": {}}).encode()] * count)
    logs.mkdir(parents=True, exist_ok=True)
    paths = [logs / f"{kind}-{prefetch}-{count}-{i}.log" for i in range(CONSUMERS)]
    started = time.time()
    for path in paths:
        if kind == "warren":
            bench.worker(url, prefetch, log=path)
        else:
            bench.spawn(["-m", "bench.plain", "consumer", url, prefetch], log=path)
    ended = wait_drained(bench, url, timeout_s=900)
    for proc in bench.procs:
        proc.send_signal(signal.SIGINT if kind == "plain" else signal.SIGTERM)
    bench.stop_all()
    return count / (ended - started), count / (ended - first_consuming(paths))


def run(bench: Bench) -> Outcome:
    sizes = (5000,) if bench.quick else (20_000, 100_000)
    rounds = 1 if bench.quick else 2
    logs = Path(tempfile.mkdtemp(prefix="drain-"))
    best: dict[tuple[str, str, int], tuple[float, float]] = {}
    rows = []
    for count in sizes:
        for rnd in range(rounds):  # interleaved, so a busy moment hurts every consumer alike
            for kind, prefetch in CONFIGS:
                cold, warm = drain_once(bench, kind, prefetch, count, logs / f"r{rnd}")
                key = (kind, prefetch, count)
                old = best.get(key, (0.0, 0.0))
                best[key] = (max(old[0], cold), max(old[1], warm))
                rows.append({"tasks": count, "round": rnd + 1, "consumer": kind,
                             "prefetch": prefetch, "tasks/s from start": round(cold),
                             "tasks/s from first delivery": round(warm)})
    def ratio(a: tuple[str, str], b: tuple[str, str], count: int, clock: int) -> float:
        return best[(*a, count)][clock] / best[(*b, count)][clock]

    goals = []
    for count in sizes:
        goals += [
            goal(f"{count:,}: warren / plain at prefetch 1, from start",
                 ratio(("warren", "1"), ("plain", "1"), count, 0), 0.9),
            goal(f"{count:,}: warren auto / plain at prefetch 50, from start",
                 ratio(("warren", "auto"), ("plain", "50"), count, 0), 0.9),
            goal(f"{count:,}: warren / plain at prefetch 50, from start",
                 ratio(("warren", "50"), ("plain", "50"), count, 0), 0.9),
            goal(f"{count:,}: warren / plain at prefetch 1, from first delivery",
                 ratio(("warren", "1"), ("plain", "1"), count, 1), 0.9),
        ]
    notes = ["Goals use the best of the rounds for each consumer. From start: from spawning "
             "the 4 processes to an empty queue; from first delivery: from the first one "
             "consuming. warren's worker also runs its metrics and, when anything listens, "
             "its task events."]
    return Outcome("drain", "a. drain: persistent no-op tasks, 4 consumers", rows, goals, notes)
