"""Capped exponential backoff with full jitter, for reconnect loops."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays grow as base·2ⁿ up to `cap`; each is drawn between half that bound and the bound.

    Full jitter keeps a fleet of workers that lost the same broker from
    reconnecting in lock-step.
    """

    base_s: float = 0.5
    cap_s: float = 5.0  # back within ~5 s of the broker's return, even after a long outage
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        bound = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(bound / 2, bound)

    def reset(self) -> None:
        self.attempt = 0
