"""Publishing the way the seeds do — persistent, durable queue, but no publisher confirms.

Negative control of tests/chaos: without confirms, "published" can only mean
that `basic_publish` returned, i.e. the bytes reached a socket buffer. What the
broker had not yet written to disk when it crashed is gone, and the publisher
never learns which messages those were.
"""

from __future__ import annotations

import threading

import pika
import pika.exceptions as pex

from testbed.chaos_producer import TASK_TYPE, message_id
from warren.messages import JSON, encode_task, task_properties


class UnconfirmedPublisher(threading.Thread):
    def __init__(self, url: str, prefix: str, count: int) -> None:
        super().__init__(name="unconfirmed-publisher", daemon=True)
        self.url = url
        self.prefix = prefix
        self.count = count
        self.attempted = 0
        self.sent: list[str] = []  # basic_publish returned: all this publisher can know
        self.error = ""

    def run(self) -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            channel = conn.channel()  # no confirm_delivery(): the point of the control
            channel.queue_declare("task_queue", durable=True)
            for seq in range(self.count):
                mid = message_id(self.prefix, seq)
                self.attempted = seq + 1
                channel.basic_publish("", "task_queue", encode_task(TASK_TYPE, {}, seq=seq),
                                      task_properties(JSON, message_id=mid))
                self.sent.append(mid)
            conn.close()
        except (pex.AMQPError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def attempted_ids(self) -> frozenset[str]:
        return frozenset(message_id(self.prefix, seq) for seq in range(self.attempted))
