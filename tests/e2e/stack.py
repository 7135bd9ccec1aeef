"""Drive a real `docker compose` project of warren from a test.

Everything goes through the `docker` CLI (no Docker SDK): the same commands a
user types, with the environment the compose file documents.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support.needs import need

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
# Beside the repository on this machine and in CI (a fresh clone with ../shared next to it).
OFFLINE_IMAGES = REPO.parent / "shared" / "tools" / "offline-images"
# Debian sid's stand-ins: RabbitMQ 4.3, Prometheus 3.5, Python 3.13, the versions of the
# public images the compose defaults name (bookworm's would be RabbitMQ 3.10, 2.42, 3.11).
OFFLINE_SUITE = "sid"
IMAGE_VARS = ("PYTHON_IMAGE", "RABBITMQ_IMAGE", "PROMETHEUS_IMAGE")
# Everything `docker compose up` starts here; Grafana has no image on this machine
# (docs/COMPOSE.md), and its dashboards are checked against the real Prometheus instead.
SERVICES = ("rabbitmq", "producer", "worker", "rpc_server", "prometheus")
WORKERS = 4
E2E_IMAGE = "warren:e2e"

T = TypeVar("T")


class CommandFailed(AssertionError):
    """A docker or compose command exited non-zero; the message carries its output."""


def run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120,
        check: bool = True, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(cmd), env=dict(env) if env is not None else None, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise CommandFailed(f"exit {proc.returncode}: {' '.join(cmd)}\n"
                            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 1.0) -> T:
    """Call `probe` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def docker_cli() -> str:
    docker = shutil.which("docker")
    need(docker is not None,
         "the docker CLI is not installed (CI runs .ci/install-docker.sh first)")
    assert docker is not None
    return docker


def require_compose_v2(docker: str) -> None:
    proc = run([docker, "compose", "version", "--short"], check=False, timeout=30)
    need(proc.returncode == 0,
         "Docker Compose v2 (`docker compose`) is missing: see .ci/install-docker.sh")


def require_engine(docker: str) -> None:
    proc = run([docker, "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    need(proc.returncode == 0 and proc.stdout.strip() != "",
         "no Docker engine answers (`docker info` fails); start dockerd or run "
         ".ci/install-docker.sh")


def image_env(docker: str) -> dict[str, str]:
    """PYTHON_IMAGE / RABBITMQ_IMAGE / PROMETHEUS_IMAGE for the compose project.

    Taken from the environment when set; else, where this machine's
    `offline-images` tool sits beside the repository, from its local stand-ins of
    Debian sid (built on first use, ~1 s once built); else left to the compose file's
    defaults, the public images, which Docker pulls.
    """
    found = {name: os.environ[name] for name in IMAGE_VARS if os.environ.get(name)}
    if len(found) == len(IMAGE_VARS) or not OFFLINE_IMAGES.exists():
        return found
    command = [str(OFFLINE_IMAGES), "--suite", OFFLINE_SUITE, "--dotenv"]
    proc = run(command, timeout=900, check=False)
    if proc.returncode != 0:
        raise CommandFailed(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name in IMAGE_VARS:
            found.setdefault(name, value)
    return found


@dataclass
class Stack:
    """One compose project: unique name, free host ports, private credentials."""

    docker: str
    project: str
    env: dict[str, str] = field(repr=False)  # holds the password and the whole environ
    log_dir: Path
    env_file: Path
    up_seconds: float = 0.0

    @classmethod
    def create(cls, docker: str, images: Mapping[str, str], log_dir: Path,
               extra_env: Mapping[str, str] | None = None) -> Stack:
        project = f"warren-e2e-{os.getpid()}-{secrets.token_hex(3)}"
        empty_env_file = log_dir / "empty.env"
        empty_env_file.write_text("")
        env = {
            **os.environ,
            **images,
            "WARREN_IMAGE": E2E_IMAGE,
            # Own credentials: proves they reach both the broker and every service.
            "RABBITMQ_DEFAULT_USER": "e2e",
            "RABBITMQ_DEFAULT_PASS": secrets.token_hex(12),
            "AMQP_HOST_PORT": str(free_port()),
            "MANAGEMENT_HOST_PORT": str(free_port()),
            "PROMETHEUS_HOST_PORT": str(free_port()),
            "GRAFANA_HOST_PORT": str(free_port()),
            "PRODUCER_RATE": "4",
            # Without buildx Compose would warn on every build that it cannot use Bake.
            "COMPOSE_BAKE": "false",
            **(extra_env or {}),
        }
        return cls(docker=docker, project=project, env=env, log_dir=log_dir,
                   env_file=empty_env_file)

    # -- compose --------------------------------------------------------------
    def compose(self, *args: str, timeout: float = 120,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        # --env-file: a developer's own .env must not change what the test runs.
        cmd = [self.docker, "compose", "-f", str(COMPOSE_FILE), "-p", self.project,
               "--env-file", str(self.env_file), *args]
        return run(cmd, env=self.env, timeout=timeout, check=check)

    def up(self) -> None:
        started = time.monotonic()
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", "240",
                     "--scale", f"worker={WORKERS}", *SERVICES, timeout=600)
        self.up_seconds = time.monotonic() - started
        print(f"\n[e2e] {self.project}: up --build --wait took {self.up_seconds:.1f}s",
              file=sys.stderr)

    def down(self) -> None:
        self.save_logs()
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180,
                     check=False)
        self._prune_images()

    def _prune_images(self) -> None:
        """Remove the untagged images e2e projects built; keep E2E_IMAGE as the next cache.

        Three services build the same image, which leaves two untagged copies per
        build, and a rebuild untags the previous E2E_IMAGE. Compose labels each with
        its project: only images of e2e projects (this one or earlier runs) go.
        """
        label = "com.docker.compose.project"
        listed = run([self.docker, "image", "ls", "--quiet", "--no-trunc", "--filter",
                      "dangling=true", "--filter", f"label={label}"],
                     env=self.env, timeout=60, check=False).stdout.split()
        if not listed:
            return
        fmt = "{{.Id}} {{index .Config.Labels \"" + label + "\"}}"
        inspected = run([self.docker, "image", "inspect", "--format", fmt, *listed],
                        env=self.env, timeout=60, check=False).stdout
        ours = [line.split()[0] for line in inspected.splitlines()
                if len(line.split()) == 2 and line.split()[1].startswith("warren-e2e-")]
        if ours:
            run([self.docker, "image", "rm", *ours], env=self.env, timeout=120, check=False)

    def save_logs(self) -> Path:
        path = self.log_dir / f"{self.project}.log"
        proc = self.compose("logs", "--no-color", "--timestamps", timeout=60, check=False)
        path.write_text(proc.stdout + proc.stderr)
        return path

    def container_ids(self, service: str, *, all_states: bool = False) -> list[str]:
        args = ["ps", "-q", *(["-a"] if all_states else []), service]
        return [line for line in self.compose(*args).stdout.split() if line]

    def inspect(self, container: str) -> dict[str, Any]:
        out = run([self.docker, "inspect", container], env=self.env).stdout
        return json.loads(out)[0]

    def exec(self, service: str, *cmd: str, index: int = 1,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", "--index", str(index), service, *cmd, timeout=timeout)

    def queue_counts(self, queue: str) -> tuple[int, int]:
        """(ready, unacked) straight from the node: exact, no stats lag."""
        out = self.exec("rabbitmq", "rabbitmqctl", "list_queues", "-q", "--no-table-headers",
                        "name", "messages_ready", "messages_unacknowledged").stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == queue:
                return int(parts[1]), int(parts[2])
        raise AssertionError(f"queue {queue!r} not found in:\n{out}")

    def worker_metric(self, index: int, name: str) -> float:
        """Sum of one metric family as the worker container serves it on /metrics."""
        script = ("import urllib.request;"
                  "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())")
        text = self.exec("worker", "python", "-c", script, index=index).stdout
        total = 0.0
        seen = False
        for line in text.splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        assert seen, f"{name} not in worker {index}'s /metrics"
        return total

    # -- host-side endpoints ------------------------------------------------------
    @property
    def amqp_url(self) -> str:
        user = urllib.parse.quote(self.env["RABBITMQ_DEFAULT_USER"], safe="")
        password = urllib.parse.quote(self.env["RABBITMQ_DEFAULT_PASS"], safe="")
        return f"amqp://{user}:{password}@127.0.0.1:{self.env['AMQP_HOST_PORT']}/%2F"

    def prometheus(self, path: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.env['PROMETHEUS_HOST_PORT']}{path}{query}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body: dict[str, Any] = json.load(resp)
        assert body.get("status") == "success", body
        return body

    def prom_query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.prometheus("/api/v1/query", query=expr)["data"][
            "result"]
        return result

    def targets(self, job: str) -> list[dict[str, Any]]:
        data = self.prometheus("/api/v1/targets", state="active")["data"]
        return [t for t in data["activeTargets"] if t["labels"].get("job") == job]

