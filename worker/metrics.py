"""The worker's Prometheus metrics. Per-worker series come from each process' own /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from warren.tally import TallyCounter, TallyHistogram

OUTCOMES = ("done", "retried", "parked", "rejected")
# Tallies: updated once per task, under the runner's lock or on the I/O thread.
TASKS = TallyCounter("warren_worker_tasks_total",
                     "Tasks settled, by outcome: done, retried, parked, rejected",
                     "outcome", OUTCOMES)
TASK_DURATION = TallyHistogram(
    "warren_worker_task_duration_seconds", "Time spent running a task",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
IN_FLIGHT = Gauge("warren_worker_tasks_in_flight",
                  "Deliveries held by this worker, not yet settled")
BUSY = TallyCounter("warren_worker_busy_seconds_total", "Seconds spent running tasks")
PREFETCH = Gauge("warren_worker_prefetch", "basic.qos prefetch count in force (0 = unlimited)")
REDELIVERIES = Counter("warren_worker_redeliveries_total",
                       "Deliveries the broker flagged as redelivered")
CONNECTED = Gauge("warren_worker_connected", "1 while connected and consuming")
OLDEST_TASK_AGE = Gauge("warren_worker_oldest_task_age_seconds",
                        "Seconds the oldest task running on this worker has run (0 when idle)")
