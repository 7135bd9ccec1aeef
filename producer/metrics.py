"""The producer's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

from warren.tally import TallyHistogram

PUBLISHED = Counter("warren_producer_published_total", "basic.publish calls, re-sends included")
CONFIRMED = Counter("warren_producer_confirmed_total", "Messages the broker confirmed (acked)")
NACKED = Counter("warren_producer_nacked_total", "Messages the broker nacked (re-sent)")
RETURNED = Counter("warren_producer_returned_total", "Mandatory messages returned as unroutable")
CONFIRM_LATENCY = TallyHistogram(  # observed on the link's thread only
    "warren_producer_confirm_latency_seconds", "From basic.publish to the broker's confirm",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
