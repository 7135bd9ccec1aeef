"""Run a whole warren cluster on this machine and watch every worker's share of the work.

A private RabbitMQ node (data kept in .local-cluster/, so Ctrl-C loses nothing:
what was not done waits for the next run), N workers and a producer running
the tutorial's heavy/light mix. Ctrl-C (or --duration) stops the producer
first, then the workers (each finishes and acks its task in hand), then the node.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testbed.broker import BrokerStartError, LocalBroker, free_port
from testbed.processes import REPO, spawn

STATE = REPO / ".local-cluster"


@dataclass
class Proc:
    name: str
    port: int
    popen: subprocess.Popen[bytes]

    def sample(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = s.name + "".join(f":{v}" for v in s.labels.values())
                out[key] = s.value
        return out


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
    return LocalBroker(state / "rabbitmq", amqp_port=amqp, management_port=mgmt,
                       prometheus_port=prom, dist_port=dist,
                       password=password_file.read_text().strip())


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    port = free_port()
    popen = spawn(["-m", *args], {**env, "METRICS_PORT": str(port), "WORKER_ID": name},
                  logs / f"{name}.log", new_session=True)
    return Proc(name, port, popen)


def render(workers: list[Proc], producer: Proc, started: float, queue: tuple[int, int]) -> str:
    samples = {w.name: w.sample() for w in workers}
    done = {n: s.get("warren_worker_tasks_total:done", 0.0) for n, s in samples.items()}
    busy = {n: s.get("warren_worker_busy_seconds_total", 0.0) for n, s in samples.items()}
    total_busy = sum(busy.values()) or 1.0
    elapsed = time.monotonic() - started
    lines = [f"warren local cluster — {elapsed:5.0f}s   ready {queue[0]:>5}   "
             f"unacked {queue[1]:>3}   confirmed "
             f"{producer.sample().get('warren_producer_confirmed_total', 0):.0f}", ""]
    lines.append(f"{'worker':<10} {'done':>6} {'busy s':>8} {'in hand':>7}  share of busy time")
    for name in samples:
        share = busy[name] / total_busy
        in_hand = samples[name].get("warren_worker_tasks_in_flight", 0)
        bar = "█" * round(share * 40)
        lines.append(f"{name:<10} {done[name]:>6.0f} {busy[name]:>8.1f} {in_hand:>7.0f}  "
                     f"{bar:<40} {share:5.1%}")
    shares = list(busy.values())
    if len(shares) > 1 and sum(shares) > 0:
        jain = sum(shares) ** 2 / (len(shares) * sum(x * x for x in shares))
        lines.append(f"\nfairness (Jain's index of busy time, 1.0 = perfectly even): {jain:.3f}")
    return "\n".join(lines)


def stop_all(procs: list[Proc], timeout_s: float = 30.0) -> None:
    for p in procs:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            code = p.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            code = p.popen.wait()
        print(f"{p.name} exited {code}")


def main() -> int:
    args = parse_args()
    node = broker_for(args.state, args.fresh)
    logs = args.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print("starting RabbitMQ ...", flush=True)
    try:
        node.start()
    except BrokerStartError:
        # A saved port may have been taken by something else since the last run.
        (args.state / "ports").unlink(missing_ok=True)
        node = broker_for(args.state, fresh=False)
        node.start_on_free_ports()
    print(f"RabbitMQ is up (management UI {node.management_url}, user {node.user})")
    env = {"AMQP_URL": node.url, "PREFETCH": args.prefetch}
    workers = [start(f"worker-{i + 1}", ["worker"], env, logs) for i in range(args.workers)]
    producer = start("producer", ["producer", "--count", "0", "--rate", str(args.rate),
                                  "--heavy-light", str(args.heavy), str(args.light),
                                  "--no-progress"], env, logs)
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    started = time.monotonic()
    tty = sys.stdout.isatty()
    try:
        while not stop["now"]:
            if args.duration and time.monotonic() - started >= args.duration:
                break
            view = render(workers, producer, started, node.queue_counts("task_queue")
                          if _queue_exists(node) else (0, 0))
            print(("\x1b[H\x1b[2J" if tty else "") + view, flush=True)
            time.sleep(1.0 if tty else 2.0)
    finally:
        print("\nstopping: producer first, then workers (each finishes its task), then RabbitMQ")
        stop_all([producer])
        stop_all(workers)
        node.stop()
        print(f"stopped; unfinished tasks stay queued in {args.state} for the next run")
    return 0


def _queue_exists(node: LocalBroker) -> bool:
    try:
        node.queue_counts("task_queue")
        return True
    except (KeyError, RuntimeError):
        return False


if __name__ == "__main__":
    sys.exit(main())
