"""The consumer restart loop every consuming service shares.

connect → start consuming → pump I/O until stopped → drain → close, and on any
broker error: clean up, back off, and go round again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from warren.amqp import connect_blocking, retry_forever
from warren.backoff import Backoff
from warren.errors import ConnectionLost
from warren.health import Health
from warren.settings import Settings

IO_TICK_S = 0.5  # how often an idle loop looks at the stop flag


@dataclass(frozen=True)
class Consuming:
    channel: BlockingChannel
    consumer_tag: str


@dataclass
class ConsumerHooks:
    start: Callable[[BlockingConnection], Consuming]
    drain: Callable[[BlockingConnection, Consuming], None]
    tick: Callable[[], None] = lambda: None  # may raise ConnectionLost to force a reconnect
    session_ended: Callable[[], None] = lambda: None


def run_consumer(settings: Settings, name: str, health: Health, stop: threading.Event,
                 hooks: ConsumerHooks, backoff: Backoff | None = None) -> None:
    backoff = backoff or Backoff()

    def session() -> None:
        conn = connect_blocking(settings, name)
        try:
            consuming = hooks.start(conn)
            backoff.reset()
            health.set_ready(True)
            while not stop.is_set():
                conn.process_data_events(time_limit=IO_TICK_S)
                hooks.tick()
            health.set_ready(False)
            hooks.drain(conn, consuming)
        except pex.AMQPError as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None
        finally:
            health.set_ready(False)
            hooks.session_ended()
            if conn.is_open:
                with contextlib.suppress(pex.AMQPError):
                    conn.close()

    retry_forever(session, stop, what=name, backoff=backoff)
