"""structlog set-up: JSON in containers, readable on a terminal; pika's noise at WARNING.

pika logs through the standard library; its records go through the same
renderer, so a container's log stays one JSON object per line even when pika
prints a traceback.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar, Token
from typing import TextIO

import structlog

from warren.settings import Settings

_UNBOUND = object()
_task_id: ContextVar[object] = ContextVar("warren_log_task_id", default=_UNBOUND)


def bind_task_id(task_id: str | None) -> Token[object]:
    """Every log line of this context carries `task_id` until `unbind_task_id(token)`.

    structlog's bind_contextvars does the same for four times the cost (1.3 µs a task
    against 0.3, timeit, Python 3.11), a share of a no-op task's own run."""
    return _task_id.set(task_id)


def unbind_task_id(token: Token[object]) -> None:
    _task_id.reset(token)


def _add_task_id(_logger: object, _name: str, event: structlog.typing.EventDict
                 ) -> structlog.typing.EventDict:
    """Before merge_contextvars: an id given to the call wins, then this one, then one
    bound with structlog's own bind_contextvars."""
    task_id = _task_id.get()
    if task_id is not _UNBOUND:
        event.setdefault("task_id", task_id)
    return event


_SHARED = [
    _add_task_id,
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _renderer(fmt: str, stream: TextIO) -> structlog.typing.Processor:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer()


def _static(fields: dict[str, str]) -> structlog.typing.Processor:
    """Fields every line of this process carries, from every thread (contextvars are per
    thread: a lane or the outbox would not see them)."""
    def add(_logger: object, _name: str, event: structlog.typing.EventDict
            ) -> structlog.typing.EventDict:
        for key, value in fields.items():
            event.setdefault(key, value)
        return event

    return add


def configure_logging(settings: Settings, stream: TextIO | None = None,
                      service: str = "") -> None:
    stream = stream or sys.stderr
    static = [_static({"service": service, "worker_id": settings.worker_id})] if service else []
    level = getattr(logging, settings.log_level)
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    exc = [structlog.processors.format_exc_info] if fmt == "json" else []
    structlog.configure(
        processors=[*_SHARED, *static, *exc, _renderer(fmt, stream)],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, *static, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exc,
                    _renderer(fmt, stream)],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pika").setLevel(max(level, logging.WARNING))
    # Every failed connect makes pika log half a dozen ERROR lines and a traceback; warren's
    # own broker_connection_lost event says the same once, with the reason.
    # pika.channel warns of every channel the broker closes; warren logs the same, with its
    # meaning (broker_connection_lost, a refusal's one line), once.
    for name in ("pika.adapters.utils", "pika.adapters.blocking_connection", "pika.channel"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
