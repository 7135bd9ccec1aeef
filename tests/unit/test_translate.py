"""warren.amqp.connect.translate: pika's errors onto warren's (pure mapping, no broker)."""

from __future__ import annotations

import pika.exceptions as pex

from warren.amqp.connect import translate
from warren.errors import ConnectionLost, Refused


def test_a_queue_whose_home_node_is_down_is_retried_not_a_configuration_error() -> None:
    """Seen on 4.3 under load: a 404 for a durable queue whose node restarts."""
    exc = pex.ChannelClosedByBroker(404, "NOT_FOUND - home node 'rabbit@a' of durable queue "
                                         "'task_queue' in vhost '/' is down or inaccessible")
    assert isinstance(translate(exc, "declaring"), ConnectionLost)


def test_a_missing_exchange_stays_a_configuration_error() -> None:
    exc = pex.ChannelClosedByBroker(404, "NOT_FOUND - no exchange 'x' in vhost '/'")
    assert isinstance(translate(exc, "declaring"), Refused)
