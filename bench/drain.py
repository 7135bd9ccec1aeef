"""a. drain: 20,000 persistent no-op tasks, 4 consumers — warren's worker vs the tutorial's."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

from bench.common import Bench, Outcome, first_consuming, goal, prepublish, wait_drained

CONSUMERS = 4


def drain_once(bench: Bench, kind: str, prefetch: str, count: int, logs: Path) -> float:
    """Tasks per second from the first consumer consuming to an empty queue."""
    url = bench.vhost()
    prepublish(url, [json.dumps({"type": "noop", "args": {}}).encode()] * count)
    logs.mkdir(parents=True, exist_ok=True)
    paths = [logs / f"{kind}-{prefetch}-{i}.log" for i in range(CONSUMERS)]
    for path in paths:
        if kind == "warren":
            bench.worker(url, prefetch, log=path)
        else:
            bench.spawn(["-m", "bench.plain", "consumer", url, prefetch], log=path)
    ended = wait_drained(bench, url)
    for proc in bench.procs:
        proc.send_signal(signal.SIGINT if kind == "plain" else signal.SIGTERM)
    bench.stop_all()
    return count / (ended - first_consuming(paths))


CONFIGS = (("plain", "1"), ("warren", "1"), ("plain", "50"), ("warren", "50"),
           ("warren", "auto"))


def run(bench: Bench) -> Outcome:
    count = 5000 if bench.quick else 20_000
    rounds = 1 if bench.quick else 2
    logs = Path(tempfile.mkdtemp(prefix="drain-"))
    best: dict[tuple[str, str], float] = {}
    rows = []
    for rnd in range(rounds):  # interleaved, so a busy moment hurts every consumer alike
        for kind, prefetch in CONFIGS:
            rate = drain_once(bench, kind, prefetch, count, logs / f"r{rnd}")
            best[(kind, prefetch)] = max(best.get((kind, prefetch), 0.0), rate)
            rows.append({"round": rnd + 1, "consumer": kind, "prefetch": prefetch,
                         "tasks": count, "consumers": CONSUMERS, "tasks/s": round(rate)})
    goals = [
        goal("warren / plain at prefetch 1", best[("warren", "1")] / best[("plain", "1")], 1.0),
        goal("warren auto / plain at prefetch 50",
             best[("warren", "auto")] / best[("plain", "50")], 0.9),
        goal("warren / plain at prefetch 50", best[("warren", "50")] / best[("plain", "50")],
             0.9),
    ]
    notes = ["Rate from the first consumer consuming to an empty queue; goals use the best of "
             "the rounds for each consumer. warren's worker also publishes a task event and "
             "updates its metrics for every task."]
    return Outcome("drain", "a. drain: persistent no-op tasks, 4 consumers", rows, goals, notes)
