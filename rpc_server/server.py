"""The adder server: one reply per request, then the ack; bad requests get an error reply.

Replies go out on the connection the requests come in on: under a resource alarm the
broker blocks it, requests stay unacked and nothing is lost — an RPC server that cannot
publish cannot answer anyway, and its callers time out.
"""

from __future__ import annotations

import threading
import time

import structlog

from rpc_server import metrics
from rpc_server.protocol import BadRequest, detect_form, encode_error, encode_result, parse_request
from warren.amqp import BasicProperties, Channel, Link, Message, Outgoing, run_sessions
from warren.amqp.wire import text
from warren.errors import ExitCode
from warren.health import Health
from warren.settings import Settings
from warren.topology import declare_rpc_queue

log = structlog.get_logger("rpc_server")


class RpcServer:
    def __init__(self, settings: Settings, health: Health, stop: threading.Event) -> None:
        self.settings = settings
        self.health = health
        self.stop = stop
        self._channel: Channel | None = None
        self._consumer_tag = ""

    def run(self) -> ExitCode:
        run_sessions(self.settings, "rpc_server", self.stop, self)
        log.info("rpc_server_stopped")
        return ExitCode.OK

    # -- the session ----------------------------------------------------------------------
    def open(self, link: Link) -> None:
        channel = link.channel(f"consuming {self.settings.rpc_queue!r}")
        declare_rpc_queue(channel, self.settings)
        channel.watch()
        channel.qos(self.settings.rpc_prefetch)
        self._channel = channel
        # Answered inside pika's I/O pass: the callback only acks and publishes (both
        # asynchronous), and skipping pika's dispatch queue is CPU a busy server keeps.
        self._consumer_tag = channel.consume(self.settings.rpc_queue, self._on_request,
                                             in_io_pass=True)
        self.health.set_ready(True)
        log.info("serving", queue=self.settings.rpc_queue, prefetch=self.settings.rpc_prefetch)

    def tick(self) -> None:
        pass

    def finished(self) -> bool:
        return False

    def drain(self, _link: Link) -> None:
        # Requests are answered inside the callback, so nothing is in hand here; those
        # that arrive before the broker takes the cancel are answered too.
        self.health.set_ready(False)
        if self._channel is not None:
            self._channel.cancel(self._consumer_tag)

    def closed(self) -> None:
        self.health.set_ready(False)
        self._channel = None

    # -- requests -------------------------------------------------------------------------
    def _on_request(self, message: Message) -> None:
        channel = self._channel
        assert channel is not None
        started = time.perf_counter()
        props = message.properties
        correlation_id = text(props.correlation_id)
        if not props.reply_to:
            log.warning("rpc_no_reply_to", reason="request dropped: nowhere to answer",
                        correlation_id=correlation_id)
            channel.ack(message.tag)
            metrics.REQUESTS.inc(1, "dropped")
            return
        reply, content_type, outcome = self._answer(message.body, text(props.content_type),
                                                    correlation_id)
        # The ack goes first: a reply the broker cannot deliver (RabbitMQ 3.10 closes the
        # connection on a malformed direct reply-to address) then costs this one reply, not
        # a request that comes back to close the next connection too. Replies are at most
        # once anyway: a caller times out. Both leave together with the next I/O pass.
        channel.ack(message.tag)
        channel.publish(Outgoing(reply, BasicProperties(
            correlation_id=props.correlation_id, content_type=content_type), props.reply_to))
        metrics.REQUESTS.inc(1, outcome)
        metrics.DURATION.observe(time.perf_counter() - started)

    def _answer(self, body: bytes, content_type: str,
                correlation_id: str) -> tuple[bytes, str, str]:
        try:
            request = parse_request(body, content_type or None)
        except BadRequest as exc:
            log.info("rpc_bad_request", reason=str(exc), correlation_id=correlation_id)
            return (*encode_error(str(exc), exc.form), "error")
        except Exception as exc:  # the server must never die on a request
            log.exception("rpc_unexpected_error", correlation_id=correlation_id)
            return (*encode_error(f"internal error: {type(exc).__name__}",
                                  detect_form(body, content_type or None)), "error")
        return (*encode_result(request.a + request.b, request.form), "ok")
