"""The availability figures of a partition run, from execution times (no cluster needed)."""

from __future__ import annotations

import math

from testbed.partition import FaultWindow, measure


def window(cut: float, heal: float) -> FaultWindow:
    return FaultWindow("test", cut, healed_at=heal)


def steady(start: float, end: float, step: float = 0.1) -> list[float]:
    return [round(start + i * step, 3) for i in range(int((end - start) / step) + 1)]


def test_flow_that_never_stops_is_flowing_again_at_once() -> None:
    w = window(10.0, 20.0)
    measure(w, steady(0.0, 30.0))
    assert w.flowing_again_s == 0.0
    assert w.stall_s is not None and w.stall_s <= 0.2
    assert w.first_after_heal_s is not None and w.first_after_heal_s <= 0.2


def test_a_stall_inside_the_fault_is_measured_from_the_cut() -> None:
    w = window(10.0, 30.0)
    measure(w, steady(0.0, 10.0) + steady(16.0, 40.0))  # nothing from 10 to 16
    assert w.stall_s == 6.0
    assert w.flowing_again_s == 6.0


def test_a_stall_lasting_past_the_heal_ends_with_the_first_task_after_it() -> None:
    w = window(10.0, 20.0)
    measure(w, steady(0.0, 10.0) + steady(23.5, 40.0))  # the heal at 20, back at 23.5
    assert w.stall_s == 13.5
    assert w.flowing_again_s == 13.5
    assert w.first_after_heal_s == 3.5


def test_the_last_stall_counts_not_the_first() -> None:
    w = window(10.0, 30.0)
    measure(w, steady(0.0, 10.0) + steady(12.0, 15.0) + steady(19.0, 40.0))
    assert w.stall_s == 4.0
    assert w.flowing_again_s == 9.0  # flowing for good from 19, 9 s after the cut


def test_short_gaps_are_the_task_rate_not_a_stall() -> None:
    w = window(10.0, 20.0)
    measure(w, steady(0.0, 40.0, step=0.5))
    assert w.flowing_again_s == 0.0


def test_nothing_after_the_heal_is_an_endless_stall() -> None:
    w = window(10.0, 20.0)
    measure(w, steady(0.0, 15.0))
    assert w.stall_s is not None and math.isinf(w.stall_s)
    assert w.first_after_heal_s is None
