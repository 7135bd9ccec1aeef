"""`warren events`: follow the workers' task events as they happen."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from warren.amqp import Link, Message, connect, run_sessions
from warren.amqp.wire import text as wire_text
from warren.settings import Settings


@dataclass(frozen=True)
class EventFilter:
    task_type: str = ""
    worker: str = ""
    outcome: str = ""
    status: bool = False  # also the workers' periodic `worker` events

    def __call__(self, event: dict[str, object]) -> bool:
        if event.get("event") == "worker":
            return self.status and (not self.worker or event.get("worker") == self.worker)
        return ((not self.task_type or event.get("type") == self.task_type)
                and (not self.worker or event.get("worker") == self.worker)
                and (not self.outcome or event.get("event") == self.outcome))


def line(event: dict[str, object]) -> str:
    """One event, for a person: time, outcome, type, task id, worker, duration, reason."""
    stamp = time.strftime("%H:%M:%S", time.localtime(_finished_at(event)))
    if event.get("event") == "worker":
        text = (f"{stamp} worker   {event.get('worker')}: {event.get('in_flight')} in flight, "
                f"{event.get('done')} done, {event.get('done_per_s')}/s")
    else:
        error = f"  {event['error']}" if event.get("error") else ""
        text = (f"{stamp} {event.get('event')!s:<8} {event.get('type') or '-'!s:<12} "
                f"{event.get('task_id')}  {event.get('worker')}  {event.get('duration_s')}s"
                f"{error}")
    return wire_text(text)  # a task's error text may hold escape sequences and newlines


def _finished_at(event: dict[str, object]) -> float | None:
    """The worker's own clock (Unix seconds) when the event has it; else None (now)."""
    at = event.get("finished_at")
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 < at < 2**32:
        return None
    return float(at)


class Follower:
    """A session handler: an exclusive queue bound to the events exchange, printed as it comes."""

    def __init__(self, settings: Settings, match: EventFilter, emit: Callable[[str], None],
                 as_json: bool, count: int = 0) -> None:
        self.settings = settings
        self.match = match
        self.emit = emit
        self.as_json = as_json
        self.count = count
        self.seen = 0

    def open(self, link: Link) -> None:
        exchange = self.settings.events_exchange
        channel = link.channel(f"following {exchange!r}")
        queue = channel.queue_declare("", exclusive=True)
        exchanges = [exchange, self.settings.status_exchange] if self.match.status else [exchange]
        for name in exchanges:
            channel.exchange_declare(name, "fanout")
            channel.queue_bind(queue, name)
        channel.watch()
        channel.consume(queue, self._on_event, auto_ack=True)

    def _on_event(self, message: Message) -> None:
        try:
            event = json.loads(message.body)
        except (ValueError, RecursionError):  # anyone may publish there: "[" * 200000
            return
        if not isinstance(event, dict) or not self.match(event) or self.finished():
            return
        self.emit(json.dumps(event) if self.as_json else line(event))
        self.seen += 1

    def tick(self) -> None:
        pass

    def finished(self) -> bool:
        return bool(self.count) and self.seen >= self.count

    def drain(self, _link: Link) -> None:
        pass

    def closed(self) -> None:
        pass


def follow(settings: Settings, follower: Follower, stop: threading.Event) -> None:
    """Follow until `stop` (or the count); reconnects after a loss. A broker that cannot be
    reached or refuses the login at the start is an error at once (ConnectionLost,
    AuthenticationFailed), as for every other command: a person is waiting."""
    Link(connect(settings, "warren-events")).close()
    run_sessions(settings, "warren-events", stop, follower, io_tick_s=0.2)
