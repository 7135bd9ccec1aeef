"""The one session loop every warren process runs: connect, open, pump, drain, reconnect.

    run_sessions(settings, "worker", stop, handler)

A session is one connection. `handler.open(link)` declares what it needs and starts its
work; the loop then pumps the link's I/O and calls `handler.tick()` until `stop` is set or
`handler.finished()`; with `stop` set, `handler.drain(link)` finishes what is in hand. On
a lost connection or a channel the broker closed, the loop backs off (capped, jittered)
and opens a new session. It ends by raising when going on cannot help: credentials
refused a few times in a row (AuthenticationFailed), or a refusal that will not change
(Refused: a queue declared with other arguments, a missing permission, a message too
large) — the caller turns those into exit codes.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol

import structlog

from warren.amqp.connect import connect
from warren.amqp.link import Link
from warren.backoff import Backoff
from warren.errors import AuthenticationFailed, BrokerError, Refused

if TYPE_CHECKING:
    from warren.settings import Settings

log = structlog.get_logger("warren.amqp")

IO_TICK_S = 0.5  # how often an idle session looks at the stop flag
HEALTHY_AFTER_S = 5.0  # a session that lasted this long starts the next outage's backoff afresh
MAX_AUTH_FAILURES = 5  # a broker may still be seeding its users: a few tries, then give up


class SessionHandler(Protocol):
    def open(self, link: Link) -> None:
        """Declare, consume, publish what waits; raise BrokerError to end the session."""

    def tick(self) -> None:
        """Called after every pump; may raise BrokerError to end the session."""

    def finished(self) -> bool:
        """True when the work is done: the loop closes the link and returns."""

    def drain(self, link: Link) -> None:
        """`stop` is set: finish what is in hand (within the grace period), then return."""

    def closed(self) -> None:
        """The session is over, whatever ended it (always called, on the session's thread)."""


def run_sessions(settings: Settings, name: str, stop: threading.Event,
                 handler: SessionHandler, backoff: Backoff | None = None,
                 io_tick_s: float = IO_TICK_S) -> None:
    """Run sessions until `stop` is set or the handler is finished. Raises
    AuthenticationFailed after MAX_AUTH_FAILURES refusals in a row, and Refused at once."""
    backoff = backoff or Backoff()
    auth_failures = 0
    while not stop.is_set() and not handler.finished():
        started = time.monotonic()
        try:
            _session(settings, name, stop, handler, io_tick_s)
            return
        except Refused:
            raise
        except AuthenticationFailed as exc:
            auth_failures += 1
            log.error("broker_auth_failed", service=name, error=str(exc), attempt=auth_failures)
            if auth_failures >= MAX_AUTH_FAILURES:
                raise
        except BrokerError as exc:
            auth_failures = 0
            log.warning("broker_connection_lost", service=name, error=str(exc))
        if time.monotonic() - started >= HEALTHY_AFTER_S:
            backoff.reset()
        delay = backoff.next_delay()
        log.info("reconnect_scheduled", service=name, delay_s=round(delay, 2))
        stop.wait(delay)


def _session(settings: Settings, name: str, stop: threading.Event, handler: SessionHandler,
             io_tick_s: float) -> None:
    link = Link(connect(settings, name))
    try:
        handler.open(link)
        while not stop.is_set() and not handler.finished():
            link.serve(io_tick_s)
            handler.tick()
        if stop.is_set():
            handler.drain(link)
    finally:
        handler.closed()
        link.close()
