"""The worker's publishing side: retry and parked copies, and task events.

It runs on a connection and a thread of its own. RabbitMQ blocks a connection that
publishes while a resource alarm is raised (memory, disk) and stops reading from it, acks
included: were copies and events sent on the consuming connection, an alarm would stall
every ack. Here an alarm pauses only this side — copies wait (their originals stay
unacked until the copy is confirmed), events are dropped — while consuming and acking go
on. Copies are confirmed before `on_confirmed` runs; events are best effort.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import structlog

from warren.amqp import Channel, Link, Outgoing, Publisher, PublishEvents, run_sessions
from warren.errors import ConnectionLost
from warren.settings import Settings
from warren.topology import declare_events_exchange, declare_task_queues

log = structlog.get_logger("worker")

EVENTS_EVERY_S = 0.1  # events leave in batches this often
MAX_QUEUED_EVENTS = 10_000  # beyond this, with the outbox down or blocked, events are dropped
Confirmed = Callable[[], None]


class Outbox:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failure: BaseException | None = None  # why the outbox gave up, if it did
        self._publisher = Publisher(PublishEvents(self._confirmed, self._returned),
                                    window=10_000, purpose="publishing retry/parked copies")
        self._copies: deque[tuple[Outgoing, Confirmed]] = deque()
        self._events: deque[Outgoing] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._events_channel: Channel | None = None
        self._link: Link | None = None
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)

    # -- any thread ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def send(self, copy: Outgoing, on_confirmed: Confirmed) -> None:
        """Publish `copy` with confirms; `on_confirmed()` runs on the outbox thread."""
        self._copies.append((copy, on_confirmed))
        self._wake()

    def events(self, events: list[Outgoing]) -> None:
        """Best effort, within one outbox tick (EVENTS_EVERY_S): no wake-up per task, which
        cost a thread hop for every task a worker ran."""
        self._events.extend(events)

    def close(self, timeout_s: float) -> None:
        """Finish sending what is queued (up to `timeout_s`), then stop."""
        self._stop.set()
        self._wake()
        self._thread.join(timeout_s)

    def _wake(self) -> None:
        with self._wake_lock:
            link = self._link
            if self._wake_pending or link is None:
                return
            self._wake_pending = True
        if not link.call_threadsafe(self._take):
            self._wake_pending = False

    # -- the outbox thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            run_sessions(self.settings, "worker-outbox", self._stop, self,
                         io_tick_s=EVENTS_EVERY_S)
        except Exception as exc:  # Refused, AuthenticationFailed: the worker must stop
            log.error("outbox_failed", error=str(exc))
            self.failure = exc

    def open(self, link: Link) -> None:
        setup = link.channel("declaring the worker's queues")
        declare_task_queues(setup, self.settings)
        declare_events_exchange(setup, self.settings)
        setup.close()
        self._events_channel = link.channel("publishing task events")
        self._publisher.attach(link)
        with self._wake_lock:
            self._link, self._wake_pending = link, False
        self._take()

    def tick(self) -> None:
        self._take()

    def finished(self) -> bool:
        return False

    def drain(self, link: Link) -> None:
        deadline_s = self.settings.shutdown_grace_s
        waited = 0.0
        while (self._copies or self._publisher.backlog) and waited < deadline_s:
            self._take()
            link.pump(0.05)
            waited += 0.05
        self._take()

    def closed(self) -> None:
        with self._wake_lock:
            self._link, self._wake_pending = None, False
        self._events_channel = None
        self._publisher.detach()

    def _take(self) -> None:
        with self._wake_lock:
            self._wake_pending = False
        while self._copies:
            copy, on_confirmed = self._copies.popleft()
            self._publisher.submit(copy, on_confirmed)
        self._publisher.flush()
        self._send_events()

    def _send_events(self) -> None:
        channel = self._events_channel
        if channel is None or self._publisher.blocked:
            return
        while self._events:
            channel.publish(self._events.popleft())

    def _confirmed(self, _copy: Outgoing, on_confirmed: object, _latency_s: float) -> None:
        assert callable(on_confirmed)
        on_confirmed()

    def _returned(self, copy: Outgoing, on_confirmed: object, reason: str) -> None:
        # Unroutable: its queue was deleted. Declare the queues again on a new session,
        # then send the copy again; the original stays unacked meanwhile.
        log.warning("copy_returned", routing_key=copy.routing_key, reply=reason)
        self._copies.appendleft((copy, on_confirmed))  # type: ignore[arg-type]
        if self._link is not None:
            self._link.fail(ConnectionLost(f"{copy.routing_key!r} is missing: declaring again"))
