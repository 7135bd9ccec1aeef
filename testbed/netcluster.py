"""A RabbitMQ cluster whose nodes live on separate test hosts, and warren's clients beside it.

Each node runs in its own network namespace of a `testbed.netns.Lab` (hosts n1, n2, n3),
with the default ports (each namespace has its own network stack and its own epmd), the
short name `rabbit@<host>` (the other hosts resolve it through /etc/netns/<ns>/hosts),
one shared Erlang cookie in every node's HOME, and `cluster_partition_handling` in its
rabbitmq.conf. `rabbitmqctl` is /usr/lib/rabbitmq/bin/rabbitmqctl run inside the
node's namespace with the node's own HOME (Debian's /usr/sbin wrapper resets HOME, and
with it the cookie).

Clients (`NetService`) are warren processes started inside namespaces of their own; the
test process reaches their metrics port through `Host.call` (a thread in the namespace).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from testbed.broker import RABBITMQ_BIN
from testbed.broker_container import BUILD_HINT, IMAGE_VAR, IMAGES
from testbed.netns import Host, Lab
from testbed.processes import REPO, Service, _die_with_parent

PartitionHandling = Literal["pause_minority", "autoheal", "ignore"]
AMQP_PORT = 5672
# Erlang declares a silent peer down after net_ticktime * (1 ± 1/4). The default (60 s)
# would make every run minutes long; 10 s keeps the same mechanism at a test's pace.
NET_TICKTIME_S = 10
PAUSE_LOG_LINE = "Cluster minority/secondary status detected - awaiting recovery"


@dataclass
class NetNode:
    host: Host
    base_dir: Path
    cookie: str
    password: str
    partition_handling: PartitionHandling = "pause_minority"
    net_ticktime_s: int = NET_TICKTIME_S
    user: str = "warren"
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False  # SIGSTOPped by a test
    # Module and function giving "the nodes this node sees running", and "its record of
    # partitions" (RabbitMQ 4.3 has neither that function nor Mnesia's partitions: Khepri is
    # Raft, see DockerNode).
    running_mf: str = "rabbit_nodes, all_running"
    partitions_mf: str | None = "rabbit_node_monitor, partitions"

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def nodename(self) -> str:
        return f"rabbit@{self.host.name}"

    def url(self, vhost: str = "/") -> str:
        return (f"amqp://{self.user}:{quote(self.password, safe='')}@{self.host.ip}:"
                f"{AMQP_PORT}/{quote(vhost, safe='')}")

    def _env(self) -> dict[str, str]:
        d = self.base_dir
        return {
            **os.environ,
            "HOME": str(d),  # where the Erlang cookie is, for the node and for rabbitmqctl
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": str(d / "log" / "rabbit.log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
        }

    def _write_config(self) -> None:
        d = self.base_dir
        for sub in ("log", "mnesia"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        cookie = d / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (d / "enabled_plugins").write_text("[].\n")  # no plugin: rabbitmqctl says it all
        (d / "rabbitmq-env.conf").write_text("")
        (d / "advanced.config").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {AMQP_PORT}\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "loopback_users = none\n"
            f"cluster_partition_handling = {self.partition_handling}\n"
            f"net_ticktime = {self.net_ticktime_s}\n"
            "log.console = false\n"
            "log.file.level = info\n")  # partitions, pauses and elections are logged at info

    def start(self) -> None:
        self._write_config()
        with (self.base_dir / "log" / "startup.log").open("ab") as log:
            # start_new_session: a SIGSTOP/SIGKILL aimed at the node's group hits nothing
            # else; _die_with_parent: the script stops the node if the test process dies.
            self.process = subprocess.Popen(
                self.host.cmd(str(RABBITMQ_BIN / "rabbitmq-server")), env=self._env(),
                stdout=log, stderr=subprocess.STDOUT, cwd=self.base_dir,
                start_new_session=True, preexec_fn=_die_with_parent)

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """rabbitmqctl against this node, from inside its namespace."""
        result = subprocess.run(
            self.host.cmd(str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args),
            env=self._env(), capture_output=True, text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: rabbitmqctl {' '.join(args)}: "
                               f"{(result.stderr or result.stdout).strip()[-500:]}")
        return result.stdout

    def await_startup(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.nodename} exited {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                self.ctl("await_startup", "--timeout", "20", timeout_s=30)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def beam_pid(self) -> int:
        return int((self.base_dir / "rabbitmq.pid").read_text().strip())

    def restart_hard(self, timeout_s: float = 120.0) -> None:
        """SIGKILL the node and start it again on its data (what a service manager does
        to a node that does not answer)."""
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.beam_pid(), signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.start()
        self.await_startup(timeout_s)

    def pause(self) -> None:
        """SIGSTOP the Erlang VM: a frozen machine (a VM suspended by its hypervisor)."""
        os.kill(self.beam_pid(), signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.beam_pid(), signal.SIGCONT)
        self.paused = False

    def log_tail(self, lines: int = 5) -> str:
        for name in ("rabbit.log", "startup.log"):
            path = self.base_dir / "log" / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()
                return " | ".join(line.strip() for line in text[-lines:])
        return "no log"

    def pauses(self) -> int:
        """How often pause_minority paused this node (its log says so at each pause)."""
        return self.log().count(PAUSE_LOG_LINE)

    def log(self) -> str:
        path = self.base_dir / "log" / "rabbit.log"
        return path.read_text(errors="replace") if path.exists() else ""


OWNER_LABEL = "io.warren.partition.owner"  # the pid of the test process that started it


def rabbitmq_43_image() -> str:
    """The image of the 4.3 test nodes (testbed/broker_container.py): the same stand-in, and
    the same variable to pick another."""
    return os.environ.get(IMAGE_VAR) or IMAGES["4.3"]


def docker(*args: str, timeout_s: float = 120.0, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True,
                            timeout=timeout_s, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])}: {result.stderr.strip()[-500:]}")
    return result.stdout.strip()


def docker_ready() -> str:
    """'' when Docker answers and has the RabbitMQ 4.3 image; else why not."""
    if shutil.which("docker") is None:
        return "docker is not installed (.ci/install-docker.sh)"
    image = rabbitmq_43_image()
    try:
        docker("image", "inspect", "--format", "{{.Id}}", image, timeout_s=30)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"no {image} ({exc}): {BUILD_HINT}"
    return ""


@dataclass
class DockerNode(NetNode):
    """A RabbitMQ 4.3 node: Debian sid's packages in a container (their Erlang needs sid's
    libraries), made a host of the lab. The container starts with `--network none` and
    only `sleep`; its network namespace is attached to the lab (`ip netns attach`) and wired
    to the bridge like any host; then the server is started inside with `docker exec`.
    Names resolve through `--add-host` (Docker owns the container's /etc/hosts)."""

    container: str = ""
    running_mf: str = "rabbit_nodes, list_running"
    partitions_mf: str | None = None  # Khepri: no partition record, nothing to heal by hand

    @classmethod
    def create(cls, lab: Lab, name: str, ips: dict[str, str], base_dir: Path, cookie: str,
               password: str) -> DockerNode:
        container = f"{lab.tag}-{name}"
        docker("run", "--detach", "--rm", "--name", container, "--network", "none",
               "--hostname", name, "--label", f"{OWNER_LABEL}={os.getpid()}",
               *(arg for host, ip in ips.items() for arg in ("--add-host", f"{host}:{ip}")),
               "--entrypoint", "sleep", rabbitmq_43_image(), "infinity")
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", container))
        host = lab.add_host(name, attach_pid=pid)
        return cls(host, base_dir, cookie, password, container=container)

    def _exec(self, *args: str, user: str = "rabbitmq", timeout_s: float = 60.0,
              check: bool = True) -> str:
        return docker("exec", "--user", user, self.container, *args, timeout_s=timeout_s,
                      check=check)

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        conf = (f"default_user = {self.user}\ndefault_pass = {self.password}\n"
                f"loopback_users = none\nnet_ticktime = {self.net_ticktime_s}\n"
                "log.file.level = info\n")
        self._exec("sh", "-c", f"printf '{conf}' > /etc/rabbitmq/conf.d/90-lab.conf",
                   user="root")
        # As root: the image's entrypoint writes the cookie, then runs the node as rabbitmq.
        docker("exec", "--detach", "--env", f"RABBITMQ_ERLANG_COOKIE={self.cookie}",
               "--env", f"RABBITMQ_NODENAME={self.nodename}",
               "--env", "RABBITMQ_LOGS=/var/lib/rabbitmq/rabbit.log",
               self.container, "docker-entrypoint.sh", "rabbitmq-server")

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        try:
            return self._exec("rabbitmqctl", "-n", self.nodename, *args, timeout_s=timeout_s)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: rabbitmqctl {' '.join(args)}: {exc}") from None

    def beam_pid(self) -> int:
        """The Erlang VM's pid as this machine sees it (for SIGSTOP/SIGCONT)."""
        for line in docker("top", self.container, "-eo", "pid,comm").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].startswith("beam"):
                return int(parts[0])
        raise RuntimeError(f"no Erlang VM in {self.container}")

    def log(self) -> str:
        return self._exec("cat", "/var/lib/rabbitmq/rabbit.log", check=False)

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log().splitlines()[-lines:])

    def restart_hard(self, timeout_s: float = 120.0) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            os.kill(self.beam_pid(), signal.SIGKILL)
        time.sleep(1)
        self.start()
        self.await_startup(timeout_s)

    def remove(self) -> None:
        docker("rm", "--force", self.container, check=False)


def sweep_containers() -> None:
    """Remove lab containers whose test process is gone (a run that was SIGKILLed)."""
    if shutil.which("docker") is None:
        return
    listed = docker("ps", "--all", "--filter", f"label={OWNER_LABEL}", "--format",
                    f'{{{{.Names}}}} {{{{.Label "{OWNER_LABEL}"}}}}', check=False)
    for line in listed.splitlines():
        name, _, owner = line.partition(" ")
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            docker("rm", "--force", name, check=False)


@dataclass
class NetCluster:
    lab: Lab
    nodes: list[NetNode]

    @classmethod
    def start(cls, lab: Lab, base_dir: Path, size: int = 3,
              partition_handling: PartitionHandling = "pause_minority",
              net_ticktime_s: int = NET_TICKTIME_S, timeout_s: float = 180.0,
              version: str = "3.10") -> NetCluster:
        """`size` nodes on hosts n1..n<size>, joined into one cluster: RabbitMQ 3.10 from
        this machine's Debian package, or 4.3 from its Docker image (which ignores
        `partition_handling`: 4.3 has only Raft's behaviour). The lab's teardown kills them
        (they run inside its namespaces); `stop()` also removes 4.3's containers."""
        cookie = secrets.token_hex(20).upper()
        password = secrets.token_urlsafe(12)
        names = [f"n{i + 1}" for i in range(size)]
        cluster = cls(lab, [])
        try:
            if version == "4.3":
                ips = dict(zip(names, lab.next_ips(size), strict=True))
                for name in names:
                    cluster.nodes.append(DockerNode.create(lab, name, ips, base_dir / name,
                                                           cookie, password))
            else:
                for name in names:
                    cluster.nodes.append(NetNode(lab.add_host(name), base_dir / name, cookie,
                                                 password, partition_handling,
                                                 net_ticktime_s))
            cluster._boot(timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _boot(self, timeout_s: float) -> None:
        for node in self.nodes:
            node.start()
        # Booting is mostly waiting on Erlang: wait for the nodes side by side.
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda n: n.await_startup(timeout_s), self.nodes))
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", self.nodes[0].nodename)
            node.ctl("start_app")
        self.wait_healthy(timeout_s=60)

    def stop(self) -> None:
        """Remove 4.3's containers (3.10's nodes die with the lab's namespaces)."""
        for node in self.nodes:
            if isinstance(node, DockerNode):
                node.remove()

    # -- addresses -------------------------------------------------------------------------
    def by_name(self, name: str) -> NetNode:
        return next(n for n in self.nodes if n.name == name or n.nodename == name)

    def amqp_url(self, vhost: str, order: list[NetNode] | None = None) -> str:
        """warren's AMQP_URL: every node, in `order` (default n1, n2, n3)."""
        return ",".join(node.url(vhost) for node in (order or self.nodes))

    # -- questions -------------------------------------------------------------------------
    def ask(self, *args: str, avoid: tuple[NetNode, ...] = (), timeout_s: float = 20.0) -> str:
        """rabbitmqctl against the first node that answers (skipping `avoid`), all within
        `timeout_s` (a node that hangs must not hold a caller that keeps time)."""
        deadline = time.monotonic() + timeout_s
        errors = []
        for node in self.nodes:
            left = deadline - time.monotonic()
            if node in avoid or node.paused or left <= 0:
                continue
            try:
                return node.ctl(*args, timeout_s=left)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc)[-200:])
        raise RuntimeError(f"no node answered rabbitmqctl {' '.join(args)}: {errors}")

    def views(self) -> dict[str, tuple[set[str], str]]:
        """Each node's view: the nodes it sees running, and its record of partitions ("[]"
        when none). One rabbitmqctl call (each boots an Erlang VM: ~1 s of CPU) on the first
        node that answers, which asks every node over RPC. During a partition the views
        differ; a node out of reach gives none."""
        names = ",".join(f"'{n.nodename}'" for n in self.nodes)
        first = self.nodes[0]
        parts = (f"rpc:call(N, {first.partitions_mf}, [], 5000)" if first.partitions_mf
                 else "[]")
        out = self.ask("eval", f"""[io:format("~s ~w ~w~n", [N,
            rpc:call(N, {first.running_mf}, [], 5000), {parts}]) || N <- [{names}]].""")
        views = {}
        for line in out.splitlines():
            name, _, rest = line.partition(" ")
            if name.startswith("rabbit@") and not rest.startswith("{badrpc"):
                running, _, partitions = rest.rpartition(" ")
                views[name.split("@", 1)[1]] = (set(re.findall(r"rabbit@[\w-]+", running)),
                                                partitions.strip())
        return views

    def healthy(self) -> tuple[bool, dict[str, tuple[set[str], str]]]:
        """(every node sees all the others running and none records a partition, the views)."""
        everyone = {n.nodename for n in self.nodes}
        views = self.views()
        ok = len(views) == len(self.nodes) and all(
            running == everyone and parts == "[]" for running, parts in views.values())
        return ok, views

    def wait_healthy(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            try:
                ok, views = self.healthy()
                if ok:
                    return
                last = str(views)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                last = str(exc)[-300:]
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster not healthy after {timeout_s}s: {last}")
            time.sleep(1)

    def odd_nodes(self) -> list[NetNode]:
        """Nodes that are not whole with the rest: on the smaller side of a recorded
        partition, or not answering for their state (stuck restarting)."""
        _, views = self.healthy()
        majority = max((len(running) for running, _ in views.values()), default=0)

        def odd(node: NetNode) -> bool:
            if node.name not in views:
                return True  # out of reach
            running, parts = views[node.name]
            if not parts.startswith("["):
                return True  # {badrpc, ...}: its node monitor is not running
            return parts != "[]" and len(running) < majority

        return [n for n in self.nodes if odd(n)]

    def recover(self) -> list[str]:
        """What an operator does when RabbitMQ does not heal by itself: restart the odd
        nodes' app (its docs' way out of a split: they resync from the others), and if that
        hangs, the node itself (its data stays). Returns what was done, per node."""
        done = []
        for node in self.odd_nodes():
            try:
                node.ctl("stop_app", timeout_s=60)
                node.ctl("start_app", timeout_s=120)
                done.append(f"{node.name}: restart_app")
            except (RuntimeError, subprocess.TimeoutExpired):
                node.restart_hard()
                done.append(f"{node.name}: killed and started")
        return done

    def add_vhost(self, vhost: str) -> None:
        self.ask("add_vhost", vhost)
        self.ask("set_permissions", "-p", vhost, self.nodes[0].user, ".*", ".*", ".*")

    def queue_rows(self, vhost: str, *items: str, avoid: tuple[NetNode, ...] = (),
                   timeout_s: float = 20.0) -> dict[str, dict[str, str]]:
        out = self.ask("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", *items,
                       avoid=avoid, timeout_s=timeout_s)
        rows = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == len(items) + 1:
                rows[parts[0]] = dict(zip(items, parts[1:], strict=True))
        return rows

    def leader(self, vhost: str, queue: str = "task_queue", avoid: tuple[NetNode, ...] = (),
               timeout_s: float = 30.0) -> NetNode:
        """The node leading a quorum queue, as Ra on the answering node knows it (its
        leaderboard; the queue record's node when Ra has none). A local lookup: the queue
        record on 3.10 changes only once a cut-off old leader is declared down (a Mnesia
        transaction), and `list_queues` asks every node and hangs on a cut-off one until
        then. Every call within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        lookup = (f'case rabbit_amqqueue:lookup(rabbit_misc:r(<<"{vhost}">>, queue, '
                  f'<<"{queue}">>)) of {{ok, Q}} -> {{R, N}} = amqqueue:get_pid(Q), '
                  f'L = case ra_leaderboard:lookup_leader(R) of {{_, LN}} -> LN; _ -> N end, '
                  f'io:format("leader ~s~n", [L]); _ -> none end.')
        while True:
            with contextlib.suppress(RuntimeError, StopIteration):
                left = min(20.0, deadline - time.monotonic())
                out = self.ask("eval", lookup, avoid=avoid, timeout_s=left)
                found = re.search(r"^leader (\S+)$", out, re.MULTILINE)
                if found:
                    return self.by_name(found.group(1))
            if time.monotonic() > deadline:
                raise AssertionError(f"no leader for {queue} in {vhost} after {timeout_s}s")
            time.sleep(0.5)

    def counts(self, vhost: str, avoid: tuple[NetNode, ...] = ()) -> dict[str, tuple[int, int]]:
        """queue → (ready, unacked)."""
        rows = self.queue_rows(vhost, "messages_ready", "messages_unacknowledged", avoid=avoid)
        return {name: (int(r["messages_ready"]), int(r["messages_unacknowledged"]))
                for name, r in rows.items()}

    def connections(self) -> dict[str, str]:
        """client ip → node name it is connected to (`name` is "client:port -> node:5672")."""
        out = self.ask("list_connections", "-q", "--no-table-headers", "name")
        found = {}
        for line in out.splitlines():
            m = re.match(r"([\d.]+):\d+ -> ([\d.]+):\d+", line.strip())
            if m:
                node = next((n for n in self.nodes if n.host.ip == m.group(2)), None)
                if node is not None:
                    found[m.group(1)] = node.name
        return found


@dataclass
class NetService(Service):
    """A warren process (`python -m <module>`) on a host of the lab."""

    host: Host | None = None

    def start(self) -> NetService:
        assert self.host is not None
        env = {**os.environ, "LOG_FORMAT": "json", "METRICS_PORT": str(self.port),
               **self.env, "PYTHONPATH": str(REPO)}
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.host.cmd(sys.executable, "-m", self.module, *self.args), env=env,
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        return self

    # Its metrics server listens on 127.0.0.1 *of its namespace*: ask from in there.
    def probe(self, path: str) -> int | None:
        assert self.host is not None
        try:
            return self.host.call(Service.probe, self, path, timeout_s=10)
        except TimeoutError:
            return None

    def metrics(self) -> dict[str, float]:
        assert self.host is not None
        return self.host.call(Service.metrics, self, timeout_s=10)
