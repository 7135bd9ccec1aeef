"""A private RabbitMQ node on this machine: free ports, its own directory, no root service.

Used by the test fixtures, the benchmarks and `make local`. It runs Debian's
`rabbitmq-server` scripts directly as the current user, with HOME pointed at
its own directory so the Erlang cookie stays private too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
PLUGINS = "[rabbitmq_management,rabbitmq_prometheus]."


class BrokerStartError(RuntimeError):
    """The node did not come up; the message carries the tail of its startup log."""


_HANDED_OUT: set[int] = set()
# Below Linux's ephemeral range (32768+ by default), so that while a node is down for a
# restart no outgoing connection can be given its port as a local port and keep it.
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A port nothing listens on now, never the same twice in this process."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def _die_with_parent() -> None:
    from testbed.processes import _die_with_parent as arm

    arm()


def rabbitmq_available() -> bool:
    return (RABBITMQ_BIN / "rabbitmq-server").exists()


@dataclass
class LocalBroker:
    base_dir: Path
    amqp_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    user: str = "warren"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    extra_config: str = ""
    die_with_parent: bool = False  # SIGTERM (a clean stop) when the starting process dies
    process: subprocess.Popen[bytes] | None = None

    @property
    def nodename(self) -> str:
        return f"warren-{self.amqp_port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def _env(self) -> dict[str, str]:
        d = self.base_dir
        return {
            **os.environ,
            "HOME": str(d),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_LOGS": str(d / "log" / "rabbit.log"),
        }

    def _write_config(self) -> None:
        d = self.base_dir
        (d / "log").mkdir(parents=True, exist_ok=True)
        (d / "mnesia").mkdir(parents=True, exist_ok=True)
        (d / "enabled_plugins").write_text(PLUGINS + "\n")
        (d / "rabbitmq-env.conf").write_text("")
        (d / "advanced.config").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.port = {self.management_port}\n"
            f"management.tcp.ip = 127.0.0.1\n"
            f"prometheus.tcp.port = {self.prometheus_port}\n"
            f"prometheus.tcp.ip = 127.0.0.1\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "loopback_users = none\n"
            "collect_statistics_interval = 100\n"
            "log.console = false\n"
            "log.file.level = warning\n" + self.extra_config
        )

    def start(self, timeout_s: float = 90.0) -> None:
        self._write_config()
        log = (self.base_dir / "log" / "startup.log").open("ab")
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")], env=self._env(), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=self.base_dir,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        self.wait_ready(timeout_s)

    def start_on_free_ports(self, attempts: int = 3, timeout_s: float = 90.0) -> None:
        """Start; if the node dies at once (a port taken meanwhile), again on new ports."""
        for attempt in range(1, attempts + 1):
            try:
                self.start(timeout_s)
                return
            except BrokerStartError:
                if attempt == attempts:
                    raise
                self.kill()
                self.amqp_port, self.management_port = free_port(), free_port()
                self.prometheus_port, self.dist_port = free_port(), free_port()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise BrokerStartError(f"rabbitmq-server exited early ({self._startup_tail()}); "
                                       f"see {self.base_dir}/log")
            if self._amqp_answers():
                return
            time.sleep(0.3)
        raise BrokerStartError(f"no AMQP on port {self.amqp_port} after {timeout_s:.0f}s")

    def _startup_tail(self) -> str:
        try:
            lines = (self.base_dir / "log" / "startup.log").read_text(errors="replace")
        except OSError:
            return "no startup log"
        return " | ".join(line.strip() for line in lines.splitlines()[-3:] if line.strip())

    def _amqp_answers(self) -> bool:
        import pika

        try:
            pika.BlockingConnection(pika.URLParameters(self.url)).close()
            return True
        except Exception:
            return False

    def add_vhost(self, name: str) -> str:
        """Create a vhost (management API, no rabbitmqctl start-up cost); returns its AMQP URL."""
        self.api("PUT", f"/api/vhosts/{name}", {})
        self.api("PUT", f"/api/permissions/{name}/{self.user}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
        return self.url.rsplit("/", 1)[0] + f"/{quote(name, safe='')}"

    def delete_vhost(self, name: str) -> None:
        self.api("DELETE", f"/api/vhosts/{quote(name, safe='')}")

    def api(self, method: str, path: str, body: object | None = None) -> object:
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.management_url + path, data=data, method=method,
                                     headers={"Authorization": f"Basic {auth}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self._env(), capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def queue_counts(self, name: str) -> tuple[int, int]:
        """(ready, unacked) straight from the node, no stats lag."""
        out = self.ctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                       "messages_unacknowledged")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == name:
                return int(parts[1]), int(parts[2])
        raise KeyError(name)

    def beam_pid(self) -> int | None:
        try:
            return int((self.base_dir / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Graceful stop; the data directory stays for a restart."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.ctl("stop", timeout_s=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the node: the crash a power cut would be."""
        pid = self.beam_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.process:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def restart(self, timeout_s: float = 90.0) -> None:
        self.stop()
        self.start(timeout_s)
