"""What happens to a delivery: one decision from what is known of it. Pure, table-tested.

Two moments decide. On arrival (`on_arrival`), before anything runs: a message whose
headers could not be decoded is parked at once; a message that was delivered before
without a result (its worker died, its channel was closed by a consumer timeout, its
connection dropped) counts that as a failed attempt. On a result (`on_result`): done is
acked; a malformed message is parked at once; a failure is retried until MAX_ATTEMPTS
attempts have failed, then parked.

How deliveries without a result are counted, so that the count survives the process
that took them: a quorum queue counts them itself, in `x-delivery-count` (3.x: every
return; 4.3: rejects and crashes only) and, on 4.x, `x-acquired-count` (every return, a
consumer timeout's and a nack's included) — the larger of the two is the count. A classic
queue only flags a redelivery, so the worker acts on the flag at once: it sends the
message back to the task queue ("again") with its count raised in `x-warren-attempts`,
where the count travels on.
Nothing of this costs anything on a first delivery. A delivery handed back unstarted at
shutdown also returns flagged; the worker sends those back as fresh copies instead, so that
only the one interrupted mid-task (per runner) is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from warren.messages import ACQUIRED_HEADER, ATTEMPTS_HEADER, DELIVERY_COUNT_HEADER

Action = Literal["run", "ack", "again", "retry", "park"]
Result = Literal["done", "failed", "malformed"]
INTERRUPTED = "interrupted: delivered without a result (the worker died or lost its channel)"


class Facts(NamedTuple):
    """What the delivery tells about its past (see `warren.messages.delivery_facts`)."""

    attempts: int = 0  # failed attempts recorded in x-warren-attempts
    delivery_count: int | None = None  # a quorum queue's x-delivery-count, when present
    redelivered: bool = False
    headers_undecodable: bool = False

    @property
    def prior_failures(self) -> int:
        """Attempts that ended without success before this delivery."""
        return self.attempts + (self.delivery_count or 0)


@dataclass(frozen=True)
class Decision:
    action: Action
    outcome: str = ""  # the event and the tasks_total label: done|retried|parked|rejected
    attempts: int = 0  # failed attempts so far, for the copy's x-warren-attempts
    reason: str = ""  # why: the parked copy's x-warren-reason, the retry's last error


RUN = Decision("run")
DONE = Decision("ack", "done")


def on_arrival(facts: Facts, max_attempts: int) -> Decision:
    if facts.headers_undecodable:
        return Decision("park", "rejected", facts.attempts,
                        "rejected: headers could not be decoded")
    if not facts.redelivered:
        return RUN  # even past MAX_ATTEMPTS: a task gets its run, parked only if it fails
    if facts.delivery_count is not None:  # a quorum queue counted it
        if facts.prior_failures >= max_attempts:
            return _park(facts.prior_failures, INTERRUPTED)
        return RUN
    attempts = facts.attempts + 1
    if attempts >= max_attempts:
        return _park(attempts, INTERRUPTED)
    return Decision("again", "retried", attempts, INTERRUPTED)


def on_result(facts: Facts, result: Result, error: str, max_attempts: int) -> Decision:
    if result == "done":
        return DONE
    if result == "malformed":
        return Decision("park", "rejected", facts.prior_failures, f"rejected: {error}")
    return _failed(facts.prior_failures + 1, error, max_attempts)


def _failed(attempts: int, error: str, max_attempts: int) -> Decision:
    if attempts >= max_attempts:
        return _park(attempts, error)
    return Decision("retry", "retried", attempts, error)


def _park(attempts: int, error: str) -> Decision:
    return Decision("park", "parked", attempts, f"failed {attempts} times: {error}")


def facts_of(headers: dict[str, object] | None, redelivered: bool, *, quorum: bool,
             headers_undecodable: bool = False) -> Facts:
    """Facts from a delivery's headers (any values another client may have put there).

    `x-delivery-count` is believed only from a quorum queue, which sets it: on a classic
    queue any client could forge it, and a forged one would hide every crash."""
    if not headers and not quorum:
        return Facts(0, None, redelivered, headers_undecodable)
    headers = headers or {}
    count = None
    if quorum:  # 4.3 counts only rejects and crashes in x-delivery-count, every return in
        counts = [_count(headers.get(name)) for name in (DELIVERY_COUNT_HEADER, ACQUIRED_HEADER)]
        count = max((c for c in counts if c is not None), default=None)  # x-acquired-count
        if count is None and redelivered:
            count = 1  # a quorum queue that counted nothing: this redelivery, at least
    return Facts(_count(headers.get(ATTEMPTS_HEADER)) or 0, count, redelivered,
                 headers_undecodable)


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
