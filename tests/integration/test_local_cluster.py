"""`make local`: the whole cluster on this machine, stopped cleanly with nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testbed.broker import rabbitmq_available
from testbed.processes import REPO
from tests.support.needs import need


def test_local_cluster_runs_shows_every_worker_and_stops_cleanly(tmp_path: Path) -> None:
    need(rabbitmq_available(), "rabbitmq-server is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "testbed.local_cluster", "--workers", "3",
         "--duration", "8", "--rate", "20", "--heavy", "0.2", "--light", "0.02",
         "--state", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for name in ("worker-1", "worker-2", "worker-3"):
        assert f"{name} exited 0" in out
    assert "producer exited 0" in out
    assert "fairness (Jain's index" in out
    last_view = out.rsplit("warren local cluster", 1)[1].split("stopping:", 1)[0]
    done = [int(line.split()[1]) for line in last_view.splitlines()
            if line.startswith("worker-")]
    assert len(done) == 3 and min(done) > 0, last_view
