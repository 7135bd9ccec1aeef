"""Negative controls: the same checker, on setups known to lose messages, must report loss.

If these passed with 0 lost, the chaos run's "0 lost" would prove nothing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.broker import LocalBroker
from testbed.chaos import (
    History,
    assert_safe,
    check,
    read_executions,
    read_ids,
    start_workers,
    wait_drained,
    wait_until,
)
from testbed.processes import REPO, Service
from tests.chaos.unconfirmed_publisher import UnconfirmedPublisher

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


def assert_checker_flags_loss(history: History) -> None:
    verdict = check(history)
    print(f"\nlost {len(verdict.lost)} of {len(history.acknowledged)} acknowledged; "
          f"duplicated {verdict.extra_executions}, unexpected {len(verdict.unexpected)}")
    assert verdict.lost, "the control lost nothing: the checker would not catch a real loss"
    assert not verdict.unexpected
    with pytest.raises(AssertionError, match=r"\d+ lost \(confirmed, never done\)"):
        assert_safe(verdict, duplicate_bound=10**9)


def test_without_publisher_confirms_a_broker_crash_loses_messages(
        node: LocalBroker, amqp_url: str, tmp_path: Path) -> None:
    pool = start_workers(tmp_path, amqp_url, count=4)
    publisher = UnconfirmedPublisher(amqp_url, "noconfirm", count=50_000)
    try:
        publisher.start()
        wait_until(lambda: len(publisher.sent) >= 5_000, 60, "5,000 messages sent")
        node.kill()  # mid-publish: the broker crashes with what it had not written yet
        publisher.join(timeout=30)
        node.start()
        wait_drained(node, amqp_url, tmp_path / "executions.log")
    finally:
        pool.kill_all()
    assert publisher.error, "the publisher should have seen the connection die"
    history = History(publisher.attempted_ids(), frozenset(publisher.sent),
                      read_executions(tmp_path / "executions.log"))
    assert_checker_flags_loss(history)


def test_auto_ack_consumers_lose_what_they_held_when_killed(
        node: LocalBroker, amqp_url: str, tmp_path: Path) -> None:
    count = 3_000
    executions = tmp_path / "executions.log"
    confirmed = tmp_path / "confirmed.ids"
    producer = Service("testbed.chaos_producer", {"AMQP_URL": amqp_url},
                       tmp_path / "producer.log",
                       ["--count", str(count), "--prefix", "autoack",
                        "--confirmed", str(confirmed)]).start()
    assert producer.wait(60) == 0, producer.log()[-2000:]
    consumers = [_auto_ack_consumer(amqp_url, executions, tmp_path / f"autoack-{i}.log")
                 for i in range(2)]
    try:
        # Each takes 5 ms a message; the broker pushed them all the queue at once.
        wait_until(lambda: len(read_executions(executions)) >= 200, 30, "200 tasks done")
    finally:
        for consumer in consumers:
            consumer.send_signal(signal.SIGKILL)
            consumer.wait(timeout=10)
    # Whatever the killed consumers held is gone from the broker too: warren workers
    # started now find nothing of it to redo.
    pool = start_workers(tmp_path, amqp_url, count=2)
    try:
        wait_drained(node, amqp_url, executions)
    finally:
        pool.kill_all()
    ids = read_ids(confirmed)
    assert len(ids) == count
    assert_checker_flags_loss(History(ids, ids, read_executions(executions)))


def _auto_ack_consumer(url: str, executions: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.autoack_consumer", url, str(executions), "0.005"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
