"""Plain pika clients written as in the RabbitMQ tutorials: the baselines for warren.

    python -m bench.plain consumer URL PREFETCH
"""

from __future__ import annotations

import contextlib
import sys
import time

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
    if sys.argv[1] == "consumer":
        consumer(sys.argv[2], int(sys.argv[3]))
