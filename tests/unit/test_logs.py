from __future__ import annotations

import io
import json
import logging

import structlog

from warren.logs import configure_logging
from warren.settings import Settings
from worker.execution import LogContext


def test_structlog_and_stdlib_records_are_one_json_object_per_line() -> None:
    stream = io.StringIO()
    configure_logging(Settings.from_env({"LOG_FORMAT": "json"}), stream)
    structlog.get_logger("t").info("task_done", task_id="abc")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("pika.connection").exception("pika says %s", "hi")
    logging.getLogger("pika.channel").info("pika chatter")  # below WARNING: dropped
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    ours, pikas = (json.loads(line) for line in lines)
    assert (ours["event"], ours["task_id"], ours["level"]) == ("task_done", "abc", "info")
    assert pikas["event"] == "pika says hi" and pikas["logger"] == "pika.connection"
    assert "ValueError: boom" in pikas["exception"]


def test_debug_is_filtered_at_info() -> None:
    stream = io.StringIO()
    configure_logging(Settings.from_env({"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}), stream)
    structlog.get_logger("t").debug("noise")
    assert stream.getvalue() == ""


def test_a_task_log_context_binds_its_id_and_puts_back_what_was_there() -> None:
    stream = io.StringIO()
    configure_logging(Settings.from_env({"LOG_FORMAT": "json"}), stream)
    log = structlog.get_logger("t")
    structlog.contextvars.bind_contextvars(task_id="outer")
    try:
        with LogContext("inner"):
            log.info("inside")
            try:
                with LogContext(None):
                    raise RuntimeError("a task failed")
            except RuntimeError:
                pass
            log.info("after_nested")
        log.info("after")
    finally:
        structlog.contextvars.clear_contextvars()
    ids = [json.loads(line)["task_id"] for line in stream.getvalue().splitlines()]
    assert ids == ["inner", "inner", "outer"]
