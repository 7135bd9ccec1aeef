"""structlog set-up: JSON in containers, readable on a terminal; pika's noise at WARNING."""

from __future__ import annotations

import logging
import sys

import structlog

from warren.settings import Settings


def configure_logging(settings: Settings, stream=None) -> None:
    stream = stream or sys.stderr
    level = getattr(logging, settings.log_level)
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if fmt == "console"
                else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(stream=stream, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    logging.getLogger("pika").setLevel(max(level, logging.WARNING))
