"""The seeds' own tutorial clients (pika 1.x) work beside warren, unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from testbed.processes import REPO, ServiceFactory
from tests.support.amqp import EventWatcher, wait_for_count
from tests.support.faults import metric, settled, wait_until

SEEDS = Path(__file__).resolve().parents[1] / "seeds"


def seed(name: str, amqp_url: str, *args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-u", str(SEEDS / name), *args],
                            env={**os.environ, "AMQP_URL": amqp_url}, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_tutorial_new_task_feeds_warren_workers(services: ServiceFactory, amqp_url: str) -> None:
    worker = services.start("worker")
    watcher = EventWatcher(amqp_url)
    try:
        sender = seed("new_task.py", amqp_url, "Hello", "World...")
        out, _ = sender.communicate(timeout=30)
        assert sender.returncode == 0, out
        assert " [x] Sent 'Hello World...'" in out
        [event] = watcher.collect(1, timeout_s=20)
    finally:
        watcher.close()
    assert event["type"] == "dots"
    assert event["duration_s"] >= 3 * 0.01  # three dots at DOT_SECONDS=0.01
    assert settled(lambda: metric(worker, 'warren_worker_tasks_total{outcome="done"}'), 1) == 1


def test_tutorial_worker_consumes_what_warren_sends(services: ServiceFactory,
                                                    amqp_url: str) -> None:
    result = services.run("producer", "Hello World.")
    assert result.returncode == 0, result.stderr
    assert " [x] Sent 'Hello World.'" in result.stdout
    consumer = seed("worker.py", amqp_url)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        assert consumer.stdout is not None
        while time.monotonic() < deadline and " [x] Done" not in lines:
            lines.append(consumer.stdout.readline().rstrip("\n"))
        assert " [x] Received b'Hello World.'" in lines
        assert " [x] Done" in lines
        wait_until(lambda: wait_for_count(amqp_url, "task_queue", 0, 1) == 0, 10, "the ack")
    finally:
        consumer.kill()
        consumer.wait()
