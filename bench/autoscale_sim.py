"""A simulation of the worker autoscaling loop: KEDA's prometheus trigger feeding the HPA.

Pure Python, no broker, seconds to run. `python -m bench.autoscale_report` runs every
trace against every policy and writes `bench/results/autoscale*`; this module is the
model, and `tests/unit/test_autoscale_sim.py` checks its pure parts.

What is modelled, and where it is documented:

- The HPA's replica count for an External metric with an `AverageValue` target:
  `desired = ceil(total / target)`, unless `total / (target * current)` is within the
  tolerance (0.1) of 1, then `current` (kubernetes/kubernetes
  pkg/controller/podautoscaler/replica_calculator.go, `GetExternalPerPodMetricReplicas`;
  https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details).
  `current` is the scale target's replica count, ready or not.
- Behaviour (horizontal.go, `stabilizeRecommendationWithBehaviors` and
  `convertDesiredReplicasWithBehaviorRate`; the same page, "Configurable scaling behavior"):
  every sync records its unstabilised recommendation; a scale-up goes no higher than the
  lowest recommendation inside the scale-up window, a scale-down no lower than the highest
  inside the scale-down window. Then each policy allows, from the replica count at the
  start of its period (current minus what was added plus what was removed within
  `periodSeconds`), `+value` pods or `*(1 + value/100)` (rounded up) when scaling up,
  `-value` pods or `*(1 - value/100)` (truncated) when scaling down; `selectPolicy: Max`
  (the default) takes the policy allowing the biggest change, `Min` the smallest.
  Defaults (pkg/apis/autoscaling/v2/defaults.go): scale-up 0 s window, max(4 pods, 100 %)
  per 15 s; scale-down 300 s window, 100 % per 15 s.
- The sync period: the HPA controller evaluates every 15 s
  (`--horizontal-pod-autoscaler-sync-period`). With a ScaledObject the HPA asks KEDA's
  metrics server, which runs the trigger's query then (no `useCachedMetrics`); KEDA's own
  `pollingInterval` only drives 0 <-> 1, and `cooldownPeriod` only the step to 0
  (https://keda.sh/docs/2.18/reference/scaledobject-spec/#pollinginterval,
  #cooldownperiod). Both are modelled for `min_replicas == 0`.
- The prometheus trigger: `query` returns one number, `threshold` is the AverageValue
  target, `activationThreshold` decides 0 <-> 1 (https://keda.sh/docs/2.18/scalers/prometheus/).
- The signal's age: a queue publishes its counts every `collect_statistics_interval`
  (5 s by default), Prometheus scrapes every 15 s (the PodMonitor's interval); the query
  sees the last scrape.
- The work: a fluid queue. `outstanding` is ready + unacked (what the trigger counts);
  each ready worker holds one message at a time (PREFETCH=1), so min(outstanding, ready
  workers) are in progress and finish at `per_worker_rate` each a second; new pods
  consume after a start-up delay.
- Scale-down: the ReplicaSet removes pods that are not ready yet first, then ready ones
  (which one is not chosen by what it is doing). A removed worker holds a task with
  probability min(1, outstanding / ready workers); its remaining time is the task
  duration's residual life, so P(remaining > grace) = E[(D - grace)+] / E[D]. Past
  SHUTDOWN_GRACE_S the task is handed back (redelivered, its work so far wasted). Counts of
  such events are expected values, not draws.

Simplifications, each erring towards more backlog: a removed worker's capacity ends at
once (in reality it finishes the task in hand), and capacity is linear in the worker count
(bench/results/scaling.json measured 0.95-0.99 of linear up to 8 workers with 10 ms tasks,
where broker round trips weigh most).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RESULTS = Path(__file__).resolve().parent / "results"

SYNC_PERIOD_S = 15  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
SCRAPE_INTERVAL_S = 15  # k8s/components/podmonitor: the rabbitmq-detailed job
STATS_INTERVAL_S = 5  # RabbitMQ collect_statistics_interval (default 5000 ms)
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance

PolicyKind = Literal["Pods", "Percent"]
Select = Literal["Max", "Min", "Disabled"]


# ---- the HPA algorithm, as pure functions ---------------------------------------------

@dataclass(frozen=True)
class Policy:
    kind: PolicyKind
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    """One direction of `behavior` (HPAScalingRules)."""

    window_s: int
    policies: tuple[Policy, ...]
    select: Select = "Max"

    def as_manifest(self) -> dict[str, object]:
        """The same rules as the manifests write them (selectPolicy Max is left implicit)."""
        out: dict[str, object] = {
            "stabilizationWindowSeconds": self.window_s,
            "policies": [{"type": p.kind, "value": p.value, "periodSeconds": p.period_s}
                         for p in self.policies]}
        if self.select != "Max":
            out["selectPolicy"] = self.select
        return out


DEFAULT_UP = Rules(0, (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_DOWN = Rules(300, (Policy("Percent", 100, 15),))


def external_average_replicas(total: float, target: float, current: int,
                              tolerance: float = TOLERANCE) -> int:
    """Replicas for an External metric with an AverageValue target (replica_calculator.go)."""
    if current > 0 and abs(1.0 - total / (target * current)) <= tolerance:
        return current
    return math.ceil(total / target)


@dataclass(frozen=True)
class Event:
    at: float
    value: int  # a recommendation, or a replica change (always > 0)


def stabilize(recommendations: Sequence[Event], desired: int, current: int, now: float,
              up: Rules, down: Rules) -> int:
    """Bound `desired` by the lowest recommendation in the scale-up window and the highest
    in the scale-down window; `current` stays where the windows disagree."""
    up_bound = min([desired, *(r.value for r in recommendations if r.at > now - up.window_s)])
    down_bound = max([desired, *(r.value for r in recommendations
                                 if r.at > now - down.window_s)])
    return min(max(current, up_bound), down_bound)


def _changed_within(events: Sequence[Event], period_s: int, now: float) -> int:
    return sum(e.value for e in events if e.at > now - period_s)


def scale_up_limit(current: int, ups: Sequence[Event], downs: Sequence[Event], rules: Rules,
                   now: float) -> int:
    if rules.select == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        start = current - _changed_within(ups, p.period_s, now) + _changed_within(
            downs, p.period_s, now)
        proposals.append(start + p.value if p.kind == "Pods"
                         else math.ceil(start * (1 + p.value / 100)))
    return (min if rules.select == "Min" else max)(proposals)


def scale_down_limit(current: int, ups: Sequence[Event], downs: Sequence[Event], rules: Rules,
                     now: float) -> int:
    if rules.select == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        start = current - _changed_within(ups, p.period_s, now) + _changed_within(
            downs, p.period_s, now)
        proposals.append(start - p.value if p.kind == "Pods"
                         else int(start * (1 - p.value / 100)))
    # Max (the default) means the biggest change, which for scaling down is the lowest count.
    return (max if rules.select == "Min" else min)(proposals)


@dataclass(frozen=True)
class Autoscaler:
    """What a ScaledObject (or an HPA) says: bounds, target, behaviour, KEDA's timers."""

    name: str
    target: float  # messages per worker: the trigger's threshold / the HPA's averageValue
    min_replicas: int
    max_replicas: int
    up: Rules = DEFAULT_UP
    down: Rules = DEFAULT_DOWN
    polling_s: int = 30  # KEDA pollingInterval (0 <-> 1 only)
    cooldown_s: int = 300  # KEDA cooldownPeriod (to 0 only)
    activation: float = 0.0  # KEDA activationThreshold


@dataclass
class Hpa:
    """The controller's memory for one HPA: recommendations and scale events."""

    spec: Autoscaler
    recommendations: list[Event] = field(default_factory=list)
    ups: list[Event] = field(default_factory=list)
    downs: list[Event] = field(default_factory=list)

    def sync(self, total: float | None, current: int, now: float) -> int:
        """One reconcile: the replica count to set (== current when nothing changes)."""
        spec = self.spec
        floor = max(1, spec.min_replicas)  # KEDA gives the HPA at least 1; 0 is KEDA's
        if current == 0 or total is None:
            return current  # scaling disabled at 0, or no metric: hold
        if current > spec.max_replicas:
            desired = spec.max_replicas
        elif current < floor:
            desired = floor
        else:
            raw = external_average_replicas(total, spec.target, current)
            desired = self._normalize(raw, current, floor, now)
        if desired > current:
            self.ups.append(Event(now, desired - current))
        elif desired < current:
            self.downs.append(Event(now, current - desired))
        self._forget(now)
        return desired

    def _normalize(self, raw: int, current: int, floor: int, now: float) -> int:
        spec = self.spec
        stable = stabilize(self.recommendations, raw, current, now, spec.up, spec.down)
        self.recommendations.append(Event(now, raw))
        if stable > current:
            limit = max(current, scale_up_limit(current, self.ups, self.downs, spec.up, now))
            return min(stable, spec.max_replicas, limit)
        if stable < current:
            limit = min(current, scale_down_limit(current, self.ups, self.downs, spec.down, now))
            return max(stable, floor, limit)
        return stable

    def _forget(self, now: float) -> None:
        """Keep what a window or a policy period can still see (the controller reuses slots)."""
        keep = max(self.spec.up.window_s, self.spec.down.window_s)
        period = max(p.period_s for p in (*self.spec.up.policies, *self.spec.down.policies))
        self.recommendations = [r for r in self.recommendations if r.at > now - keep]
        self.ups = [e for e in self.ups if e.at > now - period]
        self.downs = [e for e in self.downs if e.at > now - period]


# ---- the work ---------------------------------------------------------------------------

def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class TaskMix:
    """Task durations: lognormal (median, sigma), cut at `cap_s`; sigma 0 = all `median_s`.

    `overhead_s` is what a worker spends per task besides the task itself (measured).
    """

    name: str
    median_s: float
    sigma: float
    cap_s: float
    overhead_s: float

    def _excess(self, k: float) -> float:
        """E[(D - k)+] for the uncut distribution."""
        if self.sigma == 0:
            return max(0.0, self.median_s - k)
        m, s = math.log(self.median_s), self.sigma
        if k <= 0:
            return math.exp(m + s * s / 2)
        d1 = (m + s * s - math.log(k)) / s
        return math.exp(m + s * s / 2) * _phi(d1) - k * _phi(d1 - s)

    def excess(self, k: float) -> float:
        """E[(min(D, cap) - k)+]."""
        return 0.0 if k >= self.cap_s else self._excess(k) - self._excess(self.cap_s)

    @property
    def mean_s(self) -> float:
        return self.excess(0.0)

    @property
    def per_worker_rate(self) -> float:
        return 1.0 / (self.mean_s + self.overhead_s)

    def residual_over(self, grace_s: float) -> float:
        """P(a busy worker's task needs more than grace_s more): E[(D - g)+] / E[D]."""
        return self.excess(grace_s) / self.mean_s

    def drain_within(self, grace_s: float, steps: int = 400) -> float:
        """E[min(remaining, grace)] for a busy worker: how long its termination lasts."""
        h = grace_s / steps
        values = [self.residual_over(i * h) for i in range(steps + 1)]
        return h * (sum(values) - (values[0] + values[-1]) / 2)

    def share_over(self, seconds: float) -> float:
        """P(D > seconds): the share of tasks longer than that."""
        if seconds >= self.cap_s:
            return 0.0
        if self.sigma == 0:
            return 1.0 if self.median_s > seconds else 0.0
        return 1.0 - _phi((math.log(seconds) - math.log(self.median_s)) / self.sigma)


def measured_overhead_s(path: Path = RESULTS / "scaling.json") -> tuple[float, float]:
    """(per-task overhead, the 1-worker rate it comes from): one worker at PREFETCH=1 ran
    10 ms sleep tasks at `rate` tasks/s, so each task cost 1/rate - 0.010 s besides its sleep."""
    doc = json.loads(path.read_text())
    (row,) = [r for r in doc["rows"] if r["prefetch"] == "1" and r["workers"] == 1]
    rate = float(row["tasks/s"])
    return 1.0 / rate - 0.010, rate


# ---- arrivals -------------------------------------------------------------------------

@dataclass(frozen=True)
class Trace:
    """Arrivals over time, in workers' worth: rate(t) * per_worker_rate tasks a second."""

    name: str
    duration_s: int
    rate: Callable[[int], float]
    burst: tuple[int, int] | None = None  # (start, end) of a burst, for its drain time


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation; Knuth's product loop gets slow and underflows
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def arrivals(trace: Trace, per_worker_rate: float, seed: int) -> list[int]:
    """Tasks published in each second: Poisson, the same draws for every policy."""
    rng = random.Random(f"{trace.name}/{seed}")
    return [poisson(rng, trace.rate(t) * per_worker_rate) for t in range(trace.duration_s)]


# ---- the cluster --------------------------------------------------------------------------

@dataclass(frozen=True)
class Cluster:
    startup_s: int = 10  # scale-up decision -> a new worker consumes
    grace_s: float = 25.0  # SHUTDOWN_GRACE_S


@dataclass
class Outcome:
    backlog: list[float]  # ready + unacked, per second
    pods: list[int]  # pods that exist (starting or running), per second
    arrived: int = 0
    replica_s: float = 0.0
    scale_ups: int = 0
    scale_downs: int = 0
    removed: int = 0
    removed_busy: float = 0.0  # expected: removed while holding a task
    cut_short: float = 0.0  # expected: ... a task that outlasted SHUTDOWN_GRACE_S

    @property
    def peak_backlog(self) -> float:
        return max(self.backlog)

    @property
    def mean_wait_s(self) -> float:
        """Little's law: time-averaged backlog over arrival rate (queueing plus service)."""
        return sum(self.backlog) / self.arrived if self.arrived else 0.0

    def drain_s(self, burst: tuple[int, int]) -> float | None:
        """From the burst's start until the backlog is back to the highest level seen in
        the 5 minutes before it; None if it never is."""
        start, end = burst
        before = max(self.backlog[max(0, start - 300):start], default=0.0)
        for t in range(end, len(self.backlog)):
            if self.backlog[t] <= before:
                return float(t - start)
        return None


@dataclass
class _State:
    pods: list[int]  # ready-at time of each pod, oldest first
    outstanding: float = 0.0
    last_active: int = 0

    def ready(self, t: int) -> int:
        return sum(1 for at in self.pods if at <= t)


def simulate(spec: Autoscaler, trace_arrivals: Sequence[int], mix: TaskMix,
             cluster: Cluster, initial: int | None = None) -> Outcome:
    """Run one policy over one trace, a second at a time."""
    n = len(trace_arrivals)
    start = max(spec.min_replicas, 1) if initial is None else initial
    state = _State(pods=[0] * start)
    out = Outcome(backlog=[0.0] * n, pods=[0] * n, arrived=sum(trace_arrivals))
    hpa, scraped = Hpa(spec), None
    rate = mix.per_worker_rate
    shutdown = _Shutdown(mix.residual_over(cluster.grace_s), mix.drain_within(cluster.grace_s))
    for t in range(n):
        _work(state, t, trace_arrivals[t], rate)
        out.backlog[t] = state.outstanding
        if t % SCRAPE_INTERVAL_S == 0:  # the count as the queue last published it
            scraped = float(round(out.backlog[max(0, t - STATS_INTERVAL_S)]))
        if spec.min_replicas == 0 and t % spec.polling_s == 0:
            _keda_activation(spec, state, t, scraped, cluster, out)
        if t % SYNC_PERIOD_S == SYNC_PERIOD_S // 2:
            wanted = hpa.sync(scraped, len(state.pods), t)
            _resize(state, wanted, t, cluster, shutdown, out)
        out.pods[t] = len(state.pods)
        out.replica_s += len(state.pods)
    return out


def _work(state: _State, t: int, arrived: int, rate: float) -> None:
    """Each ready worker holds one message (PREFETCH=1) and finishes `rate` a second: a
    task takes its time however many workers are idle."""
    state.outstanding += arrived
    busy = min(state.outstanding, state.ready(t))
    state.outstanding -= min(state.outstanding, busy * rate)


def _keda_activation(spec: Autoscaler, state: _State, t: int, metric: float | None,
                     cluster: Cluster, out: Outcome) -> None:
    """KEDA's own loop: 0 -> 1 when active, N -> 0 after cooldownPeriod inactive."""
    if metric is None:
        return
    if metric > spec.activation:
        state.last_active = t
        if not state.pods:
            _resize(state, 1, t, cluster, _IDLE, out)
    elif state.pods and t - state.last_active >= spec.cooldown_s:
        _resize(state, 0, t, cluster, _IDLE, out)  # inactive: nothing is unacked


@dataclass(frozen=True)
class _Shutdown:
    cut_p: float  # P(a busy worker's task outlasts SHUTDOWN_GRACE_S)
    drain_s: float  # E[how long a busy worker takes to stop]


_IDLE = _Shutdown(0.0, 0.0)


def _resize(state: _State, wanted: int, t: int, cluster: Cluster, shutdown: _Shutdown,
            out: Outcome) -> None:
    have = len(state.pods)
    if wanted > have:
        state.pods += [t + cluster.startup_s] * (wanted - have)
        out.scale_ups += 1
    elif wanted < have:
        out.scale_downs += 1
        for _ in range(have - wanted):
            _remove_one(state, t, shutdown, out)


def _remove_one(state: _State, t: int, shutdown: _Shutdown, out: Outcome) -> None:
    """Not-ready pods go first, then the youngest ready one (ReplicaSet ranking)."""
    out.removed += 1
    starting = [i for i, at in enumerate(state.pods) if at > t]
    if starting:
        state.pods.pop(starting[-1])
        return
    busy = min(1.0, state.outstanding / len(state.pods)) if state.pods else 0.0
    state.pods.pop()
    out.removed_busy += busy
    out.cut_short += busy * shutdown.cut_p
    # A terminating pod still costs until its task ends (or the grace runs out).
    out.replica_s += busy * shutdown.drain_s
