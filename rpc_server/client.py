"""RpcClient: many calls in flight on one connection, each reply matched by correlation id.

    client = RpcClient(Settings.from_env())
    client.call(1, 2)                      # 3
    client.call_many([(1, 2), (3, 4)])     # [3, 7], sent at once

Replies come through direct reply-to (`amq.rabbitmq.reply-to`) by default,
or an exclusive server-named queue with `exclusive_queue=True`. Every call has
a timeout; the request carries the same expiration, so a server never works
on a request whose caller has given up. One client per thread.

CLI: `python -m rpc_server.client 1 2` prints 3.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterable

from rpc_server.protocol import Form, RpcError, decode_reply, encode_request
from warren.amqp import BasicProperties, Link, Message, Outgoing, connect
from warren.amqp.wire import text
from warren.errors import ExitCode, SettingsError, WarrenError
from warren.settings import Settings

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class RpcTimeout(WarrenError):
    """No reply came within the call's timeout."""


class RpcClient:
    def __init__(self, settings: Settings, *, exclusive_queue: bool = False,
                 timeout_s: float = 5.0, form: Form = "json") -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.form = form
        self._link = Link(connect(settings, "rpc_client"))
        self._channel = self._link.channel("calling the RPC server")
        self._reply_to = (self._channel.queue_declare("", exclusive=True) if exclusive_queue
                          else DIRECT_REPLY_TO)
        self._replies: dict[str, bytes] = {}
        self._returned: dict[str, str] = {}
        self._waiting: set[str] = set()
        self._listen()

    def _listen(self) -> None:
        # Direct reply-to requires auto-ack consumption on the publishing channel.
        self._channel.consume(self._reply_to, self._on_reply, auto_ack=True)
        self._channel.on_return(self._on_return)

    def _renew_channel(self) -> None:
        """After a timeout, the next call goes on a new channel: RabbitMQ 3.10 drops every
        publish of a channel whose first publish to a quorum rpc_queue followed the death
        of its leader (see warren.amqp.publisher.RENEW_AFTER_S), so a client that kept its
        channel would time out on every call from then on."""
        if self._link.blocked or not self._link.is_open:
            return  # under a resource alarm the close would wait for the alarm to clear
        self._channel.close()
        self._channel = self._link.channel("calling the RPC server")
        self._listen()

    def send(self, a: int, b: int) -> str:
        """Queue one request; returns its correlation id for `result`.

        The request leaves with the connection's next I/O pass — at the latest when
        `result` waits — so `call_many` sends its whole batch in one write.
        """
        correlation_id = uuid.uuid4().hex
        body, content_type = encode_request(a, b, self.form)
        props = BasicProperties(
            reply_to=self._reply_to, correlation_id=correlation_id, content_type=content_type,
            expiration=str(max(1, int(self.timeout_s * 1000))),
        )
        self._link.raise_failure()
        self._channel.publish(Outgoing(body, props, self.settings.rpc_queue), mandatory=True)
        self._waiting.add(correlation_id)
        return correlation_id

    def result(self, correlation_id: str, timeout_s: float | None = None) -> int:
        return self._collect([correlation_id], timeout_s)[0]

    def call(self, a: int, b: int, timeout_s: float | None = None) -> int:
        return self.result(self.send(a, b), timeout_s)

    def call_many(self, pairs: Iterable[tuple[int, int]],
                  timeout_s: float | None = None) -> list[int]:
        """Send every request at once, then collect the replies in order."""
        return self._collect([self.send(a, b) for a, b in pairs], timeout_s)

    def _collect(self, ids: list[str], timeout_s: float | None) -> list[int]:
        """The replies to `ids`, in order, within one timeout for them all; raises RpcTimeout,
        or RpcError for the first returned or failed call."""
        try:
            self._wait(ids, self.timeout_s if timeout_s is None else timeout_s)
            return [self._take(cid) for cid in ids]
        except RpcTimeout:
            self._renew_channel()
            raise
        finally:
            for cid in ids:  # a late reply to any of them is dropped, not kept
                self._waiting.discard(cid)
                self._replies.pop(cid, None)
                self._returned.pop(cid, None)

    def _wait(self, ids: list[str], limit_s: float) -> None:
        expired = [False]
        # One timer for the batch, and an untimed wait that returns on the first event: a
        # timed wait per loop round (or a timer per call) would sit on every reply's path.
        timer = self._link.call_later(limit_s, lambda: expired.__setitem__(0, True))
        try:
            for cid in ids:
                while cid not in self._replies and cid not in self._returned:
                    if expired[0]:
                        raise RpcTimeout(f"no reply from {self.settings.rpc_queue!r} within "
                                         f"{limit_s}s")
                    self._link.pump(None)
        finally:
            self._link.cancel_timer(timer)

    def _take(self, correlation_id: str) -> int:
        if correlation_id in self._returned:
            raise RpcError(self._returned.pop(correlation_id))
        return decode_reply(self._replies.pop(correlation_id))

    def _on_reply(self, message: Message) -> None:
        correlation_id = text(message.properties.correlation_id)
        if correlation_id in self._waiting:
            self._replies[correlation_id] = message.body
        # Anything else is a late reply to a call that already timed out: dropped.

    def _on_return(self, message: Message, reason: str) -> None:
        correlation_id = text(message.properties.correlation_id)
        if correlation_id in self._waiting:
            self._returned[correlation_id] = (
                f"request unroutable ({reason}): is an RPC server running on "
                f"{self.settings.rpc_queue!r}?")

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rpc_server.client",
                                     description="Add two integers on the RPC server.")
    parser.add_argument("a", type=int)
    parser.add_argument("b", type=int)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--text", action="store_true", help="use the seed's text form 'a.b'")
    parser.add_argument("--exclusive", action="store_true",
                        help="reply through an exclusive queue instead of direct reply-to")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        with RpcClient(settings, exclusive_queue=args.exclusive, timeout_s=args.timeout,
                       form="text" if args.text else "json") as client:
            print(client.call(args.a, args.b))
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except WarrenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
