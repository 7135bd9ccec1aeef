"""RabbitMQ 4.x test nodes, each in a container of a local stand-in image.

`local/rabbitmq:4.3-management` comes from Debian sid's packages
(`../shared/tools/offline-images --suite sid rabbitmq`); its Erlang needs sid's
libraries, so the node runs in the image rather than from an unpacked root.

A node's container runs on the host network with the node's own ports (AMQP,
management, prometheus on 127.0.0.1; Erlang distribution on 127.0.0.1 too) and
`RABBITMQ_NODENAME=warren-<port>@localhost`, so tests reach it exactly like a
host node. Its data directory (`<base_dir>/data`, also the image's HOME with the
cookie) is bind-mounted, so a restart — a new container — keeps the data; a
graceful stop is `docker stop` (SIGTERM: the image's node stops cleanly), a
crash is `docker kill -s KILL`. Each container is removed when its node stops
or is killed. `docker run` stays attached, a child of ours: the node's output
goes straight to `<base_dir>/log/container.log`, and with `die_with_parent` the
kernel SIGTERMs that child when we die, which it hands on to the node (a clean
stop), as with a host node.

epmd: a lone node starts its own inside its container on a private port (it
dies with the node, nothing else needs it). Cluster nodes must outlive each
other's crashes, so they share an epmd container of their own (`Epmd`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.broker import BrokerStartError, die_with_parent, free_port
from testbed.netns import pid_alive

if TYPE_CHECKING:
    from testbed.broker import LocalBroker

IMAGES = {"4.3": "local/rabbitmq:4.3-management"}
IMAGE_VAR = "WARREN_TEST_RABBITMQ_IMAGE"
BUILD_HINT = "../shared/tools/offline-images --suite sid rabbitmq"
OWNER_LABEL = "io.warren.test.owner"  # the pid of the process that started it
DATA = "/var/lib/rabbitmq"  # the image's data directory and HOME
CONF = "/etc/rabbitmq/conf.d/90-warren.conf"  # after the image's 10-defaults.conf
# Keep the Erlang distribution (node and CLI) on loopback, like every other port.
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"

_running: set[str] = set()  # containers this process made and has not removed yet
_orphans_reaped = False


def docker(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True,
                          timeout=timeout_s, check=False)


@dataclass
class ContainerRuntime:
    image: str
    major: int = 4
    epmd_port: int = field(default_factory=free_port)  # a lone node's own epmd
    name: str | None = None  # the node's container while there is one
    process: subprocess.Popen[bytes] | None = None  # the attached `docker run`

    @classmethod
    def for_version(cls, version: str) -> ContainerRuntime:
        image = os.environ.get(IMAGE_VAR) or IMAGES[version]
        return cls(image, major=int(version.split(".", 1)[0]))

    def describe(self) -> str:
        return f"container of {self.image} (host network)"

    def problem(self) -> str | None:
        if shutil.which("docker") is None:
            return "the docker CLI is not installed (.ci/install-docker.sh installs docker.io)"
        if docker("info", "--format", "{{.ServerVersion}}", timeout_s=30).returncode != 0:
            return "no Docker engine answers (`docker info` fails): start dockerd"
        if docker("image", "inspect", "--format", "{{.Id}}", self.image).returncode != 0:
            return f"the image {self.image} is missing: {BUILD_HINT} builds it"
        return None

    def config(self, node: LocalBroker) -> str:
        # The image logs to stdout (docker logs). The agent's metrics collector is off as
        # management_metrics_collection is denied anyway; saying so keeps that denial from
        # logging an error at every boot, so the log shows only real deprecated uses.
        return ("log.console = true\nlog.console.level = warning\n"
                "management_agent.disable_metrics_collector = true\n")

    def shared_epmd(self) -> Epmd:
        return Epmd(self.image)

    def launch(self, node: LocalBroker) -> None:
        _reap_orphans()
        data = node.base_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = node.base_dir / "container.conf"
        conf.write_text(_in_container(node.base_dir / "rabbitmq.conf", data))
        self.name = container_name(node)
        docker("rm", "--force", self.name)  # ours, left by a start that failed half-way
        env = {
            "RABBITMQ_NODENAME": node.nodename,
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "ERL_EPMD_PORT": str(node.epmd_port or self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",  # the node's own epmd, when it starts one
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": LOOPBACK_DIST,
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_DIST,
            **({"RABBITMQ_ERLANG_COOKIE": node.cookie} if node.cookie else {}),
        }
        command = [
            # --rm: whatever ends it (even our own death, with die_with_parent), it goes.
            "docker", "run", "--rm", "--name", self.name, "--network", "host",
            "--label", f"{OWNER_LABEL}={os.getpid()}",
            "--volume", f"{data}:{DATA}", "--volume", f"{conf}:{CONF}:ro",
            *(arg for key, value in env.items() for arg in ("--env", f"{key}={value}")),
            self.image]
        _running.add(self.name)
        with (node.base_dir / "log" / "container.log").open("ab") as log:
            # Its own session: a Ctrl-C meant for the test run is not forwarded to the node.
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if node.die_with_parent else None)

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def ctl_command(self, node: LocalBroker, args: tuple[str, ...]) -> list[str]:
        # As the image's rabbitmq user: the cookie in HOME is its own, readable by it only.
        name = self.name or container_name(node)
        return ["docker", "exec", "--user", "rabbitmq", name, "rabbitmqctl", "-n",
                node.nodename, *args]

    def ctl_env(self, node: LocalBroker) -> dict[str, str] | None:
        return None

    def pid(self) -> int | None:
        if self.name is None:
            return None
        found = docker("inspect", "--format", "{{.State.Pid}}", self.name).stdout.strip()
        return int(found) if found.isdigit() and found != "0" else None

    def stop(self, node: LocalBroker) -> None:
        if self.name is None:
            return
        if docker("stop", "--time", "60", self.name, timeout_s=90).returncode != 0:
            self.kill(node)
            return
        self._remove()

    def kill(self, node: LocalBroker) -> None:
        if self.name is None:
            return
        if self.process is not None and self.process.poll() is None and not self._created():
            # `docker run` has not created the container yet: stop it from ever doing so.
            self.process.kill()
        docker("kill", "--signal", "KILL", self.name)
        docker("wait", self.name, timeout_s=60)  # gone for good before anyone looks
        self._remove()

    def _created(self) -> bool:
        assert self.name is not None
        return docker("container", "inspect", self.name).returncode == 0

    def _remove(self) -> None:
        assert self.name is not None
        _remove_container(self.name)
        self.name = None
        if self.process is not None:
            try:
                self.process.wait(timeout=30)  # it ends with its container
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def startup_tail(self, node: LocalBroker) -> str:
        try:
            text = (node.base_dir / "log" / "container.log").read_text(errors="replace")
        except OSError:
            return "no container log"
        lines = [line.strip()[:300] for line in text.splitlines() if line.strip()]
        return " | ".join(lines[-5:]) or "no output"


def container_name(node: LocalBroker) -> str:
    """Unique on the machine: a port is only free when chosen, and other test runs (other
    checkouts) make containers too; ours are the only ones with our pid in the name."""
    return f"warren-test-{os.getpid()}-{node.amqp_port}"


def _in_container(conf: Path, data: Path) -> str:
    """The node's rabbitmq.conf, with every host file it names copied into the data dir.

    A setting such as `ssl_options.keyfile = /tmp/.../server.key` names a host path
    the container cannot see, readable by root only; under the data directory the
    image's entrypoint hands it to its rabbitmq user.
    """
    files = data / "host-files"
    lines = []
    for line in conf.read_text().splitlines():
        match = re.fullmatch(r"(\s*([\w.\-]+)\s*=\s*)(/\S+)\s*", line)
        if match and Path(match.group(3)).is_file():
            files.mkdir(exist_ok=True)
            target = files / match.group(2)  # one file per setting: a restart overwrites it
            shutil.copyfile(match.group(3), target)
            line = match.group(1) + f"{DATA}/{target.relative_to(data)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _remove_container(name: str, timeout_s: float = 30.0) -> None:
    """Remove it and wait until it is gone (a --rm removal may still be under way), so
    that a restart can take the same name at once."""
    _running.discard(name)
    docker("rm", "--force", "--volumes", name)
    deadline = time.monotonic() + timeout_s
    while docker("container", "inspect", name).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"container {name} still there after {timeout_s:.0f}s")
        time.sleep(0.1)


@atexit.register
def _remove_all() -> None:
    """A test run that stops half-way (an error in a fixture, Ctrl-C) leaves no container."""
    for name in list(_running):
        with contextlib.suppress(Exception):
            _remove_container(name)


def _reap_orphans() -> None:
    """Remove test containers whose process is gone (a run killed with SIGKILL)."""
    global _orphans_reaped
    if _orphans_reaped:
        return
    _orphans_reaped = True
    listed = docker("ps", "--all", "--filter", f"label={OWNER_LABEL}",
                    "--format", f'{{{{.Names}}}} {{{{.Label "{OWNER_LABEL}"}}}}')
    for line in listed.stdout.splitlines():
        name, _, owner = line.partition(" ")
        if owner.isdigit() and not pid_alive(int(owner)):
            docker("rm", "--force", "--volumes", name)
    return True


@dataclass
class Epmd:
    """One epmd for a cluster's nodes, in its own container: it outlives any node's crash."""

    image: str
    port: int = field(default_factory=free_port)
    name: str | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        _reap_orphans()
        self.name = f"warren-epmd-{os.getpid()}-{self.port}"
        result = docker(
            "run", "--detach", "--name", self.name, "--network", "host", "--user", "rabbitmq",
            "--label", f"{OWNER_LABEL}={os.getpid()}", "--env", "ERL_EPMD_ADDRESS=127.0.0.1",
            "--entrypoint", "epmd", self.image, "-port", str(self.port), timeout_s=120)
        if result.returncode != 0:
            raise BrokerStartError(f"epmd container: {result.stderr.strip()}")
        _running.add(self.name)
        deadline = time.monotonic() + timeout_s
        while not _answers(self.port):
            if time.monotonic() > deadline:
                raise BrokerStartError(f"epmd on port {self.port} did not answer")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.name is not None:
            _remove_container(self.name)
            self.name = None


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
