"""Helpers for fault tests: waiting, the producer's closing summary, and the loss count.

A fault test runs the real services (producer, workers) as subprocesses with
the `record` task (testbed/record_tasks.py), injects a fault, and then
accounts for every message: the producer exits 0 only when every message was
confirmed, and each message id the workers recorded is one task done.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.processes import Service, ServiceFactory
from testbed.record_tasks import read_records

_SUMMARY = re.compile(
    r"^published (?P<total>\d+) messages \((?P<sends>\d+) sends\): confirmed (?P<confirmed>\d+), "
    r"nacked (?P<nacked>\d+), returned (?P<returned>\d+), unconfirmed (?P<unconfirmed>\d+)",
    re.MULTILINE)


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.1) -> float:
    """Poll until `predicate()` is true; returns the seconds it took."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def metric(service: Service, name: str) -> float:
    """One sample of a running service, 0 when absent or when the service is gone."""
    try:
        return service.metrics().get(name, 0.0)
    except (OSError, http.client.HTTPException):  # refused, or cut off by the exit
        return 0.0


def settled(read: Callable[[], float], expected: float, timeout_s: float = 5.0) -> float:
    """`read()` once it equals `expected`, or its last value after `timeout_s` seconds.
    A worker's counters follow its work a tick behind (worker/consumer.py _sync_metrics), so
    a count read the moment the work is seen may be one short."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def endless_producer(services: ServiceFactory, out: Path, rate: int, **env: str) -> Service:
    """`python -m producer --count 0 --rate R` of record tasks into `out`; stop it with
    SIGTERM, then read what it sent from its closing line (producer_summary)."""
    return services.start("producer", "--count", "0", "--rate", str(rate), "--type", "record",
                          "--args", json.dumps({"path": str(out)}), WORKER_ID="p0", **env)


@dataclass(frozen=True)
class Summary:
    total: int
    sends: int
    confirmed: int
    nacked: int
    returned: int
    unconfirmed: int


def producer_summary(log: str) -> Summary:
    """The producer's last line: published, confirmed, nacked, returned, unconfirmed."""
    found = _SUMMARY.findall(log)
    assert found, f"no summary line in the producer's output:\n{log[-3000:]}"
    return Summary(*(int(v) for v in found[-1]))


@dataclass(frozen=True)
class Tally:
    """What the workers recorded: distinct ids, and how many ran more than once."""

    distinct: int
    runs: int
    ids: frozenset[str]

    @property
    def duplicates(self) -> int:
        return self.runs - self.distinct

    @classmethod
    def of(cls, path: Path) -> Tally:
        counts = Counter(key for key, _ in read_records(str(path)))
        return cls(len(counts), sum(counts.values()), frozenset(counts))


def log_events(service: Service) -> list[dict[str, object]]:
    """The service's JSON log lines as dicts (non-JSON lines are skipped)."""
    events = []
    for line in service.log().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def event_names(service: Service) -> list[str]:
    return [str(e.get("event")) for e in log_events(service)]
