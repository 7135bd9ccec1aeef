"""PREFETCH=auto: size the prefetch from the observed task time.

Tiny tasks want many deliveries in hand (no round trip between them); long
tasks want one (anything held waits while another worker idles). The rule:
hold about HOLD_S seconds of work beyond the task in hand, judged by the
slowest of the last WINDOW tasks, as a power of two between 1 and
PREFETCH_MAX. Judging by the slowest keeps a mix of heavy and light tasks at
prefetch 1 (fair), while a run of tiny tasks opens the window; the work held
is bounded by HOLD_S (plus the one task running) and by PREFETCH_MAX messages.

The window opens only once WINDOW tasks were seen: opened on the first task, a
worker whose first task was light took 8 deliveries of the heavy/light
alternation and held its heavy ones while the others idled (4 workers: makespan
1.07-1.11 of ideal in 4 of 4 runs, 2026-12-07). The WINDOW tasks cost a few
milliseconds of round trips at the start of a drain of tiny tasks. A batch of
results is judged at every task in it (`observe_all`), so a slow task settled
together with a window's worth of fast ones still closes the window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

HOLD_S = 0.25
WINDOW = 16
MIN_CHANGE_INTERVAL_S = 1.0


@dataclass
class AdaptivePrefetch:
    max_prefetch: int
    lanes: int = 1  # never fewer deliveries than lanes to run them (CONCURRENCY)
    hold_s: float = HOLD_S
    current: int = 0  # 0: the floor, set below
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def __post_init__(self) -> None:
        self.current = self.current or self.floor

    @property
    def floor(self) -> int:
        """One delivery per lane, within PREFETCH_MAX: below that, lanes sit idle while
        tasks wait in the queue (4 lanes at prefetch 1 ran 8 one-second tasks in 8 s)."""
        return max(1, min(self.lanes, self.max_prefetch))

    def observe(self, duration_s: float) -> None:
        self.recent.append(duration_s)

    def observe_all(self, durations: Iterable[float]) -> int:
        """Record a batch of task times (seconds); returns the lowest target any point of
        the batch called for. A worker settles in batches: a slow task followed by a
        window's worth of fast ones in one batch must still close the window."""
        lowest = self.max_prefetch
        for duration_s in durations:
            self.recent.append(duration_s)
            lowest = min(lowest, self.target())
        return lowest

    @property
    def slowest_s(self) -> float | None:
        return max(self.recent) if self.recent else None

    def target(self) -> int:
        if len(self.recent) < WINDOW:
            return self.floor
        room = self.hold_s / max(max(self.recent), 1e-6)
        if room < 2:
            return self.floor
        return max(self.floor, min(self.max_prefetch, 1 << int(math.log2(room))))
