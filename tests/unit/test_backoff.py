from __future__ import annotations

import random

from warren.backoff import Backoff


def test_delays_grow_are_capped_and_jittered() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    bounds = [0.5, 1, 2, 4, 4, 4, 4, 4]
    assert all(b / 2 <= d <= b for d, b in zip(delays, bounds, strict=True))
    assert len(set(delays)) == len(delays)


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_a_long_run_of_failures_stays_at_the_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=5.0)
    delays = [backoff.next_delay() for _ in range(5000)]  # a nack storm: no overflow
    assert max(delays) <= 5.0 and delays[-1] >= 2.5
