"""The plans themselves (no root, no cluster): what CI runs and what the bounds rest on."""

from __future__ import annotations

import pytest

from tests.partition import plans
from tests.partition.plans import CI_PHASES, DETECT_S, FULL_PHASES, runs

FAULTS = {"isolate-leader", "client-sees-only-minority", "bridge-outage", "flapping",
          "sigstop-leader"}


def test_ci_runs_every_fault_once_on_both_versions_with_the_recommended_heartbeat(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARTITION_PLAN", raising=False)
    monkeypatch.delenv("PARTITION_VERSIONS", raising=False)
    planned = runs()
    assert {(c.version, s.name) for c, s, _ in planned} == {
        (v, f) for v in ("3.10", "4.3") for f in FAULTS}
    assert len(planned) == 2 * len(FAULTS)
    assert {c.heartbeat_s for c, _, _ in planned} == {plans.RECOMMENDED_HEARTBEAT_S}


def test_the_full_plan_repeats_and_adds_the_brokers_heartbeat_on_3_10(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTITION_PLAN", "full")
    monkeypatch.setenv("PARTITION_REPEAT", "2")
    monkeypatch.delenv("PARTITION_VERSIONS", raising=False)
    keys = [c.key for c, _, _ in runs()]
    assert {k: keys.count(k) for k in set(keys)} == {
        "3.10-hb10": 2 * len(FAULTS), "3.10-hb60": 2 * len(FAULTS),
        "4.3-hb10": 2 * len(FAULTS)}


@pytest.mark.parametrize("phases", [CI_PHASES, FULL_PHASES], ids=["ci", "full"])
def test_holds_outlast_the_detection_and_flaps_stay_under_it(
        phases: plans.Phases) -> None:
    # Shorter holds would not show a node pausing; longer flaps would not be flapping.
    assert phases.hold_s >= DETECT_S + 5
    assert phases.bridge_s > DETECT_S
    assert phases.flap_cut_s < plans.NET_TICKTIME_S * 0.75
    assert phases.flaps >= 3  # each node is cut off once at least


@pytest.mark.parametrize(("var", "value"), [("PARTITION_PLAN", "fulll"),
                                            ("PARTITION_VERSIONS", "3.10,4.0"),
                                            ("PARTITION_REPEAT", "0")])
def test_a_typo_in_the_selection_is_an_error_not_another_plan(
        monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    if var == "PARTITION_REPEAT":
        monkeypatch.setenv("PARTITION_PLAN", "full")
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        runs()
