"""RPC: sequential latency and concurrent throughput — warren's RpcClient against the
tutorial's direct reply-to client, on the same warren rpc_servers, in the same run."""

from __future__ import annotations

import statistics
import threading
import time

from bench.common import Bench, Outcome, goal, wait_ready
from bench.plain import DirectReplyClient
from rpc_server.client import RpcClient
from testbed.broker import free_port
from warren.settings import Settings

SERVERS = 2  # sharing rpc_queue, as a deployment would
ROUNDS = 3
PLAIN, OURS = "plain pika, direct reply-to", "warren RpcClient"
CONCURRENT = "warren RpcClient, 4 clients x 100 in flight"


def latencies(call, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        call(i, 1)
        out.append(time.perf_counter() - started)
    return out


def concurrent_rate(url: str, clients: int, per_client: int, in_flight: int) -> float:
    settings = Settings.from_env({"AMQP_URL": url})
    barrier = threading.Barrier(clients + 1)

    def work() -> None:
        with RpcClient(settings, timeout_s=60) as client:
            barrier.wait()
            for start in range(0, per_client, in_flight):
                client.call_many([(i, 1) for i in range(start, start + in_flight)])

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def run(bench: Bench) -> Outcome:
    n = 500 if bench.quick else 3000
    url = bench.vhost()
    ports = [free_port() for _ in range(SERVERS)]
    for port in ports:
        bench.spawn(["-m", "rpc_server"], {"AMQP_URL": url, "METRICS_PORT": str(port)})
    wait_ready(ports)
    plain = DirectReplyClient(url)
    ours = RpcClient(Settings.from_env({"AMQP_URL": url}))
    latencies(plain.call, 200)  # warm-up
    latencies(ours.call, 200)
    rows: list[dict[str, object]] = []
    pooled: dict[str, list[float]] = {PLAIN: [], OURS: []}
    ratios = []  # concurrent warren / sequential plain, per round
    # Rounds alternate the baseline and warren: a run of seconds on a shared machine moves
    # by several percent, so the goal is the median of the rounds' own ratios.
    for rnd in range(1 if bench.quick else ROUNDS):
        for name, call in ((PLAIN, plain.call), (OURS, ours.call)):
            lat = latencies(call, n)
            pooled[name] += lat
            rows.append({"round": rnd + 1, "client": name, "calls": n,
                         "p50 ms": round(pct(lat, 0.5), 3), "p99 ms": round(pct(lat, 0.99), 3),
                         "calls/s": round(n / sum(lat))})
        rate = concurrent_rate(url, clients=4, per_client=n, in_flight=100)
        ratios.append(rate * sum(pooled[PLAIN][-n:]) / n)
        rows.append({"round": rnd + 1, "client": CONCURRENT, "calls": 4 * n,
                     "p50 ms": "", "p99 ms": "", "calls/s": round(rate)})
    bench.stop_all()
    goals = [goal("p50 warren / plain (all rounds' calls)",
                  statistics.median(pooled[OURS]) / statistics.median(pooled[PLAIN]), 1.2, False),
             goal("concurrent warren / sequential plain (calls/s, median of rounds)",
                  statistics.median(ratios), 5.0)]
    notes = [f"{SERVERS} rpc_server processes (RPC_PREFETCH=100) share rpc_queue; the "
             "clients are threads of the benchmark process.",
             "Concurrent / sequential per round: "
             + ", ".join(f"{r:.2f}" for r in ratios) + "."]
    return Outcome("rpc", "RPC: latency and throughput against the tutorial client", rows, goals,
                   notes)
