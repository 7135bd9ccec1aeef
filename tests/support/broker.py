"""A RabbitMQ node for tests: a private one (stoppable, restartable), or AMQP_URL's."""

from __future__ import annotations

import base64
import json
import os
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pika

from tests.support.needs import need
from warren.localbroker import LocalBroker, rabbitmq_available

TEST_QUEUES = ("task_queue", "task_queue.retry", "task_queue.dead", "rpc_queue")


@dataclass
class BrokerUnderTest:
    url: str
    node: LocalBroker | None = None

    @classmethod
    def start(cls, base_dir: Path) -> BrokerUnderTest:
        external = os.environ.get("AMQP_URL")
        if external:
            return cls(external)
        need(rabbitmq_available(), "rabbitmq-server is not installed (apt-get install "
             "rabbitmq-server), and AMQP_URL is not set")
        node = LocalBroker(base_dir)
        node.start()
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
        name = f"t-{uuid.uuid4().hex[:10]}"
        self._api("PUT", f"/api/vhosts/{name}", {})
        self._api("PUT", f"/api/permissions/{name}/{self.node.user}",
                  {"configure": ".*", "write": ".*", "read": ".*"})
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def drop_vhost(self, url: str) -> None:
        if self.node is not None and url != self.url:
            self._api("DELETE", f"/api/vhosts/{url.rsplit('/', 1)[1]}", None)

    def _api(self, method: str, path: str, body: dict | None) -> None:
        assert self.node is not None
        auth = base64.b64encode(f"{self.node.user}:{self.node.password}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.node.management_url + path, data=data, method=method,
                                     headers={"Authorization": f"Basic {auth}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30):
            pass

    @staticmethod
    def _delete_queues(url: str) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = conn.channel()
            for name in TEST_QUEUES:
                channel.queue_delete(name)
        finally:
            conn.close()
