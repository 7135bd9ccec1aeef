"""g. isolation: what running each task in a child process costs, against a thread.

One worker drains persistent no-op tasks (the worker's own cost per task, nothing else)
with TASK_ISOLATION=thread and =process, one lane and two; rounds interleaved. The
per-task figure is the wall time per task from the first delivery to an empty queue.
"""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

from bench.common import (
    Bench,
    Outcome,
    first_consuming,
    markdown_table,
    prepublish,
    wait_drained,
)

CONFIGS = (("thread", 1), ("process", 1), ("thread", 2), ("process", 2))


def drain_once(bench: Bench, isolation: str, lanes: int, count: int, logs: Path) -> float:
    url = bench.vhost()
    prepublish(url, [json.dumps({"type": "noop", "args": {}}).encode()] * count)
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{isolation}-{lanes}.log"
    bench.worker(url, str(lanes), log=log, TASK_ISOLATION=isolation, CONCURRENCY=str(lanes))
    ended = wait_drained(bench, url)
    for proc in bench.procs:
        proc.send_signal(signal.SIGTERM)
    bench.stop_all()
    return count / (ended - first_consuming([log]))


def run(bench: Bench) -> Outcome:
    count = 1000 if bench.quick else 4000
    rounds = 1 if bench.quick else 3
    logs = Path(tempfile.mkdtemp(prefix="isolation-"))
    best: dict[tuple[str, int], float] = {}
    rows = []
    for rnd in range(rounds):
        for isolation, lanes in CONFIGS:
            rate = drain_once(bench, isolation, lanes, count, logs / f"r{rnd}")
            best[(isolation, lanes)] = max(best.get((isolation, lanes), 0.0), rate)
            rows.append({"round": rnd + 1, "isolation": isolation, "lanes": lanes,
                         "prefetch": lanes, "tasks": count, "tasks/s": round(rate),
                         "µs/task": round(1e6 / rate)})
    summary = []
    for lanes in (1, 2):
        thread, process = best[("thread", lanes)], best[("process", lanes)]
        summary.append({"lanes": lanes, "thread tasks/s": round(thread),
                        "process tasks/s": round(process),
                        "isolation costs µs/task": round(1e6 / process - 1e6 / thread),
                        "process / thread": round(process / thread, 2)})
    notes = ["Each round:\n\n" + markdown_table(rows),
             "Best of the rounds per configuration. The difference is what a task pays for "
             "the trip to its child and back (pickling, a pipe each way, the lane's poll); "
             "it matters for tasks of a few milliseconds and vanishes for tasks of seconds."]
    return Outcome("isolation", "g. isolation: thread vs child process, no-op tasks, 1 worker",
                   summary, [], notes)
