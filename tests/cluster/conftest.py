"""A 3-node RabbitMQ cluster of private nodes, for the module that needs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.cluster import RabbitCluster
from testbed.processes import ServiceFactory
from tests.support.broker import need_rabbitmq


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    need_rabbitmq("and the cluster tests start three private nodes")
    handle = RabbitCluster.start(tmp_path_factory.mktemp("cluster"), size=3)
    yield handle
    handle.stop()


@pytest.fixture
def cluster_services(tmp_path: Path, cluster: RabbitCluster) -> Iterator[ServiceFactory]:
    """Services pointed at every node of the cluster, in quorum mode."""
    factory = ServiceFactory(tmp_path, {
        "AMQP_URL": cluster.amqp_url, "QUEUE_TYPE": "quorum", "RETRY_DELAY_MS": "100",
        "SHUTDOWN_GRACE_S": "10", "TASK_MODULES": "testbed.record_tasks",
    })
    yield factory
    factory.stop_all()
