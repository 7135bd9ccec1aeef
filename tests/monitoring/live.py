"""A live stack for the monitoring tests: workers, producer, RPC server and a private
Prometheus with the compose job names and static targets, on a private RabbitMQ node.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.broker import LocalBroker, free_port
from testbed.processes import Service, ServiceFactory
from tests.monitoring.prom_api import PromApi, start_prometheus, stop_process
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
    rpc: bool = False
    conditions: tuple[str, ...] = ()  # PromQL that must all return a sample before `at`


@dataclass
class Stack:
    api: PromApi
    spec: StackSpec
    workers: list[Service]
    at: float = 0.0  # the instant every query is evaluated at
    ticks: list[Callable[[], None]] = field(default_factory=list)

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


def prometheus_config(node: LocalBroker, services: dict[str, list[Service]]) -> dict[str, Any]:
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


def wait_until(stack: Stack) -> float:
    """Poll until every condition holds; return the evaluation time of that answer."""
    conditions = (busy_workers(stack.spec.workers), full_history(), *stack.spec.conditions)
    deadline = time.monotonic() + SETTLE_S
    seen: list[Any] = []
    while time.monotonic() < deadline:
        for tick in stack.ticks:
            tick()
        seen = [stack.api.vector(expr) for expr in conditions]
        if all(seen):
            return max(float(result[0]["value"][0]) for result in seen)
        time.sleep(0.5)
    missing = [expr for expr, result in zip(conditions, seen, strict=False) if not result]
    raise AssertionError(f"not seen within {SETTLE_S:.0f}s: {missing}")


def start_rpc_client(url: str, cleanup: contextlib.ExitStack) -> Callable[[], None]:
    from rpc_server.client import RpcClient

    client = RpcClient(Settings(amqp_urls=(url,)), timeout_s=10)
    cleanup.callback(client.close)

    def call() -> None:
        assert client.call_many([(i, i) for i in range(10)]) == [2 * i for i in range(10)]

    return call


@contextlib.contextmanager
def running_stack(prometheus: str, node: LocalBroker, tmp: Path,
                  spec: StackSpec) -> Iterator[Stack]:
    with contextlib.ExitStack() as cleanup:
        factory = ServiceFactory(tmp, {
            "AMQP_URL": node.url, "DOT_SECONDS": "0.01", "PREFETCH": str(spec.prefetch),
            "TASK_QUEUE": spec.task_queue, "SHUTDOWN_GRACE_S": "5"})
        cleanup.callback(factory.stop_all)
        services = {"worker": [factory.start("worker", WORKER_ID=f"w{i}")
                               for i in range(spec.workers)]}
        if spec.rpc:
            services["rpc_server"] = [factory.start("rpc_server")]
        services["producer"] = [factory.start("producer", *spec.producer_args, ready=False)]
        config = tmp / "prometheus.yml"
        config.write_text(json.dumps(prometheus_config(node, services)))  # JSON is YAML
        port = free_port()
        process = start_prometheus(prometheus, config, tmp / "tsdb", port, tmp / "prom.log")
        cleanup.callback(stop_process, process)
        stack = Stack(PromApi(f"http://127.0.0.1:{port}"), spec, services["worker"])
        if spec.rpc:
            stack.ticks.append(start_rpc_client(node.url, cleanup))
        stack.at = wait_until(stack)
        yield stack
