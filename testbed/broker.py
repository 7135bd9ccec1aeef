"""A private RabbitMQ node on this machine: free ports, its own directory, no root service.

Used by the test fixtures, the benchmarks and `make local`. One setting picks
which RabbitMQ runs it, `WARREN_TEST_RABBITMQ`:

- `3.10` (the default): Debian's `rabbitmq-server` scripts, run directly as the
  current user, with HOME pointed at the node's own directory so the Erlang
  cookie stays private too (RabbitMQ 3.10 on bookworm; whatever the host's
  package is elsewhere).
- `4.3`: the `local/rabbitmq:4.3-management` stand-in image
  (`offline-images --suite sid rabbitmq`), one container per node on the host
  network, its data directory bind-mounted from the node's own directory
  (`testbed/broker_container.py`). `WARREN_TEST_RABBITMQ_IMAGE` names another
  image of the same kind.

Every 4.x node denies every deprecated feature, so a test that uses one fails
instead of leaving a warning in a log nobody reads.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
PLUGINS = "[rabbitmq_management,rabbitmq_prometheus]."
VERSION_VAR = "WARREN_TEST_RABBITMQ"
DEFAULT_VERSION = "3.10"
VERSIONS = ("3.10", "4.3")

# Every deprecated feature RabbitMQ 4.3.6 lists (`rabbitmqctl list_deprecated_features`).
# A name a node does not know is accepted and ignored, so older 4.x nodes take the same
# list; a feature a newer node adds is caught after start (`_check_denied`).
DENIED_FEATURES = (
    "amqp_address_v1", "amqp_filter_set_bug", "classic_queue_mirroring", "global_qos",
    "management_metrics_collection", "queue_master_locator", "ram_node_type",
    "transient_nonexcl_queues",
)


class BrokerStartError(RuntimeError):
    """The node did not come up; the message carries the tail of its startup log."""


_HANDED_OUT: set[int] = set()
# Below Linux's ephemeral range (32768+ by default), so that while a node is down for a
# restart no outgoing connection can be given its port as a local port and keep it.
_PORT_RANGE = (20000, 32000)


def _port_range() -> tuple[int, int]:
    """WARREN_TEST_PORTS=LOW-HIGH narrows the range, so that test runs side by side (the
    two legs of `make test`) never hand out the same port."""
    raw = os.environ.get("WARREN_TEST_PORTS", "")
    if not raw:
        return _PORT_RANGE
    low, high = (int(part) for part in raw.split("-", 1))
    return low, high


def free_port() -> int:
    """A port nothing listens on now, never the same twice in this process."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_port_range())
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {_port_range()}")


class SharedEpmd(Protocol):
    """The epmd a cluster's nodes register with, started before and stopped after them."""

    port: int

    def start(self) -> None: ...
    def stop(self) -> None: ...


def die_with_parent() -> None:
    """For preexec_fn: SIGTERM (a clean stop) when the process that started it dies.

    Linux ties this to the starting thread: start such a node from the main thread.
    """
    from testbed.processes import _die_with_parent as arm

    arm()


class Runtime(Protocol):
    """What runs a node's Erlang VM: the host's package, or a container."""

    major: int  # RabbitMQ's major version: 4+ takes the deprecated-feature denials

    def describe(self) -> str: ...
    def problem(self) -> str | None: ...
    def shared_epmd(self) -> SharedEpmd | None: ...
    def config(self, node: LocalBroker) -> str: ...
    def launch(self, node: LocalBroker) -> None: ...
    def exited(self) -> bool: ...
    def ctl_command(self, node: LocalBroker, args: tuple[str, ...]) -> list[str]: ...
    def ctl_env(self, node: LocalBroker) -> dict[str, str] | None: ...
    def pid(self) -> int | None: ...
    def stop(self, node: LocalBroker) -> None: ...
    def kill(self, node: LocalBroker) -> None: ...
    def startup_tail(self, node: LocalBroker) -> str: ...


def selected_version() -> str:
    version = os.environ.get(VERSION_VAR, "") or DEFAULT_VERSION
    if version not in VERSIONS:
        raise ValueError(f"{VERSION_VAR}={version!r}: expected one of {', '.join(VERSIONS)}")
    return version


def runtime_for(version: str | None = None) -> Runtime:
    """A fresh runtime (one per node) for `version`, by default the one the setting picks."""
    version = version or selected_version()
    if version == "3.10":
        return HostRuntime()
    from testbed.broker_container import ContainerRuntime

    return ContainerRuntime.for_version(version)


def rabbitmq_problem(version: str | None = None) -> str | None:
    """Why no node of `version` (default: the selected one) can start here, or None."""
    return runtime_for(version).problem()


def rabbitmq_available(version: str | None = None) -> bool:
    return rabbitmq_problem(version) is None


def _host_major() -> int:
    """The host package's major version (4 on Debian 13), from its lib directory's name."""
    found = sorted((RABBITMQ_BIN.parent / "lib").glob("rabbitmq_server-*"))
    match = re.search(r"-(\d+)\.", found[-1].name) if found else None
    return int(match.group(1)) if match else 3


@dataclass
class HostRuntime:
    """Debian's scripts, run as the current user (root is fine: no `rabbitmq` user needed)."""

    major: int = field(default_factory=_host_major)
    process: subprocess.Popen[bytes] | None = None

    def describe(self) -> str:
        return f"host package ({RABBITMQ_BIN})"

    def problem(self) -> str | None:
        if (RABBITMQ_BIN / "rabbitmq-server").exists():
            return None
        return "rabbitmq-server is not installed (apt-get install rabbitmq-server)"

    def shared_epmd(self) -> SharedEpmd | None:
        return None  # host nodes share the host's epmd (4369), which outlives them all

    def config(self, node: LocalBroker) -> str:
        return "log.console = false\nlog.file.level = warning\n"

    def env(self, node: LocalBroker) -> dict[str, str]:
        d = node.base_dir
        return {
            **os.environ,
            "HOME": str(d),
            "RABBITMQ_NODENAME": node.nodename,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_LOGS": str(d / "log" / "rabbit.log"),
        }

    def launch(self, node: LocalBroker) -> None:
        d = node.base_dir
        (d / "mnesia").mkdir(parents=True, exist_ok=True)
        (d / "enabled_plugins").write_text(PLUGINS + "\n")
        (d / "rabbitmq-env.conf").write_text("")
        (d / "advanced.config").write_text("[].\n")
        if node.cookie:  # a cluster's shared cookie; else Erlang makes one in HOME
            cookie_file = d / ".erlang.cookie"
            with contextlib.suppress(FileNotFoundError):
                cookie_file.chmod(0o600)
            cookie_file.write_text(node.cookie)
            cookie_file.chmod(0o400)
        with (d / "log" / "startup.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env(node), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=d,
                preexec_fn=die_with_parent if node.die_with_parent else None,
            )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def ctl_command(self, node: LocalBroker, args: tuple[str, ...]) -> list[str]:
        return [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node.nodename, *args]

    def ctl_env(self, node: LocalBroker) -> dict[str, str] | None:
        return self.env(node)

    def pid(self) -> int | None:
        return None  # set per node: the pid file (see beam_pid)

    def stop(self, node: LocalBroker) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            node.ctl("stop", timeout_s=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill(node)
        self._reap()

    def kill(self, node: LocalBroker) -> None:
        pid = _read_pid(node.base_dir / "rabbitmq.pid")
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

    def startup_tail(self, node: LocalBroker) -> str:
        try:
            lines = (node.base_dir / "log" / "startup.log").read_text(errors="replace")
        except OSError:
            return "no startup log"
        return " | ".join(line.strip() for line in lines.splitlines()[-3:] if line.strip())


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Connection:
    """A client connection as the node lists it."""

    name: str | None  # the client's `connection_name` property, if it gave one
    node: str  # the node it is connected to
    ssl: bool


_CONNECTION_NAME = re.compile(r'\{"connection_name","((?:[^"\\]|\\.)*)"\}')
_PID_NODE = re.compile(r"<([^<>]+@[^<>]+?)\.\d+\.\d+\.\d+>")


def parse_connections(table: str) -> list[Connection]:
    """`list_connections client_properties pid ssl` (no headers): the same on 3.10 and 4.x."""
    found = []
    for line in table.splitlines():
        props, _, rest = line.rpartition("\t<")
        pid, _, ssl = ("<" + rest).partition("\t")
        node = _PID_NODE.fullmatch(pid)
        if not props or node is None:
            continue
        name = _CONNECTION_NAME.search(props)
        found.append(Connection(name.group(1) if name else None, node.group(1),
                                ssl.strip() == "true"))
    return found


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
    # The Erlang cookie; None: the node makes its own. A cluster gives all its nodes one.
    cookie: str | None = None
    # Container nodes only: the epmd to register with. None: the node's own, on a
    # private port, inside its container. A cluster's nodes share one.
    epmd_port: int | None = None
    die_with_parent: bool = False  # SIGTERM (a clean stop) when the starting process dies
    runtime: Runtime = field(default_factory=runtime_for)
    # The node's name; "" derives it from the AMQP port. A node whose data must outlive a
    # change of ports (make local's) keeps one name: its data lives under that name.
    name: str = ""

    @property
    def nodename(self) -> str:
        return f"{self.name or f'warren-{self.amqp_port}'}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def _write_config(self) -> None:
        d = self.base_dir
        (d / "log").mkdir(parents=True, exist_ok=True)
        denials = "".join(f"deprecated_features.permit.{name} = false\n"
                          for name in DENIED_FEATURES) if self.runtime.major >= 4 else ""
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
            + self.runtime.config(self) + denials + self.extra_config
        )

    def start(self, timeout_s: float = 90.0) -> None:
        self._write_config()
        self.runtime.launch(self)
        self.wait_ready(timeout_s)
        pid = self.runtime.pid()
        if pid:  # a host node writes its own; `make local` and its tests read it
            (self.base_dir / "rabbitmq.pid").write_text(f"{pid}\n")
        if self.runtime.major >= 4:
            self._check_denied()

    def start_on_free_ports(self, attempts: int = 3, timeout_s: float = 90.0) -> None:
        """Start; if the node dies at once (a port taken meanwhile), again on new ports."""
        for attempt in range(1, attempts + 1):
            try:
                self.start(timeout_s)
                return
            except BrokerStartError:
                self.kill()  # whatever half-started goes, also before giving up
                if attempt == attempts:
                    raise
                self.amqp_port, self.management_port = free_port(), free_port()
                self.prometheus_port, self.dist_port = free_port(), free_port()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.runtime.exited():
                raise BrokerStartError(f"{self.nodename} exited early "
                                       f"({self.runtime.startup_tail(self)}); "
                                       f"see {self.base_dir}/log")
            if self._amqp_answers():
                return
            time.sleep(0.3)
        raise BrokerStartError(f"no AMQP on port {self.amqp_port} after {timeout_s:.0f}s "
                               f"({self.runtime.startup_tail(self)})")

    def _amqp_answers(self) -> bool:
        import pika

        try:
            pika.BlockingConnection(pika.URLParameters(self.url)).close()
            return True
        except Exception:
            return False

    def _check_denied(self) -> None:
        """Every deprecated feature the node knows is denied: one it permits would only warn."""
        found = self.api("GET", "/api/deprecated-features")
        assert isinstance(found, list)
        permitted = sorted(f["name"] for f in found if f.get("state") != "denied")
        if permitted:
            self.kill()
            raise BrokerStartError(f"{self.nodename} permits deprecated features {permitted}: "
                                   "add them to DENIED_FEATURES in testbed/broker.py")

    def add_vhost(self, name: str) -> str:
        """Create a vhost (management API, no rabbitmqctl start-up cost); returns its AMQP URL."""
        self.api("PUT", f"/api/vhosts/{name}", {})
        self.api("PUT", f"/api/permissions/{name}/{self.user}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
        return self.url.rsplit("/", 1)[0] + f"/{quote(name, safe='')}"

    def delete_vhost(self, name: str) -> None:
        self.api("DELETE", f"/api/vhosts/{quote(name, safe='')}")

    def api(self, method: str, path: str, body: object | None = None) -> object:
        """The management HTTP API. On 4.x nodes (management_metrics_collection denied) it
        has no message counts: use `queue_counts` for those."""
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.management_url + path, data=data, method=method,
                                     headers={"Authorization": f"Basic {auth}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """rabbitmqctl against this node (inside its container for a container node)."""
        result = subprocess.run(
            self.runtime.ctl_command(self, args), env=self.runtime.ctl_env(self),
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def queue_counts(self, name: str, vhost: str = "/") -> tuple[int, int]:
        """(ready, unacked) straight from the node, no stats lag."""
        out = self.ctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name",
                       "messages_ready", "messages_unacknowledged")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == name:
                return int(parts[1]), int(parts[2])
        raise KeyError(name)

    def connections(self) -> list[Connection]:
        """Every client connection of the node's cluster, straight from the node.

        Not from the management API: on 4.x (management_metrics_collection denied)
        `/api/connections` is always empty.
        """
        return parse_connections(self.ctl("list_connections", "-q", "--no-table-headers",
                                          "client_properties", "pid", "ssl"))

    def beam_pid(self) -> int | None:
        """The host pid whose SIGKILL takes the node down (a container node: its init)."""
        return _read_pid(self.base_dir / "rabbitmq.pid")

    def stop(self) -> None:
        """Graceful stop; the data directory stays for a restart."""
        self.runtime.stop(self)

    def kill(self) -> None:
        """SIGKILL the node: the crash a power cut would be."""
        self.runtime.kill(self)

    def restart(self, timeout_s: float = 90.0) -> None:
        self.stop()
        self.start(timeout_s)
