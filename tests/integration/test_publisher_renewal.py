"""warren's Publisher against a queue that refuses publishes for a while (x-max-length with
overflow=reject-publish): the channel is replaced after RENEW_AFTER_S of nacks, and every
message still ends up confirmed, once and only once in the queue."""

from __future__ import annotations

import time

import pika

from warren.amqp import Link, Outgoing, Publisher, PublishEvents
from warren.amqp.connect import connect
from warren.amqp.publisher import RENEW_AFTER_S
from warren.settings import Settings

QUEUE = "full_for_a_while"
ROOM = 5
COUNT = 12


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
