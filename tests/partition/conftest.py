"""A 3-node cluster on separate test hosts (network namespaces), for the partition suite.

Needs root, iproute2 and iptables (`.ci/install-netns-tools.sh`) and RabbitMQ: without
them the suite is skipped on a developer's machine and fails in CI (tests/support/needs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.broker import rabbitmq_available
from testbed.netcluster import NetCluster, docker_ready, sweep_containers
from testbed.netns import Lab, can_run, netns_list, sweep_orphans
from testbed.partition import Clients
from tests.partition.plans import plan_name
from tests.support.needs import need


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "partition: needs root, network namespaces, iptables "
                            "and RabbitMQ (a 3-node cluster on separate test hosts)")


# What each part of the suite cost (setup, call and teardown of its tests, a cluster's
# start included): printed at the end, because CI's budget is set per part.
_spent: dict[str, float] = defaultdict(float)


def _part(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    config = callspec.params.get("config") if callspec else None
    if config is not None:
        return f"RabbitMQ {config.version}"
    if "negative_control" in item.nodeid:
        return "negative control (RabbitMQ 3.10)"
    return "harness"


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if item.nodeid.startswith("tests/partition/"):
        _spent[_part(item)] += call.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _spent:
        parts = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in _spent.items())
        terminalreporter.write_line(f"partition suite ({plan_name()} plan): {parts}")


@dataclass
class PartitionLab:
    lab: Lab
    cluster: NetCluster
    clients: Clients
    version: str


def need_lab(version: str = "3.10") -> None:
    need(not can_run(), can_run())
    if version == "4.3":
        need(not docker_ready(), docker_ready())
    else:
        need(rabbitmq_available(), "rabbitmq-server is not installed (apt-get install "
             "rabbitmq-server)")


def start_lab(base_dir: Path, version: str) -> PartitionLab:
    """Hosts n1 n2 n3 (the nodes; 3.10 with `pause_minority`), p (the publisher), w1 w2 w3."""
    need_lab(version)
    sweep_orphans()  # what a SIGKILLed earlier run left behind (its creator is gone)
    sweep_containers()
    lab = Lab.create()
    try:
        cluster = NetCluster.start(lab, base_dir, version=version)
        return PartitionLab(lab, cluster, Clients.add_to(lab), version)
    except BaseException:
        lab.destroy()
        raise


def stop_lab(handle: PartitionLab) -> None:
    try:
        handle.cluster.stop()
    finally:
        handle.lab.destroy()
    assert_removed(handle.lab)


class LabPool:
    """One lab at a time: the tests are grouped by version, and a new version's cluster
    replaces the last (two clusters at once would share 2 cores)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.current: PartitionLab | None = None

    def get(self, version: str) -> PartitionLab:
        if self.current is not None and (self.current.version != version
                                         or not whole(self.current.cluster)):
            self.close()  # another version, or a cluster a failed run left broken
        if self.current is None:
            self.current = start_lab(self.factory.mktemp(f"nodes-{version}"), version)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            handle, self.current = self.current, None
            stop_lab(handle)


def whole(cluster: NetCluster) -> bool:
    try:
        cluster.wait_healthy(timeout_s=30)
    except (AssertionError, RuntimeError):
        return False
    return True


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPool]:
    pool = LabPool(tmp_path_factory)
    yield pool
    pool.close()


def assert_removed(lab: Lab) -> None:
    """After a lab's teardown, nothing of it is left on the machine."""
    left = [ns for ns in netns_list() if ns.startswith(lab.tag)]
    assert not left, f"namespaces left behind: {left}"
    assert not any(Path("/etc/netns", ns).exists() for ns in lab.namespaces())
