"""The autoscaling simulation's pure parts: the HPA's formula, windows and policies as the
Kubernetes controller applies them, the task-duration arithmetic, KEDA's 0 <-> 1."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from bench.autoscale_sim import (
    DEFAULT_DOWN,
    DEFAULT_UP,
    Autoscaler,
    Cluster,
    Event,
    Hpa,
    Policy,
    Rules,
    TaskMix,
    external_average_replicas,
    poisson,
    scale_down_limit,
    scale_up_limit,
    simulate,
    stabilize,
)

NO_WINDOW = Rules(0, (Policy("Percent", 100, 15),))


# ---- the replica count for an External AverageValue metric -----------------------------

@pytest.mark.parametrize(("total", "current", "expected"), [
    (200, 1, 20),  # ceil(total / target), whatever the current count
    (121, 10, 13),  # 1.21: outside the tolerance
    (109, 10, 10),  # 1.09: inside the 10 % tolerance, no change
    (91, 10, 10),  # 0.91: inside
    (89, 10, 9),  # 0.89: outside, scale down
    (0, 4, 0),  # nothing to do: the bounds (min replicas) apply later
])
def test_external_average_value(total: float, current: int, expected: int) -> None:
    assert external_average_replicas(total, 10, current) == expected


# ---- stabilisation windows ---------------------------------------------------------------

def test_scale_down_takes_the_highest_recommendation_in_its_window() -> None:
    recs = [Event(0, 10), Event(15, 4)]
    down_300 = Rules(300, DEFAULT_DOWN.policies)
    assert stabilize(recs, 2, 10, now=30, up=DEFAULT_UP, down=down_300) == 10
    down_20 = Rules(20, DEFAULT_DOWN.policies)  # only t=15 is newer than now - 20
    assert stabilize(recs, 2, 10, now=30, up=DEFAULT_UP, down=down_20) == 4


def test_a_recommendation_exactly_a_window_old_no_longer_counts() -> None:
    recs = [Event(0, 10)]
    assert stabilize(recs, 2, 10, now=300, up=DEFAULT_UP, down=DEFAULT_DOWN) == 2


def test_scale_up_takes_the_lowest_recommendation_in_its_window() -> None:
    up_60 = Rules(60, DEFAULT_UP.policies)
    recs = [Event(0, 2), Event(15, 8)]
    assert stabilize(recs, 12, 2, now=30, up=up_60, down=DEFAULT_DOWN) == 2
    assert stabilize(recs, 12, 2, now=70, up=up_60, down=DEFAULT_DOWN) == 8


# ---- policies ------------------------------------------------------------------------------

def test_default_scale_up_allows_the_larger_of_4_pods_and_doubling() -> None:
    assert scale_up_limit(3, [], [], DEFAULT_UP, now=0) == 7
    assert scale_up_limit(10, [], [], DEFAULT_UP, now=0) == 20


def test_scale_up_counts_from_the_start_of_the_period() -> None:
    pods_4_per_30 = Rules(0, (Policy("Pods", 4, 30),))
    ups = [Event(10, 4)]  # 2 -> 6 at t=10
    assert scale_up_limit(6, ups, [], pods_4_per_30, now=20) == 6  # 2 + 4: no more yet
    assert scale_up_limit(6, ups, [], pods_4_per_30, now=40) == 10  # the period has passed


def test_min_select_takes_the_smallest_change() -> None:
    both = Rules(0, (Policy("Pods", 4, 15), Policy("Percent", 100, 15)), select="Min")
    assert scale_up_limit(10, [], [], both, now=0) == 14
    assert scale_up_limit(10, [], [], Rules(0, both.policies, "Disabled"), now=0) == 10


def test_percent_scale_down_truncates_so_at_least_one_pod_goes() -> None:
    ten_percent = Rules(600, (Policy("Percent", 10, 60),))
    assert scale_down_limit(20, [], [], ten_percent, now=0) == 18
    assert scale_down_limit(9, [], [], ten_percent, now=0) == 8
    assert scale_down_limit(2, [], [], ten_percent, now=0) == 1
    downs = [Event(30, 2)]  # 20 -> 18 at t=30: nothing more until t=90
    assert scale_down_limit(18, [], downs, ten_percent, now=60) == 18


# ---- one controller over time ---------------------------------------------------------

def test_hpa_waits_out_the_scale_down_window_then_steps_down() -> None:
    spec = Autoscaler("t", 10, 1, 20, DEFAULT_UP, Rules(600, (Policy("Percent", 10, 60),)))
    hpa, current, seen = Hpa(spec), 1, []
    for now in range(0, 1500, 15):
        current = hpa.sync(200.0 if now < 60 else 0.0, current, now)
        seen.append((now, current))
    assert max(c for _, c in seen) == 20
    assert all(c == 20 for now, c in seen if 60 <= now < 45 + 600)  # the last 200 at t=45
    after = [c for now, c in seen if now >= 45 + 600]
    assert after[0] == 18 and after[-1] == 1
    assert all(a - b in (0, 1, 2) for a, b in itertools.pairwise(after))


def test_hpa_holds_without_a_metric_and_respects_the_bounds() -> None:
    hpa = Hpa(Autoscaler("t", 10, 2, 5, NO_WINDOW, NO_WINDOW))
    assert hpa.sync(None, 3, 0) == 3
    assert hpa.sync(1000.0, 3, 15) == 5
    assert hpa.sync(0.0, 5, 30) == 2
    assert hpa.sync(0.0, 9, 45) == 5  # above max: back to max


# ---- task durations -----------------------------------------------------------------------

def test_fixed_durations_have_uniform_remaining_time() -> None:
    mix = TaskMix("fixed", 10.0, 0.0, 60.0, 0.0)
    assert mix.mean_s == 10.0
    assert mix.residual_over(5.0) == pytest.approx(0.5)
    assert mix.residual_over(10.0) == 0.0
    assert mix.drain_within(20.0) == pytest.approx(5.0, rel=1e-3)  # E[remaining] = 10 / 2


def test_lognormal_arithmetic_agrees_with_sampling() -> None:
    mix = TaskMix("ln", 1.0, 1.5, 120.0, 0.0)
    rng = random.Random(7)
    draws = [min(rng.lognormvariate(0.0, 1.5), 120.0) for _ in range(200_000)]
    mean = statistics.fmean(draws)
    assert mix.mean_s == pytest.approx(mean, rel=0.03)
    over_25 = sum(max(0.0, d - 25) for d in draws) / len(draws) / mean
    assert mix.residual_over(25.0) == pytest.approx(over_25, rel=0.1)
    assert mix.share_over(25.0) == pytest.approx(sum(d > 25 for d in draws) / len(draws),
                                                 rel=0.1)
    assert mix.residual_over(120.0) == 0.0 and mix.residual_over(0.0) == pytest.approx(1.0)


def test_uncut_lognormal_mean_is_the_closed_form() -> None:
    mix = TaskMix("ln", 2.0, 0.5, 1e9, 0.0)
    assert mix.mean_s == pytest.approx(2.0 * math.exp(0.5**2 / 2))


@pytest.mark.parametrize("lam", [0.3, 5.0, 300.0])
def test_poisson_draws_have_the_right_mean(lam: float) -> None:
    rng = random.Random(1)
    assert statistics.fmean(poisson(rng, lam) for _ in range(20_000)) == pytest.approx(
        lam, rel=0.05)


# ---- the loop ----------------------------------------------------------------------------

FAST = TaskMix("1 s", 1.0, 0.0, 10.0, 0.0)


def test_fixed_capacity_matching_the_load_keeps_up() -> None:
    spec = Autoscaler("fixed", 10, 4, 4, NO_WINDOW, NO_WINDOW)
    out = simulate(spec, [3] * 600, FAST, Cluster(startup_s=0))
    assert out.scale_ups == out.scale_downs == 0
    assert out.replica_s == 4 * 600
    assert max(out.backlog[60:]) < 5


def test_a_backlog_brings_workers_after_the_startup_delay() -> None:
    spec = Autoscaler("up", 10, 1, 20, DEFAULT_UP, DEFAULT_DOWN)
    out = simulate(spec, [200] + [0] * 899, FAST, Cluster(startup_s=30))
    # Syncs at t = 7, 22, ...: 1 -> max(1 + 4, 2 * 1) -> max(5 + 4, 2 * 5): policy-bound.
    assert (out.pods[7], out.pods[22]) == (5, 10)
    assert out.backlog[7 + 29] == pytest.approx(200 - 37, abs=1)  # one worker until t=37
    assert out.backlog[7 + 31] < out.backlog[7 + 29] - 4
    assert out.drain_s((0, 1)) is not None
    assert out.pods[-1] == 1  # back to min once the window has passed


def test_keda_scales_to_zero_only_when_nothing_is_unacked() -> None:
    spec = Autoscaler("zero", 10, 0, 20, DEFAULT_UP, DEFAULT_DOWN, polling_s=10, cooldown_s=300)
    load = [1] * 300 + [0] * 900 + [1] * 60 + [0] * 60
    out = simulate(spec, load, FAST, Cluster(startup_s=10))
    assert out.pods[1100] == 0  # idle for longer than the cooldown
    assert max(out.pods[1200:]) >= 1  # woken by the new tasks
    # A delivered task counts in the metric, so no worker goes while one is outstanding.
    assert out.removed_busy == pytest.approx(0.0, abs=0.05)
