"""The fairness figure tells fair dispatch from round-robin, on live data.

Two workers with PREFETCH=0 (no basic.qos limit: the broker's plain round-robin) and the
tutorial's alternating heavy/light tasks: one worker gets every heavy task and hoards a
growing pile of unacked deliveries while the other idles. The dashboard's busy-ratio
Jain index must drop well below the 0.9+ the fair (PREFETCH=1) run shows, while the
tasks-done index stays high: equal counts are not fairness when task costs differ.
Scraped by Prometheus 2.x and 3.x side by side; every test runs against both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.broker import LocalBroker
from tests.monitoring.live import RunningStack, Stack, StackSpec, running_stack
from tests.monitoring.prom_tools import PromRelease

pytestmark = [pytest.mark.broker, pytest.mark.timeout(150)]

ROUND_ROBIN = StackSpec(
    workers=2, prefetch=0, task_queue="unfair_queue",
    # 20 tasks/s alternating 0.2 s / 0.01 s: the heavy worker needs 2 s per second.
    producer_args=("--count", "0", "--rate", "20", "--heavy-light", "0.2", "0.01"),
    conditions=('sum(rabbitmq_detailed_queue_messages_unacked{queue="unfair_queue"}) > 10',),
)


@pytest.fixture(scope="module")
def running(prometheus_releases: list[PromRelease], monitoring_node: LocalBroker,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(prometheus_releases, monitoring_node, tmp_path_factory.mktemp("unfair"),
                       ROUND_ROBIN) as stack:
        yield stack


def test_busy_fairness_drops_under_round_robin(stack: Stack) -> None:
    jain_busy = stack.panel("Fairness across workers", "A")["total"]
    jain_done = stack.panel("Fairness across workers", "B")["total"]
    assert 0.5 <= jain_busy < 0.85, jain_busy  # 2 workers: 0.5 = one does everything
    assert jain_done > jain_busy, (jain_done, jain_busy)


def test_one_worker_hoards_and_the_other_idles(stack: Stack) -> None:
    busy = stack.panel("Per-worker busy ratio")
    in_flight = stack.panel("Per-worker in flight", "A")
    prefetch = stack.panel("Per-worker in flight", "B")
    assert set(busy) == set(in_flight) == stack.worker_targets()
    assert max(busy.values()) > 0.8 and min(busy.values()) < 0.4, busy
    assert max(in_flight.values()) > 5, in_flight  # far beyond what prefetch 1 allows
    assert set(prefetch.values()) == {0.0}, prefetch
