"""Connecting to RabbitMQ: URL lists, backoff, and pika's errors translated into warren's."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

import pika
import pika.data
import pika.exceptions as pex
import pika.spec
import structlog
from pika.adapters.blocking_connection import BlockingChannel

from warren.backoff import Backoff
from warren.errors import AuthenticationFailed, BrokerError, ConnectionLost
from warren.settings import Settings, redact_url

log = structlog.get_logger("warren.amqp")

# A broker restart closes connections with 320 CONNECTION_FORCED: that is a
# reason to reconnect, so only credential and vhost refusals count as fatal.
_AUTH_ERRORS = (pex.ProbableAuthenticationError, pex.ProbableAccessDeniedError,
                pex.AuthenticationError)
_ACCESS_REFUSED = 403
_NOT_ALLOWED = 530


def connection_parameters(settings: Settings, name: str) -> list[pika.URLParameters]:
    params = []
    for url in settings.amqp_urls:
        p = pika.URLParameters(url)
        p.client_properties = {"connection_name": f"{name}:{settings.worker_id}"}
        params.append(p)
    return params


def translate(exc: BaseException) -> BrokerError:
    """Map a pika exception onto warren's hierarchy (the message never carries a password)."""
    if isinstance(exc, _AUTH_ERRORS):
        return AuthenticationFailed(f"broker refused the login: {type(exc).__name__}")
    if isinstance(exc, pex.ConnectionClosedByBroker) and exc.reply_code in (
        _ACCESS_REFUSED, _NOT_ALLOWED
    ):
        return AuthenticationFailed(f"broker refused access: {exc.reply_text}")
    if isinstance(exc, pex.ChannelClosedByBroker):
        return BrokerError(f"channel closed by broker: {exc.reply_code} {exc.reply_text}")
    return ConnectionLost(f"{type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """pika often wraps the real cause (a refused socket, a reset) several levels deep."""
    cause: object = exc
    while isinstance(cause, BaseException) and cause.args and not str(cause).strip(" :"):
        cause = cause.args[0]
    failures = getattr(cause, "exceptions", None)
    if failures:
        cause = failures[-1]
    inner = getattr(cause, "exception", None)  # AMQPConnectorSocketConnectError and kin
    return repr(inner) if inner is not None else str(cause)


RECOVERABLE = (pex.AMQPError, OSError)

# pika decodes a message's headers inside its frame parser. A header it cannot decode (a
# table nested past Python's recursion limit, a timestamp past year 9999) raises there and
# drops the connection; the broker hands the message out again, and again, forever. Such
# a message is delivered instead with its headers replaced by this marker, to be parked.
UNDECODABLE_HEADERS = "x-warren-undecodable-headers"
_decode_properties = pika.spec.BasicProperties.decode


def _skip_table(encoded: bytes, offset: int) -> tuple[dict[str, Any], int]:
    (size,) = struct.unpack_from(">I", encoded, offset)
    return {UNDECODABLE_HEADERS: True}, offset + 4 + size


def _decode_properties_leniently(self: pika.spec.BasicProperties, encoded: bytes,
                                 offset: int = 0) -> pika.spec.BasicProperties:
    try:
        return _decode_properties(self, encoded, offset)
    except (RecursionError, OverflowError, ValueError, struct.error):
        decode_table, pika.data.decode_table = pika.data.decode_table, _skip_table
        try:
            return _decode_properties(self, encoded, offset)
        finally:
            pika.data.decode_table = decode_table


pika.spec.BasicProperties.decode = _decode_properties_leniently  # type: ignore[method-assign]


def connect_blocking(settings: Settings, name: str) -> pika.BlockingConnection:
    """One pass over every URL in turn; raises ConnectionLost or AuthenticationFailed."""
    try:
        return pika.BlockingConnection(connection_parameters(settings, name))
    except RECOVERABLE as exc:
        raise translate(exc) from None


def deferred(channel: BlockingChannel) -> pika.channel.Channel:
    """The channel's asynchronous core, for acks and fire-and-forget publishes.

    BlockingChannel flushes the socket after every call: one full I/O pass per ack
    or event, which capped a worker at a few thousand tasks a second. Frames sent
    through the core queue up and leave on the connection's next I/O pass (the
    consume loop's process_data_events), so a batch of acks costs one pass. Use
    it only on the connection's own thread, like the BlockingChannel itself.
    """
    return channel._impl


def describe_targets(settings: Settings) -> str:
    return ",".join(redact_url(url) for url in settings.amqp_urls)


def retry_forever(
    attempt: Callable[[], None],
    stop: threading.Event,
    *,
    what: str,
    max_auth_failures: int = 5,
    backoff: Backoff,
) -> None:
    """Run `attempt` until it returns with `stop` set; reconnect with backoff on broker errors.

    `attempt` should call `backoff.reset()` once it is connected, so a long
    healthy session starts the next outage from a short delay. Authentication
    failures are retried a few times (a broker may still be seeding its users)
    and then re-raised, so a wrong password does not become an endless loop.
    """
    auth_failures = 0
    while not stop.is_set():
        try:
            attempt()
            return
        except AuthenticationFailed as exc:
            auth_failures += 1
            log.error("broker_auth_failed", service=what, error=str(exc), attempt=auth_failures)
            if auth_failures >= max_auth_failures:
                raise
        except BrokerError as exc:
            auth_failures = 0
            log.warning("broker_connection_lost", service=what, error=str(exc))
        except RECOVERABLE as exc:
            auth_failures = 0
            log.warning("broker_connection_lost", service=what, error=str(translate(exc)))
        delay = backoff.next_delay()
        log.info("reconnect_scheduled", service=what, delay_s=round(delay, 2))
        stop.wait(delay)
