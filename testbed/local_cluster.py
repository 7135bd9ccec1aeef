"""Run a whole warren cluster on this machine and watch every worker's share of the work.

A private RabbitMQ node (data kept in .local-cluster/, so stopping loses nothing: what was
not done waits for the next run), N workers and a producer running the tutorial's
heavy/light mix, and the live view of `warren status` (warren/admin/status.py).

However it ends — Ctrl-C (SIGINT), SIGTERM, SIGHUP (the terminal closed), the death of
the process that started it, or --duration — it stops the producer first, then the
workers (each finishes and acks its task in hand), then the node, and leaves nothing
running. Its output may go to a pipe that dies first (`make local | tee run.log` and
Ctrl-C): the shutdown goes on silently. Should it be SIGKILLed itself, every process it
started gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops on its own.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.broker import BrokerStartError, LocalBroker, free_port
from testbed.processes import REPO, spawn
from warren.admin.status import StatusReader, render
from warren.errors import BrokerError
from warren.settings import Settings

STATE = REPO / ".local-cluster"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]


@dataclass
class Screen:
    """stdout that may vanish (a closed terminal, a dead pipe): then output is dropped."""

    tty: bool = field(default_factory=lambda: sys.stdout.isatty())
    gone: bool = False
    hung_up: bool = False  # it was a terminal, and it is gone: a reason to stop

    def show(self, text: str) -> None:
        if self.gone:
            return
        try:
            print(text, flush=True)
        except OSError:  # BrokenPipeError, EIO after a hang-up
            self.gone = True
            # A terminal that hung up may not have said so: `make local` in a terminal that
            # closes sends SIGHUP to make alone, which waits for us without passing it on.
            self.hung_up = self.tty
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), sys.stdout.fileno())


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rate", type=float, default=6.0, help="tasks per second from the producer")
    p.add_argument("--heavy", type=float, default=1.0, help="seconds of a heavy task")
    p.add_argument("--light", type=float, default=0.1, help="seconds of a light task")
    p.add_argument("--prefetch", default="1", help="PREFETCH for the workers (0 = unlimited)")
    p.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    p.add_argument("--fresh", action="store_true", help="start with an empty broker")
    p.add_argument("--state", type=Path, default=STATE, help=f"data directory (default {STATE})")
    return p.parse_args()


def broker_for(state: Path, fresh: bool) -> LocalBroker:
    if fresh and state.exists():
        import shutil

        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    password_file = state / "password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12))
    ports = state / "ports"
    if not ports.exists():
        ports.write_text(" ".join(str(free_port()) for _ in range(4)))
    amqp, mgmt, prom, dist = (int(p) for p in ports.read_text().split())
    # The node's name outlives its ports (a saved port taken by another program moves the
    # node to new ones): the queued tasks on disk belong to that name.
    name_file = state / "node"
    if not name_file.exists():
        name_file.write_text(f"warren-{amqp}")
    return LocalBroker(state / "rabbitmq", amqp_port=amqp, management_port=mgmt,
                       prometheus_port=prom, dist_port=dist,
                       password=password_file.read_text().strip(), die_with_parent=True,
                       name=name_file.read_text().strip())


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    popen = spawn(["-m", *args], {**env, "METRICS_PORT": str(free_port()), "WORKER_ID": name},
                  logs / f"{name}.log", new_session=True, die_with_parent=True)
    return Proc(name, popen)


def stop_all(procs: list[Proc], screen: Screen, timeout_s: float = 30.0) -> None:
    for p in procs:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            code = p.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            code = p.popen.wait()
        screen.show(f"{p.name} exited {code}")


class Stop:
    """Set by a stop signal, by --duration, or when the process that started us is gone."""

    def __init__(self, duration: float | None) -> None:
        self.reason = ""
        self.parent = os.getppid()
        self.duration = duration
        self.deadline: float | None = None

    def start_clock(self) -> None:
        """--duration counts from here: the cluster is up (a node's start time varies)."""
        if self.duration:
            self.deadline = time.monotonic() + self.duration
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.reason = self.reason or signal.Signals(signum).name

    def due(self, screen: Screen | None = None) -> bool:
        if not self.reason and os.getppid() != self.parent:
            self.reason = "its parent died"
        if not self.reason and screen is not None and screen.hung_up:
            self.reason = "its terminal is gone"
        if not self.reason and self.deadline and time.monotonic() >= self.deadline:
            self.reason = "--duration"
        return bool(self.reason)


def run(args: argparse.Namespace, screen: Screen, stop: Stop) -> None:
    node = broker_for(args.state, args.fresh)
    logs = args.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    screen.show("starting RabbitMQ ...")
    try:
        node.start()
    except BrokerStartError:
        # A saved port may have been taken by something else since the last run.
        (args.state / "ports").unlink(missing_ok=True)
        node = broker_for(args.state, fresh=False)
        node.start_on_free_ports()
    screen.show(f"RabbitMQ is up (management UI {node.management_url}, user {node.user})")
    env = {"AMQP_URL": node.url, "PREFETCH": args.prefetch}
    workers = [start(f"worker-{i + 1}", ["worker"], env, logs) for i in range(args.workers)]
    producer = start("producer", ["producer", "--count", "0", "--rate", str(args.rate),
                                  "--heavy-light", str(args.heavy), str(args.light),
                                  "--no-progress"], env, logs)
    (args.state / "pids").write_text(" ".join(str(p.popen.pid) for p in (*workers, producer)))
    try:
        watch(Settings.from_env({"AMQP_URL": node.url, "LOG_LEVEL": "WARNING"}), screen, stop)
    finally:
        screen.show(f"\nstopping ({stop.reason or 'error'}): producer first, then workers "
                    "(each finishes its task), then RabbitMQ")
        stop_all([producer], screen)
        stop_all(workers, screen)
        node.stop()
        screen.show(f"stopped; unfinished tasks stay queued in {args.state} for the next run")


def watch(settings: Settings, screen: Screen, stop: Stop) -> None:
    """The live view: `warren status`, refreshed, until it is time to stop."""
    started = time.monotonic()
    stop.start_clock()
    reader: StatusReader | None = None
    try:
        while not stop.due(screen):
            if reader is None:
                try:
                    reader = StatusReader(settings)
                except BrokerError:
                    time.sleep(0.5)
                    continue
            snap = reader.snapshot(listen_s=1.0 if screen.tty else 2.0)
            header = f"warren local cluster — {time.monotonic() - started:5.0f}s   (Ctrl-C stops)"
            screen.show(("\x1b[H\x1b[2J" if screen.tty else "") + header + "\n" + render(snap))
    finally:
        if reader is not None:
            reader.close()


def main() -> int:
    args = parse_args()
    screen, stop = Screen(), Stop(args.duration)
    run(args, screen, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
