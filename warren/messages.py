"""The task message contract: JSON `{"type": ..., "args": {...}}` or the tutorial's dotted text."""

from __future__ import annotations

import codecs
import functools
import json
import os
import time
from typing import Any, NamedTuple

from warren.amqp import PERSISTENT, BasicProperties, Message
from warren.errors import MalformedMessage

JSON = "application/json"
TEXT = "text/plain"
ATTEMPTS_HEADER = "x-warren-attempts"
REASON_HEADER = "x-warren-reason"
ERROR_HEADER = "x-warren-last-error"
WORKER_HEADER = "x-warren-worker"
FIRST_FAILED_HEADER = "x-warren-first-failed-at"  # epoch seconds of the first failed attempt
LAST_FAILED_HEADER = "x-warren-last-failed-at"  # ... and of the latest
USER_ID_HEADER = "x-warren-user-id"  # a copy's original user_id (the broker checks user_id)
BODY_DROPPED_HEADER = "x-warren-body-dropped"  # bytes of a body the broker refused to take
HEADERS_DROPPED_HEADER = "x-warren-headers-dropped"  # bytes of headers too big for a frame
WARREN_HEADERS = frozenset({ATTEMPTS_HEADER, REASON_HEADER, ERROR_HEADER, WORKER_HEADER,
                            FIRST_FAILED_HEADER, LAST_FAILED_HEADER, USER_ID_HEADER})
# Set by the broker; a copy starts its own history, so they never travel on. A forged
# x-death in a retry copy crashed RabbitMQ 3.10's dead-lettering of the copy back
# (rabbit_dead_letter); 4.x ignores x-death on published messages altogether.
DELIVERY_COUNT_HEADER = "x-delivery-count"
ACQUIRED_HEADER = "x-acquired-count"  # RabbitMQ 4.x quorum queues: every acquisition
BROKER_HEADERS = frozenset({"x-death", "x-first-death-exchange", "x-first-death-queue",
                            "x-first-death-reason", "x-last-death-exchange",
                            "x-last-death-queue", "x-last-death-reason",
                            DELIVERY_COUNT_HEADER, ACQUIRED_HEADER})
DOTS_TASK = "dots"
_JSON = json.JSONDecoder()


class Task(NamedTuple):
    type: str
    args: dict[str, Any]


def encode_task(task_type: str, args: dict[str, Any] | None = None, **extra: Any) -> bytes:
    return json.dumps({"type": task_type, "args": args or {}, **extra}).encode()


def task_properties(
    content_type: str = JSON,
    *,
    message_id: str | None = None,
    headers: dict[str, Any] | None = None,
) -> BasicProperties:
    return BasicProperties(
        content_type=content_type,
        delivery_mode=PERSISTENT,
        message_id=message_id or os.urandom(16).hex(),  # 128 random bits, as uuid4
        timestamp=int(time.time()),
        headers=headers,
    )


def decode_task(body: bytes, content_type: str | None, *, max_bytes: int) -> Task:
    """Decode a delivery into a Task, or raise MalformedMessage with the reason."""
    if len(body) > max_bytes:
        raise MalformedMessage(f"body of {len(body)} bytes exceeds MAX_BODY_BYTES={max_bytes}")
    if not body:
        raise MalformedMessage("empty body")
    if is_json_type(content_type) or (content_type is None and _looks_like_json(body)):
        return _decode_json(body)
    return _decode_text(body)


def decode_message(message: Message, *, max_bytes: int) -> Task:
    """`decode_task` of a delivery: its body and its content type, whatever bytes that
    property holds (another client's non-UTF-8 type is no type)."""
    content_type = message.properties.content_type
    if not isinstance(content_type, str):  # bytes pika could not decode as UTF-8
        content_type = None
    return decode_task(message.body, content_type or None, max_bytes=max_bytes)


@functools.lru_cache(maxsize=64)  # a queue's messages carry few distinct types
def is_json_type(content_type: str | None) -> bool:
    """application/json in any case and with any parameters, or a type with the +json
    suffix (application/vnd.api+json), which says the body is JSON whatever its
    vocabulary (RFC 6839, section 3.1)."""
    media_type = _media_type(content_type)
    return media_type is not None and (media_type == JSON or media_type.endswith("+json"))


def _media_type(content_type: str | None) -> str | None:
    """'Application/JSON; charset=utf-8' -> 'application/json' (RFC 9110, 8.3.1)."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


# JSON another client encoded in something else than UTF-8: a byte order mark, or an
# object's brace in UTF-16 (its first two bytes are enough to tell).
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_OTHER_ENCODINGS = (*_BOMS, b"{\x00", b"\x00{")


def _looks_like_json(body: bytes) -> bool:
    """A body with no content type: an object, in UTF-8 or (to be refused by name) in
    UTF-16 or behind a byte order mark. Anything else is the tutorial's text."""
    if body.startswith(_BOMS):
        body = body.removeprefix(codecs.BOM_UTF8)[:4].removeprefix(
            codecs.BOM_UTF16_LE).removeprefix(codecs.BOM_UTF16_BE)
    head = body.lstrip()[:2]
    return head[:1] == b"{" or head in (b"{\x00", b"\x00{")


def _decode_json(body: bytes) -> Task:
    try:
        # UTF-8 only (RFC 8259, 8.1); a decoder of our own skips json.loads' encoding
        # detection, half the cost of a small task's decode.
        doc = _JSON.decode(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedMessage(_not_utf8_reason(body)) from None
    except RecursionError:
        raise MalformedMessage("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        if body.startswith(_OTHER_ENCODINGS):
            raise MalformedMessage(_not_utf8_reason(body)) from None
        raise MalformedMessage(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedMessage(f"JSON body must be an object, got {type(doc).__name__}")
    task_type, args = doc.get("type"), doc.get("args", {})
    if not isinstance(task_type, str) or not task_type:
        raise MalformedMessage("'type' must be a non-empty string")
    if not isinstance(args, dict):
        raise MalformedMessage(f"'args' must be an object, got {type(args).__name__}")
    return Task(task_type, args)


def _not_utf8_reason(body: bytes) -> str:
    if body.startswith(codecs.BOM_UTF8):
        return ("body starts with a byte order mark: JSON tasks are UTF-8 without one "
                "(RFC 8259, 8.1)")
    if body.startswith(_OTHER_ENCODINGS):
        return "body looks like UTF-16: JSON tasks are UTF-8 (RFC 8259, 8.1)"
    return "body is not valid UTF-8"


def _decode_text(body: bytes) -> Task:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("body is not valid UTF-8") from None
    return Task(DOTS_TASK, {"count": text.count(".")})
