"""A RabbitMQ node for tests: a private one (stoppable, restartable), or AMQP_URL's.

The private node is of the version WARREN_TEST_RABBITMQ picks (3.10 by default, or
4.3 in a container): see testbed/broker.py.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pika

from testbed.broker import LocalBroker, rabbitmq_problem
from tests.support.needs import need

TEST_QUEUES = ("task_queue", "task_queue.retry", "task_queue.dead", "rpc_queue")


def need_rabbitmq(context: str = "", version: str | None = None) -> None:
    """A private node of `version` (default: the selected one) can start here (else
    skip; fail in CI)."""
    problem = rabbitmq_problem(version)
    need(problem is None, f"{problem}{', ' + context if context else ''}")


@dataclass
class BrokerUnderTest:
    url: str
    node: LocalBroker | None = None

    @classmethod
    def start(cls, base_dir: Path) -> BrokerUnderTest:
        external = os.environ.get("AMQP_URL")
        if external:
            return cls(external)
        need_rabbitmq("and AMQP_URL is not set")
        node = LocalBroker(base_dir)
        node.start_on_free_ports()
        return cls(node.url, node)

    @property
    def private(self) -> LocalBroker:
        need(self.node is not None, "this test stops or restarts the broker: it needs a "
             "private node, not AMQP_URL")
        assert self.node is not None
        return self.node

    def fresh_vhost(self) -> str:
        """An AMQP URL on an empty vhost of its own (private node), or a cleaned default one."""
        if self.node is None:
            self._delete_queues(self.url)
            return self.url
        return self.node.add_vhost(f"t-{uuid.uuid4().hex[:10]}")

    def drop_vhost(self, url: str) -> None:
        if self.node is not None and url != self.url:
            self.node.delete_vhost(url.rsplit("/", 1)[1])

    @staticmethod
    def _delete_queues(url: str) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = conn.channel()
            for name in TEST_QUEUES:
                channel.queue_delete(name)
        finally:
            conn.close()
