"""The adder server: one reply per request, then the ack; bad requests get an error reply."""

from __future__ import annotations

import threading
import time

import pika
import structlog
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from rpc_server import metrics
from rpc_server.protocol import BadRequest, detect_form, encode_error, encode_result, parse_request
from warren.amqp import deferred
from warren.consuming import ConsumerHooks, Consuming, run_consumer
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

    def run(self) -> ExitCode:
        hooks = ConsumerHooks(start=self._start, drain=self._drain)
        run_consumer(self.settings, "rpc_server", self.health, self.stop, hooks)
        log.info("rpc_server_stopped")
        return ExitCode.OK

    def _start(self, conn: BlockingConnection) -> Consuming:
        channel = conn.channel()
        declare_rpc_queue(channel, self.settings)
        channel.basic_qos(prefetch_count=self.settings.rpc_prefetch)
        tag = channel.basic_consume(self.settings.rpc_queue, self._on_request)
        log.info("serving", queue=self.settings.rpc_queue, prefetch=self.settings.rpc_prefetch)
        return Consuming(channel, tag)

    def _drain(self, _conn: BlockingConnection, consuming: Consuming) -> None:
        # Requests are answered inside the callback, so nothing is in hand here;
        # pika nacks (requeues) deliveries that arrived but were not dispatched.
        consuming.channel.basic_cancel(consuming.consumer_tag)

    def _on_request(self, channel: BlockingChannel, method: pika.spec.Basic.Deliver,
                    props: pika.BasicProperties, body: bytes) -> None:
        started = time.perf_counter()
        if not props.reply_to:
            log.warning("rpc_no_reply_to", reason="request dropped: nowhere to answer",
                        correlation_id=props.correlation_id)
            deferred(channel).basic_ack(method.delivery_tag)
            metrics.REQUESTS.labels("dropped").inc()
            return
        reply, content_type, outcome = self._answer(body, props.content_type, props.correlation_id)
        # Through the channel's core: the reply and the ack leave together on the loop's
        # next I/O pass instead of one blocking flush each (see warren.amqp.deferred).
        # The ack goes first: a reply the broker cannot deliver (RabbitMQ 3.10 closes the
        # connection on a malformed direct reply-to address) then costs this one reply, not
        # a request that comes back to close the next connection too. Replies are at most
        # once anyway: a caller times out.
        core = deferred(channel)
        core.basic_ack(method.delivery_tag)
        core.basic_publish("", props.reply_to, reply, pika.BasicProperties(
            correlation_id=props.correlation_id, content_type=content_type))
        metrics.REQUESTS.labels(outcome).inc()
        metrics.DURATION.observe(time.perf_counter() - started)

    def _answer(self, body: bytes, content_type: str | None,
                correlation_id: str | None) -> tuple[bytes, str, str]:
        try:
            request = parse_request(body, content_type)
        except BadRequest as exc:
            log.info("rpc_bad_request", reason=str(exc), correlation_id=correlation_id)
            return (*encode_error(str(exc), exc.form), "error")
        except Exception as exc:  # the server must never die on a request
            log.exception("rpc_unexpected_error", correlation_id=correlation_id)
            return (*encode_error(f"internal error: {type(exc).__name__}",
                                  detect_form(body, content_type)), "error")
        return (*encode_result(request.a + request.b, request.form), "ok")
