"""`python -m bench [name ...] [--quick]`: run benchmarks on a private RabbitMQ node."""

from __future__ import annotations

import argparse
import compileall
import importlib
import tempfile
import time
from pathlib import Path

from bench.common import Bench
from testbed.broker import LocalBroker
from testbed.processes import REPO
from warren.logs import configure_logging
from warren.settings import Settings

PACKAGES = ("warren", "worker", "producer", "rpc_server", "bench")
ALL = ("drain", "publish", "fairness", "scaling", "footprint", "rpc", "isolation", "profile")
EXTRA = ("soak",)  # minutes long: only when named


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*ALL, *EXTRA, []], default=[],
                        help=f"benchmarks to run (default: all of {', '.join(ALL)})")
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    compile_bytecode()
    # In-process publishers and clients log through structlog: keep the tables readable.
    configure_logging(Settings.from_env({"LOG_LEVEL": "WARNING", "LOG_FORMAT": "console"}))
    with tempfile.TemporaryDirectory(prefix="warren-bench-") as tmp:
        broker = LocalBroker(Path(tmp))
        broker.start_on_free_ports()
        bench = Bench(broker, quick=args.quick)
        try:
            for name in args.names or ALL:
                started = time.monotonic()
                outcome = importlib.import_module(f"bench.{name}").run(bench)
                print(outcome.write())
                print(f"({name}: {time.monotonic() - started:.0f}s)\n", flush=True)
        finally:
            bench.stop_all()
            broker.stop()
    return 0


def compile_bytecode() -> None:
    """Measure warren as deployed: the image installs a wheel, whose modules pip compiles.
    Run from a source tree with PYTHONDONTWRITEBYTECODE=1 (this project's machine sets
    it), every process compiled warren's modules anew, 25-40 ms of CPU per start
    (2026-12-07); the tutorial consumer imports only pika, compiled when installed."""
    for package in PACKAGES:
        compileall.compile_dir(REPO / package, quiet=1)


if __name__ == "__main__":
    raise SystemExit(main())
