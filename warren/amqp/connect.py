"""Opening connections, and pika's errors translated into warren's.

The broker's reply codes decide what an error means (AMQP 0-9-1 spec, "Constants"):
320 CONNECTION_FORCED is a broker restart or an operator's close, a reason to reconnect;
403 ACCESS_REFUSED, 404 NOT_FOUND and 406 PRECONDITION_FAILED will be answered the same
way however often the request is repeated, so they end the attempt instead of looping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pika
import pika.exceptions as pex

from warren.errors import (
    AuthenticationFailed,
    BrokerError,
    ConnectionLost,
    ExitCode,
    Refused,
)

if TYPE_CHECKING:
    from warren.settings import Settings

_AUTH_ERRORS = (pex.ProbableAuthenticationError, pex.ProbableAccessDeniedError,
                pex.AuthenticationError)
ACCESS_REFUSED = 403
NOT_FOUND = 404
PRECONDITION_FAILED = 406
NOT_ALLOWED = 530  # a vhost the user may not open
PERMANENT_CODES = {ACCESS_REFUSED: ExitCode.NOPERM, NOT_FOUND: ExitCode.CONFIG,
                   PRECONDITION_FAILED: ExitCode.CONFIG}
RECOVERABLE = (pex.AMQPError, OSError)


def connection_parameters(settings: Settings, name: str) -> list[pika.URLParameters]:
    params = []
    for url in settings.amqp_urls:
        p = pika.URLParameters(url)
        p.client_properties = {"connection_name": f"{name}:{settings.worker_id}"}
        params.append(p)
    return params


def check_url(url: str) -> None:
    """Raise ValueError when pika cannot use `url`'s options (heartbeat=, ssl_options=...)."""
    try:
        pika.URLParameters(url)
    except (ValueError, TypeError, SyntaxError, OSError) as exc:  # OSError: a CA file
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def connect(settings: Settings, name: str) -> pika.BlockingConnection:
    """One pass over every URL in turn; raises ConnectionLost or AuthenticationFailed."""
    try:
        return pika.BlockingConnection(connection_parameters(settings, name))
    except RECOVERABLE as exc:
        raise translate(exc) from None


def translate(exc: BaseException, doing: str = "") -> BrokerError:
    """Map a pika exception onto warren's hierarchy (the message never carries a password).

    `doing` names what was being done, for a refusal's one-line message; refusals while
    declaring are configuration errors (exit 78, or 77 for a missing permission).
    """
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, _AUTH_ERRORS):
        return AuthenticationFailed(f"broker refused the login: {type(exc).__name__}")
    code = getattr(exc, "reply_code", None)
    text = getattr(exc, "reply_text", "")
    if isinstance(exc, pex.ConnectionClosedByBroker) and code in (ACCESS_REFUSED, NOT_ALLOWED):
        return AuthenticationFailed(f"broker refused access: {text}")
    if isinstance(exc, pex.ChannelClosedByBroker) and _node_down(code, text):
        return ConnectionLost(f"channel closed by broker: {code} {text}")
    if isinstance(exc, pex.ChannelClosedByBroker) and code in PERMANENT_CODES:
        where = f"{doing}: " if doing else ""
        return Refused(f"{where}broker refused: {code} {text}", PERMANENT_CODES[code])
    if isinstance(exc, pex.ChannelClosedByBroker):
        return ConnectionLost(f"channel closed by broker: {code} {text}")
    return ConnectionLost(f"{type(exc).__name__}: {reason(exc)}")


def _node_down(code: int | None, text: str) -> bool:
    """A 404 that a retry cures: a queue whose home node is down or restarting ("home node
    'rabbit@x' of durable queue 'task_queue' in vhost '/' is down or inaccessible")."""
    return code == NOT_FOUND and "down or inaccessible" in text


def reason(exc: BaseException) -> str:
    """pika often wraps the real cause (a refused socket, a reset) several levels deep."""
    cause: object = exc
    while isinstance(cause, BaseException) and cause.args and not str(cause).strip(" :"):
        cause = cause.args[0]
    failures = getattr(cause, "exceptions", None)
    if failures:
        cause = failures[-1]
    inner = getattr(cause, "exception", None)  # AMQPConnectorSocketConnectError and kin
    return repr(inner) if inner is not None else str(cause)
