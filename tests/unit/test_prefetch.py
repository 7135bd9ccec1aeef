from __future__ import annotations

import pytest

from worker.prefetch import HOLD_S, WINDOW, AdaptivePrefetch


def settle(duration_s: float, n: int = 20, max_prefetch: int = 64) -> AdaptivePrefetch:
    p = AdaptivePrefetch(max_prefetch)
    for _ in range(n):
        p.observe(duration_s)
    return p


def test_starts_at_one_until_a_task_was_seen() -> None:
    assert AdaptivePrefetch(64).target() == 1


def test_the_window_opens_only_once_it_is_full() -> None:
    """A light first task must not open the window: the next deliveries may be heavy."""
    p = settle(0.0001, n=WINDOW - 1)
    assert p.target() == 1
    p.observe(0.0001)
    assert p.target() == 64


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


def test_a_slow_task_in_a_batch_counts_however_many_fast_ones_follow_it() -> None:
    """Found by the fresh replay: 16 fast results settled with a slow one pushed it out of
    the window before anything was decided, and the window stayed open."""
    p = settle(0.0001)
    assert p.observe_all([0.3] + [0.0001] * 20) == 1
    assert p.target() == 64  # the window itself has moved on; the batch's verdict stands


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


def _auto_worker() -> object:
    import threading

    from warren.health import Health
    from warren.settings import Settings
    from worker.consumer import Worker
    from worker.tasks import registry

    settings = Settings.from_env({"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
                                  "PREFETCH": "auto"})
    return Worker(settings, Health(), threading.Event(), registry)


def _finished(duration_s: float, n: int = WINDOW) -> list[object]:
    from worker.execution import Outcome

    return [(None, Outcome("done", "noop", "", duration_s))] * n


def test_a_prefetch_change_lost_with_its_connection_is_scheduled_again_on_the_next() -> None:
    """The change runs from a timer of the connection; a connection lost before it rang
    must not leave the change "due" for good (the worker would never adapt again)."""
    worker = _auto_worker()
    for session in (1, 2):
        link = _TimerLink()
        worker._link, worker._channel, worker._session = link, object(), session  # type: ignore[attr-defined]
        worker._prefetch_changed_at -= 2  # type: ignore[attr-defined]  # past the interval
        worker._adapt_prefetch(_finished(0.0001))  # type: ignore[attr-defined]
        assert len(link.scheduled) == 1, f"session {session}: no prefetch change scheduled"
        worker.closed()  # type: ignore[attr-defined]  # the connection goes before the timer rang


def test_closing_the_window_waits_for_no_interval_and_opening_does() -> None:
    """Right after a change, a slow task closes the window at once (held deliveries are
    what makes a heavy/light mix unfair); a fast run may open it only after the interval."""
    import time

    worker = _auto_worker()
    link = _TimerLink()
    worker._link, worker._channel = link, object()  # type: ignore[attr-defined]
    worker.adaptive.current = 8  # type: ignore[attr-defined]
    worker._prefetch_changed_at = time.monotonic()  # type: ignore[attr-defined]  # just opened
    worker._adapt_prefetch(_finished(0.2, n=1))  # type: ignore[attr-defined]
    assert len(link.scheduled) == 1, "a slow task did not close the window at once"
    worker._prefetch_due = None  # type: ignore[attr-defined]  # as if the timer ran
    worker.adaptive.current = 1  # type: ignore[attr-defined]
    worker._prefetch_changed_at = time.monotonic()  # type: ignore[attr-defined]
    worker.adaptive.recent.clear()  # type: ignore[attr-defined]
    worker._adapt_prefetch(_finished(0.0001))  # type: ignore[attr-defined]
    assert len(link.scheduled) == 1, "the window opened again within the interval"


class _Channel:
    def cancel(self, _tag: str) -> None:
        pass


def test_a_scheduled_close_applies_no_wider_prefetch_when_its_timer_runs() -> None:
    """Found by the fresh replay: fast results settled between scheduling a close and its
    timer made the timer open the window, skipping the interval."""
    import time

    worker = _auto_worker()
    link = _TimerLink()
    worker._link, worker._channel = link, _Channel()  # type: ignore[attr-defined]
    worker._consume = lambda prefetch: None  # type: ignore[attr-defined]  # no broker
    worker.adaptive.current = 8  # type: ignore[attr-defined]
    worker._prefetch_changed_at = time.monotonic()  # type: ignore[attr-defined]
    worker._adapt_prefetch(_finished(0.0001) + _finished(0.3, n=1))  # type: ignore[attr-defined]
    worker._adapt_prefetch(_finished(0.0001, n=40))  # type: ignore[attr-defined]
    [change] = link.scheduled
    change()  # type: ignore[operator]
    assert worker.adaptive.current == 1  # type: ignore[attr-defined]


def test_the_worker_closes_for_a_slow_task_settled_among_many_fast_ones() -> None:
    worker = _auto_worker()
    link = _TimerLink()
    worker._link, worker._channel = link, _Channel()  # type: ignore[attr-defined]
    worker._consume = lambda prefetch: None  # type: ignore[attr-defined]  # no broker
    worker.adaptive.current = 64  # type: ignore[attr-defined]
    worker.adaptive.recent.extend([0.0001] * WINDOW)  # type: ignore[attr-defined]
    worker._adapt_prefetch(_finished(0.3, n=1) + _finished(0.0001, n=20))  # type: ignore[attr-defined]
    assert len(link.scheduled) == 1, "the slow task was not seen"
    link.scheduled[0]()  # type: ignore[operator]
    assert worker.adaptive.current == 1  # type: ignore[attr-defined]
