"""What `warren status` shows: every warren queue, and every live worker.

Queue counts come from passive declares (ready messages and consumers, exact, no stats
lag). Workers are known from their `worker` events, which each one publishes every
STATUS_EVERY_S on `<EVENTS_EXCHANGE>.status`: its id, tasks in flight and done, failures, rate and
busy time. Unacked messages are what the workers report in flight (the broker's own
unacked count needs its management API or Prometheus plugin, which `status` does not
require).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from warren.amqp import Link, Message, connect
from warren.errors import Refused
from warren.settings import Settings

FIRST_LISTEN_S = 2.5  # longer than the workers' STATUS_EVERY_S (2 s)
GONE_AFTER_S = 10.0  # a worker not heard from for this long is shown as silent
FORGET_AFTER_S = 60.0


@dataclass
class QueueRow:
    name: str
    ready: int | None  # None: the queue does not exist
    consumers: int | None
    unacked: int | None = None  # what the workers consuming it report in flight
    ready_per_s: float | None = None  # net change of `ready` since the last reading
    done_per_s: float | None = None  # the rate its workers report finishing tasks


@dataclass
class WorkerRow:
    worker: str
    queue: str
    in_flight: int
    done: int
    failed: int  # retried + parked + rejected
    done_per_s: float
    busy_s: float
    oldest_task_s: float
    heard_s_ago: float
    lanes: int = 1
    isolation: str = "thread"
    prefetch: int = 1


@dataclass
class Snapshot:
    target: str
    taken_at: float
    queues: list[QueueRow]
    workers: list[WorkerRow] = field(default_factory=list)
    events_exchange: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def queue_names(settings: Settings) -> list[str]:
    return [settings.task_queue, settings.retry_queue, settings.dead_queue, settings.rpc_queue]


class StatusReader:
    """A connection that listens to worker events and reads queue counts on demand."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.link = Link(connect(settings, "warren-admin"))
        self._heard: dict[str, tuple[dict[str, object], float]] = {}
        self._channel = self.link.channel("reading queue counts")
        # A first reading, so that the first snapshot has a rate of change too.
        self._last = {name: (time.monotonic(), self._queue(name).ready)
                      for name in queue_names(settings)}
        exchange = settings.status_exchange
        if exchange:
            events = self.link.channel(f"listening to {exchange!r}")
            events.exchange_declare(exchange, "fanout")
            queue = events.queue_declare("", exclusive=True)
            events.queue_bind(queue, exchange)
            events.consume(queue, self._on_event, auto_ack=True)

    def snapshot(self, listen_s: float) -> Snapshot:
        """Listen `listen_s` seconds for worker events, then read the queues."""
        deadline = time.monotonic() + listen_s
        while (left := deadline - time.monotonic()) > 0:
            self.link.pump(min(left, 0.2))
        queues = [self._queue(name) for name in queue_names(self.settings)]
        workers = self._workers()
        by_queue: dict[str, int] = {}
        for w in workers:
            by_queue[w.queue] = by_queue.get(w.queue, 0) + w.in_flight
        for row in queues:
            if row.ready is not None and row.name in by_queue:
                row.unacked = by_queue[row.name]
                row.done_per_s = round(sum(w.done_per_s for w in workers
                                           if w.queue == row.name), 1)
            self._rate_of_change(row)
        return Snapshot(", ".join(self.settings.redacted_urls), time.time(), queues, workers,
                        self.settings.events_exchange)

    def close(self) -> None:
        self.link.close()

    def _rate_of_change(self, row: QueueRow) -> None:
        now = time.monotonic()
        then, before = self._last.get(row.name, (now, None))
        if row.ready is not None and before is not None and now - then > 0.1:
            row.ready_per_s = round((row.ready - before) / (now - then), 1)
        self._last[row.name] = (now, row.ready)

    def _queue(self, name: str) -> QueueRow:
        try:
            ready, consumers = self._channel.queue_counts(name)
        except Refused:  # 404: a passive declare of a missing queue closes the channel
            self._channel = self.link.channel("reading queue counts")
            return QueueRow(name, None, None)
        return QueueRow(name, ready, consumers)

    def _on_event(self, message: Message) -> None:
        try:
            event = json.loads(message.body)
        except (ValueError, RecursionError):  # anyone may publish there: "[" * 200000
            return
        if isinstance(event, dict) and event.get("event") == "worker":
            self._heard[str(event.get("worker"))] = (event, time.monotonic())

    def _workers(self) -> list[WorkerRow]:
        now = time.monotonic()
        rows = []
        for worker, (event, heard) in sorted(self._heard.items()):
            if now - heard > FORGET_AFTER_S:
                continue
            rows.append(_worker_row(worker, event, now - heard))
        return rows


def _worker_row(worker: str, e: dict[str, object], ago: float) -> WorkerRow:
    def num(key: str) -> float:
        value = e.get(key, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    failed = num("retried") + num("parked") + num("rejected")
    return WorkerRow(worker, str(e.get("queue", "")), int(num("in_flight")), int(num("done")),
                     int(failed), num("done_per_s"), num("busy_s"), num("oldest_task_s"),
                     round(ago, 1), int(num("lanes")) or 1, str(e.get("isolation", "thread")),
                     int(num("prefetch")))


# -- showing it --------------------------------------------------------------------------

def render(s: Snapshot, shares: bool = True) -> str:
    """The human view: a queue table, a worker table, and each worker's share of busy time."""
    taken = time.strftime("%H:%M:%S", time.localtime(s.taken_at))
    lines = [f"warren status — {s.target}   {taken}", "",
             f"{'queue':<28} {'ready':>8} {'unacked':>8} {'consumers':>9} {'ready/s':>8} "
             f"{'done/s':>7}"]
    for q in s.queues:
        if q.ready is None:
            lines.append(f"{q.name:<28} {'(missing)':>8}")
            continue
        unacked = "-" if q.unacked is None else str(q.unacked)
        change = "-" if q.ready_per_s is None else f"{q.ready_per_s:+.1f}"
        done = "-" if q.done_per_s is None else f"{q.done_per_s:.1f}"
        lines.append(f"{q.name:<28} {q.ready:>8} {unacked:>8} {q.consumers:>9} {change:>8} "
                     f"{done:>7}")
    lines.append("")
    if not s.events_exchange:
        lines.append("workers: unknown (EVENTS_EXCHANGE is empty: workers send no events)")
        return "\n".join(lines)
    if not s.workers:
        lines.append("workers: none heard from")
        return "\n".join(lines)
    lines.append(f"{'worker':<24} {'in flight':>9} {'done':>8} {'failed':>7} {'done/s':>8} "
                 f"{'oldest task':>11} {'heard':>7}")
    for w in s.workers:
        heard = f"{w.heard_s_ago:.0f}s ago" if w.heard_s_ago < GONE_AFTER_S else "silent"
        lines.append(f"{w.worker:<24} {w.in_flight:>9} {w.done:>8} {w.failed:>7} "
                     f"{w.done_per_s:>8.1f} {w.oldest_task_s:>10.1f}s {heard:>7}")
    if shares and len(s.workers) > 1:
        lines.extend(["", *busy_shares(s.workers)])
    return "\n".join(lines)


def busy_shares(workers: list[WorkerRow]) -> list[str]:
    """Each worker's share of the busy time, and Jain's fairness index over them."""
    total = sum(w.busy_s for w in workers) or 1.0
    lines = ["share of busy time"]
    for w in workers:
        share = w.busy_s / total
        lines.append(f"{w.worker:<24} {'█' * round(share * 40):<40} {share:6.1%}")
    busy = [w.busy_s for w in workers]
    jain = sum(busy) ** 2 / (len(busy) * sum(x * x for x in busy)) if sum(busy) else None
    shown = f"{jain:.3f}" if jain is not None else "- (no work done yet)"
    lines.append(f"fairness (Jain's index of busy time, 1.0 = perfectly even): {shown}")
    return lines
