"""The image as compose should run it: read-only root filesystem, a tmpfs /tmp, no
capabilities, no privilege escalation, its own non-root user.

Kubernetes already runs it so (readOnlyRootFilesystem, drop ALL); compose does
which compose now sets too. This runs each service that way against the session's
private broker (host network, so the container reaches 127.0.0.1) to show that
the compose change is safe to make.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpc_server.client import RpcClient
from testbed.broker import free_port
from tests.e2e.stack import REPO, docker_cli, image_env, require_engine, run
from tests.support.amqp import publish_tasks, wait_for_count
from tests.support.faults import wait_until
from warren.settings import Settings

IMAGE = "warren:security-test"
LOCKED_DOWN = ["--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges:true", "--network", "host"]


@pytest.fixture(scope="module")
def image() -> str:
    docker = docker_cli()
    require_engine(docker)
    args = [f"--build-arg=PYTHON_IMAGE={v}" for k, v in image_env(docker).items()
            if k == "PYTHON_IMAGE"]
    run([docker, "build", "--quiet", "--tag", IMAGE, *args, str(REPO)], timeout=900)
    return docker


@pytest.fixture
def containers(image: str) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        run([image, "rm", "--force", name], check=False, timeout=60)


def start(docker: str, names: list[str], url: str, *command: str) -> tuple[str, int]:
    name = f"warren-security-{secrets.token_hex(4)}"
    port = free_port()
    run([docker, "run", "--detach", "--name", name, *LOCKED_DOWN, "--env", f"AMQP_URL={url}",
         "--env", f"METRICS_PORT={port}", IMAGE, *command], timeout=60)
    names.append(name)
    return name, port


def ready(docker: str, name: str) -> bool:
    return run([docker, "exec", name, "python", "-m", "warren.healthcheck", "--ready"],
               check=False, timeout=30).returncode == 0


def test_every_service_runs_read_only_as_non_root(image: str, containers: list[str],
                                                  amqp_url: str, tmp_path: Path) -> None:
    docker = image
    worker, _ = start(docker, containers, amqp_url, "python", "-m", "worker")
    server, _ = start(docker, containers, amqp_url, "python", "-m", "rpc_server")
    for name in (worker, server):
        wait_until(lambda n=name: ready(docker, n), 60, f"{name} to be ready")
        user = run([docker, "exec", name, "id", "-u"], timeout=30).stdout.strip()
        assert user == "10001"
        denied = run([docker, "exec", name, "touch", "/app/written"], check=False, timeout=30)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        run([docker, "exec", name, "touch", "/tmp/scratch"], timeout=30)  # the tmpfs is writable

    publish_tasks(amqp_url, [("noop", {})] * 20 + [("fail", {"message": "park me"})])
    assert wait_for_count(amqp_url, "task_queue", 0, timeout_s=30) == 0
    assert wait_for_count(amqp_url, "task_queue.dead", 1, timeout_s=60) == 1
    with RpcClient(Settings.from_env({"AMQP_URL": amqp_url})) as client:
        assert client.call(2, 40) == 42

    produced = run([docker, "run", "--rm", *LOCKED_DOWN, "--env", f"AMQP_URL={amqp_url}",
                    "--env", "METRICS_PORT=0", IMAGE, "python", "-m", "producer",
                    "--count", "10", "--type", "noop"], timeout=120)
    assert "confirmed 10" in produced.stdout, produced.stdout

    for name in (worker, server):
        run([docker, "stop", "--time", "30", name], timeout=60)
        state = json.loads(run([docker, "inspect", name], timeout=30).stdout)[0]["State"]
        assert state["ExitCode"] == 0, run([docker, "logs", name], timeout=30).stderr[-2000:]
        logs = run([docker, "logs", name], timeout=30)
        assert "Read-only file system" not in logs.stdout + logs.stderr
        assert "Traceback" not in logs.stdout + logs.stderr
