"""A private RabbitMQ 4.x node in Docker for the live monitoring tests.

Debian's rabbitmq-server is 3.10 on bookworm, while what users pull is 4.x; the
local/rabbitmq:4.3-management image (`../shared/tools/offline-images --suite sid
rabbitmq`, built by .ci/install-monitoring-tools.sh) runs 4.x on this machine. The node
runs on the host network with its own listeners on free loopback ports, its own node
name and distribution port, so it sits beside private 3.10 nodes and shares the host's
epmd. It answers to the same `url` / `prometheus_port` as testbed.broker.LocalBroker.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from testbed.broker import free_port

IMAGE_4X = os.environ.get("RABBITMQ4_IMAGE", "local/rabbitmq:4.3-management")
CONF_IN_IMAGE = "/etc/rabbitmq/conf.d/90-warren-test.conf"  # after the image's 10-defaults


def _docker(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def docker_image_ready(image: str) -> str | None:
    """None when Docker answers and has `image`; otherwise why not."""
    try:
        if _docker("info", "--format", "{{.ServerVersion}}", timeout_s=30).returncode != 0:
            return "no Docker engine answers (`docker info` fails)"
    except (OSError, subprocess.TimeoutExpired):
        return "the docker CLI is missing or hangs"
    if _docker("image", "inspect", image).returncode != 0:
        return (f"no image {image}: ../shared/tools/offline-images --suite sid rabbitmq "
                "(or run .ci/install-monitoring-tools.sh)")
    return None


def build_info(prometheus_url: str) -> dict[str, str]:
    """The labels of rabbitmq_build_info (rabbitmq_version, erlang_version, ...)."""
    with urllib.request.urlopen(f"{prometheus_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(r"^rabbitmq_build_info\{([^}]*)\}", text, re.MULTILINE)
    return dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) if match else {}


@dataclass
class ContainerBroker:
    base_dir: Path
    image: str = IMAGE_4X
    amqp_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    user: str = "warren"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    extra_config: str = ""
    started: bool = False

    @property
    def name(self) -> str:
        return f"warren-monitoring-{self.amqp_port}"

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def _write_config(self) -> Path:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        conf = self.base_dir / "90-warren-test.conf"
        conf.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"prometheus.tcp.port = {self.prometheus_port}\n"
            "prometheus.tcp.ip = 127.0.0.1\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "loopback_users = none\n"
            "collect_statistics_interval = 100\n" + self.extra_config
        )
        conf.chmod(0o644)  # read by the image's rabbitmq user
        return conf

    def start(self, timeout_s: float = 90.0) -> None:
        conf = self._write_config()
        result = _docker(
            "run", "--detach", "--rm", "--name", self.name, "--network", "host",
            "--env", f"RABBITMQ_NODENAME={self.name}@localhost",
            "--env", f"RABBITMQ_DIST_PORT={self.dist_port}",
            "--volume", f"{conf}:{CONF_IN_IMAGE}:ro", self.image)
        if result.returncode != 0:
            raise RuntimeError(f"docker run {self.image}: {result.stderr.strip()}")
        self.started = True
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        import pika

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                pika.BlockingConnection(pika.URLParameters(self.url)).close()
                if build_info(self.prometheus_url):
                    return
            if _docker("container", "inspect", self.name).returncode != 0:
                raise RuntimeError(f"{self.name} exited while starting: {self.logs()}")
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: no AMQP after {timeout_s:.0f}s: {self.logs()}")

    def logs(self, lines: int = 20) -> str:
        return _docker("logs", "--tail", str(lines), self.name).stdout[-3000:]

    def stop(self) -> None:
        """Stop and remove the container (`--rm`) and its anonymous data volume."""
        if not self.started:
            return
        if _docker("stop", "--time", "20", self.name, timeout_s=60).returncode != 0:
            _docker("rm", "--force", "--volumes", self.name)
        self.started = False
