"""h. profile: where a worker's time goes per no-op task, beside the tutorial's consumer.

Each consumer drains the same backlog alone under pyinstrument (a sampling profiler,
https://pyinstrument.readthedocs.io); the reports land in `results/profile-<kind>-<prefetch>.txt`.
pyinstrument samples the thread it starts on: for warren's worker that is the I/O thread,
where deliveries arrive, fast-path tasks run, and acks and metrics are done (lanes that
run slow tasks are other threads, idle in this run). Times are wall-clock seconds of
that thread, waits on the broker included; the CPU column is the process's, from
/proc/<pid>/stat, and includes the profiler's own overhead, so compare the two rows of a
run with each other, not with the `footprint` bench.
"""

from __future__ import annotations

import json
import signal
import time

from bench.common import RESULTS, Bench, Outcome, prepublish, wait_drained
from bench.footprint import cpu_s
from testbed.broker import free_port

PROFILER = ["-m", "pyinstrument", "--interval", "0.0005", "-r", "text"]


def profile(bench: Bench, kind: str, prefetch: str, count: int) -> dict:
    url = bench.vhost()
    prepublish(url, [json.dumps({"type": "noop", "args": {}}).encode()] * count)
    report = RESULTS / f"profile-{kind}-{prefetch}.txt"
    target = (["-m", "worker"] if kind == "warren"
              else ["-m", "bench.plain", "consumer", url, prefetch])
    env = {"AMQP_URL": url, "PREFETCH": prefetch, "METRICS_PORT": str(free_port())}
    started = time.time()
    proc = bench.spawn([*PROFILER, "-o", str(report), *target], env)
    ended = wait_drained(bench, url)
    cpu = cpu_s(proc.pid)
    # pyinstrument writes its report when the program ends: SIGINT for the tutorial's
    # consumer (KeyboardInterrupt), SIGTERM for warren's worker (a graceful stop).
    proc.send_signal(signal.SIGTERM if kind == "warren" else signal.SIGINT)
    proc.wait(timeout=60)
    # pyinstrument heads its report with the command line, the consumer's URL included.
    report.write_text(report.read_text().replace(bench.broker.password, "***"))
    return {"consumer": kind, "prefetch": prefetch, "tasks": count,
            "tasks/s from start": round(count / (ended - started)),
            "CPU s / 1000 tasks": round(cpu / count * 1000, 3), "report": report.name}


def run(bench: Bench) -> Outcome:
    count = 2000 if bench.quick else 10000
    rows = [profile(bench, kind, "1", count) for kind in ("plain", "warren")]
    return Outcome("profile", "h. profile: one consumer under pyinstrument, no-op tasks", rows,
                   notes=["Each report is a call tree of the consumer's main thread with "
                          "wall-clock seconds; the CPU column includes the profiler's "
                          "overhead."])
