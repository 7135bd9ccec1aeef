"""A live stack for the monitoring tests: workers, producer, RPC server on a private
RabbitMQ node, scraped by one private Prometheus per installed major release (2.x and
3.x) with the compose job names, static targets and the real rule files.

Both Prometheus servers scrape the same processes at once, so running the tests under
both costs one more Prometheus, not one more stack. Each server gets its own evaluation
instant: the tests look at a `Stack`, which is the stack as one server sees it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from testbed.broker import free_port
from testbed.processes import Service, ServiceFactory
from tests.monitoring.prom_api import PromApi, start_prometheus, stop_process
from tests.monitoring.prom_tools import PromRelease
from tests.monitoring.support import (
    PROMETHEUS_YML,
    RULES_DIR,
    detailed_families,
    load_dashboard,
    panel_queries,
    substitute,
)
from warren.settings import Settings

RATE_INTERVAL = "6s"  # what $__rate_interval becomes: 6 samples at 1 s scrapes
# rate() divides by the whole range, so wait for a full window of samples of every worker
# (Prometheus starts scraping ~5 s after it is ready: discovery updates are batched).
FULL_WINDOW_SAMPLES = 8
SETTLE_S = 45.0


@dataclass(frozen=True)
class StackSpec:
    workers: int
    prefetch: int
    producer_args: tuple[str, ...]
    task_queue: str = "task_queue"
    queue_type: str = "classic"
    rpc: bool = False
    conditions: tuple[str, ...] = ()  # PromQL that must all return a sample before `at`


class Broker(Protocol):
    """testbed.broker.LocalBroker (Debian's RabbitMQ) or containers.ContainerBroker (4.x)."""

    @property
    def url(self) -> str: ...

    @property
    def prometheus_port(self) -> int: ...


@dataclass
class Stack:
    """The running stack as one Prometheus server sees it."""

    api: PromApi
    release: PromRelease
    spec: StackSpec
    workers: list[Service]
    at: float = 0.0  # the instant every query is evaluated at

    @property
    def variables(self) -> dict[str, str]:
        return {"__rate_interval": RATE_INTERVAL, "__interval": "1s", "__range": "1m",
                "queue": self.spec.task_queue, "instance": ".*"}

    def worker_targets(self) -> set[str]:
        return {f"127.0.0.1:{service.port}" for service in self.workers}

    def panel(self, title: str, ref_id: str = "A") -> dict[str, float]:
        """{instance | queue | outcome | "total": value} of one dashboard query at `at`."""
        [query] = [q for q in panel_queries(load_dashboard())
                   if q.title.startswith(title) and q.ref_id == ref_id]
        result = self.api.vector(substitute(query.expr, self.variables), self.at)
        return {_key(series["metric"]): float(series["value"][1]) for series in result}


def _key(labels: dict[str, str]) -> str:
    return labels.get("instance") or labels.get("queue") or labels.get("outcome") or "total"


@dataclass
class RunningStack:
    """One stack of processes and the Prometheus servers scraping it, by major release."""

    views: dict[int, Stack]
    ticks: list[Callable[[], None]] = field(default_factory=list)


def prometheus_config(node: Broker, services: dict[str, list[Service]]) -> dict[str, Any]:
    """The compose config's jobs with static targets instead of DNS discovery."""
    broker = [f"127.0.0.1:{node.prometheus_port}"]
    jobs: list[dict[str, Any]] = [
        {"job_name": "rabbitmq", "static_configs": [{"targets": broker}]},
        {"job_name": "rabbitmq-detailed", "metrics_path": "/metrics/detailed",
         "params": {"family": detailed_families(PROMETHEUS_YML.read_text())},
         "static_configs": [{"targets": broker}]},
    ]
    for job, members in services.items():
        targets = [f"127.0.0.1:{service.port}" for service in members]
        jobs.append({"job_name": job, "static_configs": [{"targets": targets}]})
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_DIR / "*.yml")],
        "scrape_configs": jobs,
    }


def busy_workers(n: int) -> str:
    return (f'count(sum by (instance) (rate(warren_worker_tasks_total{{job="worker",'
            f'outcome="done"}}[{RATE_INTERVAL}])) > 0) == {n}')


def full_history() -> str:
    return f'min(count_over_time(up{{job="worker"}}[1m])) >= {FULL_WINDOW_SAMPLES}'


def wait_until(running: RunningStack, spec: StackSpec) -> None:
    """Poll until every condition holds on every server; fix each server's `at` then."""
    conditions = (busy_workers(spec.workers), full_history(), *spec.conditions)
    deadline = time.monotonic() + SETTLE_S
    waiting = dict(running.views)
    seen: dict[int, list[Any]] = {}
    while waiting and time.monotonic() < deadline:
        for tick in running.ticks:
            tick()
        for major, stack in list(waiting.items()):
            seen[major] = [stack.api.vector(expr) for expr in conditions]
            if all(seen[major]):
                stack.at = max(float(result[0]["value"][0]) for result in seen[major])
                del waiting[major]
        time.sleep(0.5)
    missing = {major: [expr for expr, result in zip(conditions, seen.get(major, []),
                                                    strict=False) if not result]
               for major in waiting}
    assert not waiting, f"not seen within {SETTLE_S:.0f}s: {missing}"


def start_rpc_client(url: str, cleanup: contextlib.ExitStack) -> Callable[[], None]:
    from rpc_server.client import RpcClient

    client = RpcClient(Settings(amqp_urls=(url,)), timeout_s=10)
    cleanup.callback(client.close)

    def call() -> None:
        assert client.call_many([(i, i) for i in range(10)]) == [2 * i for i in range(10)]

    return call


@contextlib.contextmanager
def running_stack(releases: list[PromRelease], node: Broker, tmp: Path,
                  spec: StackSpec) -> Iterator[RunningStack]:
    assert releases, "no Prometheus to scrape the stack"
    with contextlib.ExitStack() as cleanup:
        factory = ServiceFactory(tmp, {
            "AMQP_URL": node.url, "DOT_SECONDS": "0.01", "PREFETCH": str(spec.prefetch),
            "TASK_QUEUE": spec.task_queue, "QUEUE_TYPE": spec.queue_type,
            "SHUTDOWN_GRACE_S": "5"})
        cleanup.callback(factory.stop_all)
        services = {"worker": [factory.start("worker", WORKER_ID=f"w{i}")
                               for i in range(spec.workers)]}
        if spec.rpc:
            services["rpc_server"] = [factory.start("rpc_server")]
        services["producer"] = [factory.start("producer", *spec.producer_args, ready=False)]
        config = tmp / "prometheus.yml"
        config.write_text(json.dumps(prometheus_config(node, services)))  # JSON is YAML
        running = RunningStack({})
        for release in releases:
            port, name = free_port(), release.label
            process = start_prometheus(release.prometheus, config, tmp / f"tsdb-{name}", port,
                                       tmp / f"{name}.log")
            cleanup.callback(stop_process, process)
            running.views[release.major] = Stack(PromApi(f"http://127.0.0.1:{port}"), release,
                                                 spec, services["worker"])
        if spec.rpc:
            running.ticks.append(start_rpc_client(node.url, cleanup))
        wait_until(running, spec)
        yield running
