"""Test hosts on one machine: network namespaces on a private bridge, and faults between them.

    with Lab.create() as lab:
        n1 = lab.add_host("n1")            # namespace <lab>-n1, 10.213.0.11 on the bridge
        n1.popen(["rabbitmq-server"], ...)
        lab.cut(n1, [n2, n3])              # iptables DROP inside the namespaces
        lab.heal()

Every address lives in 10.213.0.0/24 *inside* the lab's own namespaces: the bridge is in a
namespace of its own and each veth pair is created there, so nothing is added to the
host's network stack (no interface, route or rule) and two labs, from two test runs at
once, do not see each other. Test traffic goes only to these addresses, or to loopback.

Teardown (the context manager's exit, also on failure) kills every process in the lab's
namespaces, deletes the namespaces (their veths and iptables rules go with them) and the
`/etc/netns/<ns>` directories. A run that is SIGKILLed cannot do that: each lab has a
janitor, a small process of its own session that does it as soon as the lab's maker is
gone. And a lab's names carry the pid of the process that made it, so `sweep_orphans()`
can remove what even the janitor missed without touching a lab another run still uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SUBNET = "10.213.0"  # /24, the lab's own range; hosts get .11 upwards
PREFIX = "wlab"  # namespaces are wlab<pid>x<n>-<host>
NETNS_RUN = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
TOOLS = ("ip", "iptables")
_CLONE_NEWNET = 0x40000000
_NAME = re.compile(rf"^{PREFIX}(\d+)x\d+-")
_labs_made = 0


class LabError(RuntimeError):
    """A command that sets up or changes the lab failed; the message has its stderr."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def can_run() -> str:
    """'' when this process can build labs; else why not (for a skip, or a CI failure)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = missing_tools()
    if missing:
        return f"{', '.join(missing)} not installed (.ci/install-netns-tools.sh)"
    return ""


def sh(*args: str, timeout_s: float = 30.0, check: bool = True) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s,
                            check=False)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def netns_list() -> list[str]:
    """Every network namespace name on the machine (`ip netns list`)."""
    return [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.strip()]


# -- running code inside a namespace -------------------------------------------------------

def _enter(ns: str) -> None:
    """Move the calling thread (only it: the network namespace is per thread) into `ns`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_RUN / ns, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass
class Host:
    """One namespace on the lab's bridge: a test host with one address."""

    name: str  # the short host name other hosts resolve (/etc/netns/<ns>/hosts)
    ns: str
    ip: str
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def cmd(self, *args: str) -> list[str]:
        """`args` run inside this host: its network, its /etc/hosts."""
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, *args: str, timeout_s: float = 30.0, check: bool = True) -> str:
        return sh(*self.cmd(*args), timeout_s=timeout_s, check=check)

    def call(self, fn: Callable[..., T], *args: object, timeout_s: float = 30.0) -> T:
        """Run `fn(*args)` on a thread inside this namespace (a socket it opens is here):
        how the test process reaches a service's 127.0.0.1 port without leaving the lab."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=self.ns,
                                            initializer=_enter, initargs=(self.ns,))
        return self._pool.submit(fn, *args).result(timeout=timeout_s)

    def iptables(self, *args: str) -> None:
        self.run("iptables", "-w", "5", *args)

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.ns, check=False)
        return [int(pid) for pid in out.split()]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@dataclass
class Lab:
    """A bridge namespace and the hosts joined to it; a context manager that always cleans up."""

    tag: str  # wlab<pid>x<n>: every namespace of this lab starts with it
    hosts: dict[str, Host] = field(default_factory=dict)
    cuts: list[tuple[Host, str]] = field(default_factory=list)  # (host, peer ip) dropped
    _next_octet: int = 11
    _janitor: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bridge_ns(self) -> str:
        return f"{self.tag}-br"

    @classmethod
    def create(cls) -> Lab:
        global _labs_made
        _labs_made += 1
        lab = cls(f"{PREFIX}{os.getpid()}x{_labs_made}")
        lab._janitor = start_janitor(lab.tag)
        try:
            sh("ip", "netns", "add", lab.bridge_ns)
            lab._in_bridge("link", "set", "lo", "up")
            lab._in_bridge("link", "add", "br0", "type", "bridge")
            lab._in_bridge("link", "set", "br0", "up")
        except BaseException:
            lab.destroy()
            raise
        return lab

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def _in_bridge(self, *args: str) -> None:
        sh("ip", "-n", self.bridge_ns, *args)

    # -- hosts -----------------------------------------------------------------------------
    def next_ips(self, count: int) -> list[str]:
        """The addresses the next `count` hosts will get, in order."""
        return [f"{SUBNET}.{self._next_octet + i}" for i in range(count)]

    def add_host(self, name: str, attach_pid: int | None = None) -> Host:
        """A namespace with lo up and eth0 (a veth whose peer is on the bridge) at the next
        free address; /etc/hosts there names every host added so far (rewritten for all
        on each addition). With `attach_pid`, the host is the network namespace that process
        already has (a container started with `--network none`), named and wired the same
        way; deleting the name at teardown leaves the process to its owner."""
        host = Host(name, f"{self.tag}-{name}", f"{SUBNET}.{self._next_octet}")
        self._next_octet += 1
        self.hosts[name] = host
        port = f"v{len(self.hosts)}"  # lives in the bridge namespace only: short names do
        if attach_pid is None:
            sh("ip", "netns", "add", host.ns)
        else:
            sh("ip", "netns", "attach", host.ns, str(attach_pid))
        # Both ends are made inside namespaces: the host's own stack never sees them.
        self._in_bridge("link", "add", port, "type", "veth", "peer", "name", "eth0",
                        "netns", host.ns)
        self._in_bridge("link", "set", port, "master", "br0", "up")
        sh("ip", "-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        sh("ip", "-n", host.ns, "link", "set", "eth0", "up")
        sh("ip", "-n", host.ns, "link", "set", "lo", "up")
        self._write_hosts_files()
        return host

    def _write_hosts_files(self) -> None:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{h.ip}\t{h.name}" for h in self.hosts.values()]
        for host in self.hosts.values():
            etc = NETNS_ETC / host.ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text("\n".join(lines) + "\n")

    # -- faults ----------------------------------------------------------------------------
    def cut(self, host: Host, peers: Iterable[Host], both_ways: bool = True) -> None:
        """Drop what `host` receives from each peer (and, both_ways, what they receive from
        it). One side alone already breaks TCP both ways (the replies are lost); `both_ways`
        also silences UDP and makes the cut independent of who connected to whom."""
        for peer in peers:
            self._drop(host, peer.ip)
            if both_ways:
                self._drop(peer, host.ip)

    def _drop(self, host: Host, source_ip: str) -> None:
        host.iptables("-A", "INPUT", "-s", source_ip, "-j", "DROP")
        self.cuts.append((host, source_ip))

    def heal(self) -> None:
        """Every cut undone (`iptables -F` in each host that had one)."""
        for host in {h.ns: h for h, _ in self.cuts}.values():
            host.iptables("-F", "INPUT")
        self.cuts.clear()

    def bridge(self, up: bool) -> None:
        """The switch itself: down, no host reaches any other (each still has loopback)."""
        self._in_bridge("link", "set", "br0", "up" if up else "down")

    def dropped_rules(self) -> dict[str, list[str]]:
        """host name → its INPUT rules as iptables prints them (to check a cut or a heal)."""
        return {h.name: [r for r in h.run("iptables", "-w", "5", "-S", "INPUT").splitlines()
                         if r.startswith("-A")] for h in self.hosts.values()}

    # -- teardown --------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return [self.bridge_ns, *(h.ns for h in self.hosts.values())]

    def destroy(self) -> None:
        """Kill everything in the lab, delete its namespaces and /etc/netns entries.
        Idempotent, and never raises: it runs in finalizers."""
        for host in self.hosts.values():
            host.close()
        remove_namespaces(self.namespaces())
        if self._janitor is not None:  # nothing left for it to do
            with contextlib.suppress(OSError):
                self._janitor.kill()
                self._janitor.wait(timeout=10)
            self._janitor = None


def remove_namespaces(names: Sequence[str]) -> None:
    """SIGKILL the processes in each namespace, then delete it and its /etc/netns dir."""
    existing = set(netns_list())
    for ns in names:
        if ns in existing:
            _kill_all_in(ns)
    for ns in names:
        if ns in existing:
            sh("ip", "netns", "delete", ns, check=False)
        shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only when empty: someone else's entries stay


def _kill_all_in(ns: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a SIGSTOPped node must not linger
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)


def sweep_orphans() -> list[str]:
    """Remove labs whose creating process is gone (a run that was SIGKILLed); returns the
    namespaces removed. A lab whose creator still runs is left alone."""
    orphans = [ns for ns in netns_list()
               if (m := _NAME.match(ns)) and not pid_alive(int(m.group(1)))]
    if orphans:
        remove_namespaces(orphans)
    return orphans


def pid_alive(pid: int) -> bool:
    """A process with this pid exists (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the janitor: a lab's teardown when its maker was SIGKILLed ------------------------------

def start_janitor(tag: str) -> subprocess.Popen[bytes]:
    """`python -m testbed.netns janitor <tag> <our pid>` in a session of its own (a Ctrl-C
    aimed at the test run does not reach it; the run's own teardown then stops it)."""
    repo = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.netns", "janitor", tag, str(os.getpid())],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def janitor(tag: str, maker: int, poll_s: float = 0.5) -> None:
    """Wait until `maker` is gone, then remove every namespace of the lab `tag` (and with
    them the processes in them, its links and its rules). Polls rather than relying on
    PR_SET_PDEATHSIG, which fires when the *thread* that started the janitor ends."""
    while pid_alive(maker):
        time.sleep(poll_s)
    remove_namespaces([ns for ns in netns_list() if ns.startswith(f"{tag}-")])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "janitor":
        janitor(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"usage: python -m testbed.netns janitor TAG PID ({sys.argv[1:]})")
