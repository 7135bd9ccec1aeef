"""Negative control: the partition checker must catch loss when the setup can lose.

A classic queue mirrored on every node, `cluster_partition_handling = autoheal`, one
node cut off with a publisher on it (testbed/partition_control.py): the cut-off node
promotes its mirror and confirms on its own; at the heal autoheal restarts it and its
mirror resyncs from the majority, dropping those messages. If this found 0 lost, the
quorum runs' "0 lost" would prove nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testbed.chaos import assert_safe
from testbed.netcluster import NetCluster
from testbed.netns import Lab, sweep_orphans
from testbed.partition_control import ControlResult, MirroredAutohealControl
from tests.partition.conftest import assert_removed, need_lab
from tests.partition.plans import repeats

pytestmark = [pytest.mark.partition, pytest.mark.timeout(600)]


@pytest.mark.parametrize("repeat", range(repeats()), ids=lambda i: f"run{i}")
def test_mirrored_classic_queue_under_autoheal_loses_confirmed_messages(
        repeat: int, tmp_path: Path) -> None:
    need_lab()  # always 3.10 (4.x has no mirrored classic queues), whatever the runs use
    sweep_orphans()
    with Lab.create() as lab:
        cluster = NetCluster.start(lab, tmp_path / "nodes", partition_handling="autoheal")
        hosts = {name: lab.add_host(name) for name in ("p", "p2", "w1", "w2", "w3")}
        result = MirroredAutohealControl(cluster, hosts, tmp_path / "run").run()
    record_control(result)
    assert_removed(lab)
    verdict = result.verdict

    # Each publisher was told its messages are safe, but what one side confirmed alone is
    # gone, and the checker says so. Which side loses is autoheal's choice (most clients:
    # normally the majority wins, and the lost are those of p2, the cut-off node's).
    assert sum(result.lost_by_publisher.values()) > 0, "the control lost nothing: no proof"
    assert not verdict.unexpected
    with pytest.raises(AssertionError, match=r"\d+ lost \(confirmed, never done\)"):
        assert_safe(verdict, duplicate_bound=10**9)
    assert "Autoheal decision" in result.autoheal_decision  # it was autoheal that chose


def record_control(result: ControlResult) -> None:
    """One RELIABILITY line on stdout (-s), and in $PARTITION_RESULTS (JSON lines) if set."""
    row = {"config": "autoheal, mirrored classic queue", "scenario": "negative-control",
           "faults": f"{result.window.label} {result.window.held_s:.0f}s",
           "confirmed": result.confirmed, "lost": result.lost_by_publisher,
           "duplicates": result.verdict.extra_executions,
           "unexpected": len(result.verdict.unexpected),
           "healed": result.healed, "duration (s)": round(result.duration_s, 1),
           "autoheal": result.autoheal_decision}
    print(f"\nRELIABILITY partition: {json.dumps(row)}")
    out = os.environ.get("PARTITION_RESULTS")
    if out:
        with Path(out).open("a") as f:
            f.write(json.dumps(row) + "\n")
