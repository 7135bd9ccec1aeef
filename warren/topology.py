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
    """Durable, classic or quorum as QUEUE_TYPE says.

    RabbitMQ 4.x deprecates queues that are neither durable nor exclusive
    (`transient_nonexcl_queues`; denied, the declare closes the connection), so `rpc_queue`
    is durable now, where the tutorial's server declared it transient. Its clients never
    declare it and keep working. An old transient `rpc_queue` on a 3.x broker makes this
    declare fail (406, `durable`): delete it, or restart the broker, which drops it.
    """
    arguments = {"x-queue-type": "quorum"} if settings.queue_type == "quorum" else None
    channel.queue_declare(settings.rpc_queue, durable=True, arguments=arguments)


def apply_bindings(channel: Channel, queue: str, bindings: tuple[Binding, ...]) -> None:
    for binding in bindings:
        declare_exchange(channel, binding.exchange, binding.kind)
        channel.queue_bind(queue, binding.exchange, routing_key=binding.routing_key,
                           arguments=binding.arguments or None)
