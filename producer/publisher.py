"""Publishing with pipelined confirms over pika's SelectConnection.

Up to `window` messages are in flight at once; each confirm frees a slot.
Whatever was not confirmed when a connection dies is re-sent on the next
one (same message_id), so a confirmed message is never lost and an
unconfirmed one is never silently dropped: at-least-once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pika
import structlog
from pika.adapters.blocking_connection import BlockingChannel

from producer import metrics
from warren.amqp import RECOVERABLE, connect_blocking, connection_parameters, translate
from warren.backoff import Backoff
from warren.errors import AuthenticationFailed, BrokerError
from warren.settings import Settings

log = structlog.get_logger("producer")

_TICK_S = 0.25
_MAX_AUTH_FAILURES = 5


@dataclass(frozen=True)
class Outgoing:
    body: bytes
    properties: pika.BasicProperties
    routing_key: str
    exchange: str = ""


@dataclass
class PublishReport:
    total: int = 0  # distinct messages taken from the source
    published: int = 0  # basic.publish calls, re-sends included
    confirmed: int = 0
    nacked: int = 0
    returned: int = 0
    unconfirmed: int = 0  # still unconfirmed when the run was cut short
    started_at: float = 0.0
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.confirmed >= self.total and self.returned == 0 and self.unconfirmed == 0


Prepare = Callable[[BlockingChannel], None]


class ConfirmingPublisher:
    def __init__(self, settings: Settings, messages: Iterable[Outgoing], *,
                 stop: threading.Event, prepare: Prepare, window: int = 1000,
                 rate: float | None = None,
                 on_progress: Callable[[PublishReport], None] | None = None,
                 on_confirmed: Callable[[Outgoing], None] | None = None) -> None:
        self.settings = settings
        self.stop = stop
        self.prepare = prepare
        self.window = max(1, window)
        self.rate = rate
        self.on_progress = on_progress
        self.on_confirmed = on_confirmed  # called once per message the broker acked
        self.report = PublishReport()
        self._source: Iterator[Outgoing] = iter(messages)
        self._exhausted = False
        self._resend: deque[Outgoing] = deque()
        self._pending: OrderedDict[int, tuple[Outgoing, float]] = OrderedDict()
        self._connection: pika.SelectConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._next_tag = 0
        self._blocked = False
        self._pump_scheduled = False
        self._finished = False
        self._stop_deadline: float | None = None
        self._backoff = Backoff()
        self._url_index = 0
        self._exported: dict[str, int] = {}

    # -- the reconnect loop -------------------------------------------------
    def run(self) -> PublishReport:
        self.report.started_at = time.monotonic()
        auth_failures = 0
        while not self._finished and not self._out_of_time():
            try:
                self._declare_topology()
                self._run_connection()
                auth_failures = 0
            except AuthenticationFailed as exc:
                auth_failures += 1
                log.error("broker_auth_failed", error=str(exc), attempt=auth_failures)
                if auth_failures >= _MAX_AUTH_FAILURES:
                    raise
            except BrokerError as exc:
                log.warning("broker_connection_lost", error=str(exc))
            if not self._finished:
                self._wait_before_reconnect()
        self._sync_metrics()
        self.report.unconfirmed = len(self._pending) + len(self._resend)
        self.report.elapsed_s = time.monotonic() - self.report.started_at
        return self.report

    def _out_of_time(self) -> bool:
        if self.stop.is_set() and self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.settings.shutdown_grace_s
        return self._stop_deadline is not None and time.monotonic() >= self._stop_deadline

    def _wait_before_reconnect(self) -> None:
        self._url_index += 1
        delay = self._backoff.next_delay()
        log.info("reconnect_scheduled", delay_s=round(delay, 2),
                 unconfirmed=len(self._pending) + len(self._resend))
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self._out_of_time():
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _declare_topology(self) -> None:
        conn = connect_blocking(self.settings, "producer")
        try:
            self.prepare(conn.channel())
        except RECOVERABLE as exc:
            raise translate(exc) from None
        finally:
            if conn.is_open:
                conn.close()

    def _run_connection(self) -> None:
        params = connection_parameters(self.settings, "producer")
        self._connection = pika.SelectConnection(
            params[self._url_index % len(params)],
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
        )
        self._open_error: BaseException | None = None
        self._connection.ioloop.start()
        if self._open_error is not None:
            raise translate(self._open_error)

    # -- connection and channel callbacks --------------------------------------
    def _on_open(self, connection: pika.SelectConnection) -> None:
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, connection: pika.SelectConnection, error: BaseException) -> None:
        self._open_error = error
        connection.ioloop.stop()

    def _on_channel_open(self, channel: pika.channel.Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm,
                                 callback=lambda _frame: self._on_confirm_mode(channel))

    def _on_confirm_mode(self, channel: pika.channel.Channel) -> None:
        self._channel = channel
        self._next_tag = 0
        self._backoff.reset()
        log.info("publishing", window=self.window, rate=self.rate)
        self._tick()
        self._pump()

    def _on_channel_closed(self, _channel: object, reason: BaseException) -> None:
        self._channel = None
        if not self._finished:
            log.warning("channel_closed", reason=str(reason))
        if self._connection and self._connection.is_open:
            self._connection.close()

    def _on_closed(self, connection: pika.SelectConnection, reason: BaseException) -> None:
        self._channel = None
        self._blocked = False
        # Not confirmed means not safe: send them again, oldest first.
        self._resend.extendleft(msg for msg, _ in reversed(self._pending.values()))
        self._pending.clear()
        if not self._finished:
            log.warning("connection_closed", reason=str(reason))
        connection.ioloop.stop()

    def _on_blocked(self, _conn: object, _frame: object) -> None:
        log.warning("broker_blocked_publishing", reason="resource alarm")
        self._blocked = True

    def _on_unblocked(self, _conn: object, _frame: object) -> None:
        log.info("broker_unblocked")
        self._blocked = False
        self._pump()

    # -- publishing -------------------------------------------------------------
    def _pump(self) -> None:
        self._pump_scheduled = False
        channel = self._channel
        if channel is None or self._blocked or not channel.is_open:
            return
        while len(self._pending) < self.window:
            message = self._take()
            if message is None:
                break
            channel.basic_publish(message.exchange, message.routing_key, message.body,
                                  message.properties, mandatory=True)
            self._next_tag += 1
            self._pending[self._next_tag] = (message, time.monotonic())
            self.report.published += 1
        self._finish_if_done()

    def _take(self) -> Outgoing | None:
        if self._resend:
            return self._resend.popleft()
        if self._exhausted or self.stop.is_set():
            return None
        allowed = (time.monotonic() - self.report.started_at) * (self.rate or 0)
        if self.rate and self.report.total >= allowed:
            self._schedule_pump(1.0 / self.rate)
            return None
        try:
            message = next(self._source)
        except StopIteration:
            self._exhausted = True
            return None
        self.report.total += 1
        return message

    def _schedule_pump(self, delay_s: float) -> None:
        if not self._pump_scheduled and self._connection:
            self._pump_scheduled = True
            self._connection.ioloop.call_later(min(delay_s, _TICK_S), self._pump)

    def _finish_if_done(self) -> None:
        drained = self._exhausted or self.stop.is_set()
        if drained and not self._pending and not self._resend and not self._finished:
            self._finished = True
            if self._connection and self._connection.is_open:
                self._connection.close()

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        now = time.monotonic()
        for tag in self._confirmed_tags(method.delivery_tag, method.multiple):
            message, sent_at = self._pending.pop(tag)
            if acked:
                self.report.confirmed += 1
                metrics.CONFIRM_LATENCY.observe(now - sent_at)
                if self.on_confirmed:
                    self.on_confirmed(message)
            else:
                self.report.nacked += 1
                self._resend.append(message)
        self._pump()

    def _confirmed_tags(self, tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [tag] if tag in self._pending else []
        tags = []
        for pending_tag in self._pending:
            if pending_tag > tag:
                break
            tags.append(pending_tag)
        return tags

    def _on_return(self, _channel: object, method: pika.spec.Basic.Return,
                   properties: pika.BasicProperties, _body: bytes) -> None:
        self.report.returned += 1
        log.warning("message_returned", exchange=method.exchange, routing_key=method.routing_key,
                    reply=f"{method.reply_code} {method.reply_text}",
                    task_id=properties.message_id)

    def _sync_metrics(self) -> None:
        """Counters follow the report a tick at a time: a scrape never needs more, and a
        per-message increment was a measurable share of the publishing cost."""
        r, seen = self.report, self._exported
        for counter, attr in ((metrics.PUBLISHED, "published"), (metrics.CONFIRMED, "confirmed"),
                              (metrics.NACKED, "nacked"), (metrics.RETURNED, "returned")):
            delta = getattr(r, attr) - seen.get(attr, 0)
            if delta:
                counter.inc(delta)
                seen[attr] = getattr(r, attr)

    def _tick(self) -> None:
        self._sync_metrics()
        if self._connection is None or not self._connection.is_open:
            return
        if self.on_progress:
            self.on_progress(self.report)
        if self.stop.is_set():
            self._finish_if_done()
            if self._out_of_time() and self._connection.is_open:
                self._connection.close()
                return
        self._pump()
        self._connection.ioloop.call_later(_TICK_S, self._tick)

