"""The chaos run's operator step: tasks parked as interrupted go back; nothing else does."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from testbed.chaos import INTERRUPTED, ChaosPlan, ChaosRun, queue_counts, vhost_of
from tests.integration.test_admin import failed, park, task
from tests.support.broker import BrokerUnderTest

pytestmark = pytest.mark.broker


def test_only_tasks_parked_as_interrupted_are_requeued(broker: BrokerUnderTest,
                                                       tmp_path: Path) -> None:
    node = broker.private  # the node the chaos run itself uses
    vhost = f"requeue-{uuid.uuid4().hex[:8]}"
    amqp_url = node.add_vhost(vhost)
    park(amqp_url, [
        ("i1", task("noop"), failed(f"failed 3 times: {INTERRUPTED} (the worker died)")),
        ("i2", task("noop"), failed(f"failed 3 times: {INTERRUPTED} (the worker died)")),
        ("f1", task("noop"), failed("failed 3 times: ValueError: boom")),
    ])
    run = ChaosRun(node, amqp_url, tmp_path, ChaosPlan(tasks=1))
    run._requeue_interrupted()
    counts = queue_counts(node, vhost_of(amqp_url))
    node.delete_vhost(vhost)
    assert run.requeued == 2
    assert counts["task_queue"][0] == 2 and counts["task_queue.dead"][0] == 1
