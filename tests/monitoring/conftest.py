"""One private RabbitMQ node for the live monitoring tests (it needs its prometheus port).

The node is RabbitMQ 4.3 whatever WARREN_TEST_RABBITMQ says: dashboards and alerts
are for what users run (the image the compose default stands for), and this suite
runs once, not once per version.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.broker import LocalBroker, runtime_for
from tests.support.broker import need_rabbitmq
from tests.support.needs import need_tool

RABBITMQ = "4.3"


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return need_tool("prometheus", "apt-get install prometheus "
                     "(or run .ci/install-monitoring-tools.sh)")


@pytest.fixture(scope="session")
def monitoring_node(tmp_path_factory: pytest.TempPathFactory,
                    prometheus_binary: str) -> Iterator[LocalBroker]:
    need_rabbitmq(f"and the live monitoring tests run on RabbitMQ {RABBITMQ}", RABBITMQ)
    node = LocalBroker(tmp_path_factory.mktemp("monitoring-rabbitmq"),
                       runtime=runtime_for(RABBITMQ))
    try:
        node.start()
        yield node
    finally:
        node.stop()
