"""The producer's run: messages from a source, through warren's confirming Publisher.

Up to `window` messages in flight, optionally at a `rate`; a report of what the broker
confirmed, nacked and returned. On SIGTERM it stops taking new messages and waits up to
SHUTDOWN_GRACE_S for the confirms of those in flight. Refusals that cannot succeed
(a message over the broker's size limit, a missing exchange or permission) end the run
with Refused; the rest is retried by the session loop and the Publisher.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import structlog

from producer import metrics
from producer.pacing import Pace
from warren.amqp import Channel, Link, Outgoing, Publisher, PublishEvents, run_sessions
from warren.settings import Settings

log = structlog.get_logger("producer")

_TICK_S = 0.25


@dataclass
class PublishReport:
    total: int = 0  # distinct messages taken from the source
    published: int = 0  # basic.publish calls, re-sends included
    confirmed: int = 0
    nacked: int = 0
    returned: int = 0
    unconfirmed: int = 0  # still unconfirmed when the run ended
    exhausted: bool = False  # every message of the source was taken
    endless: bool = False  # the source never ends: stopping is how a run ends
    started_at: float = 0.0
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Every message the source had was confirmed and routed to a queue."""
        ended = self.exhausted or self.endless
        return (ended and self.confirmed >= self.total and self.returned == 0
                and self.unconfirmed == 0)


Prepare = Callable[[Channel], None]


class ConfirmingPublisher:
    def __init__(self, settings: Settings, messages: Iterable[Outgoing], *,
                 stop: threading.Event, prepare: Prepare, window: int = 1000,
                 rate: float | None = None,
                 on_progress: Callable[[PublishReport], None] | None = None,
                 on_confirmed: Callable[[Outgoing], None] | None = None,
                 endless: bool = False) -> None:
        self.settings = settings
        self.stop = stop
        self.prepare = prepare
        self.rate = rate
        self._pace = Pace(rate) if rate else None
        self.on_progress = on_progress
        self.on_confirmed = on_confirmed  # called once per message the broker acked
        self.report = PublishReport(endless=endless)
        self._source: Iterator[Outgoing] = iter(messages)
        events = PublishEvents(self._confirmed, self._returned, self._nacked, self._settled)
        self._publisher = Publisher(events, window=window)
        self._exported: dict[str, int] = {}
        self._next_progress = 0.0
        self._link: Link | None = None

    def run(self) -> PublishReport:
        """Publish everything (or until stopped); raises Refused or AuthenticationFailed.

        `stop` ends the taking of new messages; sessions go on (reconnecting if need be)
        until what was taken is confirmed, for at most SHUTDOWN_GRACE_S after it."""
        self.report.started_at = time.monotonic()
        tick = min(_TICK_S, 1.0 / self.rate) if self.rate else _TICK_S
        give_up = threading.Event()
        threading.Thread(target=self._grace, args=(give_up,), name="producer-grace",
                         daemon=True).start()
        try:
            run_sessions(self.settings, "producer", give_up, self, io_tick_s=tick)
        finally:
            give_up.set()
            self._sync_metrics()
            self.report.unconfirmed = self._publisher.backlog
            self.report.elapsed_s = time.monotonic() - self.report.started_at
        return self.report

    def _grace(self, give_up: threading.Event) -> None:
        """Once stopped, allow SHUTDOWN_GRACE_S for the confirms of what is in flight."""
        self.stop.wait()
        if not give_up.wait(self.settings.shutdown_grace_s):
            give_up.set()

    # -- the session handler -----------------------------------------------------------
    def open(self, link: Link) -> None:
        setup = link.channel("declaring the producer's topology")
        self.prepare(setup)
        setup.close()
        self._publisher.attach(link)
        self._link = link
        log.info("publishing", window=self._publisher.window, rate=self.rate)
        self._fill()

    def tick(self) -> None:
        self._publisher.flush()
        self._fill()
        self._sync_metrics()
        if self.on_progress and time.monotonic() >= self._next_progress:
            self._next_progress = time.monotonic() + _TICK_S
            self.on_progress(self.report)

    def finished(self) -> bool:
        ended = self.report.exhausted or self.stop.is_set()
        return ended and self._publisher.backlog == 0

    def drain(self, link: Link) -> None:
        pass  # the grace thread ended the sessions: what is unconfirmed stays so

    def closed(self) -> None:
        self._publisher.detach()
        self._link = None

    # -- feeding the window --------------------------------------------------------------
    def _settled(self) -> None:
        """After a confirm frame: refill the window; when that was the last confirm, end
        the session's wait now (confirms alone do not end a pump: the loop would see it
        only at its next tick, up to _TICK_S later, a tenth of a 20,000-message run)."""
        self._fill()
        if self._link is not None and self.finished():
            self._link.wake()

    def _fill(self) -> None:
        batch: list[Outgoing] = []
        room = self._publisher.room
        while len(batch) < room and not self.stop.is_set():
            message = self._take()
            if message is None:
                break
            batch.append(message)
        if batch:
            self._publisher.submit_all(batch)

    def _take(self) -> Outgoing | None:
        if self.report.exhausted:
            return None
        if self._pace and not self._pace.take():
            return None
        try:
            message = next(self._source)
        except StopIteration:
            self.report.exhausted = True
            return None
        self.report.total += 1
        return message

    # -- the broker's answers (on the link's thread) -------------------------------------
    def _confirmed(self, message: Outgoing, _token: object, latency_s: float) -> None:
        self.report.confirmed += 1
        metrics.CONFIRM_LATENCY.observe(latency_s)
        if self.on_confirmed:
            self.on_confirmed(message)

    def _returned(self, message: Outgoing, _token: object, reason: str) -> None:
        self.report.returned += 1
        log.warning("message_returned", exchange=message.exchange,
                    routing_key=message.routing_key, reply=reason)

    def _nacked(self, _message: Outgoing, _token: object) -> None:
        self.report.nacked += 1

    def _sync_metrics(self) -> None:
        """Counters follow the report a tick at a time: a scrape never needs more, and a
        per-message increment was a measurable share of the publishing cost."""
        r, seen = self.report, self._exported
        r.published = self._publisher.sends
        for counter, attr in ((metrics.PUBLISHED, "published"), (metrics.CONFIRMED, "confirmed"),
                              (metrics.NACKED, "nacked"), (metrics.RETURNED, "returned")):
            delta = getattr(r, attr) - seen.get(attr, 0)
            if delta:
                counter.inc(delta)
                seen[attr] = getattr(r, attr)
