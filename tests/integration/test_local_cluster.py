"""`make local`: the whole cluster on this machine, stopped cleanly with nothing lost and
nothing left running, whatever ends it (issue 17: SIGINT, SIGTERM, SIGHUP, its parent's
death, a dead pipe on its output)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.broker import rabbitmq_available
from testbed.processes import REPO
from tests.support.needs import need

ARGS = ["--workers", "3", "--rate", "20", "--heavy", "0.2", "--light", "0.02"]


def command(state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "testbed.local_cluster", *ARGS, "--state", str(state), *extra]


def worker_rows(view: str) -> dict[str, int]:
    """Each worker's done count, from the worker table of a `warren status` view."""
    rows = {}
    for line in view.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith("worker-") and parts[2].isdigit():
            rows[parts[0]] = int(parts[2])
    return rows


def started_pids(state: Path) -> list[int]:
    pids = [int(p) for p in (state / "pids").read_text().split()]
    beam = state / "rabbitmq" / "rabbitmq.pid"
    return [*pids, int(beam.read_text())] if beam.exists() else pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def assert_stopped_cleanly(state: Path, pids: list[int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)], "processes left running"
    for log in sorted((state / "logs").glob("worker-*.log")):
        text = log.read_text()
        assert '"worker_stopped"' in text, log.name  # drained: finished and acked in hand
        assert "shutdown_grace_exceeded" not in text, log.name


def wait_for_view(proc: subprocess.Popen[str], timeout_s: float = 90) -> str:
    """Read the cluster's output until a full view with every worker has been shown."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if line.startswith("fairness (Jain's index") and len(worker_rows(seen)) == 3:
            return seen
    raise AssertionError(f"no complete view within {timeout_s}s:\n{seen[-2000:]}")


def test_local_cluster_runs_shows_every_worker_and_stops_cleanly(tmp_path: Path) -> None:
    need(rabbitmq_available(), "rabbitmq-server is not installed")
    state = tmp_path / "state"
    result = subprocess.run(command(state, "--duration", "10"), capture_output=True, text=True,
                            timeout=150, check=False, cwd=REPO)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for name in ("worker-1", "worker-2", "worker-3", "producer"):
        assert f"{name} exited 0" in out
    last_view = out.rsplit("warren local cluster", 1)[1].split("stopping", 1)[0]
    done = worker_rows(last_view)
    assert len(done) == 3 and min(done.values()) > 0, last_view
    assert "fairness (Jain's index of busy time, 1.0 = perfectly even): " in last_view
    assert_stopped_cleanly(state, started_pids(state))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_stops_everything_it_started(tmp_path: Path, signum: int) -> None:
    need(rabbitmq_available(), "rabbitmq-server is not installed")
    state = tmp_path / "state"
    proc = subprocess.Popen(command(state), stdout=subprocess.PIPE, text=True, cwd=REPO)
    wait_for_view(proc)
    pids = started_pids(state)
    proc.send_signal(signum)
    assert proc.wait(timeout=90) == 0
    assert_stopped_cleanly(state, pids)


def test_ctrl_c_with_its_output_pipe_gone_still_stops_everything(tmp_path: Path) -> None:
    """`make local | tee run.log`, then Ctrl-C: tee dies with the cluster's stdout open."""
    need(rabbitmq_available(), "rabbitmq-server is not installed")
    state = tmp_path / "state"
    proc = subprocess.Popen(command(state), stdout=subprocess.PIPE, text=True, cwd=REPO)
    wait_for_view(proc)
    pids = started_pids(state)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone: every later write is a broken pipe
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=90)
    assert_stopped_cleanly(state, pids)


def test_the_death_of_its_parent_stops_everything(tmp_path: Path) -> None:
    need(rabbitmq_available(), "rabbitmq-server is not installed")
    state = tmp_path / "state"
    shell = subprocess.Popen(["sh", "-c", " ".join(command(state)) + "; true"],
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    wait_for_view(shell)
    pids = started_pids(state)
    shell.send_signal(signal.SIGKILL)  # the terminal or make, gone at once
    shell.wait(timeout=10)
    assert_stopped_cleanly(state, pids, timeout_s=90)


def _ready(view: str) -> int:
    """task_queue's ready count in a `warren status` view."""
    for line in view.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "task_queue" and parts[1].isdigit():
            return int(parts[1])
    raise AssertionError(f"no task_queue row in:\n{view[-1500:]}")


def test_queued_tasks_outlive_a_saved_port_taken_meanwhile(tmp_path: Path) -> None:
    """The node moves to new ports, and its data (named after the node) goes with it: the
    next run found an empty queue, the backlog stranded on disk under the old name."""
    import socket

    need(rabbitmq_available(), "rabbitmq-server is not installed")
    state = tmp_path / "state"
    backlog = ["--rate", "100", "--heavy", "2", "--light", "2"]
    first = subprocess.run([*command(state, "--duration", "8"), *backlog], capture_output=True,
                           text=True, timeout=150, check=False, cwd=REPO)
    assert first.returncode == 0, first.stdout + first.stderr
    left = _ready(first.stdout.rsplit("warren local cluster", 1)[1])
    assert left > 50, "the first run left no backlog: nothing to test"
    amqp_port = int((state / "ports").read_text().split()[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", amqp_port))
        squatter.listen()
        proc = subprocess.Popen([*command(state), "--rate", "0.1"], stdout=subprocess.PIPE,
                                text=True, cwd=REPO)
        try:
            view = wait_for_view(proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=90)
    assert _ready(view) >= left - 3 * 10, "the backlog was left behind"  # 3 workers ran a while
    assert int((state / "ports").read_text().split()[0]) != amqp_port


def test_a_terminal_that_goes_away_without_a_signal_stops_everything(tmp_path: Path) -> None:
    """`make local` in a terminal that closes: the kernel sends SIGHUP to make, which waits
    for its recipe without passing it on. The cluster sees its terminal gone (EIO) and stops.
    Here: a terminal that is not the process's controlling one, so no SIGHUP at all."""
    import select

    need(rabbitmq_available(), "rabbitmq-server is not installed")
    state = tmp_path / "state"
    master, slave = os.openpty()
    proc = subprocess.Popen(command(state), stdout=slave, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=REPO)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 90
    while b"fairness (Jain's index" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 1.0)[0]:
            seen += os.read(master, 65536)
    assert b"fairness (Jain's index" in seen, seen[-1500:]
    pids = started_pids(state)
    os.close(master)  # the terminal goes away
    assert proc.wait(timeout=90) == 0
    assert_stopped_cleanly(state, pids)
