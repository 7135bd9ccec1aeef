"""warren's Publisher against a queue that refuses publishes for a while (x-max-length with
overflow=reject-publish): the channel is replaced after RENEW_AFTER_S of nacks, and every
message still ends up confirmed, once and only once in the queue. Under a resource alarm
no renewal is tried."""

from __future__ import annotations

import threading
import time

import pika

from tests.support.broker import BrokerUnderTest
from warren.amqp import Link, Outgoing, Publisher, PublishEvents
from warren.amqp.connect import connect
from warren.amqp.publisher import RENEW_AFTER_S
from warren.settings import Settings

QUEUE = "full_for_a_while"
ROOM = 5
COUNT = 12
ALARM_S = 20  # the alarm clears by itself after this, whatever the test does


def test_a_refusing_queue_costs_channel_renewals_and_loses_nothing(amqp_url: str) -> None:
    link = Link(connect(Settings.from_env({"AMQP_URL": amqp_url}), "renewal"))
    setup = link.channel("setup")
    setup.queue_declare(QUEUE, durable=True,
                        arguments={"x-max-length": ROOM, "x-overflow": "reject-publish"})
    confirmed: list[bytes] = []
    publisher = Publisher(PublishEvents(lambda m, _t, _s: confirmed.append(m.body)))
    publisher.attach(link)
    publisher.submit_all([Outgoing(b"%d" % i, pika.BasicProperties(), QUEUE)
                          for i in range(COUNT)])

    def serve_until(done: object, most_s: float) -> None:
        deadline = time.monotonic() + most_s
        while not done() and time.monotonic() < deadline:
            link.serve(0.05)
            publisher.flush()

    serve_until(lambda: publisher.renewals >= 1, RENEW_AFTER_S + 10)
    assert publisher.renewals >= 1
    assert len(confirmed) == ROOM  # the rest refused so far, kept for later

    taken = []
    deadline = time.monotonic() + 30
    while len(taken) < COUNT and time.monotonic() < deadline:  # make room, take what comes
        while (message := setup.get(QUEUE)) is not None:
            taken.append(message.body)
            setup.ack(message.tag)
        serve_until(lambda: False, 0.2)
    serve_until(lambda: len(confirmed) >= COUNT, 5)
    assert setup.get(QUEUE) is None
    link.close()

    assert sorted(confirmed) == sorted(b"%d" % i for i in range(COUNT))
    assert sorted(taken) == sorted(confirmed)  # each once: nothing lost, nothing twice


def test_no_renewal_while_a_resource_alarm_blocks_the_connection(
        amqp_url: str, broker: BrokerUnderTest) -> None:
    """Closing a channel under an alarm waits for the alarm to clear (RabbitMQ reads nothing
    more from a blocked publisher's socket), so a due renewal is dropped and its streak
    restarts; the link's thread stays free to see its stop flag."""
    node = broker.private
    link = Link(connect(Settings.from_env({"AMQP_URL": amqp_url}), "renewal-alarm"))
    publisher = Publisher(PublishEvents(lambda *_: None))
    publisher.attach(link)
    publisher.submit(Outgoing(b"held", pika.BasicProperties(), "anywhere"))
    node.ctl("set_vm_memory_high_watermark", "0.0000001")
    clear = threading.Timer(ALARM_S, node.ctl, ("set_vm_memory_high_watermark", "0.4"))
    clear.start()
    try:
        deadline = time.monotonic() + 10
        while not publisher.blocked and time.monotonic() < deadline:
            link.serve(0.05)
        assert publisher.blocked and link.blocked
        publisher._nacked_since = time.monotonic() - 2 * RENEW_AFTER_S  # a long streak
        started = time.monotonic()
        publisher._renew()
        assert time.monotonic() - started < 2, "the renewal waited for the alarm"
        assert publisher.renewals == 0 and publisher._nacked_since is None
    finally:
        clear.cancel()
        node.ctl("set_vm_memory_high_watermark", "0.4")
    link.close()
