"""A bad setting stops each service at start with one line naming it (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed.processes import REPO

SECRET = "Do-Not-Print-Me"


def start(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module], cwd=REPO, capture_output=True,
                          text=True, timeout=30, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


@pytest.mark.parametrize("module", ["worker", "producer", "rpc_server"])
@pytest.mark.parametrize(("name", "value"), [
    ("PREFETCH", "lots"),
    ("AMQP_URL", f"amqp://warren:{SECRET}@rabbit:notaport/"),
    ("QUEUE_TYPE", "lazy"),
])
def test_bad_setting_exits_78_with_one_line(module: str, name: str, value: str) -> None:
    result = start(module, **{name: value})
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {name}: ")
    assert SECRET not in result.stderr + result.stdout


def test_metrics_port_in_use_is_a_configuration_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = start("worker", METRICS_PORT=str(port))
    assert result.returncode == 78
    assert result.stderr.startswith("configuration error: METRICS_PORT: ")
