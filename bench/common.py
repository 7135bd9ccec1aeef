"""What every benchmark shares: the broker, processes, timing, and writing results."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

from testbed.broker import LocalBroker, free_port
from testbed.processes import REPO, spawn

RESULTS = REPO / "bench" / "results"


@dataclass
class Bench:
    """One broker for a whole run; each scenario gets a fresh vhost."""

    broker: LocalBroker
    quick: bool = False
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def vhost(self) -> str:
        return self.broker.add_vhost(f"b-{uuid.uuid4().hex[:8]}")

    def spawn(self, args: Sequence[str], env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        proc = spawn(args, {"LOG_LEVEL": "WARNING", **(env or {})}, log)
        self.procs.append(proc)
        return proc

    def worker(self, url: str, prefetch: str, log: Path | None = None,
               **env: str) -> subprocess.Popen[bytes]:
        return self.spawn(["-m", "worker"], {"AMQP_URL": url, "PREFETCH": prefetch,
                                             "METRICS_PORT": str(free_port()),
                                             "LOG_LEVEL": "INFO", **env}, log)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def prepublish(url: str, bodies: Sequence[bytes], queue: str = "task_queue",
               content_type: str = "application/json") -> None:
    """Fill a queue with persistent messages, confirmed in batches (setup, not measured)."""
    conn = connect(url)
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2, content_type=content_type)
        for body in bodies:
            ch.basic_publish("", queue, body, props)
    finally:
        conn.close()


def ready(url: str, queue: str = "task_queue") -> int:
    conn = connect(url)
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def queue_totals(bench: Bench, url: str, queue: str = "task_queue") -> tuple[int, int]:
    vhost = url.rsplit("/", 1)[1]
    info = bench.broker.api("GET", f"/api/queues/{vhost}/{queue}")
    assert isinstance(info, dict)
    return int(info.get("messages_ready", 0)), int(info.get("messages_unacknowledged", 0))


def first_consuming(logs: Sequence[Path]) -> float:
    """Wall-clock time the first consumer started consuming (warren's JSON log or plain's line)."""
    stamps = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("consuming "):
                stamps.append(float(line.split()[1]))
            elif '"event": "consuming"' in line:
                stamps.append(_iso_epoch(json.loads(line)["timestamp"]))
    if not stamps:
        raise RuntimeError("no consumer reported that it started consuming")
    return min(stamps)


def _iso_epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def wait_drained(bench: Bench, url: str, timeout_s: float = 600.0) -> float:
    """Wall-clock time at which nothing is left ready or unacked on task_queue."""
    conn = connect(url)
    try:
        channel = conn.channel()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if channel.queue_declare("task_queue", passive=True).method.message_count == 0:
                break
            time.sleep(0.01)
        ended = time.time()
    finally:
        conn.close()
    # What is still unacked (at most prefetch x consumers) is finished within moments;
    # the management API lags by its stats interval, so it only confirms the end.
    while sum(queue_totals(bench, url)) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return ended


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "pika": pika.__version__, "rabbitmq": "3.10.8 (Debian package, private node)",
            "date": time.strftime("%Y-%m-%d"),
            "load_average_1m": round(os.getloadavg()[0], 2)}  # when the result was written


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


@dataclass
class Outcome:
    name: str
    title: str
    rows: list[dict[str, Any]]
    goals: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def write(self) -> str:
        RESULTS.mkdir(parents=True, exist_ok=True)
        doc = {"name": self.name, "title": self.title, "machine": machine(), "rows": self.rows,
               "goals": self.goals, "notes": self.notes}
        (RESULTS / f"{self.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        text = f"### {self.title}\n\n{markdown_table(self.rows)}\n"
        if self.goals:
            text += "\n" + markdown_table(self.goals) + "\n"
        for note in self.notes:
            text += f"\n{note}\n"
        m = doc["machine"]
        text += (f"\nMeasured {m['date']} on {m['cpus']} CPUs ({m['cpu']}), Python "
                 f"{m['python']}, pika {m['pika']}, RabbitMQ {m['rabbitmq']}; load average "
                 f"(1 min) {m['load_average_1m']} when written.\n")
        (RESULTS / f"{self.name}.md").write_text(text)
        return text


def goal(name: str, measured: float, target: float, higher_is_better: bool = True) -> dict:
    met = measured >= target if higher_is_better else measured <= target
    op = "≥" if higher_is_better else "≤"
    return {"goal": name, "measured": round(measured, 3), "target": f"{op} {target}",
            "met": "yes" if met else "NO"}


class Events:
    """The workers' task events (fanout `warren.events`), on an exclusive queue bound up front."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url)
        self.channel = self.conn.channel()
        self.channel.exchange_declare("warren.events", exchange_type="fanout", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, "warren.events")

    def collect(self, count: int, timeout_s: float) -> list[dict[str, Any]]:
        """`count` done events, each stamped with the wall-clock time it arrived."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        for method, _props, body in self.channel.consume(self.queue, auto_ack=True,
                                                          inactivity_timeout=0.2):
            if method is not None:
                event = json.loads(body)
                if event["event"] == "done":
                    events.append({**event, "at": time.time()})
            if len(events) >= count or time.monotonic() > deadline:
                break
        self.channel.cancel()
        self.conn.close()
        return events


def wait_ready(ports: Sequence[int], timeout_s: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    pending = list(ports)
    while pending and time.monotonic() < deadline:
        port = pending[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                pending.pop(0)
                continue
        except OSError:
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"workers on ports {pending} not ready after {timeout_s}s")


def start_workers(bench: Bench, url: str, count: int, prefetch: str, **env: str) -> list[int]:
    """Start `count` warren workers and wait until every one is consuming; returns their ports."""
    ports = [free_port() for _ in range(count)]
    for port in ports:
        bench.spawn(["-m", "worker"], {"AMQP_URL": url, "PREFETCH": prefetch,
                                       "METRICS_PORT": str(port), **env})
    wait_ready(ports)
    return ports
