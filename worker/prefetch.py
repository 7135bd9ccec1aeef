"""PREFETCH=auto: size the prefetch from the observed task time.

Tiny tasks want many deliveries in hand (no round trip between them); long
tasks want one (anything held waits while another worker idles). The rule:
hold about HOLD_S seconds of work beyond the task in hand, as a power of two
between 1 and PREFETCH_MAX, so the work held is bounded by
max(HOLD_S, one task) and by PREFETCH_MAX messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOLD_S = 0.25
MIN_CHANGE_INTERVAL_S = 1.0


@dataclass
class AdaptivePrefetch:
    max_prefetch: int
    hold_s: float = HOLD_S
    alpha: float = 0.3
    ewma_s: float | None = None
    current: int = 1

    def observe(self, duration_s: float) -> None:
        if self.ewma_s is None:
            self.ewma_s = duration_s
        else:
            self.ewma_s += self.alpha * (duration_s - self.ewma_s)

    def target(self) -> int:
        if self.ewma_s is None:
            return 1
        room = self.hold_s / max(self.ewma_s, 1e-6)
        if room < 2:
            return 1
        return max(1, min(self.max_prefetch, 1 << int(math.log2(room))))

    def change(self) -> int | None:
        """The new prefetch when it should change, else None."""
        target = self.target()
        return None if target == self.current else target
