"""A 3-node cluster with quorum queues: the node that leads task_queue dies mid-run.

Producer and workers are given every node in AMQP_URL. Killing the leader
(SIGKILL, the crash a lost machine would be) moves the queue's leadership to
one of the two survivors, and every service that was connected to the dead
node must find a survivor through its URL list. Nothing confirmed may be lost.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from testbed.broker import LocalBroker
from testbed.cluster import RabbitCluster
from testbed.processes import ServiceFactory
from tests.support.faults import (
    Tally,
    endless_producer,
    event_names,
    metric,
    producer_summary,
    wait_until,
)

COUNT = 3000
CONFIRMED = "warren_producer_confirmed_total"
RATE = 400
WORKERS = 3
PRODUCER_WINDOW = 1000  # the producer's default: the most it can have to re-send
PREFETCH = 1


def connections(cluster: RabbitCluster) -> dict[str, str]:
    """connection_name → node, for every client connection in the cluster (rabbitmqctl:
    a 4.x test node's management API lists none, its metrics collection being denied)."""
    return cluster.connections()


def test_cluster_is_three_nodes_and_task_queue_is_replicated_on_all(
        cluster: RabbitCluster, cluster_services: ServiceFactory) -> None:
    assert cluster.running_nodes() == {node.nodename for node in cluster.nodes}
    cluster_services.start("worker", WORKER_ID="probe-worker")
    info = cluster.queue_info("task_queue")
    assert info["type"] == "quorum"
    assert all(node.nodename in info["members"] for node in cluster.nodes), info
    for side in ("task_queue.retry", "task_queue.dead"):
        assert cluster.queue_info(side)["type"] == "quorum"


def test_killing_the_task_queue_leader_mid_run_loses_nothing(
        cluster: RabbitCluster, cluster_services: ServiceFactory, tmp_path: Path) -> None:
    out = tmp_path / "records"
    workers = [cluster_services.start("worker", WORKER_ID=f"w{i}", PREFETCH=str(PREFETCH))
               for i in range(WORKERS)]
    leader: LocalBroker = cluster.leader_of("task_queue")  # fixed until a node fails
    # Endless at a fixed rate, stopped with SIGTERM once past COUNT: no race with its end.
    producer = endless_producer(cluster_services, out, RATE)
    wait_until(lambda: metric(producer, CONFIRMED) >= COUNT // 4, 30,
               "a quarter of the tasks confirmed")

    # Wait until every service has connected.
    expected = {f"worker:w{i}" for i in range(WORKERS)} | {"producer:p0"}
    wait_until(lambda: expected <= set(connections(cluster)), 10, "every connection listed")
    on_leader = {name for name, node in connections(cluster).items()
                 if node == leader.nodename}
    confirmed_at_kill = metric(producer, CONFIRMED)
    killed_at = time.monotonic()
    cluster.kill(leader)

    # Recovered: a survivor leads, every worker consumes again, confirms flow again.
    new_leader = cluster.leader_of("task_queue", timeout_s=30)
    assert new_leader is not leader
    wait_until(lambda: all(w.probe("/readyz") == 200 for w in workers), 60,
               "every worker to be ready again")
    wait_until(lambda: metric(producer, CONFIRMED) >= confirmed_at_kill + RATE // 2, 60,
               "the producer's confirms to flow again")
    recovered_s = time.monotonic() - killed_at

    # Everyone who was on the dead node is on a survivor now, found through AMQP_URL.
    survivors = {node.nodename for node in cluster.alive}
    wait_until(lambda: all(connections(cluster).get(name) in survivors for name in on_leader),
               10, f"{sorted(on_leader)} to be listed on a survivor")

    wait_until(lambda: metric(producer, CONFIRMED) >= COUNT, 60, f"{COUNT} tasks confirmed")
    producer.signal(signal.SIGTERM)
    assert producer.wait(timeout_s=60) == 0, producer.log()[-3000:]
    summary = producer_summary(producer.log())
    assert summary.confirmed == summary.total >= COUNT and summary.unconfirmed == 0, summary

    # On RabbitMQ 4.x a quorum queue returns what the dead node's consumers held only after
    # its consumer_disconnected_timeout (60 s by default); 3.10 returns it at once.
    held_back_s = 90 if cluster.nodes[0].runtime.major >= 4 else 30
    wait_until(lambda: Tally.of(out).distinct >= summary.total, 60 + held_back_s,
               "every confirmed task to be done")
    wait_until(lambda: cluster.counts("task_queue") == (0, 0), held_back_s,
               "task_queue to be empty")
    time.sleep(0.5)  # anything still running would show up as a duplicate now
    tally = Tally.of(out)
    assert tally.distinct == summary.total  # 0 lost: every confirmed id was recorded
    assert cluster.counts("task_queue.dead") == (0, 0)  # nothing parked on the way

    # Duplicates are bounded by what can be in doubt at the moment of the crash: the
    # producer's unconfirmed window (re-sent) and each worker's unacked deliveries.
    bound = PRODUCER_WINDOW + WORKERS * PREFETCH
    assert tally.duplicates <= bound, f"{tally.duplicates} duplicates > {bound}"
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None
        assert worker.probe("/readyz") == 200
    if "producer:p0" in on_leader:  # it was on the dead node and found another
        assert event_names(producer).count("publishing") >= 2
    moved_services = sorted(name.split(":", 1)[1] for name in on_leader)
    print(f"\nRELIABILITY cluster-leader-kill: {summary.total} tasks at {RATE}/s, {WORKERS} "
          f"workers; killed {leader.nodename} (leader; clients on it: {moved_services}) at "
          f"{int(confirmed_at_kill)} confirmed; lost 0, duplicates {tally.duplicates}, "
          f"producer re-sends {summary.sends - summary.total}, recovered in {recovered_s:.1f}s")
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout_s=30) == 0
