"""The autoscalers' signal, exactly as it ships, on real brokers and a real Prometheus.

A queue holds 7 ready and 3 unacknowledged messages (a consumer with prefetch 3 that does
not ack: three busy workers). Prometheus scrapes the broker the way the PodMonitor
`rabbitmq-detailed` in the production build says (job, path, families, and the `namespace`
label the Prometheus Operator adds), and then:

- the KEDA trigger's query from the built ScaledObject returns 10, and so does the
  prometheus-adapter rule behind the HPA's External metric;
- the ready half alone returns 7: what KEDA's AMQP mode would have seen;
- the management API, the trigger this replaced: on RabbitMQ 3.10 it counts 10; on 4.3 with
  `deprecated_features.permit.management_metrics_collection = false` its queue has no
  `messages*` fields at all (issue #18).

3.10 is the private node (Debian's RabbitMQ, 4.0 on trixie; the host's Prometheus 2.x); 4.3 and
Prometheus 3 run in Docker: the local stand-ins `offline-images --suite sid` builds where
that tool sits beside the repository, else the public images (RABBITMQ4_IMAGE and
PROMETHEUS3_IMAGE override both). No Kubernetes cluster is involved.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest

from testbed.broker import free_port
from testbed.processes import REPO
from tests.k8s.backlog import adapter_query, adapter_rule, keda_trigger
from tests.k8s.manifests import Obj, find, of_kind
from tests.monitoring.prom_api import PromApi, start_prometheus, stop_process
from tests.support.broker import BrokerUnderTest
from tests.support.needs import need, need_tool

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

Build = Callable[[str], list[Obj]]
N_READY, N_UNACKED = 7, 3
QUEUE = "task_queue"
OFFLINE_IMAGES = REPO.parent / "shared" / "tools" / "offline-images"
PUBLIC = {"RABBITMQ_IMAGE": "rabbitmq:4.3-management", "PROMETHEUS_IMAGE": "prom/prometheus:v3.5.0"}


@dataclass(frozen=True)
class Broker:
    """What these tests need of a RabbitMQ node, whichever way it runs."""

    amqp_url: str
    metrics_target: str  # host:port of its prometheus plugin
    counts: Callable[[], tuple[int, int]]  # (ready, unacked) from rabbitmqctl: no stats lag
    management: Callable[[str], dict[str, Any]]  # GET on the management API


# ---- what the manifests say -------------------------------------------------------------

def scrape_config(objects: list[Obj], target: str) -> dict[str, Any]:
    """The PodMonitor rabbitmq-detailed as a plain scrape job, 1 s instead of 15 s."""
    monitor = find(objects, "PodMonitor", "rabbitmq-detailed")
    assert monitor is not None
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (job,) = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{
                "job_name": job, "metrics_path": endpoint["path"], "params": endpoint["params"],
                "static_configs": [{"targets": [target],  # the Operator adds namespace="<pod's>"
                                    "labels": {"namespace": monitor["metadata"]["namespace"]}}],
            }]}


def queries(build: Build) -> dict[str, str]:
    keda = keda_trigger(build("production"))["metadata"]["query"]
    (hpa,) = of_kind(build("base+hpa"), "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    return {"keda": keda, "ready only": keda.split("+")[0],
            "hpa": adapter_query(adapter_rule(metric["name"]), hpa["metadata"]["namespace"],
                                 metric["selector"]["matchLabels"])}


# ---- a backlog with unacked messages ----------------------------------------------------

@contextlib.contextmanager
def backlog(url: str) -> Iterator[None]:
    """N_READY + N_UNACKED persistent messages; a consumer holds N_UNACKED without acking."""
    publisher = pika.BlockingConnection(pika.URLParameters(url))
    holder = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = publisher.channel()
        channel.queue_delete(QUEUE)
        channel.queue_declare(QUEUE, durable=True)
        channel.confirm_delivery()
        for _ in range(N_READY + N_UNACKED):
            channel.basic_publish("", QUEUE, b"{}", pika.BasicProperties(delivery_mode=2))
        held = holder.channel()
        held.basic_qos(prefetch_count=N_UNACKED)
        held.basic_consume(QUEUE, lambda *_: None)  # never acks: three busy workers
        holder.process_data_events(time_limit=1)
        yield
    finally:
        holder.close()  # the held messages go back to the queue
        publisher.channel().queue_delete(QUEUE)
        publisher.close()


def value(api: PromApi, query: str) -> float | None:
    result = api.vector(query)
    assert len(result) <= 1, f"the trigger needs one number: {result}"
    return float(result[0]["value"][1]) if result else None


def wait_for(api: PromApi, query: str, want: float, timeout_s: float = 60) -> float | None:
    deadline, got = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        got = value(api, query)
        if got == want:
            break
        time.sleep(0.5)
    return got


def check_signal(broker: Broker, api: PromApi, build: Build) -> dict[str, Any]:
    """The three queries against the held backlog; returns the management API's queue."""
    q = queries(build)
    with backlog(broker.amqp_url):
        assert broker.counts() == (N_READY, N_UNACKED), "the broker's own view"
        assert wait_for(api, q["keda"], N_READY + N_UNACKED) == N_READY + N_UNACKED
        assert value(api, q["hpa"]) == N_READY + N_UNACKED
        assert value(api, q["ready only"]) == N_READY, "AMQP mode would miss the busy ones"
        time.sleep(1)  # the management API's stats interval is 100 ms on both nodes
        return broker.management(f"/api/queues/%2F/{QUEUE}")


# ---- the private node (Debian's RabbitMQ: 3.10, or 4.0 on trixie) + the host's Prometheus --

@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[list[Obj], str], PromApi]]:
    binary = need_tool("prometheus", "apt-get install prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(objects: list[Obj], target: str) -> PromApi:
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps(scrape_config(objects, target)))  # JSON is YAML
        port = free_port()
        started.append(start_prometheus(binary, config, tmp_path / "tsdb", port,
                                        tmp_path / "prometheus.log"))
        return PromApi(f"http://127.0.0.1:{port}")

    yield start
    for process in started:
        stop_process(process)


def test_the_signal_on_the_private_node(broker: BrokerUnderTest, build: Build,
                                        prometheus_for: Callable[[list[Obj], str], PromApi]
                                        ) -> None:
    node = broker.private
    api = prometheus_for(build("production"), f"127.0.0.1:{node.prometheus_port}")

    def management(path: str) -> dict[str, Any]:
        answer = node.api("GET", path)
        assert isinstance(answer, dict)
        return answer

    queue = check_signal(Broker(node.url, "", lambda: node.queue_counts(QUEUE), management),
                         api, build)
    # The management API counts both here (metrics collection on: the default).
    assert queue["messages"] == N_READY + N_UNACKED


# ---- RabbitMQ 4.3 without management metrics + Prometheus 3, in Docker -------------------

def docker(*args: str, timeout_s: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def images() -> dict[str, str]:
    found = {name: os.environ[env] for name, env in
             (("RABBITMQ_IMAGE", "RABBITMQ4_IMAGE"), ("PROMETHEUS_IMAGE", "PROMETHEUS3_IMAGE"))
             if os.environ.get(env)}
    if len(found) == 2 or not OFFLINE_IMAGES.exists():
        return {**PUBLIC, **found}
    done = subprocess.run([str(OFFLINE_IMAGES), "--suite", "sid", "--dotenv", "rabbitmq",
                           "prometheus"], capture_output=True, text=True, timeout=1200,
                          check=False)
    assert done.returncode == 0, f"offline-images --suite sid failed: {done.stderr[-2000:]}"
    built = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
    return {**built, **found}


@pytest.fixture
def containers() -> Iterator[Callable[..., str]]:
    need(shutil.which("docker") is not None, "the docker CLI is not installed "
         "(.ci/install-docker.sh)")
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    need(info.returncode == 0, "no Docker engine answers (.ci/install-docker.sh starts one)")
    names: list[str] = []

    def run(image: str, *args: str, volumes: tuple[str, ...] = (), env: tuple[str, ...] = (),
            command: tuple[str, ...] = ()) -> str:
        name = f"warren-backlog-{secrets.token_hex(4)}"
        names.append(name)
        flags = [f"-v{v}" for v in volumes] + [f"-e{e}" for e in env]
        docker("run", "-d", "--rm", "--name", name, "--network", "host", *flags, *args, image,
               *command, timeout_s=300)
        return name

    yield run
    for name in names:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60,
                       check=False)


RABBITMQ_4_CONF = """\
listeners.tcp.default = 127.0.0.1:{amqp}
management.tcp.port = {management}
management.tcp.ip = 127.0.0.1
prometheus.tcp.port = {prometheus}
prometheus.tcp.ip = 127.0.0.1
loopback_users = none
default_user = warren
default_pass = {password}
collect_statistics_interval = 100
# Issue #18: the deprecated metrics collection switched off, as 4.x will have it.
deprecated_features.permit.management_metrics_collection = false
"""


def start_rabbitmq_4(run: Callable[..., str], image: str, tmp_path: Path) -> Broker:
    ports = {"amqp": free_port(), "management": free_port(), "prometheus": free_port()}
    password = secrets.token_urlsafe(12)
    conf = tmp_path / "20-warren.conf"
    conf.write_text(RABBITMQ_4_CONF.format(password=password, **ports))
    conf.chmod(0o644)
    name = run(image, volumes=(f"{conf}:/etc/rabbitmq/conf.d/20-warren.conf:ro",),
               env=(f"RABBITMQ_NODENAME=warren-{ports['amqp']}@localhost",
                    f"RABBITMQ_DIST_PORT={free_port()}"))
    url = f"amqp://warren:{password}@127.0.0.1:{ports['amqp']}/%2F"
    _wait_for_amqp(url, name)

    def counts() -> tuple[int, int]:
        out = docker("exec", name, "rabbitmqctl", "-q", "--no-table-headers", "list_queues",
                     "name", "messages_ready", "messages_unacknowledged")
        (row,) = [line.split() for line in out.splitlines() if line.split()[:1] == [QUEUE]]
        return int(row[1]), int(row[2])

    def management(path: str) -> dict[str, Any]:
        auth = base64.b64encode(f"warren:{password}".encode()).decode()
        request = urllib.request.Request(f"http://127.0.0.1:{ports['management']}{path}",
                                         headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            answer = json.loads(reply.read())
        assert isinstance(answer, dict)
        return answer

    version = docker("exec", name, "rabbitmqctl", "version").strip()
    assert version.startswith("4."), version
    return Broker(url, f"127.0.0.1:{ports['prometheus']}", counts, management)


def _wait_for_amqp(url: str, name: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            pika.BlockingConnection(pika.URLParameters(url)).close()
            return
        time.sleep(1)
    logs = subprocess.run(["docker", "logs", "--tail", "30", name], capture_output=True,
                          text=True, timeout=30, check=False)
    raise AssertionError(f"RabbitMQ 4 did not answer in {timeout_s}s:\n{logs.stdout[-3000:]}")


def start_prometheus_3(run: Callable[..., str], image: str, objects: list[Obj], target: str,
                       tmp_path: Path) -> PromApi:
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps(scrape_config(objects, target)))
    config.chmod(0o644)
    port = free_port()
    run(image, volumes=(f"{config}:/etc/prometheus/prometheus.yml:ro",),
        command=("--config.file=/etc/prometheus/prometheus.yml",
                 "--storage.tsdb.path=/prometheus", f"--web.listen-address=127.0.0.1:{port}"))
    api = PromApi(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while not api.ready():
        assert time.monotonic() < deadline, "Prometheus 3 did not become ready"
        time.sleep(0.5)
    version = api.get("/api/v1/status/buildinfo")["data"]["version"]
    assert version.startswith("3."), version
    return api


def test_the_signal_on_rabbitmq_4_without_management_metrics(
        build: Build, containers: Callable[..., str], tmp_path: Path) -> None:
    wanted = images()
    broker = start_rabbitmq_4(containers, wanted["RABBITMQ_IMAGE"], tmp_path)
    api = start_prometheus_3(containers, wanted["PROMETHEUS_IMAGE"], build("production"),
                             broker.metrics_target, tmp_path)
    queue = check_signal(broker, api, build)
    # What KEDA's http (management API) mode would read: no counts at all.
    assert queue["name"] == QUEUE
    assert not [key for key in queue if key.startswith("messages")], sorted(queue)


# ---- the helpers themselves ----------------------------------------------------------------

def test_the_scrape_job_is_the_one_the_query_selects(build: Build) -> None:
    """Guards the live tests above: they scrape under the labels the query asks for."""
    job = scrape_config(build("production"), "x:1")["scrape_configs"][0]
    (labels,) = [s["labels"] for s in job["static_configs"]]
    query = queries(build)["keda"]
    assert f'job="{job["job_name"]}"' in query and f'namespace="{labels["namespace"]}"' in query
