"""The producer's --rate bucket (pure logic, a fake clock)."""

from __future__ import annotations

import pytest

from producer.pacing import Pace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sends(pace: Pace, clock: Clock, seconds: float, step: float = 0.01) -> int:
    count, end = 0, clock.now + seconds
    while clock.now < end:
        while pace.take():
            count += 1
        clock.now += step
    return count


def test_it_sends_at_the_rate() -> None:
    clock = Clock()
    pace = Pace(100, clock)
    assert 990 <= sends(pace, clock, 10) <= 1010


def test_a_stall_is_not_made_up_for_later() -> None:
    clock = Clock()
    pace = Pace(100, clock)
    sends(pace, clock, 1)
    clock.now += 60  # an outage: nothing was taken
    burst = 0
    while pace.take():
        burst += 1
    assert burst == 100  # one second's worth, not 6000
    assert 95 <= sends(pace, clock, 1) <= 105


def test_a_slow_rate_still_sends_one_at_a_time() -> None:
    clock = Clock()
    pace = Pace(0.5, clock)
    assert pace.take() and not pace.take()
    clock.now += 1.0
    assert not pace.take()
    clock.now += 1.0
    assert pace.take()


@pytest.mark.parametrize("rate", [0, -1])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        Pace(rate)
