"""Publishing with confirms, shared by the producer and the worker's outbox.

Up to `window` messages are in flight; each confirm frees a slot. Whatever a lost link
left unconfirmed is sent again on the next one (same properties), oldest first: a
confirmed message is never lost, an unconfirmed one never silently dropped. A nack (a
queue at its length limit with `reject-publish`, a broker short of something) is a
refusal that may succeed later: the message goes again after a delay that grows with
each nack in a row, capped. Refusals that cannot succeed (403, 404, a 406 for a message
too large) close the channel; the session loop raises them as Refused. A resource alarm
blocks the connection: nothing more is sent until it lifts. A channel whose publishes
are all refused for RENEW_AFTER_S is replaced by a new one (see there).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from warren.amqp.link import Channel, Link, Message, Outgoing
from warren.amqp.wire import text
from warren.backoff import Backoff
from warren.errors import ExitCode

log = structlog.get_logger("warren.amqp")

# What a refusal of a publish means (AMQP 0-9-1 reply codes).
PUBLISH_REFUSALS = {403: ExitCode.NOPERM, 404: ExitCode.CONFIG, 406: ExitCode.DATAERR}

# Nacked this long with no ack in between, the channel is replaced and what it held is sent
# again on the new one. RabbitMQ 3.10 keeps refusing every publish of a channel whose first
# publish to a quorum queue came while the queue's record still named a leader that had just
# died: rabbit_fifo_client:enqueue/3 (3.10.8) asks that node for its machine version, gets
# {badrpc, nodedown}, answers reject_publish and asks the same node again next time, for as
# long as the channel lives. A new channel reads the record afresh. A queue at its length
# limit with overflow=reject-publish costs one channel open per RENEW_AFTER_S.
RENEW_AFTER_S = 5.0


@dataclass
class _Sent:
    message: Outgoing
    token: object
    sent_at: float
    returned: str = ""


@dataclass
class PublishEvents:
    """What the owner hears of each message it submitted (called on the link's thread)."""

    confirmed: Callable[[Outgoing, object, float], None]  # (message, token, latency in s)
    returned: Callable[[Outgoing, object, str], None] = lambda *_: None
    nacked: Callable[[Outgoing, object], None] = lambda *_: None
    # After each confirm frame, once every message it covers was reported: the moment to
    # submit more (once per frame, not once per message).
    settled: Callable[[], None] = lambda: None


class Publisher:
    def __init__(self, events: PublishEvents, *, window: int = 1000, mandatory: bool = True,
                 purpose: str = "publishing") -> None:
        self.events = events
        self.window = max(1, window)
        self.mandatory = mandatory
        self.purpose = purpose
        self.blocked = False
        self.sends = 0  # basic.publish calls, re-sends included
        self._waiting: deque[tuple[Outgoing, object, float]] = deque()  # (msg, token, due)
        self._pending: OrderedDict[int, _Sent] = OrderedDict()
        self._channel: Channel | None = None
        self._next_tag = 0
        self._nack_backoff = Backoff(base_s=0.1)
        self._link: Link | None = None
        self._nacked_since: float | None = None  # first nack since the last ack
        self._renewal: object | None = None  # the timer of a due renewal
        self.renewals = 0  # channels replaced for refusing everything

    # -- state ---------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def backlog(self) -> int:
        """Submitted and not yet confirmed: in flight, or waiting to be (re)sent."""
        return len(self._pending) + len(self._waiting)

    @property
    def room(self) -> int:
        """How many more messages may be submitted before the window is full."""
        return self.window - len(self._pending) - len(self._waiting)

    # -- links ---------------------------------------------------------------------------
    def attach(self, link: Link) -> None:
        link.on_blocked(self._on_blocked)
        self._link, self.blocked = link, False
        self._open_channel(link)
        self.flush()

    def detach(self) -> None:
        """The link is gone: what it left unconfirmed waits to be sent again, oldest first."""
        self._requeue_in_flight()
        self._channel = self._link = self._renewal = self._nacked_since = None

    def _requeue_in_flight(self) -> None:
        self._waiting.extendleft((s.message, s.token, 0.0)
                                 for s in reversed(self._pending.values()))
        self._pending.clear()

    def _open_channel(self, link: Link) -> None:
        channel = link.channel(self.purpose)
        channel.watch(PUBLISH_REFUSALS)
        channel.on_return(self._on_return)
        channel.confirm(self._on_confirm)
        self._channel, self._next_tag, self._nacked_since = channel, 0, None

    def _renew(self) -> None:
        """Replace a channel that refused everything for RENEW_AFTER_S (a timer: opening a
        channel is a synchronous call, not allowed inside the I/O pass a nack arrives in)."""
        self._renewal = None
        link, old, since = self._link, self._channel, self._nacked_since
        if (link is None or old is None or not link.is_open or since is None
                or time.monotonic() - since < RENEW_AFTER_S):
            return
        if self.blocked:  # a resource alarm: the close would wait for the alarm to clear
            self._nacked_since = None
            return
        log.warning("publish_channel_renewed", purpose=self.purpose,
                    nacked_for_s=round(time.monotonic() - since, 1))
        self.renewals += 1
        self._channel = None  # nothing more goes out on the old channel
        old.close()  # confirms that come during the close still settle what they cover
        self._requeue_in_flight()
        self._waiting = deque((m, token, 0.0) for m, token, _ in self._waiting)
        self._nack_backoff.reset()
        self._open_channel(link)
        self.flush()

    # -- sending -------------------------------------------------------------------------
    def submit(self, message: Outgoing, token: object = None) -> None:
        """Queue a message; it leaves now if the link has room, else on a later flush."""
        self._waiting.append((message, token, 0.0))
        self.flush()

    def submit_all(self, messages: list[Outgoing]) -> None:
        """`submit` each of `messages` (no token), with one flush for them all."""
        self._waiting.extend((message, None, 0.0) for message in messages)
        self.flush()

    def take_next(self) -> tuple[Outgoing, object] | None:
        """Remove the next message waiting to be sent (after a detach: the oldest that was
        in flight), with its token."""
        if not self._waiting:
            return None
        message, token, _ = self._waiting.popleft()
        return message, token

    def submit_first(self, message: Outgoing, token: object = None) -> None:
        """Queue a message ahead of every other."""
        self._waiting.appendleft((message, token, 0.0))

    def flush(self) -> None:
        """Send what waits and is due, up to the window (on the link's thread)."""
        channel = self._channel
        if channel is None or self.blocked or not channel.is_open:
            return
        now = time.monotonic()
        while self._waiting and len(self._pending) < self.window and self._waiting[0][2] <= now:
            message, token, _ = self._waiting.popleft()
            channel.publish(message, mandatory=self.mandatory)
            self._next_tag += 1
            self.sends += 1
            self._pending[self._next_tag] = _Sent(message, token, now)

    # -- the broker's answers ------------------------------------------------------------
    def _on_confirm(self, tag: int, multiple: bool, acked: bool) -> None:
        now = time.monotonic()
        # One nack frame (one refusal, however many messages it covers) grows the delay once.
        due = now if acked else now + self._nack_backoff.next_delay()
        self._note_refusals(acked, now)
        for sent in self._take(tag, multiple):
            if not acked:
                self.events.nacked(sent.message, sent.token)
                self._waiting.append((sent.message, sent.token, due))
            elif sent.returned:
                self.events.returned(sent.message, sent.token, sent.returned)
            else:
                self._nack_backoff.reset()
                self.events.confirmed(sent.message, sent.token, now - sent.sent_at)
        self.events.settled()
        self.flush()

    def _note_refusals(self, acked: bool, now: float) -> None:
        if acked:
            self._nacked_since = None
        elif self._nacked_since is None:
            self._nacked_since = now
        elif (now - self._nacked_since >= RENEW_AFTER_S and self._renewal is None
              and self._link is not None):
            self._renewal = self._link.call_later(0, self._renew)

    def _take(self, tag: int, multiple: bool) -> list[_Sent]:
        if not multiple:
            sent = self._pending.pop(tag, None)
            return [sent] if sent else []
        taken = []
        while self._pending and next(iter(self._pending)) <= tag:
            taken.append(self._pending.popitem(last=False)[1])
        return taken

    def _on_return(self, returned: Message, reason: str) -> None:
        # A basic.return carries no delivery tag; it precedes the confirm of the message it
        # returns, so it belongs to the oldest unconfirmed message that matches it.
        key = (returned.exchange, returned.routing_key, returned.body,
               text(returned.properties.message_id))
        for sent in self._pending.values():
            m = sent.message
            if not sent.returned and (m.exchange, m.routing_key, m.body,
                                      text(m.properties.message_id)) == key:
                sent.returned = reason
                return

    def _on_blocked(self, blocked: bool) -> None:
        if blocked:
            log.warning("broker_blocked_publishing", reason="resource alarm",
                        purpose=self.purpose)
        else:
            log.info("broker_unblocked", purpose=self.purpose)
        self.blocked = blocked
        self._nacked_since = None  # refusals before or during an alarm are no channel's fault
        self.flush()
