"""a. drain: 20,000 persistent no-op tasks, 4 consumers — warren's worker vs the tutorial's."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

from bench.common import Bench, Outcome, first_consuming, prepublish, wait_drained

CONSUMERS = 4


def drain_once(bench: Bench, kind: str, prefetch: str, count: int, logs: Path) -> float:
    """Tasks per second from the first consumer consuming to an empty queue."""
    url = bench.vhost()
    prepublish(url, [json.dumps({"type": "noop", "args": {}}).encode()] * count)
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


def run(bench: Bench) -> Outcome:
    count = 5000 if bench.quick else 20_000
    rows = []
    rates: dict[tuple[str, str], float] = {}
    logs = Path(tempfile.mkdtemp(prefix="drain-"))
    for prefetch in ("1", "50", "auto"):
        for kind in ("plain", "warren"):
            if kind == "plain" and prefetch == "auto":
                continue
            rate = drain_once(bench, kind, prefetch, count, logs)
            rates[(kind, prefetch)] = rate
            rows.append({"consumer": kind, "prefetch": prefetch, "tasks": count,
                         "consumers": CONSUMERS, "tasks/s": round(rate)})
    return Outcome("drain", "a. drain: persistent no-op tasks, 4 consumers", rows)
