"""A 3-node cluster on separate test hosts (network namespaces), for the partition suite.

Needs root, iproute2 and iptables (`.ci/install-netns-tools.sh`) and RabbitMQ: without
them the suite is skipped on a developer's machine and fails in CI (tests/support/needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.broker import rabbitmq_available
from testbed.netcluster import NetCluster
from testbed.netns import Lab, can_run, netns_list, sweep_orphans
from testbed.partition import Clients
from tests.support.needs import need


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "partition: needs root, network namespaces, iptables "
                            "and RabbitMQ (a 3-node cluster on separate test hosts)")


@dataclass
class PartitionLab:
    lab: Lab
    cluster: NetCluster
    clients: Clients


def need_lab() -> None:
    need(rabbitmq_available(), "rabbitmq-server is not installed (apt-get install "
         "rabbitmq-server)")
    need(not can_run(), can_run())


@pytest.fixture(scope="module")
def partition_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionLab]:
    """Hosts n1 n2 n3 (the nodes, `pause_minority`), p (the publisher), w1 w2 w3."""
    need_lab()
    sweep_orphans()  # what a SIGKILLed earlier run left behind (its creator is gone)
    with Lab.create() as lab:
        cluster = NetCluster.start(lab, tmp_path_factory.mktemp("nodes"))
        yield PartitionLab(lab, cluster, Clients.add_to(lab))
    assert_removed(lab)


def assert_removed(lab: Lab) -> None:
    """After a lab's teardown, nothing of it is left on the machine."""
    left = [ns for ns in netns_list() if ns.startswith(lab.tag)]
    assert not left, f"namespaces left behind: {left}"
    assert not any(Path("/etc/netns", ns).exists() for ns in lab.namespaces())
