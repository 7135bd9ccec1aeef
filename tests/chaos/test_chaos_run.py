"""Chaos: 22,000 persistent tasks through SIGKILLed workers, a broker crash and a broker restart.

One run, shared by the tests below (each checks one property, so a failure
names it). 4 workers; every 2 s a random one is SIGKILLed and replaced; the
broker is SIGKILLed once and restarted gracefully once while two publishers are
mid-run: warren's ConfirmingPublisher with known ids (20,000 tasks; the ids
make the Jepsen-style check exact) and the producer CLI itself (2,000 tasks,
checked by count). The issue asks for 20,000: the run takes about 90 s here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from testbed.chaos import ChaosPlan, ChaosResult, ChaosRun, assert_safe
from tests.support.broker import BrokerUnderTest
from warren.backoff import Backoff

pytestmark = [pytest.mark.broker, pytest.mark.timeout(420)]

PLAN = ChaosPlan(tasks=20_000, cli_tasks=2_000, workers=4, prefetch=10, rate=400.0,
                 window=100, cli_window=50, kill_every_s=2.0,
                 faults=((0.25, "kill"), (0.6, "restart")))
BACK_WITHIN_S = 10.0  # the goal: consuming again within 10 s of the broker's return


@pytest.fixture(scope="module")
def chaos(broker: BrokerUnderTest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosResult]:
    node = broker.private
    vhost = f"chaos-{uuid.uuid4().hex[:8]}"
    url = node.add_vhost(vhost)
    result = ChaosRun(node, url, tmp_path_factory.mktemp("chaos"), PLAN).run()
    print("\nchaos run:", result.row(), *result.faults, sep="\n  ")
    yield result
    node.delete_vhost(vhost)


def test_the_chaos_happened(chaos: ChaosResult) -> None:
    assert [f.kind for f in chaos.faults] == ["kill", "restart"]
    # One kill every 2 s while publishing; each kill and respawn takes a moment of its own.
    expected = chaos.publish_s / PLAN.kill_every_s
    assert chaos.worker_kills >= 0.75 * expected, (chaos.worker_kills, expected)
    for fault in chaos.faults:
        assert 0 < fault.at_confirmed < PLAN.tasks, fault  # the publisher was mid-run


def test_both_publishers_finish_with_every_message_confirmed(chaos: ChaosResult) -> None:
    assert chaos.producer_exit == 0, chaos.producer_summary
    assert f"published {PLAN.tasks} messages" in chaos.producer_summary
    assert f"confirmed {PLAN.tasks}," in chaos.producer_summary
    assert "unconfirmed 0" in chaos.producer_summary
    assert chaos.confirmed == PLAN.tasks
    assert chaos.cli_exit == 0, chaos.cli_summary
    assert f"confirmed {PLAN.cli_tasks}," in chaos.cli_summary


def test_nothing_confirmed_is_lost_and_nothing_unexpected_is_done(chaos: ChaosResult) -> None:
    assert_safe(chaos.verdict, chaos.duplicate_bound)
    assert not chaos.verdict.lost
    assert not chaos.verdict.unexpected
    assert chaos.cli_done == chaos.cli_confirmed == PLAN.cli_tasks


def test_duplicates_are_counted_and_stay_within_the_bound(chaos: ChaosResult) -> None:
    print(f"\n{chaos.verdict.extra_executions} repeated executions over "
          f"{len(chaos.verdict.duplicated)} ids; bound {chaos.duplicate_bound}")
    assert chaos.verdict.extra_executions <= chaos.duplicate_bound


def test_the_idempotent_task_leaves_exactly_one_row_per_message(chaos: ChaosResult) -> None:
    rows = chaos.effect_keys
    assert len(rows) == len(set(rows)) == PLAN.tasks + PLAN.cli_tasks
    assert set(rows) == set(chaos.history.executions)


def test_queues_are_empty_and_workers_stop_cleanly(chaos: ChaosResult) -> None:
    assert chaos.queues_after == {name: (0, 0) for name in chaos.queues_after}
    assert {"task_queue", "task_queue.retry", "task_queue.dead"} <= set(chaos.queues_after)
    assert chaos.worker_exits == [0] * PLAN.workers


def test_workers_consume_again_soon_after_the_broker_returns(chaos: ChaosResult) -> None:
    for fault in chaos.faults:
        back = [s for s in (fault.first_ready_s, fault.first_done_s) if s is not None]
        assert back and min(back) <= BACK_WITHIN_S, fault
        # A worker that lived through the outage waits out its reconnect backoff, capped
        # at a few seconds: it too must be consuming again within BACK_WITHIN_S.
        assert Backoff().cap_s < BACK_WITHIN_S
        assert fault.witness_s is not None and fault.witness_s <= BACK_WITHIN_S, fault
