"""`python -m tests.chaos.autoack_consumer URL LOG SECONDS`: the auto-ack anti-pattern, on purpose.

A plain pika consumer with `auto_ack=True`: the broker forgets each message the
moment it is sent, so whatever sits in this process' buffers when it is
SIGKILLed is gone. `basic_qos(prefetch_count=1)` is set to show that it does not
help: RabbitMQ applies prefetch to unacknowledged deliveries only, and an
auto-ack delivery is never unacknowledged. Negative control of tests/chaos.
"""

from __future__ import annotations

import os
import sys
import time

import pika
from pika.adapters.blocking_connection import BlockingChannel


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main(url: str, log_path: str, seconds: float) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=1)

    def on_message(_ch: BlockingChannel, _method: object, props: pika.BasicProperties,
                   _body: bytes) -> None:
        time.sleep(seconds)  # the work
        append_line(log_path, f"{props.message_id} {os.getpid()}\n")

    channel.basic_consume("task_queue", on_message, auto_ack=True)
    print("consuming", flush=True)
    channel.start_consuming()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
