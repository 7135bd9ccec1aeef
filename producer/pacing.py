"""The producer's `--rate`: a token bucket that holds at most one second of sends.

A budget counted from the start (`elapsed * rate`) would let a producer that was
stalled by an outage or a memory alarm send everything it "missed" at full speed
the moment the broker is back, when the broker is least able to take it. The bucket
forgets what a stall did not use: after any pause the rate is the rate again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

BURST_S = 1.0  # seconds' worth of sends the bucket holds


class Pace:
    """Allows `rate` messages per second, with bursts of at most `rate * BURST_S` (≥ 1)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 messages per second, not {rate}")
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_S)
        self._clock = clock
        self._tokens = 1.0  # the first message goes at once
        self._at = clock()

    def take(self) -> bool:
        """True (and one token used) if a message may go now."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
