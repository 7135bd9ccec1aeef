"""The worker's publishing side: retry and parked copies, and task events.

It runs on a connection and a thread of its own. RabbitMQ blocks a connection that
publishes while a resource alarm is raised (memory, disk) and stops reading from it, acks
included: were copies and events sent on the consuming connection, an alarm would stall
every ack. Here an alarm pauses only this side — copies wait (their originals stay
unacked until the copy is confirmed), events are dropped — while consuming and acking go
on. Copies are confirmed before `on_confirmed` runs; events are best effort.

A copy the broker refuses for good (406: a body over its current max_message_size) must
not stop the worker: the outbox sends what was in flight again one copy at a time, finds
the one refused, and parks a stub in its place — the message's properties and headers
with the reason, its body (which the broker will not take) left out.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import structlog

from warren.amqp import Channel, Link, Outgoing, Publisher, PublishEvents, run_sessions
from warren.amqp.wire import printable, republished
from warren.errors import ConnectionLost, ExitCode, Refused
from warren.messages import BODY_DROPPED_HEADER, REASON_HEADER
from warren.settings import Settings
from warren.topology import declare_events_exchange, declare_task_queues

log = structlog.get_logger("worker")

EVENTS_EVERY_S = 0.1  # events leave in batches this often
MAX_QUEUED_EVENTS = 10_000  # beyond this, with the outbox down or blocked, events are dropped
WINDOW = 10_000
# After an event nobody was bound to hear, build none for this long, then try again: a
# listener that binds hears every event from at most this long after it bound.
UNHEARD_PROBE_S = 1.0
Confirmed = Callable[[], None]


class Outbox:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failure: BaseException | None = None  # why the outbox gave up, if it did
        self._publisher = Publisher(PublishEvents(self._confirmed, self._returned),
                                    window=WINDOW, purpose="publishing retry/parked copies")
        self._copies: deque[tuple[Outgoing, Confirmed]] = deque()
        self._events: deque[Outgoing] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._events_channel: Channel | None = None
        self._link: Link | None = None
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._stop = threading.Event()
        self._deadline = 0.0
        self._suspects = 0  # copies still to send one by one after a refusal
        self._stubs: set[int] = set()
        self._in_flight_at_close = 0
        self._unheard_until = 0.0
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

    def events_wanted(self) -> bool:
        """False for a while after an event came back unroutable: no queue is bound to the
        events exchange, so building more would be work for nobody (any thread)."""
        return time.monotonic() >= self._unheard_until

    def close(self, deadline: float) -> None:
        """Finish sending what is queued until `deadline` (time.monotonic()), then stop."""
        self._deadline = deadline
        self._stop.set()
        self._wake()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)

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
        while not self._stop.is_set():
            try:
                run_sessions(self.settings, "worker-outbox", self._stop, self,
                             io_tick_s=EVENTS_EVERY_S)
                return
            except Refused as exc:
                if exc.exit_code == ExitCode.DATAERR and self._isolate(exc):
                    continue
                self._give_up(exc)
                return
            except Exception as exc:  # AuthenticationFailed: the worker must stop
                self._give_up(exc)
                return

    def _give_up(self, exc: BaseException) -> None:
        log.error("outbox_failed", error=str(exc))
        self.failure = exc

    def _isolate(self, refusal: Refused) -> bool:
        """A copy was refused for good. With one in flight it is that one: park a stub in
        its place. With several, send them again one at a time to find it."""
        in_flight = self._in_flight_at_close
        if in_flight != 1:
            self._suspects = in_flight
            self._publisher.window = 1 if in_flight else WINDOW
            return in_flight > 0
        culprit = self._publisher.take_next()
        if culprit is None or id(culprit[0]) in self._stubs:
            return False  # even the stub was refused: nothing more to leave out
        copy, token = culprit
        stub = self._stub(copy, str(refusal))
        self._stubs.add(id(stub))
        self._publisher.submit_first(stub, token)
        log.error("copy_refused", routing_key=copy.routing_key, reason=str(refusal),
                  body_bytes=len(copy.body))
        return True

    def _stub(self, copy: Outgoing, reason: str) -> Outgoing:
        note = printable(f"the broker refused this message ({reason}); its body of "
                         f"{len(copy.body)} bytes was left out")
        properties = republished(copy.properties, set_headers={
            REASON_HEADER: note, BODY_DROPPED_HEADER: len(copy.body)}, expiration=None)
        return Outgoing(b"", properties, self.settings.dead_queue)

    def open(self, link: Link) -> None:
        setup = link.channel("declaring the worker's queues")
        declare_task_queues(setup, self.settings)
        declare_events_exchange(setup, self.settings)
        setup.close()
        self._open_events_channel(link)
        self._publisher.attach(link)
        with self._wake_lock:
            self._link, self._wake_pending = link, False
        self._take()

    def _open_events_channel(self, link: Link) -> None:
        if not self.settings.events_exchange:
            return
        channel = link.channel("publishing task events")
        channel.on_closed(self._events_refused)
        channel.on_return(self._unheard)
        self._events_channel = channel

    def _unheard(self, _event: object, _reason: str) -> None:
        self._unheard_until = time.monotonic() + UNHEARD_PROBE_S

    def _events_refused(self, reason: str) -> None:
        # Best effort: no permission on the exchange, or it was deleted. Events are off
        # until the next session; copies and acks go on.
        log.warning("events_refused", exchange=self.settings.events_exchange, reason=reason)
        self._events_channel = None

    def tick(self) -> None:
        self._take()

    def finished(self) -> bool:
        return False

    def drain(self, link: Link) -> None:
        deadline = self._deadline or time.monotonic() + self.settings.shutdown_grace_s
        while (self._copies or self._publisher.backlog) and time.monotonic() < deadline:
            self._take()
            link.pump(0.05)
        self._take()

    def closed(self) -> None:
        with self._wake_lock:
            self._link, self._wake_pending = None, False
        self._events_channel = None
        self._in_flight_at_close = self._publisher.in_flight
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
        tasks = self.settings.events_exchange
        while self._events and channel.is_open:
            event = self._events.popleft()
            # A task event that comes back unroutable says nobody listens (see events_wanted).
            channel.publish(event, mandatory=event.exchange == tasks)

    def _confirmed(self, _copy: Outgoing, on_confirmed: object, _latency_s: float) -> None:
        if self._suspects:
            self._suspects -= 1
            if not self._suspects:
                self._publisher.window = WINDOW
        assert callable(on_confirmed)
        on_confirmed()

    def _returned(self, copy: Outgoing, on_confirmed: object, reason: str) -> None:
        # Unroutable: its queue was deleted. Declare the queues again on a new session,
        # then send the copy again; the original stays unacked meanwhile.
        log.warning("copy_returned", routing_key=copy.routing_key, reply=reason)
        self._copies.appendleft((copy, on_confirmed))  # type: ignore[arg-type]
        if self._link is not None:
            self._link.fail(ConnectionLost(f"{copy.routing_key!r} is missing: declaring again"))
