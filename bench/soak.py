"""soak: the chaos run at 100,000 tasks — SIGKILLed workers, broker crashes and restarts, a check.

The same run as tests/chaos/test_chaos_run.py (testbed/chaos.py does the
work), five times larger and with four broker faults instead of two. Not part
of CI: it takes several minutes. `python -m bench.soak [--quick]` runs it alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import Bench, Outcome, goal, markdown_table
from testbed.broker import LocalBroker
from testbed.chaos import BrokerFault, ChaosPlan, ChaosResult, ChaosRun

FULL = ChaosPlan(tasks=95_000, cli_tasks=5_000, workers=4, prefetch=10, rate=800.0,
                 window=100, cli_window=50, kill_every_s=2.0, drain_timeout_s=600.0,
                 faults=((0.2, "kill"), (0.4, "restart"), (0.6, "kill"), (0.8, "restart")))
QUICK = ChaosPlan(tasks=9_500, cli_tasks=500, workers=4, prefetch=10, rate=400.0,
                  window=100, cli_window=50, kill_every_s=2.0,
                  faults=((0.25, "kill"), (0.6, "restart")))
BACK_WITHIN_S = 10.0


def figures(result: ChaosResult) -> dict[str, object]:
    lost = len(result.verdict.lost) + max(0, result.cli_confirmed - result.cli_done)
    return {
        "tasks": result.plan.tasks + result.plan.cli_tasks,
        "kills": result.worker_kills,
        "broker faults": len(result.faults),
        "lost": lost,
        "unexpected": len(result.verdict.unexpected),
        "duplicates": result.verdict.extra_executions,
        "dup bound": result.duplicate_bound,
        "idempotent rows": len(result.effect_keys),
        "duration (s)": round(result.duration_s, 1),
    }


def fault_rows(result: ChaosResult) -> list[dict[str, object]]:
    return [{"fault": f.kind, "at confirmed": f.at_confirmed, "broker stop (s)": f.stop_s,
             "broker down (s)": f.down_s, "first consumer back (s)": _r(f.first_ready_s),
             "first task done (s)": _r(f.first_done_s),
             "surviving worker back (s)": _r(f.witness_s)} for f in result.faults]


def _back_after(fault: BrokerFault) -> float:
    """Seconds from the broker's return to a worker consuming or a task done (inf: never)."""
    seen = [s for s in (fault.first_ready_s, fault.first_done_s) if s is not None]
    return min(seen, default=float("inf"))


def _r(value: float | None) -> float | str:
    return round(value, 2) if value is not None else "never"


def run(bench: Bench) -> Outcome:
    plan = QUICK if bench.quick else FULL
    url = bench.vhost()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    result = ChaosRun(bench.broker, url, workdir, plan).run()
    row = figures(result)
    back = max(_back_after(fault) for fault in result.faults)
    goals = [
        goal("lost (confirmed, never done)", float(row["lost"]), 0, higher_is_better=False),
        goal("unexpected (done, never published)", float(row["unexpected"]), 0,
             higher_is_better=False),
        goal("duplicate executions", float(row["duplicates"]), result.duplicate_bound,
             higher_is_better=False),
        goal("idempotent rows", float(row["idempotent rows"]), int(row["tasks"])),
        goal("consuming again after the broker returns (s)", back, BACK_WITHIN_S,
             higher_is_better=False),
    ]
    notes = [
        "Faults, from the broker's return (seconds):\n\n" + markdown_table(fault_rows(result)),
        f"{plan.workers} workers (prefetch {plan.prefetch}), one SIGKILLed and replaced "
        f"every {plan.kill_every_s:g} s; {plan.tasks:,} tasks from warren's ConfirmingPublisher "
        f"with known ids ({plan.rate:g} msg/s, window {plan.window}) and {plan.cli_tasks:,} "
        f"from `python -m producer` (checked by count), both publishing through every broker "
        "fault. Each task appends its message_id to a log (every execution) and writes one "
        "row through worker.idempotency.exactly_once (SQLite, WAL, synchronous=FULL).",
        f"Publishers: {result.producer_summary}; CLI: {result.cli_summary}",
    ]
    print(f"soak work directory (logs, execution log, SQLite store): {workdir}")
    return Outcome("soak", "soak: chaos at scale — workers SIGKILLed, broker crashed and "
                   "restarted", [row], goals, notes)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 tasks, two faults")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="warren-soak-") as tmp:
        broker = LocalBroker(Path(tmp))
        broker.start()
        bench = Bench(broker, quick=args.quick)
        started = time.monotonic()
        try:
            print(run(bench).write())
        finally:
            bench.stop_all()
            broker.stop()
        print(f"(soak: {time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
