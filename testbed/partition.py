"""Partition runs: warren's producer and workers on a 3-node cluster while the network fails.

One run = one scenario on a fresh vhost of a running `NetCluster`:

1. three workers (`python -m worker`, the chaos task) and the tracked publisher
   (`testbed.chaos_producer`, known ids, confirmed ids written at exit) start, each on a
   host of its own, each with all three nodes in AMQP_URL — in a different order per
   worker (n1 n2 n3 / n2 n3 n1 / n3 n1 n2), since warren tries the list from its start
   and would otherwise put every connection on n1;
2. tasks flow for `lead_s`, then the scenario's fault runs (cuts, heals, pauses), each
   cut recorded as a `FaultWindow`;
3. the publisher goes on until every worker has run a task again after the last heal
   (clients on the minority side resumed by themselves), then is stopped (SIGTERM);
4. every confirmed id must be executed, the queues drain, the workers stop (SIGTERM).

The check is `testbed.chaos.check` (acknowledged, executed, lost, duplicated, unexpected).
Availability comes from a sampler that stamps each execution with the time it appeared in
the execution log (0.1 s resolution) and with the worker that ran it (its pid).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testbed.chaos import History, Verdict, check, effect_keys, message_id, read_ids
from testbed.netcluster import NetCluster, NetNode, NetService
from testbed.netns import Host, Lab

SAMPLE_S = 0.1
CONFIRM_SAMPLE_S = 0.5
# pause_minority had its paused nodes back 1.5-7 s after a heal in these runs (on a loaded
# machine); a cluster not whole 20 s after one had stuck (3.10 after a SIGSTOP) every time.
HEAL_WAIT_S = 20.0
STALL_S = 1.0  # a pause in executions shorter than this is just the task rate
TASK_QUEUES = ("task_queue", "task_queue.retry", "task_queue.dead")
WORKERS = ("w1", "w2", "w3")


@dataclass(frozen=True)
class PartitionPlan:
    rate: float = 100.0  # tasks/s from the publisher
    window: int = 100  # its confirms in flight
    prefetch: int = 5
    lead_s: float = 2.0  # tasks flowing before the first fault
    tail_s: float = 4.0  # after the last heal, publishing goes on at least this long
    resume_timeout_s: float = 120.0  # every worker runs a task again within this, after it
    drain_timeout_s: float = 120.0
    queue_type: str = "quorum"
    url_options: str = ""  # appended to every URL, e.g. "heartbeat=10"


# -- the clients' hosts --------------------------------------------------------------------

@dataclass
class Clients:
    """The client hosts of a lab (made once, reused by every run): p, w1, w2, w3."""

    producer: Host
    workers: dict[str, Host]

    @classmethod
    def add_to(cls, lab: Lab) -> Clients:
        return cls(lab.add_host("p"), {name: lab.add_host(name) for name in WORKERS})

    def url_order(self, cluster: NetCluster, worker: str) -> list[NetNode]:
        """w1 → n1 n2 n3, w2 → n2 n3 n1, w3 → n3 n1 n2: connections spread over the nodes."""
        shift = WORKERS.index(worker) % len(cluster.nodes)
        return cluster.nodes[shift:] + cluster.nodes[:shift]


# -- what a run records --------------------------------------------------------------------

@dataclass
class FaultWindow:
    label: str  # e.g. "isolate n2 (leader)"
    cut_at: float
    healed_at: float = 0.0
    minority: tuple[str, ...] = ()  # nodes cut off from the majority
    clients_cut: tuple[str, ...] = ()  # clients cut from every majority node
    leader_before: str = ""
    leader_during: str = ""  # task_queue's leader seen from the majority while cut
    leader_after: str = ""  # the same right after the heal, if no node answered while cut
    stall_s: float | None = None  # longest span without executions begun during the fault
    flowing_again_s: float | None = None  # cut → the end of the last stall (0: none ≥ 1 s)
    first_after_heal_s: float | None = None  # heal → first execution

    @property
    def held_s(self) -> float:
        return self.healed_at - self.cut_at

    @property
    def leader_seen(self) -> str:
        """The majority's leader: as seen during the fault, else right after the heal."""
        return self.leader_during if self.leader_during not in ("", "?") else self.leader_after


class Sampler(threading.Thread):
    """Tails the execution log: (time seen, pid, id) per execution, at SAMPLE_S resolution;
    and, every CONFIRM_SAMPLE_S, the publisher's confirmed count if given a `confirms` probe
    (to tell a publishing stall from a delivery stall afterwards)."""

    def __init__(self, path: Path, confirms: Callable[[], float] | None = None) -> None:
        super().__init__(name="execution-sampler", daemon=True)
        self.path = path
        self.confirms = confirms
        self.seen: list[tuple[float, int, str]] = []
        self.confirmed: list[tuple[float, float]] = []
        self.halt = threading.Event()
        self._offset = 0
        self._partial = b""

    def run(self) -> None:
        if self.confirms is not None:
            # Its own thread: a slow probe must not delay (and so misdate) executions.
            threading.Thread(target=self._sample_confirms, args=(self.confirms,),
                             name="confirm-sampler", daemon=True).start()
        while not self.halt.wait(SAMPLE_S):
            self.read()

    def _sample_confirms(self, probe: Callable[[], float]) -> None:
        while not self.halt.wait(CONFIRM_SAMPLE_S):
            self.confirmed.append((time.monotonic(), probe()))

    def dump(self, directory: Path, origin: float, names: dict[int, str]) -> None:
        """timeline-executions.tsv (s since `origin`, worker, id) and timeline-confirms.tsv
        (s, confirmed so far): what a failed run is read from."""
        (directory / "timeline-executions.tsv").write_text("".join(
            f"{t - origin:.1f}\t{names.get(pid, pid)}\t{key}\n" for t, pid, key in self.seen))
        (directory / "timeline-confirms.tsv").write_text("".join(
            f"{t - origin:.1f}\t{n:.0f}\n" for t, n in self.confirmed))

    def read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        now = time.monotonic()
        for line in lines:
            key, _, pid = line.decode().partition(" ")
            self.seen.append((now, int(pid), key))

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.read()

    def times(self, pids: set[int] | None = None) -> list[float]:
        return [t for t, pid, _ in self.seen if pids is None or pid in pids]

    def executions(self) -> Counter[str]:
        return Counter(key for _, _, key in self.seen)


def measure(window: FaultWindow, times: list[float]) -> None:
    """Fill in a window's availability figures from the execution times (sorted).

    A stall is a span without executions that began during the fault: from the cut to the
    first execution, or between two executions, the first of them before the heal. It may
    end after the heal (when nothing could flow while cut off)."""
    after_cut = [t for t in times if t > window.cut_at]
    edges = [window.cut_at, *after_cut]
    gaps = [(end - start, end) for start, end in itertools.pairwise(edges)
            if start < window.healed_at]
    if not after_cut or after_cut[-1] < window.healed_at:
        gaps.append((float("inf"), float("inf")))  # nothing ran after the heal (yet)
    window.stall_s = round(max(g for g, _ in gaps), 1)
    stalls = [end for g, end in gaps if g >= STALL_S]
    window.flowing_again_s = round(stalls[-1] - window.cut_at, 1) if stalls else 0.0
    after = [t for t in times if t > window.healed_at]
    window.first_after_heal_s = round(after[0] - window.healed_at, 1) if after else None


# -- the run's context, handed to a fault --------------------------------------------------

@dataclass
class Run:
    cluster: NetCluster
    clients: Clients
    vhost: str
    windows: list[FaultWindow] = field(default_factory=list)

    @property
    def lab(self) -> Lab:
        return self.cluster.lab

    def leader(self, avoid: tuple[NetNode, ...] = ()) -> NetNode:
        return self.cluster.leader(self.vhost, avoid=avoid)

    def others(self, node: NetNode) -> list[NetNode]:
        return [n for n in self.cluster.nodes if n is not node]

    def window(self, label: str, **facts: object) -> FaultWindow:
        w = FaultWindow(label, time.monotonic(), **facts)  # type: ignore[arg-type]
        self.windows.append(w)
        return w

    def leader_seen_by_majority(self, minority: NetNode, until: float,
                                other_than: str = "") -> str:
        """task_queue's leader as the majority sees it ("?": no answer by `until`). Asked
        again until a node answers (a rabbitmqctl call can take seconds on a loaded
        machine) and, with `other_than`, until another node leads: an election takes
        longer on a loaded machine too, and one early look would call it missing."""
        seen = "?"
        while True:
            # Never past `until`: the fault's hold must not grow with a slow rabbitmqctl.
            left = until - time.monotonic()
            if left <= 0.5:
                return seen
            with contextlib.suppress(AssertionError, RuntimeError):
                seen = self.cluster.leader(self.vhost, avoid=(minority,), timeout_s=left).name
            if seen not in ("?", other_than):  # an answer (and a new leader, if asked)
                return seen
            time.sleep(0.5)

    def leader_after_heal(self, window: FaultWindow, minority: NetNode, changed: bool) -> None:
        """If no majority node answered while the fault held (a rabbitmqctl call can take
        longer than a hold on a loaded machine, and longer still while a peer is not yet
        declared down), ask once it has healed: a leader the majority elected keeps its
        place (Raft does not hand it back to the old one), and one it kept keeps it too."""
        if window.leader_during in ("", "?"):
            window.leader_after = self.leader_seen_by_majority(
                minority, until=time.monotonic() + 30,
                other_than=window.leader_before if changed else "")

    def hold(self, window: FaultWindow, hold_s: float) -> None:
        """Sleep until `hold_s` after the window's cut."""
        time.sleep(max(0.0, window.cut_at + hold_s - time.monotonic()))


Fault = Callable[[Run], None]


# -- faults --------------------------------------------------------------------------------

def isolate_leader(hold_s: float) -> Fault:
    """Cut task_queue's leader off from the other two nodes (clients still reach it)."""
    def fault(run: Run) -> None:
        leader = run.leader()
        others = run.others(leader)
        w = run.window(f"isolate {leader.name} (leader)", minority=(leader.name,),
                       leader_before=leader.name)
        run.lab.cut(leader.host, [n.host for n in others])
        w.leader_during = run.leader_seen_by_majority(leader, until=w.cut_at + hold_s - 1,
                                                      other_than=leader.name)
        run.hold(w, hold_s)
        run.lab.heal()
        w.healed_at = time.monotonic()
        run.leader_after_heal(w, leader, changed=True)
    return fault


def client_sees_only_minority(hold_s: float) -> Fault:
    """Cut a follower node off from the other two, and cut the worker whose URL list starts
    with that node off from the other two as well: that worker sees only the minority."""
    def fault(run: Run) -> None:
        leader = run.leader()
        worker = next(name for name in WORKERS
                      if run.clients.url_order(run.cluster, name)[0] is not leader)
        minority = run.clients.url_order(run.cluster, worker)[0]
        majority = run.others(minority)
        w = run.window(f"isolate {minority.name} + {worker} sees only {minority.name}",
                       minority=(minority.name,), clients_cut=(worker,),
                       leader_before=leader.name)
        run.lab.cut(minority.host, [n.host for n in majority])
        run.lab.cut(run.clients.workers[worker], [n.host for n in majority])
        time.sleep(hold_s / 2)  # the majority keeps its leader: one look, mid-fault
        w.leader_during = run.leader_seen_by_majority(minority, until=w.cut_at + hold_s)
        run.hold(w, hold_s)
        run.lab.heal()
        w.healed_at = time.monotonic()
        run.leader_after_heal(w, minority, changed=False)
    return fault


def bridge_outage(hold_s: float) -> Fault:
    """The switch goes down: no host reaches any other, then it comes back."""
    def fault(run: Run) -> None:
        leader = run.leader()
        w = run.window("bridge down", minority=tuple(n.name for n in run.cluster.nodes),
                       clients_cut=("p", *WORKERS), leader_before=leader.name)
        run.lab.bridge(up=False)
        time.sleep(hold_s)
        run.lab.bridge(up=True)
        w.healed_at = time.monotonic()
    return fault


def flapping(cycles: int, cut_s: float, heal_s: float) -> Fault:
    """Cut one node after another from the rest for `cut_s`, heal for `heal_s`, `cycles` times."""
    def fault(run: Run) -> None:
        for i in range(cycles):
            node = run.cluster.nodes[i % len(run.cluster.nodes)]
            w = run.window(f"flap {i + 1}: isolate {node.name}", minority=(node.name,))
            run.lab.cut(node.host, [n.host for n in run.others(node)])
            time.sleep(cut_s)
            run.lab.heal()
            w.healed_at = time.monotonic()
            time.sleep(heal_s)
    return fault


def sigstop_leader(hold_s: float) -> Fault:
    """SIGSTOP the Erlang VM of task_queue's leader, SIGCONT it `hold_s` later."""
    def fault(run: Run) -> None:
        leader = run.leader()
        w = run.window(f"SIGSTOP {leader.name} (leader)", minority=(leader.name,),
                       leader_before=leader.name)
        leader.pause()
        try:
            w.leader_during = run.leader_seen_by_majority(
                leader, until=w.cut_at + hold_s - 1, other_than=leader.name)
            run.hold(w, hold_s)
        finally:
            leader.resume()
        w.healed_at = time.monotonic()
        run.leader_after_heal(w, leader, changed=True)
    return fault


# -- the result ----------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a run saw besides the history, filled in as it goes."""

    producer_summary: str = ""
    resumed_s: dict[str, float | None] = field(default_factory=dict)  # worker → s after heal
    worker_exits: list[int] = field(default_factory=list)
    queues_after: dict[str, tuple[int, int]] = field(default_factory=dict)
    healthy_after_s: float = 0.0  # last heal → every node sees the others, no partition
    paused: dict[str, int] = field(default_factory=dict)  # node → pause_minority pauses
    operator_restarts: list[str] = field(default_factory=list)  # what we had to restart
    unhealed: str = ""  # the cluster's state when it did not heal by itself
    stuck: str = ""  # when the queues did not drain: who held what, once the workers stopped
    # Deliveries the broker still counted as unacked with no consumer left at all (every
    # worker stopped): RabbitMQ's bookkeeping, not a worker holding them.
    held_for_gone_consumers: int = 0
    parked: dict[str, str] = field(default_factory=dict)  # id → reason, from task_parked
    phases: dict[str, float] = field(default_factory=dict)  # step → seconds it took

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a step of the run: what a CI run's minutes go to."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - began, 1)


@dataclass
class PartitionResult:
    scenario: str
    plan: PartitionPlan
    history: History
    verdict: Verdict
    windows: list[FaultWindow]
    sessions: dict[str, int]  # client → sessions it opened ("consuming"/"publishing" lines)
    outcome: Outcome
    effect_rows: int
    duration_s: float
    logs: Path

    @property
    def resumed_s(self) -> dict[str, float | None]:
        return self.outcome.resumed_s

    @property
    def duplicate_bound(self) -> int:
        """Repeats at-least-once delivery may cause here. A session a worker loses (or a cut
        that makes the leader give its deliveries to others) returns at most `prefetch`
        unacked deliveries, some perhaps already run; a session the publisher loses leaves at
        most `window` messages unconfirmed, which it sends again."""
        faults = len(self.windows) + len(self.outcome.operator_restarts)
        workers = sum(self.sessions[w] - 1 + faults for w in WORKERS) * self.plan.prefetch
        return workers + (self.sessions["p"] - 1 + faults) * self.plan.window

    @property
    def confirmed(self) -> int:
        return len(self.history.acknowledged)

    @property
    def parked_unrun(self) -> set[str]:
        """Parked without ever having run: for a confirmed id, the checker counts it lost."""
        return set(self.outcome.parked) - set(self.history.executions)

    def problems(self) -> list[str]:
        o = self.outcome
        found = self.verdict.problems(self.duplicate_bound)
        if "unconfirmed 0" not in o.producer_summary:
            found.append(f"publisher ended with unconfirmed messages: {o.producer_summary}")
        late = sorted(w for w, s in o.resumed_s.items() if s is None)
        if late:
            found.append(f"workers that never ran a task after the heal: {late}")
        if any(code != 0 for code in o.worker_exits):
            found.append(f"worker exit codes {o.worker_exits}")
        # Parked messages stay in task_queue.dead (warren never drops one): they are counted
        # apart, and every one there must be one the workers said they parked.
        busy = {q: c for q, c in o.queues_after.items()
                if q in TASK_QUEUES and q != "task_queue.dead" and c != (0, 0)}
        # Deliveries the broker keeps for consumers that are gone are RabbitMQ 3.10's (seen
        # after a SIGSTOP the cluster healed from by itself): reported, and the check that
        # counts is that every confirmed task ran (lost above), which holds them to it.
        if busy and sum(unacked for _, unacked in busy.values()) != o.held_for_gone_consumers:
            found.append(f"queues not empty: {busy}; {o.stuck}")
        dead = o.queues_after.get("task_queue.dead", (0, 0))
        if dead != (len(o.parked), 0):
            found.append(f"task_queue.dead holds {dead}, the workers parked {len(o.parked)}")
        return found

    def row(self) -> dict[str, object]:
        o = self.outcome
        return {
            "scenario": self.scenario,
            "faults": "; ".join(f"{w.label} {w.held_s:.0f}s" for w in self.windows),
            "confirmed": self.confirmed,
            "lost": len(self.verdict.lost),
            "unexpected": len(self.verdict.unexpected),
            "duplicates": self.verdict.extra_executions,
            "dup bound": self.duplicate_bound,
            "parked": len(o.parked),
            "parked unrun": len(self.parked_unrun),
            "parked reasons": dict(Counter(reason[:80] for reason in o.parked.values())),
            "longest stall (s)": max((w.stall_s or 0.0) for w in self.windows),
            "flowing again (s)": max((w.flowing_again_s or 0.0) for w in self.windows),
            "first after heal (s)": max((w.first_after_heal_s or 0.0) for w in self.windows),
            "all workers back (s)": _worst(o.resumed_s.values()),
            "cluster healthy (s)": round(o.healthy_after_s, 1),
            "operator restarts": o.operator_restarts,
            "held for gone consumers": o.held_for_gone_consumers,
            "paused": sorted(node for node, n in o.paused.items() if n),
            "sessions": self.sessions,
            "duration (s)": round(self.duration_s, 1),
            "phases (s)": o.phases,
        }


def _worst(values: object) -> float | None:
    known = [v for v in values if v is not None]  # type: ignore[attr-defined]
    return round(max(known), 1) if known else None


# -- the run -------------------------------------------------------------------------------

class PartitionRun:
    def __init__(self, cluster: NetCluster, clients: Clients, workdir: Path,
                 plan: PartitionPlan, scenario: str, fault: Fault) -> None:
        self.cluster = cluster
        self.clients = clients
        self.workdir = workdir
        self.plan = plan
        self.scenario = scenario
        self.fault = fault
        self.vhost = f"{re.sub(r'[^a-z0-9]+', '-', scenario)}-{uuid.uuid4().hex[:6]}"
        self.prefix = self.vhost
        self.executions = workdir / "executions.log"
        self.confirmed_path = workdir / "confirmed.ids"
        self.sampler = Sampler(self.executions, confirms=self._confirmed_now)
        self.workers: dict[str, NetService] = {}
        self.producer: NetService | None = None

    def _url(self, order: list[NetNode]) -> str:
        urls = self.cluster.amqp_url(self.vhost, order).split(",")
        if self.plan.url_options:
            urls = [f"{u}?{self.plan.url_options}" for u in urls]
        return ",".join(urls)

    def run(self) -> PartitionResult:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        run = Run(self.cluster, self.clients, self.vhost)
        out = Outcome()
        with out.phase("vhost"):
            self.cluster.add_vhost(self.vhost)
        try:
            with out.phase("start"):
                # The publisher (n1 first in its list) declares the queues: a quorum queue's
                # leader is placed where it is declared, so task_queue is led by n1 in every
                # run, the node the publisher and w1 are connected to (the harder case).
                self._start_producer()
                self._wait_declared()
                self._start_workers()
                self.sampler.start()
                self._wait_flowing(self.plan.lead_s)
                pauses_before = {n.name: n.pauses() for n in self.cluster.nodes}
            with out.phase("fault"):
                self.fault(run)
            with out.phase("heal"):
                back_from = self._after_the_fault(run, out)
                out.paused = {n.name: n.pauses() - pauses_before[n.name]
                              for n in self.cluster.nodes}
            with out.phase("resume"):
                out.resumed_s = self._wait_resumed(back_from)
            with out.phase("drain"):
                out.producer_summary = self._stop_producer()
                self._wait_all_done()
                out.queues_after = self._wait_queues_empty()
            with out.phase("stop"):
                out.worker_exits = self._stop_workers()
                if self._busy(out.queues_after):
                    out.stuck, out.held_for_gone_consumers = self._who_holds_them()
        finally:
            self.sampler.stop()
            self._kill_everything()
            with contextlib.suppress(Exception):  # a failed run must not leave its fault
                self.cluster.lab.heal()
                self.cluster.lab.bridge(True)
            self._dump(run, started)
        times = sorted(self.sampler.times())
        for window in run.windows:
            measure(window, times)
        out.parked = self._parked()
        return self._result(run, out, started)

    def _after_the_fault(self, run: Run, out: Outcome) -> float:
        """Wait for the cluster to be whole again; returns when the clients' way back began
        (the last heal, or an operator's restart of a node RabbitMQ left out).

        pause_minority heals a cut by itself. A frozen node (SIGSTOP) may come back with a
        partition recorded that RabbitMQ leaves for an operator, and a paused node may hang
        rejoining (RabbitMQ 3.10 on Erlang 25 logs "Global hang workaround"): then do what
        an operator would (`recover`), and report it."""
        last_heal = max(w.healed_at for w in run.windows)
        try:
            self.cluster.wait_healthy(timeout_s=HEAL_WAIT_S)
        except AssertionError as exc:
            out.unhealed = str(exc)[-400:]
            recovery = time.monotonic()
            out.operator_restarts = self.cluster.recover()
            self.cluster.wait_healthy(timeout_s=120)
            out.healthy_after_s = time.monotonic() - last_heal
            return recovery
        out.healthy_after_s = time.monotonic() - last_heal
        return last_heal

    # -- starting --------------------------------------------------------------------------
    def _client_env(self) -> dict[str, str]:
        return {"QUEUE_TYPE": self.plan.queue_type, "LOG_LEVEL": "INFO",
                "SHUTDOWN_GRACE_S": "20"}

    def _start_workers(self) -> None:
        for name, host in self.clients.workers.items():
            env = {**self._client_env(),
                   "AMQP_URL": self._url(self.clients.url_order(self.cluster, name)),
                   "WORKER_ID": name, "PREFETCH": str(self.plan.prefetch),
                   "TASK_MODULES": "testbed.chaos_tasks", "CHAOS_LOG": str(self.executions),
                   "CHAOS_DB": str(self.workdir / "effects.db")}
            self.workers[name] = NetService("worker", env, self.workdir / f"{name}.log",
                                            host=host).start()
        for worker in self.workers.values():
            worker.wait_ready(timeout_s=60)

    def _start_producer(self) -> None:
        env = {**self._client_env(), "AMQP_URL": self._url(self.cluster.nodes)}
        # Endless in practice; stopped with SIGTERM once every worker is back after the heal.
        self.producer = NetService("testbed.chaos_producer", env, self.workdir / "p.log", [
            "--count", "10000000", "--prefix", self.prefix,
            "--confirmed", str(self.confirmed_path), "--rate", str(self.plan.rate),
            "--window", str(self.plan.window)], host=self.clients.producer).start()

    def _wait_declared(self, timeout_s: float = 60.0) -> None:
        assert self.producer is not None
        deadline = time.monotonic() + timeout_s
        while self._confirmed_now() == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing confirmed within {timeout_s}s:\n{self._tail('p')}")
            time.sleep(0.2)

    def _confirmed_now(self) -> float:
        assert self.producer is not None
        try:
            return self.producer.metrics().get("warren_producer_confirmed_total", 0.0)
        except OSError:
            return 0.0  # between its start and its metrics server answering

    def _wait_flowing(self, lead_s: float) -> None:
        deadline = time.monotonic() + 60
        while not self.sampler.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no task executed within 60 s of the start:\n"
                                     f"{self._tail('p')}")
            time.sleep(0.1)
        time.sleep(lead_s)

    # -- the end ---------------------------------------------------------------------------
    def _pids(self) -> dict[int, str]:
        return {w.process.pid: name for name, w in self.workers.items() if w.process}

    def _wait_resumed(self, last_heal: float) -> dict[str, float | None]:
        """Worker → seconds from the last heal to its first execution after it. Publishing
        goes on meanwhile (at least tail_s), so a worker that is back gets tasks."""
        pids = self._pids()
        deadline = last_heal + self.plan.resume_timeout_s
        resumed: dict[str, float | None] = dict.fromkeys(self.workers)
        while time.monotonic() < deadline:
            for t, pid, _ in list(self.sampler.seen):
                name = pids.get(pid)
                if name and t > last_heal and resumed[name] is None:
                    resumed[name] = round(t - last_heal, 1)
            if None not in resumed.values() and time.monotonic() > last_heal + self.plan.tail_s:
                break
            time.sleep(0.2)
        return resumed

    def _stop_producer(self) -> str:
        assert self.producer is not None
        self.producer.signal(signal.SIGTERM)
        try:
            self.producer.wait(timeout_s=60)
        except subprocess.TimeoutExpired:
            self.producer.stop()
        lines = [ln for ln in self.producer.log().splitlines() if ln.startswith("published ")]
        return lines[-1] if lines else ""

    def _wait_all_done(self) -> None:
        confirmed = read_ids(self.confirmed_path)
        deadline = time.monotonic() + self.plan.drain_timeout_s
        while time.monotonic() < deadline:
            if confirmed <= self.sampler.executions().keys():
                return
            time.sleep(0.5)

    def _wait_queues_empty(self, timeout_s: float = 30.0) -> dict[str, tuple[int, int]]:
        deadline = time.monotonic() + timeout_s
        counts: dict[str, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                counts = self.cluster.counts(self.vhost)
                # task_queue.dead keeps what was parked: accounted for by problems()
                if all(counts.get(q, (0, 0)) == (0, 0) for q in TASK_QUEUES[:2]):
                    time.sleep(1.0)  # anything still running shows up as a duplicate now
                    return counts
            time.sleep(0.5)
        return counts

    @staticmethod
    def _busy(counts: dict[str, tuple[int, int]]) -> bool:
        return any(counts.get(q, (0, 0)) != (0, 0) for q in TASK_QUEUES[:2])

    def _who_holds_them(self) -> tuple[str, int]:
        """Deliveries left unacked after the drain: with every worker stopped, they are
        back as ready if a worker held them (warren's fault), still unacked if the broker
        keeps them for a consumer that is gone (3.10, after a SIGSTOP, now and then).
        Returns the diagnosis and how many are held with no consumer left."""
        try:
            counts = self.cluster.counts(self.vhost)
            consumers = self.cluster.ask("list_consumers", "-p", self.vhost, "-q",
                                         "--no-table-headers", "queue_name", "channel_pid")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return f"could not ask the cluster: {str(exc)[-200:]}", 0
        listed = [line.strip() for line in consumers.splitlines() if line.strip()]
        held = 0 if listed else sum(counts.get(q, (0, 0))[1] for q in TASK_QUEUES[:2])
        ready = sum(counts.get(q, (0, 0))[0] for q in TASK_QUEUES[:2])
        return (f"after the workers stopped: {counts}, consumers left: {listed}",
                held if ready == 0 else 0)

    def _stop_workers(self) -> list[int]:
        for worker in self.workers.values():
            worker.signal(signal.SIGTERM)
        codes = []
        for worker in self.workers.values():
            try:
                codes.append(worker.wait(timeout_s=40))
            except subprocess.TimeoutExpired:
                codes.append(-1)
        return codes

    def _kill_everything(self) -> None:
        for service in [*self.workers.values(), self.producer]:
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()

    def _tail(self, client: str, chars: int = 2000) -> str:
        path = self.workdir / f"{client}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _sessions(self) -> dict[str, int]:
        events = {"p": "publishing", **dict.fromkeys(WORKERS, "consuming")}
        return {client: sum(1 for e in log_events(self.workdir / f"{client}.log")
                            if e.get("event") == event)
                for client, event in events.items()}

    def _dump(self, run: Run, started: float) -> None:
        self.sampler.dump(self.workdir, started, self._pids())
        (self.workdir / "timeline-faults.tsv").write_text("".join(
            f"{w.cut_at - started:.1f}\t{w.healed_at - started:.1f}\t{w.label}\n"
            for w in run.windows))

    def _parked(self) -> dict[str, str]:
        return {str(e.get("task_id")): str(e.get("reason"))
                for w in WORKERS for e in log_events(self.workdir / f"{w}.log")
                if e.get("event") == "task_parked"}

    def _result(self, run: Run, out: Outcome, started: float) -> PartitionResult:
        m = re.match(r"published (\d+) messages", out.producer_summary)
        attempted = frozenset(message_id(self.prefix, seq)
                              for seq in range(int(m.group(1)) if m else 0))
        history = History(attempted, read_ids(self.confirmed_path), self.sampler.executions())
        return PartitionResult(
            scenario=self.scenario, plan=self.plan, history=history, verdict=check(history),
            windows=run.windows, sessions=self._sessions(), outcome=out,
            effect_rows=len(effect_keys(self.workdir / "effects.db")),
            duration_s=time.monotonic() - started, logs=self.workdir)


def log_events(path: Path) -> Iterator[dict[str, object]]:
    """The JSON log lines of a warren process (other lines skipped)."""
    if not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                yield json.loads(line)
