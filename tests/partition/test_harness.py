"""The test hosts themselves: a cut cuts, a heal heals, and nothing outlives a run.

No RabbitMQ here: a small TCP echo server in one namespace, connects from another
(through `Host.call`, a thread inside the namespace), about 2 s in all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.netns import NETNS_ETC, SUBNET, Host, Lab, can_run, netns_list, sh, sweep_orphans
from tests.support.needs import need

pytestmark = [pytest.mark.partition, pytest.mark.timeout(120)]

PORT = 7000
SERVER = ("import socket\n"
          "s = socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen()\n"
          "while True:\n"
          "    c, _ = s.accept(); c.sendall(b'ok'); c.close()\n")


@pytest.fixture
def two_hosts() -> Iterator[tuple[Lab, Host, Host]]:
    need(not can_run(), can_run())
    with Lab.create() as lab:
        a, b = lab.add_host("a"), lab.add_host("b")
        subprocess.Popen(b.cmd(sys.executable, "-c", SERVER))  # killed by the teardown
        assert a.call(reaches, b.ip, 5.0), "the echo server never answered"
        yield lab, a, b


def reaches(ip: str, timeout_s: float = 1.0) -> bool:
    """A TCP connect and the server's reply, within `timeout_s` (retrying a refused one)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((ip, PORT), timeout=timeout_s) as conn:
                return conn.recv(2) == b"ok"
        except ConnectionRefusedError:  # the server is still starting
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        except OSError:  # a timeout: the packets are dropped
            return False


def test_hosts_have_their_addresses_and_resolve_each_other_by_name(
        two_hosts: tuple[Lab, Host, Host]) -> None:
    _, a, b = two_hosts
    assert a.ip.startswith(SUBNET + ".") and b.ip.startswith(SUBNET + ".")
    hosts = a.run("cat", "/etc/hosts")  # what `ip netns exec` shows a process in a
    assert f"{b.ip}\tb" in hosts and f"{a.ip}\ta" in hosts
    assert a.run("getent", "hosts", "b").split() == [b.ip, "b"]  # how rabbit@b is found
    assert f"inet {a.ip}/24" in a.run("ip", "-o", "addr", "show", "eth0")


def test_a_cut_drops_traffic_both_ways_and_a_heal_restores_it(
        two_hosts: tuple[Lab, Host, Host]) -> None:
    lab, a, b = two_hosts
    lab.cut(b, [a])
    assert lab.dropped_rules() == {"a": [f"-A INPUT -s {b.ip}/32 -j DROP"],
                                   "b": [f"-A INPUT -s {a.ip}/32 -j DROP"]}
    assert not a.call(reaches, b.ip, 1.0)
    lab.heal()
    assert lab.dropped_rules() == {"a": [], "b": []}
    assert a.call(reaches, b.ip, 2.0)


def test_a_one_sided_cut_is_enough_to_break_tcp(two_hosts: tuple[Lab, Host, Host]) -> None:
    lab, a, b = two_hosts
    lab.cut(b, [a], both_ways=False)  # only b drops what comes from a
    assert not a.call(reaches, b.ip, 1.0)
    lab.heal()
    assert a.call(reaches, b.ip, 2.0)


def test_a_bridge_outage_separates_every_host_until_it_heals(
        two_hosts: tuple[Lab, Host, Host]) -> None:
    lab, a, b = two_hosts
    lab.bridge(up=False)
    assert not a.call(reaches, b.ip, 1.0)
    lab.bridge(up=True)
    assert a.call(reaches, b.ip, 5.0)  # the bridge port may take a moment to forward


def test_nothing_is_added_to_the_machines_own_network(
        two_hosts: tuple[Lab, Host, Host]) -> None:
    lab, _, _ = two_hosts
    root = sh("ip", "-o", "addr") + sh("ip", "route") + sh("ip", "-o", "link")
    assert SUBNET not in root
    assert lab.tag not in root


def test_teardown_removes_namespaces_processes_and_hosts_files_even_on_failure() -> None:
    need(not can_run(), can_run())
    with pytest.raises(RuntimeError, match="the test failed"), Lab.create() as lab:
        host = lab.add_host("x")
        sleeper = subprocess.Popen(host.cmd("sleep", "600"))
        assert (NETNS_ETC / host.ns / "hosts").exists()
        raise RuntimeError("the test failed")
    assert sleeper.wait(timeout=10) != 0  # SIGKILLed by the teardown
    assert not [ns for ns in netns_list() if ns.startswith(lab.tag)]
    assert not (NETNS_ETC / host.ns).exists()


def test_sweep_removes_a_dead_runs_lab_and_spares_a_live_one() -> None:
    need(not can_run(), can_run())
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names a process that no longer exists
    orphan = Lab(f"wlab{gone.pid}x1")
    sh("ip", "netns", "add", orphan.bridge_ns)
    try:
        with Lab.create() as live:
            removed = sweep_orphans()
            assert orphan.bridge_ns in removed
            assert live.bridge_ns in netns_list()
        assert orphan.bridge_ns not in netns_list()
    finally:
        orphan.destroy()
    assert os.getpid() != gone.pid
    assert not Path(NETNS_ETC, orphan.bridge_ns).exists()


MAKER = ("import subprocess, sys, time\n"
         "from testbed.netns import Lab\n"
         "lab = Lab.create(); host = lab.add_host('x')\n"
         "subprocess.Popen(host.cmd('sleep', '600'))\n"
         "print(lab.tag, flush=True); time.sleep(600)\n")


def test_a_sigkilled_runs_lab_is_removed_by_its_janitor() -> None:
    """What no teardown can do (the run is SIGKILLed mid-fault), the lab's janitor does."""
    need(not can_run(), can_run())
    maker = subprocess.Popen([sys.executable, "-c", MAKER], stdout=subprocess.PIPE,
                             cwd=Path(__file__).resolve().parents[2], text=True)
    assert maker.stdout is not None
    tag = maker.stdout.readline().strip()
    assert f"{tag}-x" in netns_list()
    sleeper = [int(p) for p in sh("ip", "netns", "pids", f"{tag}-x").split()]
    maker.kill()
    maker.wait(timeout=10)
    deadline = time.monotonic() + 15
    while [ns for ns in netns_list() if ns.startswith(tag)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [ns for ns in netns_list() if ns.startswith(tag)]
    assert not (NETNS_ETC / f"{tag}-x").exists()
    assert sleeper and not any(running(pid) for pid in sleeper)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever adopted it to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_script_stopped_by_ctrl_c_leaves_no_lab(tmp_path: Path) -> None:
    """scripts/test.sh and scripts/partition.sh stop their pytests with stop_tree (a
    background job ignores Ctrl-C): the labs' janitors must be spared, to remove them."""
    need(not can_run(), can_run())
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "tag"
    script = ('. scripts/stop-tree.sh\n'
              f'"{sys.executable}" -c "$MAKER" >"{out}" &\n'
              'job=$!\n'
              f'until [ -s "{out}" ]; do sleep 0.1; done\n'
              'stop_tree "$job"\n')
    done = subprocess.run(["bash", "-c", script], cwd=repo, env={**os.environ, "MAKER": MAKER},
                          timeout=60, check=False)
    assert done.returncode == 0
    tag = out.read_text().strip()
    deadline = time.monotonic() + 15
    while [ns for ns in netns_list() if ns.startswith(tag)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [ns for ns in netns_list() if ns.startswith(tag)], "the janitor was stopped too"
    assert not (NETNS_ETC / f"{tag}-x").exists()
