"""The negative control for partition runs: a setup known to lose confirmed messages.

RabbitMQ's Jepsen finding, replayed: a classic queue mirrored on every node (`ha-mode:
all`, the replication RabbitMQ 3.x offered before quorum queues) on a cluster with
`cluster_partition_handling = autoheal`. One node (n3) is cut off from the other two;
once it declares them down (net_ticktime) it promotes its own mirror and confirms what a
publisher connected to it sends. When the network heals, autoheal picks the side with
more clients as the winner and restarts the loser, whose mirror resyncs from the winner's
master: what n3 confirmed on its own is gone. The same checker that finds 0 lost with
quorum queues must find those.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from testbed.chaos import History, Verdict, check, message_id, read_ids
from testbed.netcluster import NetCluster, NetNode, NetService
from testbed.netns import Host
from testbed.partition import TASK_QUEUES, FaultWindow, Sampler

HA_POLICY = '{"ha-mode":"all","ha-sync-mode":"automatic"}'


@dataclass
class ControlResult:
    history: History
    verdict: Verdict
    window: FaultWindow
    confirmed: dict[str, int]  # publisher prefix → ids it was told are safe
    lost_by_publisher: dict[str, int]
    summaries: dict[str, str]
    autoheal_decision: str  # the winner's log line naming winner and losers
    queues_after: dict[str, tuple[int, int]]
    healed: bool  # the cluster was whole again (autoheal done) before the check
    duration_s: float


class MirroredAutohealControl:
    """Publisher A on n1 (majority, with the workers), publisher B on n3 (cut off)."""

    def __init__(self, cluster: NetCluster, hosts: dict[str, Host], workdir: Path,
                 hold_s: float = 20.0, rate: float = 50.0, tail_s: float = 5.0) -> None:
        assert cluster.nodes[0].partition_handling == "autoheal", "the control needs autoheal"
        self.cluster = cluster
        self.hosts = hosts  # p, p2, w1, w2, w3
        self.workdir = workdir
        self.hold_s = hold_s
        self.rate = rate
        self.tail_s = tail_s
        self.vhost = f"control-{uuid.uuid4().hex[:6]}"
        self.sampler = Sampler(workdir / "executions.log")
        self.services: dict[str, NetService] = {}

    def _url(self, *nodes: NetNode) -> str:
        return self.cluster.amqp_url(self.vhost, list(nodes))

    def _start(self, name: str, module: str, url: str, args: list[str],
               **env: str) -> NetService:
        service = NetService(module, {"AMQP_URL": url, "QUEUE_TYPE": "classic",
                                      "LOG_LEVEL": "INFO", "SHUTDOWN_GRACE_S": "20", **env},
                             self.workdir / f"{name}.log", args, host=self.hosts[name]).start()
        self.services[name] = service
        return service

    def _publisher(self, name: str, node: NetNode) -> NetService:
        return self._start(name, "testbed.chaos_producer", self._url(node), [
            "--count", "10000000", "--prefix", name, "--rate", str(self.rate),
            "--window", "50", "--confirmed", str(self.workdir / f"{name}.confirmed")])

    def run(self) -> ControlResult:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        n1, n2, n3 = self.cluster.nodes
        self.cluster.add_vhost(self.vhost)
        self.cluster.ask("set_policy", "-p", self.vhost, "--apply-to", "queues", "ha-all",
                         "^task_queue", HA_POLICY)
        try:
            a = self._publisher("p", n1)  # declares task_queue first: its master is on n1
            _wait(lambda: _confirmed(a) > 0, 60, "publisher A's first confirm")
            self._publisher("p2", n3)
            for name in ("w1", "w2", "w3"):  # consumers on the majority side only
                self._start(name, "worker", self._url(n1, n2), [], WORKER_ID=name,
                            PREFETCH="5", TASK_MODULES="testbed.chaos_tasks",
                            CHAOS_LOG=str(self.sampler.path),
                            CHAOS_DB=str(self.workdir / "effects.db")).wait_ready(60)
            self.sampler.start()
            time.sleep(3)
            window = self._partition(n3, [n1, n2])
            healthy = self._wait_healthy()
            time.sleep(self.tail_s)
            summaries = {name: self._stop_publisher(name) for name in ("p", "p2")}
            queues_after = self._wait_drained()
            for name in ("w1", "w2", "w3"):
                self.services[name].signal(signal.SIGTERM)
        finally:
            self.sampler.stop()
            for service in self.services.values():
                with contextlib.suppress(Exception):
                    service.stop()
            with contextlib.suppress(Exception):
                self.cluster.lab.heal()
        return self._result(window, summaries, queues_after, healthy, started)

    def _partition(self, minority: NetNode, majority: list[NetNode]) -> FaultWindow:
        window = FaultWindow(f"isolate {minority.name} (autoheal, mirrored classic queue)",
                             time.monotonic(), minority=(minority.name,), clients_cut=())
        self.cluster.lab.cut(minority.host, [n.host for n in majority])
        time.sleep(self.hold_s)
        self.cluster.lab.heal()
        window.healed_at = time.monotonic()
        return window

    def _wait_healthy(self, timeout_s: float = 30.0) -> bool:
        """Until autoheal has restarted its losers and they rejoined (what they held is
        discarded then): about 5 s after the heal when it works. Autoheal may also decide
        twice (seen here: a first decision for the lone node, a second for the majority
        1.6 s later) and then leave a loser's restart stuck for minutes (once more than
        4): the control's finding does not wait for that, and `healed` says which it was
        (not healed: what the checker counts as lost was at least unavailable)."""
        try:
            self.cluster.wait_healthy(timeout_s=timeout_s)
            return True
        except AssertionError:
            return False

    def _stop_publisher(self, name: str) -> str:
        service = self.services[name]
        service.signal(signal.SIGTERM)
        try:
            service.wait(timeout_s=60)
        except subprocess.TimeoutExpired:
            service.stop()
        lines = [ln for ln in service.log().splitlines() if ln.startswith("published ")]
        return lines[-1] if lines else ""

    def _wait_drained(self, timeout_s: float = 60.0) -> dict[str, tuple[int, int]]:
        """Until the queues are empty and nothing new was executed for 2 s."""
        deadline = time.monotonic() + timeout_s
        counts: dict[str, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                counts = self.cluster.counts(self.vhost)
            last = max((t for t, _, _ in self.sampler.seen), default=0.0)
            if (all(counts.get(q, (0, 0)) == (0, 0) for q in TASK_QUEUES)
                    and time.monotonic() - last > 2):
                return counts
            time.sleep(0.5)
        return counts

    def _result(self, window: FaultWindow, summaries: dict[str, str],
                queues_after: dict[str, tuple[int, int]], healthy: bool,
                started: float) -> ControlResult:
        confirmed = {name: read_ids(self.workdir / f"{name}.confirmed") for name in ("p", "p2")}
        attempted = frozenset(message_id(name, seq) for name, summary in summaries.items()
                              for seq in range(_published(summary)))
        acknowledged = frozenset().union(*confirmed.values())
        history = History(attempted, acknowledged, self.sampler.executions())
        verdict = check(history)
        lost = {name: len(ids & verdict.lost) for name, ids in confirmed.items()}
        decision = autoheal_decision(self.cluster)
        return ControlResult(history, verdict, window, {k: len(v) for k, v in confirmed.items()},
                             lost, summaries, decision, queues_after, healthy,
                             time.monotonic() - started)


def autoheal_decision(cluster: NetCluster) -> str:
    """Every "Autoheal decision * Partitions: ... * Winner: ... * Losers: ..." entry the
    nodes logged (one entry spans four lines), in time order, joined by " / "."""
    entries = []
    for node in cluster.nodes:
        lines = node.log().splitlines()
        for i, line in enumerate(lines):
            if line.endswith("Autoheal decision"):
                entry = [ln.split("> ", 1)[-1].strip() for ln in lines[i:i + 4]]
                entries.append((line[:32], " ".join(entry)))
    return " / ".join(entry for _, entry in sorted(set(entries)))


def _confirmed(service: NetService) -> float:
    try:
        return service.metrics().get("warren_producer_confirmed_total", 0.0)
    except OSError:
        return 0.0


def _published(summary: str) -> int:
    parts = summary.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)
