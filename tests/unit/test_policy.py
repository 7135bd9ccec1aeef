"""The worker's decision for a delivery, as a table: what it knows → what happens."""

from __future__ import annotations

import pytest

from worker.policy import INTERRUPTED, Decision, Facts, facts_of, on_arrival, on_result

MAX = 3


@pytest.mark.parametrize(("facts", "expected"), [
    (Facts(), Decision("run")),
    (Facts(attempts=2), Decision("run")),
    (Facts(attempts=99), Decision("run")),  # a fresh delivery gets its run
    # classic queue: a redelivery is an attempt that ended without a result
    (Facts(redelivered=True), Decision("again", "retried", 1, INTERRUPTED)),
    (Facts(attempts=1, redelivered=True), Decision("again", "retried", 2, INTERRUPTED)),
    (Facts(attempts=2, redelivered=True),
     Decision("park", "parked", 3, f"failed 3 times: {INTERRUPTED}")),
    # quorum queue: the broker counts the deliveries, nothing to republish
    (Facts(delivery_count=1, redelivered=True), Decision("run")),
    (Facts(attempts=1, delivery_count=1, redelivered=True), Decision("run")),
    (Facts(delivery_count=3, redelivered=True),
     Decision("park", "parked", 3, f"failed 3 times: {INTERRUPTED}")),
    (Facts(attempts=2, delivery_count=1, redelivered=True),
     Decision("park", "parked", 3, f"failed 3 times: {INTERRUPTED}")),
    # headers nobody can read: parked before anything runs
    (Facts(headers_undecodable=True, redelivered=True),
     Decision("park", "rejected", 0, "rejected: headers could not be decoded")),
])
def test_on_arrival(facts: Facts, expected: Decision) -> None:
    assert on_arrival(facts, MAX) == expected


@pytest.mark.parametrize(("facts", "result", "error", "expected"), [
    (Facts(), "done", "", Decision("ack", "done")),
    (Facts(attempts=2), "done", "", Decision("ack", "done")),
    (Facts(), "failed", "E: x", Decision("retry", "retried", 1, "E: x")),
    (Facts(attempts=1), "failed", "E: x", Decision("retry", "retried", 2, "E: x")),
    (Facts(attempts=2), "failed", "E: x", Decision("park", "parked", 3, "failed 3 times: E: x")),
    (Facts(attempts=9), "failed", "E: x", Decision("park", "parked", 10, "failed 10 times: E: x")),
    (Facts(delivery_count=1), "failed", "E", Decision("retry", "retried", 2, "E")),
    (Facts(attempts=1, delivery_count=1), "failed", "E",
     Decision("park", "parked", 3, "failed 3 times: E")),
    (Facts(), "malformed", "bad", Decision("park", "rejected", 0, "rejected: bad")),
    (Facts(attempts=1, delivery_count=1), "malformed", "bad",
     Decision("park", "rejected", 2, "rejected: bad")),
])
def test_on_result(facts: Facts, result: str, error: str, expected: Decision) -> None:
    assert on_result(facts, result, error, MAX) == expected  # type: ignore[arg-type]


def test_max_attempts_one_parks_the_first_failure() -> None:
    assert on_result(Facts(), "failed", "E", 1).action == "park"
    assert on_arrival(Facts(redelivered=True), 1).action == "park"


@pytest.mark.parametrize(("headers", "attempts", "count"), [
    (None, 0, None),
    ({}, 0, None),
    ({"x-warren-attempts": 2, "x-delivery-count": 4}, 2, 4),
    ({"x-warren-attempts": -1}, 0, None),
    ({"x-warren-attempts": "2"}, 0, None),
    ({"x-warren-attempts": 1.5}, 0, None),
    ({"x-warren-attempts": True, "x-delivery-count": b"\xff"}, 0, None),
    ({"x-delivery-count": 0}, 0, 0),
])
def test_facts_from_any_header_values(headers: dict | None, attempts: int,
                                      count: int | None) -> None:
    facts = facts_of(headers, redelivered=False, quorum=True)
    assert (facts.attempts, facts.delivery_count) == (attempts, count)


def test_a_classic_queue_ignores_a_forged_delivery_count() -> None:
    forged = facts_of({"x-delivery-count": 0}, redelivered=True, quorum=False)
    assert forged.delivery_count is None
    assert on_arrival(forged, MAX) == Decision("again", "retried", 1, INTERRUPTED)


def test_on_4x_the_acquired_count_counts_returns_the_delivery_count_leaves_out() -> None:
    # a consumer timeout on RabbitMQ 4.3: x-delivery-count stays 0, x-acquired-count grows
    facts = facts_of({"x-delivery-count": 0, "x-acquired-count": 2}, redelivered=True,
                     quorum=True)
    assert facts.delivery_count == 2
    assert on_arrival(facts, 2).action == "park"


def test_a_quorum_redelivery_without_a_count_counts_once() -> None:
    facts = facts_of({}, redelivered=True, quorum=True)
    assert facts.delivery_count == 1 and on_arrival(facts, MAX) == Decision("run")
