"""amqps:// against a private node with a certificate from a throw-away CA.

How a service is told to trust the CA, with no change to warren:
- in the URL: `?ssl_options=` is a Python dict literal that pika's URLParameters
  turns into an SSLContext (`ca_certs`, `server_hostname`, `certfile`/`keyfile`
  for client certificates). URL-encode it: the encoded form has no comma, so it
  survives AMQP_URL's comma-separated list.
- or with no options at all: pika then uses `ssl.create_default_context()`,
  which reads the standard `SSL_CERT_FILE` variable.
Verification is on in both (CERT_REQUIRED and hostname checking): a certificate
from another CA, or for another name, is refused.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from rpc_server.client import RpcClient
from testbed.broker import BrokerStartError, LocalBroker, free_port, rabbitmq_available
from testbed.processes import ServiceFactory
from tests.support.faults import Tally, log_events, wait_until
from tests.support.needs import need
from tests.support.tls import Certificates, make_certificates, tls_config
from warren.settings import Settings


class TlsBroker:
    def __init__(self, node: LocalBroker, port: int, certs: Certificates) -> None:
        self.node = node
        self.port = port
        self.certs = certs

    def url(self, host: str = "localhost", **ssl_options: str) -> str:
        base = (f"amqps://{self.node.user}:{quote(self.node.password, safe='')}"
                f"@{host}:{self.port}/%2F")
        if not ssl_options:
            return base
        return f"{base}?ssl_options={quote(repr(ssl_options), safe='')}"

    def tls_connections(self) -> list[bool]:
        """Whether each client connection uses TLS (rabbitmqctl: a 4.x test node's
        management API lists no connections, its metrics collection being denied)."""
        return [c.ssl for c in self.node.connections()]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    need(rabbitmq_available(), "rabbitmq-server is not installed (apt-get install "
         "rabbitmq-server)")
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    for attempt in range(3):  # a port taken meanwhile kills the node at once: new ports
        port = free_port()
        node = LocalBroker(tmp_path_factory.mktemp("tls-node"),
                           extra_config=tls_config(port, certs))
        try:
            node.start()
            break
        except BrokerStartError:
            node.kill()
            if attempt == 2:
                raise
    yield TlsBroker(node, port, certs)
    node.kill()  # throw-away data: no graceful stop needed


@pytest.fixture
def tls_services(tmp_path: Path) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path, {"TASK_MODULES": "testbed.record_tasks",
                                        "SHUTDOWN_GRACE_S": "5"})
    yield factory
    factory.stop_all()


def test_worker_producer_and_rpc_over_amqps_with_the_ca_in_the_url(
        tls: TlsBroker, tls_services: ServiceFactory, tmp_path: Path) -> None:
    # Two options (a comma inside, encoded) and a dead node first: the list still parses.
    secure = tls.url(ca_certs=str(tls.certs.ca), server_hostname="localhost")
    url = f"amqp://nobody:x@127.0.0.1:{free_port()}/%2F,{secure}"
    assert len(Settings.from_env({"AMQP_URL": url}).amqp_urls) == 2
    out = tmp_path / "records"
    worker = tls_services.start("worker", AMQP_URL=url)
    server = tls_services.start("rpc_server", AMQP_URL=url)
    result = tls_services.run("producer", "--count", "50", "--type", "record", "--args",
                              json.dumps({"path": str(out)}), AMQP_URL=url)
    assert result.returncode == 0, result.stderr[-2000:]
    wait_until(lambda: Tally.of(out).distinct == 50, 20, "50 tasks over TLS")
    with RpcClient(Settings.from_env({"AMQP_URL": secure})) as client:
        assert client.call(20, 22) == 42
        wait_until(lambda: tls.tls_connections().count(True) >= 3, 10,
                   "the broker to list the TLS connections")
    assert all(tls.tls_connections()), "a connection went in the clear"
    for service in (worker, server):
        service.signal(signal.SIGTERM)
        assert service.wait(timeout_s=20) == 0


def test_ssl_cert_file_alone_is_enough(tls: TlsBroker, tls_services: ServiceFactory,
                                       tmp_path: Path) -> None:
    env = {"AMQP_URL": tls.url(), "SSL_CERT_FILE": str(tls.certs.ca)}
    out = tmp_path / "records"
    tls_services.start("worker", **env)
    result = tls_services.run("producer", "--count", "10", "--type", "record", "--args",
                              json.dumps({"path": str(out)}), **env)
    assert result.returncode == 0, result.stderr[-2000:]
    wait_until(lambda: Tally.of(out).distinct == 10, 20, "10 tasks over TLS")


@pytest.mark.parametrize("case", ["untrusted CA", "wrong host name", "no CA at all"])
def test_a_certificate_that_does_not_verify_is_refused(
        tls: TlsBroker, tls_services: ServiceFactory, case: str) -> None:
    url = {
        "untrusted CA": tls.url(ca_certs=str(tls.certs.other_ca)),
        "wrong host name": tls.url(ca_certs=str(tls.certs.ca), server_hostname="rabbit.example"),
        "no CA at all": tls.url(),  # the system's CAs only: ours is not among them
    }[case]
    worker = tls_services.start("worker", ready=False, AMQP_URL=url)
    wait_until(lambda: any(e.get("event") == "reconnect_scheduled" for e in log_events(worker)),
               20, "a failed connection attempt")
    errors = " ".join(str(e.get("error")) for e in log_events(worker)
                      if e.get("event") == "broker_connection_lost")
    assert "CERTIFICATE_VERIFY_FAILED" in errors, errors[:1000]
    assert worker.probe("/readyz") == 503
    assert tls.node.password not in worker.log()
