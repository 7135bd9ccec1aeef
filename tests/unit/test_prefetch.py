from __future__ import annotations

import pytest

from worker.prefetch import HOLD_S, AdaptivePrefetch


def settle(duration_s: float, n: int = 20, max_prefetch: int = 64) -> AdaptivePrefetch:
    p = AdaptivePrefetch(max_prefetch)
    for _ in range(n):
        p.observe(duration_s)
    return p


def test_starts_at_one_until_a_task_was_seen() -> None:
    assert AdaptivePrefetch(64).target() == 1


@pytest.mark.parametrize(("task_s", "expected"), [
    (0.0001, 64), (0.005, 32), (0.02, 8), (0.1, 2), (0.2, 1), (1.0, 1), (30.0, 1),
])
def test_holds_about_hold_s_of_work_as_a_power_of_two(task_s: float, expected: int) -> None:
    p = settle(task_s)
    assert p.target() == expected
    assert p.target() == 1 or p.target() * task_s <= HOLD_S or p.target() == 64


def test_the_heavy_light_mix_stays_at_one() -> None:
    p = AdaptivePrefetch(64)
    for i in range(40):
        p.observe(1.0 if i % 2 == 0 else 0.1)
    assert p.target() == 1


def test_change_reports_only_a_different_target() -> None:
    p = settle(0.001)
    assert p.change() == 64
    p.current = 64
    assert p.change() is None


@pytest.mark.parametrize("task_s", [None, 0.2, 1.0, 30.0])
def test_never_fewer_deliveries_than_lanes(task_s: float | None) -> None:
    """PREFETCH=auto with CONCURRENCY=4: long tasks still keep every lane busy."""
    p = AdaptivePrefetch(64, lanes=4)
    for _ in range(20 if task_s is not None else 0):
        p.observe(task_s or 0.0)
    assert p.current == 4 and p.target() == 4


def test_the_floor_stays_within_prefetch_max() -> None:
    assert AdaptivePrefetch(2, lanes=8).target() == 2
    assert settle(0.0001, max_prefetch=64).target() == 64


class _TimerLink:
    """Records what the worker schedules on it (the worker's own logic, no broker)."""

    def __init__(self) -> None:
        self.scheduled: list[object] = []

    def call_later(self, _delay_s: float, callback: object) -> object:
        self.scheduled.append(callback)
        return callback


def test_a_prefetch_change_lost_with_its_connection_is_scheduled_again_on_the_next() -> None:
    """The change runs from a timer of the connection; a connection lost before it rang
    must not leave the change "due" for good (the worker would never adapt again)."""
    import threading

    from warren.health import Health
    from warren.settings import Settings
    from worker.consumer import Worker
    from worker.execution import Outcome
    from worker.tasks import registry

    settings = Settings.from_env({"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
                                  "PREFETCH": "auto"})
    worker = Worker(settings, Health(), threading.Event(), registry)
    quick = [(None, Outcome("done", "noop", "", 0.0001))]
    for session in (1, 2):
        link = _TimerLink()
        worker._link, worker._channel, worker._session = link, object(), session  # type: ignore[assignment]
        worker._prefetch_changed_at -= 2  # past MIN_CHANGE_INTERVAL_S
        worker._adapt_prefetch(quick)  # type: ignore[arg-type]
        assert len(link.scheduled) == 1, f"session {session}: no prefetch change scheduled"
        worker.closed()  # the connection goes before the timer rang
