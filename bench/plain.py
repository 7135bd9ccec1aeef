"""Plain pika clients written as in the RabbitMQ tutorials: the baselines for warren.

    python -m bench.plain consumer URL PREFETCH
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import sys
import time
from collections.abc import Iterator

import pika


def consumer(url: str, prefetch: int) -> None:
    """The tutorial's worker with a no-op task: ack in the callback, on pika's I/O thread."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue="task_queue", durable=True)

    def callback(ch, method, properties, body):
        ch.basic_ack(delivery_tag=method.delivery_tag)

    channel.basic_qos(prefetch_count=prefetch)
    channel.basic_consume(queue="task_queue", on_message_callback=callback)
    print(f"consuming {time.time()}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        channel.start_consuming()


if __name__ == "__main__":
    # Started from a background shell job, a process inherits SIGINT ignored, and Python
    # then never raises KeyboardInterrupt: the bench stops this consumer with SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.argv[1] == "consumer":
        consumer(sys.argv[2], int(sys.argv[3]))


def blocking_publisher(url: str, count: int, body: bytes) -> float:
    """The tutorial's publisher with confirm_delivery(): one round trip per message."""
    started = time.perf_counter()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue="task_queue", durable=True)
    channel.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    for _ in range(count):
        channel.basic_publish(exchange="", routing_key="task_queue", body=body, properties=props)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def select_publisher(url: str, count: int, body: bytes, window: int = 1000,
                     messages: Iterator[tuple[bytes, pika.BasicProperties]] | None = None,
                     ) -> float:
    """pika's asynchronous publisher keeping `window` confirms in flight (pika's own example);
    one pre-built body with two properties, or each of `messages` (body, properties)."""
    state = {"sent": 0, "acked": 0, "started": 0.0, "ended": 0.0}
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    source = messages if messages is not None else itertools.repeat((body, props))

    def on_open(conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch: pika.channel.Channel) -> None:
        ch.queue_declare("task_queue", durable=True,
                         callback=lambda _f: ch.confirm_delivery(
                             lambda frame: on_ack(ch, frame), callback=lambda _f: start(ch)))

    def start(ch: pika.channel.Channel) -> None:
        pump(ch)

    def pump(ch: pika.channel.Channel) -> None:
        while state["sent"] < count and state["sent"] - state["acked"] < window:
            ch.basic_publish("", "task_queue", *next(source))
            state["sent"] += 1

    def on_ack(ch: pika.channel.Channel, frame: pika.frame.Method) -> None:
        tag = frame.method.delivery_tag
        state["acked"] = max(state["acked"], tag)  # the broker confirms in order
        if state["acked"] >= count:
            state["ended"] = time.perf_counter()
            ch.connection.close()
        else:
            pump(ch)

    state["started"] = time.perf_counter()  # connection set-up counts, as it does for warren
    conn = pika.SelectConnection(pika.URLParameters(url), on_open_callback=on_open,
                                 on_close_callback=lambda c, _r: c.ioloop.stop())
    conn.ioloop.start()
    return state["ended"] - state["started"]


class DirectReplyClient:
    """The tutorial's RPC client, with direct reply-to: one call at a time."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.basic_consume("amq.rabbitmq.reply-to", self.on_response, auto_ack=True)
        self.response: bytes | None = None
        self.corr_id = ""

    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body

    def call(self, a: int, b: int) -> int:
        import uuid

        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange="", routing_key="rpc_queue",
            properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                            correlation_id=self.corr_id),
            body=f"{a}.{b}")
        while self.response is None:
            self.connection.process_data_events(time_limit=None)
        return int(self.response)
