"""Several private RabbitMQ nodes on this machine, joined into one cluster.

Each node is a `LocalBroker` with its own ports and directory, of the RabbitMQ
version `WARREN_TEST_RABBITMQ` picks. They share one epmd (the host's for host
nodes; one in a container of its own for container nodes), one Erlang cookie
and one user/password, since joining a cluster replaces a node's user database
with the cluster's.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from testbed.broker import LocalBroker, SharedEpmd, runtime_for


@dataclass
class RabbitCluster:
    nodes: list[LocalBroker]
    killed: list[LocalBroker] = field(default_factory=list)
    # Container nodes: the epmd they share (a node's own would die with it). None: the
    # host's, which host nodes share and which outlives them.
    epmd: SharedEpmd | None = None

    @classmethod
    def start(cls, base_dir: Path, size: int = 3, extra_config: str = "",
              timeout_s: float = 120.0) -> RabbitCluster:
        cookie = secrets.token_hex(20).upper()
        password = secrets.token_urlsafe(12)
        runtimes = [runtime_for() for _ in range(size)]
        cluster = cls([], epmd=runtimes[0].shared_epmd())
        try:
            if cluster.epmd is not None:
                cluster.epmd.start()
            for index, runtime in enumerate(runtimes):
                home = base_dir / f"node{index + 1}"
                home.mkdir(parents=True, exist_ok=True)
                cluster.nodes.append(LocalBroker(
                    home, password=password, extra_config=extra_config, cookie=cookie,
                    epmd_port=cluster.epmd.port if cluster.epmd else None, runtime=runtime))
            cluster._boot(timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _boot(self, timeout_s: float) -> None:
        # Booting is mostly waiting on Erlang: start the nodes side by side.
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda node: node.start_on_free_ports(timeout_s=timeout_s),
                          self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.nodename)
            node.ctl("start_app")
            node.ctl("await_startup", timeout_s=timeout_s)
        self.wait_members(len(self.nodes), timeout_s=60)

    # -- addresses -----------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def amqp_url(self) -> str:
        """The comma-separated list warren's AMQP_URL takes, first node first."""
        return ",".join(self.urls)

    @property
    def alive(self) -> list[LocalBroker]:
        return [node for node in self.nodes if node not in self.killed]

    def by_name(self, nodename: str) -> LocalBroker:
        return next(node for node in self.nodes if node.nodename == nodename)

    # -- questions -----------------------------------------------------------
    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """rabbitmqctl against the first node still alive."""
        return self.alive[0].ctl(*args, timeout_s=timeout_s)

    def connections(self) -> dict[str, str]:
        """connection_name → node, for every named client connection in the cluster."""
        return {c.name: c.node for c in self.alive[0].connections() if c.name is not None}

    def running_nodes(self) -> set[str]:
        out = self.ctl("eval", "rabbit_nodes:all_running().")
        return {name.strip(" '[]\n") for name in out.split(",") if "@" in name}

    def wait_members(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            running = self.running_nodes()
            if len(running) == count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(running)} of {count} nodes running: {running}")
            time.sleep(0.5)

    def queue_info(self, queue: str, vhost: str = "/") -> dict[str, str]:
        """name, type, leader, members, messages_ready, messages_unacknowledged."""
        items = ("name", "type", "leader", "members", "messages_ready",
                 "messages_unacknowledged")
        out = self.ctl("list_queues", "-q", "--no-table-headers", "-p", vhost, *items)
        for line in out.splitlines():
            parts = line.split("\t")
            if parts and parts[0] == queue:
                return dict(zip(items, parts, strict=False))
        raise KeyError(queue)

    def leader_of(self, queue: str, vhost: str = "/", timeout_s: float = 30.0) -> LocalBroker:
        """The node that leads a quorum queue (waits while an election is under way)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(KeyError, RuntimeError, subprocess.TimeoutExpired):
                leader = self.queue_info(queue, vhost)["leader"]
                alive = {node.nodename: node for node in self.alive}
                if leader in alive:
                    return alive[leader]
            if time.monotonic() > deadline:
                raise AssertionError(f"no live leader for {queue} after {timeout_s}s")
            time.sleep(0.3)

    def counts(self, queue: str, vhost: str = "/") -> tuple[int, int]:
        """(ready, unacked) of a queue, asked of a live node."""
        info = self.queue_info(queue, vhost)
        return int(info["messages_ready"]), int(info["messages_unacknowledged"])

    # -- faults --------------------------------------------------------------
    def kill(self, node: LocalBroker) -> None:
        node.kill()
        self.killed.append(node)

    def stop(self) -> None:
        """Tear down: the nodes' data is thrown away with their directories, so no
        graceful stop (three of them take ~20 s): SIGKILL, side by side."""
        if self.nodes:
            with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
                # Not the killed ones again: their pid file is stale, the pid may be reused.
                list(pool.map(_kill_quietly, self.alive))
        if self.epmd is not None:
            self.epmd.stop()


def _kill_quietly(node: LocalBroker) -> None:
    with contextlib.suppress(Exception):
        node.kill()
