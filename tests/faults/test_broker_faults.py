"""Faults the broker itself causes while a producer and workers run.

- `rabbitmqctl close_all_connections`: every connection is closed with 320
  CONNECTION_FORCED, as an operator (or a node going into maintenance) would.
- A memory alarm: the broker blocks publishing connections (connection.blocked)
  until the alarm clears. The producer must wait, not crash, and carry on.

Both use the session's private node (these faults are node-wide) with a vhost
of the test's own; the memory watermark is restored whatever happens. The
producer runs endless at a fixed rate and is stopped with SIGTERM once the fault
is over, so the test does not race its end; its closing line says how many
distinct messages it sent, and each of those must have been done.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from testbed.broker import LocalBroker
from testbed.processes import Service, ServiceFactory
from tests.support.amqp import ready_count
from tests.support.broker import BrokerUnderTest
from tests.support.faults import (
    Summary,
    Tally,
    endless_producer,
    event_names,
    metric,
    producer_summary,
    wait_until,
)

CONFIRMED = "warren_producer_confirmed_total"
NORMAL_WATERMARK = "0.4"  # RabbitMQ's default relative high watermark


def account(amqp_url: str, out: Path, producer: Service,
            workers: list[Service]) -> tuple[Summary, Tally]:
    """Stop the producer: everything it sent was confirmed, and done; nothing is left."""
    producer.signal(signal.SIGTERM)
    assert producer.wait(timeout_s=60) == 0, producer.log()[-3000:]
    summary = producer_summary(producer.log())
    assert summary.confirmed == summary.total and summary.unconfirmed == 0, summary
    wait_until(lambda: Tally.of(out).distinct >= summary.total, 60,
               "every confirmed task to be done")
    wait_until(lambda: ready_count(amqp_url, "task_queue") == 0, 30, "an empty task_queue")
    time.sleep(0.3)
    tally = Tally.of(out)
    assert tally.distinct == summary.total  # 0 lost
    assert ready_count(amqp_url, "task_queue.dead") == 0
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None, worker.log()[-2000:]
        assert worker.probe("/readyz") == 200
    return summary, tally


def sessions_opened(producer: Service, workers: list[Service]) -> int:
    """The fewest sessions any of them has opened so far (1 before any fault)."""
    counts = [event_names(producer).count("publishing")]
    counts += [event_names(w).count("consuming") for w in workers]
    return min(counts)


@pytest.fixture
def node(broker: BrokerUnderTest) -> Iterator[LocalBroker]:
    node = broker.private
    yield node
    node.ctl("set_vm_memory_high_watermark", NORMAL_WATERMARK)  # whatever the test did


def test_connections_closed_by_the_broker_are_reopened_and_nothing_is_lost(
        node: LocalBroker, services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    rate, closures = 300, 3
    vhost = unquote(amqp_url.rsplit("/", 1)[1])
    out = tmp_path / "records"
    workers = [services.start("worker", WORKER_ID=f"w{i}") for i in range(2)]
    producer = endless_producer(services, out, rate)
    recoveries = []
    for closure in range(1, closures + 1):
        confirmed = metric(producer, CONFIRMED)
        wait_until(lambda c=confirmed: metric(producer, CONFIRMED) >= c + rate, 30,
                   "the producer to make progress")
        confirmed = metric(producer, CONFIRMED)
        closed_at = time.monotonic()
        # Without -p (or --global) it would close only the default vhost's connections.
        node.ctl("close_all_connections", "-p", vhost, "test")
        # The close is asynchronous on 4.x: a confirm that was already on its way
        # is no proof of a new session; the session's opening event is.
        wait_until(lambda c=confirmed, n=closure + 1: sessions_opened(producer, workers) >= n
                   and all(w.probe("/readyz") == 200 for w in workers)
                   and metric(producer, CONFIRMED) >= c + rate // 5,
                   30, "workers and producer to be back")
        recoveries.append(time.monotonic() - closed_at)
    summary, tally = account(amqp_url, out, producer, workers)
    for service in (*workers, producer):
        assert service.log().count("CONNECTION_FORCED - test") >= closures, service.module
    for worker in workers:
        assert event_names(worker).count("consuming") == closures + 1
    assert event_names(producer).count("publishing") == closures + 1
    bound = closures * (1000 + len(workers))  # re-sent window + unacked, per closure
    assert tally.duplicates <= bound
    print(f"\nRELIABILITY close-all-connections: {summary.total} tasks at {rate}/s, "
          f"{len(workers)} workers, {closures} closures; lost 0, duplicates "
          f"{tally.duplicates}, re-sends {summary.sends - summary.total}, recovered in "
          f"max {max(recoveries):.1f}s")
    for worker in workers:
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout_s=30) == 0


def test_memory_alarm_blocks_the_producer_which_waits_and_resumes(
        node: LocalBroker, services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    rate = 150
    out = tmp_path / "records"
    workers = [services.start("worker", WORKER_ID=f"w{i}") for i in range(2)]
    producer = endless_producer(services, out, rate)
    wait_until(lambda: metric(producer, CONFIRMED) >= rate, 30, "the producer to start")

    node.ctl("set_vm_memory_high_watermark", "0.0000001")
    alarmed_at = time.monotonic()
    wait_until(lambda: "broker_blocked_publishing" in producer.log(), 30,
               "the producer to be told it is blocked")
    blocked_after = time.monotonic() - alarmed_at
    time.sleep(0.5)  # confirms for what the broker had already read may still come in
    held = metric(producer, CONFIRMED)
    time.sleep(3)
    assert metric(producer, CONFIRMED) == held, "the producer published through an alarm"
    assert producer.process is not None and producer.process.poll() is None
    assert producer.probe("/healthz") == 200
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None

    node.ctl("set_vm_memory_high_watermark", NORMAL_WATERMARK)
    cleared_at = time.monotonic()
    wait_until(lambda: "broker_unblocked" in producer.log(), 30, "the alarm to clear")
    wait_until(lambda: metric(producer, CONFIRMED) >= held + rate // 5, 30,
               "confirms to flow again")
    resumed_s = time.monotonic() - cleared_at
    wait_until(lambda: metric(producer, CONFIRMED) >= held + rate, 30, "a second more")
    summary, tally = account(amqp_url, out, producer, workers)
    events = event_names(producer)
    assert events.index("broker_blocked_publishing") < events.index("broker_unblocked")
    assert "broker_connection_lost" not in events  # it waited; it did not give up or reconnect
    assert events.count("publishing") == 1
    print(f"\nRELIABILITY memory-alarm: {summary.total} tasks at {rate}/s, {len(workers)} "
          f"workers; blocked {blocked_after:.1f}s after the alarm, held at {int(held)} "
          f"confirmed for 3.5s; lost 0, duplicates {tally.duplicates}, resumed "
          f"{resumed_s:.1f}s after the alarm cleared")


def test_a_producer_held_by_an_alarm_resumes_at_its_rate_not_in_a_burst(
        node: LocalBroker, services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    """What a stall left unused is not sent in a rush once the broker is back."""
    rate, window, held_s, after_s = 50, 10, 6.0, 2.0
    out = tmp_path / "records"
    workers = [services.start("worker", WORKER_ID="w0")]
    producer = services.start("producer", "--count", "0", "--rate", str(rate), "--window",
                              str(window), "--type", "record", "--args",
                              json.dumps({"path": str(out)}), WORKER_ID="p0")
    wait_until(lambda: metric(producer, CONFIRMED) >= rate, 30, "the producer to start")
    node.ctl("set_vm_memory_high_watermark", "0.0000001")
    wait_until(lambda: "broker_blocked_publishing" in producer.log(), 30,
               "the producer to be told it is blocked")
    time.sleep(held_s)
    node.ctl("set_vm_memory_high_watermark", NORMAL_WATERMARK)
    wait_until(lambda: "broker_unblocked" in producer.log(), 30, "the alarm to clear")
    resumed = metric(producer, CONFIRMED)
    time.sleep(after_s)
    sent_after = metric(producer, CONFIRMED) - resumed
    # The window held while blocked, one second of burst, then the rate; a budget
    # counted from the start would add rate * held_s (300) on top.
    assert sent_after <= window + rate * (1 + after_s) + rate // 2, sent_after
    assert sent_after >= rate * after_s // 2, "it did not resume"
    account(amqp_url, out, producer, workers)
