"""Scale-down strands nothing: the numbers that decide what happens to a task in hand when
a worker pod goes (autoscaler, rollout, drain) agree with each other and with the longest
expected task.

  longest task <= SHUTDOWN_GRACE_S (worker)               the task in hand finishes and acks
  preStop + SHUTDOWN_GRACE_S + EXIT_MARGIN_S <= terminationGracePeriodSeconds   no SIGKILL first
  longest task + SHUTDOWN_GRACE_S <= consumer_timeout     the broker does not take it back
  scale-down window >= the signal's age                    one stale sample shrinks nothing

The longest expected task is TASK_TIME_LIMIT_S once the code has that setting (the manifests
must then state it); until then it is the task mix the autoscaling simulation assumed
(bench/autoscale_report.py, MIX.cap_s). EXIT_MARGIN_S is checked against a real worker by
tests/integration/test_scale_down.py.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest

from bench.autoscale_report import MIX
from bench.autoscale_sim import STATS_INTERVAL_S, SYNC_PERIOD_S
from tests.k8s.manifests import (
    Obj,
    find,
    generated,
    ident,
    of_kind,
    parse_conf,
    warren_containers,
)
from warren.settings import ENV_VARS, Settings

Build = Callable[[str], list[Obj]]
PLACEHOLDER_URL = "amqp://user:secret@rabbitmq:5672/%2F"
# From the end of SHUTDOWN_GRACE_S to the process gone: close the channel and connection,
# log, exit. tests/integration/test_scale_down.py measures it on a real broker.
EXIT_MARGIN_S = 10.0
TIME_LIMIT = "TASK_TIME_LIMIT_S"


def effective_env(container: Obj, objects: list[Obj]) -> dict[str, str]:
    """What the container's process sees: envFrom ConfigMaps, then literal env entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            cm = find(objects, "ConfigMap", source["configMapRef"]["name"])
            assert cm is not None, source
            env.update(cm.get("data") or {})
    env.update({e["name"]: e["value"] for e in container.get("env") or [] if "value" in e})
    return env


def settings_of(container: Obj, objects: list[Obj]) -> Settings:
    return Settings.from_env({**effective_env(container, objects), "AMQP_URL": PLACEHOLDER_URL})


def longest_task_s(container: Obj, objects: list[Obj]) -> float:
    if TIME_LIMIT in ENV_VARS:
        value = effective_env(container, objects).get(TIME_LIMIT)
        assert value, f"{TIME_LIMIT} exists: the manifests must state the limit they are sized for"
        if float(value) > 0:  # the soft limit, then the grace before the hard one
            return float(value) + settings_of(container, objects).task_time_limit_grace_s
    return MIX.cap_s


def prestop_s(container: Obj) -> float:
    """How long a preStop hook can hold the container before SIGTERM (0 without one)."""
    hook = (container.get("lifecycle") or {}).get("preStop")
    if not hook:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = " ".join(hook.get("exec", {}).get("command") or [])
    match = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", command)
    assert match, f"cannot bound the preStop hook {hook}: give it a sleep of known length"
    return float(match[1])


def _workers(objects: list[Obj]) -> list[tuple[Obj, Obj, Obj]]:
    return [(o, s, c) for o, s, c in warren_containers(objects)
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "worker"]


def test_sigkill_comes_after_the_shutdown_grace(objects: list[Obj]) -> None:
    for owner, spec, container in warren_containers(objects):
        grace = settings_of(container, objects).shutdown_grace_s
        needed = prestop_s(container) + grace + EXIT_MARGIN_S
        period = spec.get("terminationGracePeriodSeconds", 30)
        assert period >= needed, f"{ident(owner)}: {period}s < preStop + {grace}s + margin"


def test_a_worker_finishes_the_longest_task_before_it_goes(objects: list[Obj]) -> None:
    workers = _workers(objects)
    assert workers
    for owner, _, container in workers:
        grace = settings_of(container, objects).shutdown_grace_s
        longest = longest_task_s(container, objects)
        assert grace >= longest, f"{ident(owner)}: a {longest:g}s task would be cut at {grace:g}s"


def test_the_worker_needs_no_prestop(objects: list[Obj]) -> None:
    """A consumer receives no Service traffic: SIGTERM itself stops its intake."""
    for owner, _, container in _workers(objects):
        assert prestop_s(container) == 0, ident(owner)


def _consumer_timeouts_ms(objects: list[Obj]) -> list[int]:
    confs = []
    cm = generated(objects, "ConfigMap", "rabbitmq-config")
    if cm is not None:
        confs.append(parse_conf(cm["data"]["rabbitmq.conf"]))
    for cluster in of_kind(objects, "RabbitmqCluster"):
        confs.append(parse_conf(cluster["spec"]["rabbitmq"]["additionalConfig"]))
    return [int(conf["consumer_timeout"]) for conf in confs]


def test_the_broker_lets_a_task_and_its_drain_finish(objects: list[Obj]) -> None:
    """RabbitMQ 3.10 closes the channel of a delivery unacked past consumer_timeout (4.3:
    quorum queues cancel the consumer): the longest task plus the drain must fit."""
    timeouts = _consumer_timeouts_ms(objects)
    assert timeouts, "every build has a broker config"
    for _, _, container in _workers(objects):
        held_s = longest_task_s(container, objects) + settings_of(
            container, objects).shutdown_grace_s
        assert all(ms >= 1000 * held_s for ms in timeouts), (timeouts, held_s)


def _scrape_interval_s(objects: list[Obj]) -> int:
    monitor = find(objects, "PodMonitor", "rabbitmq-detailed")
    if monitor is None:
        return 15  # Prometheus' own default scrape interval is 60 s; ours is 15 s
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    return int(str(endpoint["interval"]).rstrip("s"))


def test_the_scale_down_window_outlasts_the_signals_age(objects: list[Obj]) -> None:
    age = STATS_INTERVAL_S + _scrape_interval_s(objects) + SYNC_PERIOD_S
    behaviors = [o["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
                 for o in of_kind(objects, "ScaledObject")]
    behaviors += [o["spec"]["behavior"] for o in of_kind(objects, "HorizontalPodAutoscaler")]
    for behavior in behaviors:
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= age


# ---- the checks can fail ---------------------------------------------------------------

def _worker_container(objects: list[Obj]) -> Obj:
    (_, _, container), *_ = _workers(objects)
    return container


def test_a_longer_shutdown_grace_in_the_config_map_is_caught(build: Build) -> None:
    objects = copy.deepcopy(build("dev"))
    cm = next(o for o in of_kind(objects, "ConfigMap") if "SHUTDOWN_GRACE_S" in o["data"])
    cm["data"]["SHUTDOWN_GRACE_S"] = "600"  # the producer and the RPC server read this one
    with pytest.raises(AssertionError):
        test_sigkill_comes_after_the_shutdown_grace(objects)


def test_a_prestop_sleep_is_counted(build: Build) -> None:
    objects = copy.deepcopy(build("production"))
    _worker_container(objects)["lifecycle"] = {"preStop": {"sleep": {"seconds": 30}}}
    with pytest.raises(AssertionError):
        test_sigkill_comes_after_the_shutdown_grace(objects)


def test_a_worker_grace_below_the_longest_task_is_caught(build: Build) -> None:
    objects = copy.deepcopy(build("production"))
    for entry in _worker_container(objects)["env"]:
        if entry["name"] == "SHUTDOWN_GRACE_S":
            entry["value"] = "25"
    with pytest.raises(AssertionError):
        test_a_worker_finishes_the_longest_task_before_it_goes(objects)
