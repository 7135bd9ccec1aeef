"""The parked queue (`<TASK_QUEUE>.dead`): list, show, requeue, purge — losing and doubling
nothing.

Reading never removes: messages are taken unacked and go back to their places when the
channel closes. Requeue and purge run in AMQP transactions of BATCH messages: the copies
sent to the task queue and the acks that remove the parked originals take effect together
at each commit, or not at all if the command dies first (killed mid-move, every message
is in exactly one of the two queues). RabbitMQ's transactions are atomic against a
client's death, not against a broker crash mid-commit (rabbitmq.com/docs/semantics).
"""

from __future__ import annotations

import base64
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from warren.amqp import Channel, Link, Message, Outgoing
from warren.amqp.wire import republished, text
from warren.errors import MalformedMessage
from warren.messages import (
    ATTEMPTS_HEADER,
    BROKER_HEADERS,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
    REASON_HEADER,
    WARREN_HEADERS,
    decode_message,
)

BATCH = 200


@dataclass(frozen=True)
class Parked:
    message_id: str
    task_type: str
    reason: str
    attempts: int | None
    first_failed_at: int | None
    last_failed_at: int | None
    published_at: int | None
    headers: dict[str, object]
    body: bytes

    @classmethod
    def of(cls, message: Message, max_body_bytes: int = sys.maxsize) -> Parked:
        """`max_body_bytes`: the workers' MAX_BODY_BYTES; a larger body has no type, as
        a worker parked it without reading one."""
        props = message.properties
        headers = props.headers or {}
        task_type = _task_type(message, max_body_bytes)
        return cls(text(props.message_id), task_type, text(_str(headers.get(REASON_HEADER))),
            _int(headers.get(ATTEMPTS_HEADER)),
            _int(headers.get(FIRST_FAILED_HEADER)), _int(headers.get(LAST_FAILED_HEADER)),
            _int(props.timestamp), headers, message.body)

    @property
    def failed_at(self) -> int | None:
        return self.last_failed_at or self.published_at

    def to_dict(self, with_body: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "message_id": self.message_id, "type": self.task_type, "reason": self.reason,
            "attempts": self.attempts, "first_failed_at": self.first_failed_at,
            "last_failed_at": self.last_failed_at}
        if with_body:
            out["headers"] = {k: _jsonable(v) for k, v in self.headers.items()}
            out["body"] = _body_text(self.body)
        return out


@dataclass(frozen=True)
class Filter:
    """Which parked messages a command applies to (all of them when empty)."""

    ids: frozenset[str] = frozenset()
    reason: str = ""  # a regular expression searched in the reason
    task_type: str = ""
    older_than_s: float = 0.0

    def __call__(self, parked: Parked) -> bool:
        if self.ids and parked.message_id not in self.ids:
            return False
        if self.reason and not re.search(self.reason, parked.reason):
            return False
        if self.task_type and parked.task_type != self.task_type:
            return False
        if self.older_than_s:  # a task of unknown age is not known to be old: left alone
            return (parked.failed_at is not None
                    and parked.failed_at <= time.time() - self.older_than_s)
        return True

    @property
    def everything(self) -> bool:
        return self == Filter()


def browse(link: Link, queue: str, match: Filter, limit: int = 0,
           max_body_bytes: int = sys.maxsize) -> list[Parked]:
    """Parked messages that match, oldest first, none removed (`limit` 0: all)."""
    found: list[Parked] = []
    with _reading(link, queue) as (channel, ready):
        for _ in range(ready):
            message = channel.get(queue)
            if message is None:
                break
            parked = Parked.of(message, max_body_bytes)
            if match(parked):
                found.append(parked)
                if limit and len(found) >= limit:
                    break
    return found


def requeue(link: Link, queue: str, task_queue: str, match: Filter,
            progress: Callable[[int, int], None] = lambda _done, _of: None,
            max_body_bytes: int = sys.maxsize) -> int:
    """Move matching messages back to `task_queue` with their attempts reset; returns how
    many. Headers warren or the broker added on the way (reason, attempts, failure times,
    x-death) are left off; everything else goes as it came."""
    def move(channel: Channel, message: Message) -> None:
        props = republished(message.properties, set_headers={},
                            drop=WARREN_HEADERS | BROKER_HEADERS, expiration=None)
        channel.publish(Outgoing(message.body, props, task_queue))
        channel.ack(message.tag)

    with _reading(link, task_queue):  # a clear error now if the task queue is missing
        pass
    return _in_batches(link, queue, match, move, progress, max_body_bytes)


def purge(link: Link, queue: str, match: Filter,
          progress: Callable[[int, int], None] = lambda _done, _of: None,
          max_body_bytes: int = sys.maxsize) -> int:
    """Delete matching parked messages; returns how many."""
    if match.everything:
        channel = link.channel(f"purging {queue!r}")
        try:
            return channel.queue_purge(queue)
        finally:
            channel.close()
    return _in_batches(link, queue, match, lambda ch, m: ch.ack(m.tag), progress,
                       max_body_bytes)


def _in_batches(link: Link, queue: str, match: Filter,
                act: Callable[[Channel, Message], None],
                progress: Callable[[int, int], None], max_body_bytes: int) -> int:
    done = 0
    with _reading(link, queue) as (channel, ready):
        channel.transactional()
        looked = 0
        while looked < ready:
            for _ in range(min(BATCH, ready - looked)):
                message = channel.get(queue)
                if message is None:
                    ready = looked
                    break
                looked += 1
                if match(Parked.of(message, max_body_bytes)):
                    act(channel, message)
                    done += 1
                # a message that does not match stays unacked: back in place at the end
            channel.commit()
            progress(looked, ready)
    return done


@contextmanager
def _reading(link: Link, queue: str) -> Iterator[tuple[Channel, int]]:
    channel = link.channel(f"reading {queue!r}")
    try:
        ready, _ = channel.queue_counts(queue)
        yield channel, ready
    finally:
        channel.close()


def _task_type(message: Message, max_body_bytes: int) -> str:
    """The type a worker reads in the message, by the worker's own decoding (content type
    included: invalid JSON sent as application/json is no task, not the tutorial's dots);
    "" for a message it cannot decode, whose parked reason says why."""
    try:
        return text(decode_message(message, max_bytes=max_body_bytes).type)  # shown on terminals
    except MalformedMessage:
        return ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | bytes | None:
    return value if isinstance(value, str | bytes) else None


def _body_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return text(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
