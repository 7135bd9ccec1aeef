"""Broker restart and refused credentials: what survives, who reconnects, who gives up."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from testbed.processes import ServiceFactory
from tests.integration.test_work_queue import records_of
from tests.support.amqp import publish_tasks, ready_count
from tests.support.broker import BrokerUnderTest
from tests.support.faults import metric, wait_until


def test_broker_restart_keeps_persistent_tasks_and_everyone_reconnects(
        broker: BrokerUnderTest, services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    node = broker.private
    out = tmp_path / "records"
    kept = publish_tasks(amqp_url, [("record", {"path": str(out)})] * 50)
    node.restart()
    assert ready_count(amqp_url, "task_queue") == 50  # durable queue, persistent messages

    worker = services.start("worker")
    producer = services.start("producer", "--count", "0", "--rate", "25", "--type", "record",
                              "--args", f'{{"path": "{out}"}}')
    wait_until(lambda: metric(producer, "warren_producer_confirmed_total") >= 25, 20,
               "the producer to get going")
    node.restart()
    confirmed_before = metric(producer, "warren_producer_confirmed_total")
    wait_until(lambda: worker.probe("/readyz") == 200, 45, "the worker to reconnect")
    wait_until(lambda: metric(producer, "warren_producer_confirmed_total")
               >= confirmed_before + 25, 45, "the producer to publish again")

    producer.signal(signal.SIGTERM)
    assert producer.wait(timeout_s=30) == 0
    confirmed = metric_from_summary(producer.log())
    wait_until(lambda: ready_count(amqp_url, "task_queue") == 0, 30, "the queue to drain")
    time.sleep(0.5)
    done = {key for key, _ in records_of(out)}
    assert set(kept) <= done
    assert len(done - set(kept)) >= confirmed  # at least once: every confirmed task was done
    assert "broker_connection_lost" in worker.log()


def metric_from_summary(log: str) -> int:
    line = next(line for line in log.splitlines() if line.startswith("published "))
    return int(line.split("confirmed ", 1)[1].split(",", 1)[0])


def test_wrong_password_gives_up_with_exit_69_and_never_logs_it(
        services: ServiceFactory, amqp_url: str) -> None:
    password = "Wrong-s3cret-value"
    bad = "amqp://warren:" + password + "@" + amqp_url.split("@", 1)[1]
    for module in ("worker", "rpc_server"):
        result = services.run(module, AMQP_URL=bad, timeout_s=90)
        assert result.returncode == 69, result.stderr[-2000:]
        assert password not in result.stderr + result.stdout
        assert "broker_auth_failed" in result.stderr


def test_sigterm_while_the_broker_is_away_exits_cleanly(services: ServiceFactory) -> None:
    unreachable = "amqp://warren:pw@127.0.0.1:1/%2F"
    worker = services.start("worker", ready=False, AMQP_URL=unreachable)
    wait_until(lambda: "reconnect_scheduled" in worker.log(), 15, "a reconnect attempt")
    assert worker.probe("/healthz") == 200 and worker.probe("/readyz") == 503
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout_s=10) == 0
