"""Watch the workers' lifecycle events (fanout exchange `warren.events`) from the host."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pika

from worker.outbox import EVENTS_EVERY_S, UNHEARD_PROBE_S

EVENTS_EXCHANGE = "warren.events"


@dataclass(frozen=True)
class Event:
    event: str
    task_id: str
    worker: str
    duration_s: float
    raw: dict[str, Any]


class EventTap:
    """An exclusive queue bound to the events exchange, through the published AMQP port.

    Bind it before publishing: a fanout exchange keeps nothing for late subscribers.
    """

    def __init__(self, amqp_url: str) -> None:
        params = pika.URLParameters(amqp_url)
        params.heartbeat = 0  # the test blocks in subprocesses between reads
        self._connection = pika.BlockingConnection(params)
        self._channel = self._connection.channel()
        # Same declaration as the workers' (durable fanout): idempotent.
        self._channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="fanout", durable=True)
        self._queue = self._channel.queue_declare("", exclusive=True).method.queue
        self._channel.queue_bind(self._queue, EVENTS_EXCHANGE)
        self.events: list[Event] = []
        self._stream = self._channel.consume(self._queue, auto_ack=True, inactivity_timeout=0.2)
        # Workers that found nobody listening build no events for a while (worker.outbox).
        time.sleep(UNHEARD_PROBE_S + EVENTS_EVERY_S)

    def collect(self, done: Callable[[list[Event]], bool], timeout: float) -> list[Event]:
        """Read events until `done(self.events)` or the timeout; returns all read so far.

        One consumer for the tap's life: cancelling an auto-ack consumer drops whatever
        pika had received but not yet handed over (events lost between two reads)."""
        deadline = time.monotonic() + timeout
        while not done(self.events) and time.monotonic() < deadline:
            _method, _props, body = next(self._stream)
            if body is not None:
                self.events.append(_parse(body))
        return self.events

    def settle(self, quiet_s: float = 1.5, timeout: float = 15.0) -> list[Event]:
        """Read until no event has come for `quiet_s`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = len(self.events)
            self.collect(lambda _events: False, quiet_s)
            if len(self.events) == before:
                break
        return self.events

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()

    def __enter__(self) -> EventTap:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _parse(body: bytes) -> Event:
    raw = json.loads(body)
    return Event(event=str(raw.get("event")), task_id=str(raw.get("task_id")),
                 worker=str(raw.get("worker")), duration_s=float(raw.get("duration_s") or 0.0),
                 raw=raw)


def count_done(events: list[Event]) -> int:
    return sum(1 for e in events if e.event == "done")


def duplicates(events: list[Event]) -> dict[str, int]:
    counts = Counter(e.task_id for e in events if e.event == "done")
    return {task_id: n for task_id, n in counts.items() if n > 1}
