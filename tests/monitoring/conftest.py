"""Brokers and Prometheus releases for the live monitoring tests.

- `monitoring_node`: a private node of Debian's rabbitmq-server (3.10 on bookworm).
- `monitoring_node_4x`: a private RabbitMQ 4.x node from the local/rabbitmq:4.3-management
  image, configured as strictly as 4.x allows: no management metrics collection, so
  nothing may lean on management-API stats.
- `stack`: a live stack (a module's `running` fixture) as seen by Prometheus 2.x and by
  3.x: every test that takes it runs once per release.
Missing tools or images skip locally and fail under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.broker import LocalBroker, rabbitmq_available, runtime_for
from tests.monitoring.containers import IMAGE_4X, ContainerBroker, docker_image_ready
from tests.monitoring.live import RunningStack, Stack
from tests.monitoring.prom_tools import MAJORS, PromRelease, need_release, releases
from tests.support.needs import need

STRICT_4X = (
    "management_agent.disable_metrics_collector = true\n"
    "deprecated_features.permit.management_metrics_collection = false\n"
)


@pytest.fixture(scope="session")
def prometheus_releases() -> list[PromRelease]:
    """Every installed release (the stack starts one server each); at least one."""
    found = [releases()[major] for major in MAJORS if major in releases()]
    need(bool(found), "no Prometheus is installed (apt-get install prometheus, "
                      "or run .ci/install-monitoring-tools.sh)")
    return found


@pytest.fixture(scope="session")
def monitoring_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    # Debian's, whatever WARREN_TEST_RABBITMQ says: monitoring_node_4x is the 4.x one.
    need(rabbitmq_available("3.10"),
         "rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    node = LocalBroker(tmp_path_factory.mktemp("monitoring-rabbitmq"),
                       runtime=runtime_for("3.10"))
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def monitoring_node_4x(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerBroker]:
    problem = docker_image_ready(IMAGE_4X)
    need(problem is None, f"RabbitMQ 4.x: {problem}")
    node = ContainerBroker(tmp_path_factory.mktemp("monitoring-rabbitmq4"),
                           extra_config=STRICT_4X)
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(params=MAJORS, ids=lambda major: f"prometheus{major}")
def stack(request: pytest.FixtureRequest, running: RunningStack) -> Stack:
    """The module's running stack as Prometheus `major`.x sees it."""
    need_release(request.param)
    return running.views[request.param]
