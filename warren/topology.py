"""Queues and exchanges, declared idempotently by whoever needs them (again after reconnect).

`task_queue` itself carries no arguments in classic mode, so the tutorial's own
`queue_declare('task_queue', durable=True)` keeps working beside warren. Retries
go through a side queue whose messages expire back into `task_queue`; parked
messages go to `task_queue.dead`.
"""

from __future__ import annotations

from typing import Any

from warren.amqp import Channel
from warren.bindings import EXCHANGE_TYPES, Binding
from warren.settings import Settings


def task_queue_arguments(settings: Settings) -> dict[str, Any]:
    if settings.queue_type == "classic":
        return {}
    # Quorum queues on RabbitMQ 4.x drop a message after 20 failed deliveries
    # unless it has somewhere to go: send it to the parking queue instead.
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": settings.dead_queue,
    }


def side_queue_arguments(settings: Settings) -> dict[str, Any]:
    return {"x-queue-type": "quorum"} if settings.queue_type == "quorum" else {}


def retry_queue_arguments(settings: Settings) -> dict[str, Any]:
    return {
        **side_queue_arguments(settings),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": settings.task_queue,
    }


def declare_task_queues(channel: Channel, settings: Settings) -> None:
    channel.queue_declare(settings.task_queue, durable=True,
                          arguments=task_queue_arguments(settings))
    channel.queue_declare(settings.retry_queue, durable=True,
                          arguments=retry_queue_arguments(settings))
    channel.queue_declare(settings.dead_queue, durable=True,
                          arguments=side_queue_arguments(settings))


def declare_exchange(channel: Channel, name: str, kind: str) -> None:
    if kind not in EXCHANGE_TYPES:
        raise ValueError(f"exchange type must be one of {', '.join(EXCHANGE_TYPES)}, got {kind!r}")
    channel.exchange_declare(name, kind)


def declare_events_exchange(channel: Channel, settings: Settings) -> None:
    """The task events' fanout exchange and the workers' status one (none with events off)."""
    for name in (settings.events_exchange, settings.status_exchange):
        if name:
            declare_exchange(channel, name, "fanout")


def declare_rpc_queue(channel: Channel, settings: Settings) -> None:
    """Classic and non-durable, exactly as the seed's server declares it, so both can share it.

    Requests are only worth answering while their caller waits; in quorum mode
    the queue must be durable and replicated instead.
    """
    if settings.queue_type == "quorum":
        channel.queue_declare(settings.rpc_queue, durable=True,
                              arguments={"x-queue-type": "quorum"})
    else:
        channel.queue_declare(settings.rpc_queue)


def apply_bindings(channel: Channel, queue: str, bindings: tuple[Binding, ...]) -> None:
    for binding in bindings:
        declare_exchange(channel, binding.exchange, binding.kind)
        channel.queue_bind(queue, binding.exchange, routing_key=binding.routing_key,
                           arguments=binding.arguments or None)
