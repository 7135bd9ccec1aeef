"""One private RabbitMQ node for the live monitoring tests (it needs its prometheus port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.broker import LocalBroker, rabbitmq_available
from tests.support.needs import need, need_tool


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return need_tool("prometheus", "apt-get install prometheus "
                     "(or run .ci/install-monitoring-tools.sh)")


@pytest.fixture(scope="session")
def monitoring_node(tmp_path_factory: pytest.TempPathFactory,
                    prometheus_binary: str) -> Iterator[LocalBroker]:
    need(rabbitmq_available(), "rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    node = LocalBroker(tmp_path_factory.mktemp("monitoring-rabbitmq"))
    try:
        node.start()
        yield node
    finally:
        node.stop()
