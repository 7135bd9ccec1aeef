"""producer.publisher.ConfirmingPublisher against a real broker: a run ends when its last
confirm arrives, not at the session's next tick."""

from __future__ import annotations

import threading

import pytest

import producer.publisher as publisher_module
from producer.load import LoadSpec, Route, generate
from producer.publisher import ConfirmingPublisher
from warren.settings import Settings
from warren.topology import declare_task_queues

TICK_S = 30.0  # far longer than the run: a run that waits for its tick cannot pass


def test_a_run_returns_at_its_last_confirm_not_at_the_next_tick(
        amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher_module, "_TICK_S", TICK_S)
    settings = Settings.from_env({"AMQP_URL": amqp_url, "METRICS_PORT": "0"})
    messages = generate(LoadSpec(count=500, task_type="noop"), Route("task_queue"))
    publisher = ConfirmingPublisher(settings, messages, stop=threading.Event(), window=100,
                                    prepare=lambda ch: declare_task_queues(ch, settings))
    report = publisher.run()
    assert report.complete, report
    assert report.confirmed == 500
    assert report.elapsed_s < TICK_S / 3, report
