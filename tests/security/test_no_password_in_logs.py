"""No log line of any service ever carries the broker password.

Each service runs against the broker with a distinctive password: logged in
(at DEBUG, through a retried and a parked task, an RPC call, a SIGTERM), with a
wrong password (given up after the retries, exit 69), with the broker down
(reconnect loop), in both log formats. Every line of every run, the /metrics
pages, and the output of a configuration error are scanned for the password in
every form it could leak in: as is, URL-encoded, base64 in a PLAIN auth blob,
and its random core alone.
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from testbed.broker import free_port
from testbed.processes import Service, ServiceFactory
from tests.support.amqp import publish_tasks
from tests.support.broker import BrokerUnderTest
from tests.support.faults import metric, wait_until

SERVICES = ("worker", "rpc_server", "producer")


@dataclass(frozen=True)
class Password:
    core: str

    @property
    def value(self) -> str:
        return f"Pw-{self.core}/+=x"  # characters a URL must encode

    def forms(self, user: str) -> list[str]:
        plain = f"\0{user}\0{self.value}".encode()
        return [self.value, quote(self.value, safe=""), quote_plus(self.value), self.core,
                base64.b64encode(f"{user}:{self.value}".encode()).decode(),
                base64.b64encode(plain).decode()]


@dataclass
class Scanned:
    password: Password
    user: str
    texts: dict[str, str]

    def add(self, name: str, text: str) -> None:
        self.texts[name] = self.texts.get(name, "") + text

    def assert_clean(self) -> None:
        assert self.texts, "nothing was scanned"
        for name, text in self.texts.items():
            for form in self.password.forms(self.user):
                for number, line in enumerate(text.splitlines(), 1):
                    assert form not in line, f"{name}, line {number}: the password ({form!r})"


@pytest.fixture
def account(broker: BrokerUnderTest, amqp_url: str) -> Iterator[tuple[str, Password, str]]:
    """(user, password, AMQP URL): a user of this test's own on its vhost."""
    node = broker.private
    user = f"leak-{secrets.token_hex(3)}"
    password = Password(secrets.token_hex(8))
    vhost = amqp_url.rsplit("/", 1)[1]
    node.api("PUT", f"/api/users/{user}", {"password": password.value, "tags": ""})
    node.api("PUT", f"/api/permissions/{vhost}/{user}",
             {"configure": ".*", "write": ".*", "read": ".*"})
    host = amqp_url.split("@", 1)[1]
    yield user, password, f"amqp://{user}:{quote(password.value, safe='')}@{host}"
    node.api("DELETE", f"/api/users/{user}")


def stop(service: Service, scanned: Scanned) -> None:
    if service.process and service.process.poll() is None:
        service.signal(signal.SIGTERM)
        service.wait(timeout_s=30)
    scanned.add(f"{service.module} {service.log_path.name}", service.log())


def test_logged_in_services_never_log_the_password(
        services: ServiceFactory, account: tuple[str, Password, str], tmp_path: Path) -> None:
    user, password, url = account
    scanned = Scanned(password, user, {})
    env = {"AMQP_URL": url, "LOG_LEVEL": "DEBUG", "MAX_ATTEMPTS": "2"}
    worker = services.start("worker", **env)
    server = services.start("rpc_server", **env)
    console = services.start("worker", **env, LOG_FORMAT="console")
    publish_tasks(url, [("fail", {"message": "to be parked"}), ("noop", {})])
    produced = services.run("producer", "--count", "20", "--type", "record", "--args",
                            json.dumps({"path": str(tmp_path / "records")}), **env)
    assert produced.returncode == 0, produced.stderr[-2000:]
    scanned.add("producer", produced.stdout + produced.stderr)
    called = services.run("rpc_server.client", "1", "2", **env)
    assert (called.returncode, called.stdout.strip()) == (0, "3"), called.stderr[-2000:]
    scanned.add("rpc client", called.stdout + called.stderr)
    wait_until(lambda: metric(worker, 'warren_worker_tasks_total{outcome="parked"}')
               + metric(console, 'warren_worker_tasks_total{outcome="parked"}') == 1, 30,
               "the failing task to be parked")
    for service in (worker, server, console):
        scanned.add(f"{service.module} /metrics", _metrics_page(service))
        stop(service, scanned)
    every_line = "".join(scanned.texts.values())
    for event in ("consuming", "serving", "task_retried", "task_parked", "stop_requested"):
        assert event in every_line, event  # the scan covered the interesting paths
    scanned.assert_clean()


def _metrics_page(service: Service) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_a_wrong_password_is_never_logged(
        services: ServiceFactory, account: tuple[str, Password, str]) -> None:
    user, _, url = account
    wrong = Password(secrets.token_hex(8))
    bad_url = url.replace(url.split("@", 1)[0].rsplit(":", 1)[1], quote(wrong.value, safe=""))
    scanned = Scanned(wrong, user, {})
    started = [services.start(module, *args, ready=False, AMQP_URL=bad_url, LOG_FORMAT=fmt)
               for module, args, fmt in [("worker", (), "json"), ("rpc_server", (), "json"),
                                          ("producer", ("--count", "5"), "json"),
                                          ("worker", (), "console")]]
    for service in started:  # five refused logins each, with backoff: they run side by side
        assert service.wait(timeout_s=90) == 69, service.log()[-2000:]
        scanned.add(f"{service.module} {service.log_path.name}", service.log())
        assert "broker_auth_failed" in service.log()
    called = services.run("rpc_server.client", "1", "2", AMQP_URL=bad_url)
    assert called.returncode == 69, called.stderr[-2000:]
    scanned.add("rpc client", called.stdout + called.stderr)
    scanned.assert_clean()


def test_the_password_of_an_unreachable_broker_is_never_logged(
        services: ServiceFactory) -> None:
    password = Password(secrets.token_hex(8))
    user = "nobody"
    down = f"amqp://{user}:{quote(password.value, safe='')}@127.0.0.1:{free_port()}/%2F"
    scanned = Scanned(password, user, {})
    started = [services.start(module, *args, ready=False, AMQP_URL=down, LOG_FORMAT=fmt,
                              LOG_LEVEL="DEBUG", SHUTDOWN_GRACE_S="2")
               for module, args, fmt in [("worker", (), "json"), ("rpc_server", (), "json"),
                                          ("producer", ("--count", "5"), "json"),
                                          ("producer", ("--count", "5"), "console")]]
    for service in started:
        wait_until(lambda s=service: "reconnect_scheduled" in s.log(), 20,
                   f"{service.module} to retry")
    called = services.run("rpc_server.client", "1", "2", AMQP_URL=down, timeout_s=60)
    assert called.returncode != 0
    scanned.add("rpc client", called.stdout + called.stderr)
    # A bad setting (exit 78), and an option only pika refuses (a traceback today: F5).
    for bad_url in (down.replace("127.0.0.1:", "127.0.0.1:x"), f"{down}?heartbeat=abc"):
        bad = services.run("worker", AMQP_URL=bad_url, timeout_s=30)
        assert bad.returncode != 0
        scanned.add(f"worker with AMQP_URL {bad_url[-20:]}", bad.stdout + bad.stderr)
    for service in started:
        service.signal(signal.SIGTERM)
    for service in started:
        stop(service, scanned)
    scanned.assert_clean()
