"""The RPC server's Prometheus metrics."""

from __future__ import annotations

from warren.tally import TallyCounter, TallyHistogram

# Tallies: updated on the server's I/O thread only.
REQUESTS = TallyCounter("warren_rpc_requests_total",
                        "RPC requests, by outcome: ok, error, dropped (no reply_to)",
                        "outcome", ("ok", "error", "dropped"))
DURATION = TallyHistogram(
    "warren_rpc_request_duration_seconds", "From delivery to reply published",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
