from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.broker import VERSION_VAR, runtime_for, selected_version
from testbed.processes import ServiceFactory
from tests.support.broker import BrokerUnderTest


def pytest_configure(config: pytest.Config) -> None:
    try:
        selected_version()
    except ValueError as exc:  # a typo must not quietly test the default version
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    """Which RabbitMQ the run is against: the first thing to know about a failure."""
    version = selected_version()
    nodes = f"RabbitMQ {version} ({runtime_for(version).describe()}; {VERSION_VAR} selects)"
    if os.environ.get("AMQP_URL"):
        return f"broker: AMQP_URL's; private nodes: {nodes}"
    return f"private RabbitMQ nodes: {nodes}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    handle = BrokerUnderTest.start(tmp_path_factory.mktemp("rabbitmq"))
    yield handle
    if handle.node is not None:
        handle.node.kill()  # throw-away data: a graceful stop would only cost time (~7 s on 3.10)


@pytest.fixture
def amqp_url(broker: BrokerUnderTest) -> Iterator[str]:
    """An AMQP URL on a vhost of this test's own, so tests never see each other's queues."""
    url = broker.fresh_vhost()
    yield url
    broker.drop_vhost(url)


@pytest.fixture
def services(tmp_path: Path, amqp_url: str) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path, {
        "AMQP_URL": amqp_url, "DOT_SECONDS": "0.01", "RETRY_DELAY_MS": "100",
        "SHUTDOWN_GRACE_S": "10", "TASK_MODULES": "testbed.record_tasks",
    })
    yield factory
    factory.stop_all()
