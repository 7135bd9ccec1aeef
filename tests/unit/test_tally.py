"""Tallies export what prometheus_client's own Counter and Histogram export for the same
updates (less the `_created` series, which no dashboard or rule of warren's reads)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from warren.tally import TallyCounter, TallyHistogram

BUCKETS = (0.001, 0.01, 0.1, 1, 10)
VALUES = (0.0, 0.0005, 0.001, 0.0011, 0.01, 0.5, 1, 9.99, 10, 11, 300.5)


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_a_tally_histogram_exports_what_a_histogram_does() -> None:
    reference, tally = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("x_duration_seconds", "doc", buckets=BUCKETS, registry=reference)
    tallied = TallyHistogram("x_duration_seconds", "doc", BUCKETS, registry=tally)
    for value in VALUES:
        histogram.observe(value)
        tallied.observe(value)
    assert exposition(tally) == exposition(reference)
    # A bound counts the value equal to it (Prometheus' `le`).
    assert tally.get_sample_value("x_duration_seconds_bucket", {"le": "0.001"}) == 3
    assert tally.get_sample_value("x_duration_seconds_count") == len(VALUES)


def test_a_tally_counter_exports_what_a_labelled_counter_does() -> None:
    reference, tally = CollectorRegistry(), CollectorRegistry()
    counter = Counter("x_tasks_total", "doc", ["outcome"], registry=reference)
    tallied = TallyCounter("x_tasks_total", "doc", "outcome", ("done", "parked"),
                           registry=tally)
    for outcome, amount in (("done", 1), ("done", 2.5), ("parked", 1)):
        counter.labels(outcome).inc(amount)
        tallied.inc(amount, outcome)
    assert sorted(exposition(tally)) == sorted(exposition(reference))  # series order is free


def test_an_unlabelled_tally_counter_starts_at_zero() -> None:
    registry = CollectorRegistry()
    busy = TallyCounter("x_busy_seconds_total", "doc", registry=registry)
    assert registry.get_sample_value("x_busy_seconds_total") == 0
    busy.inc(0.25)
    assert registry.get_sample_value("x_busy_seconds_total") == 0.25


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="ascending"):
        TallyHistogram("x_seconds", "doc", (1, 0.5), registry=None)
    with pytest.raises(ValueError, match="_total"):
        TallyCounter("x_seconds", "doc", registry=None)
    registry = CollectorRegistry()
    TallyHistogram("x_seconds", "doc", BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Histogram("x_seconds", "doc", registry=registry)
