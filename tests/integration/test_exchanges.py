"""Exchanges of all four kinds: routing semantics, worker BINDINGS, broadcasts, task events."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pika

from testbed.processes import REPO, ServiceFactory
from tests.support.amqp import connect, ready_count
from tests.support.faults import metric, wait_until
from warren.bindings import parse_bindings
from warren.topology import apply_bindings


def bind_queues(url: str, queues: dict[str, str]) -> None:
    """Declare each queue and bind it with warren's own BINDINGS parser and topology code."""
    conn = connect(url)
    try:
        channel = conn.channel()
        for queue, spec in queues.items():
            channel.queue_declare(queue, durable=True)
            apply_bindings(channel, queue, parse_bindings(spec))
    finally:
        conn.close()


def publish(url: str, exchange: str, key: str, body: bytes = b"x",
            headers: dict | None = None) -> None:
    conn = connect(url)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, key, body, pika.BasicProperties(headers=headers))
    finally:
        conn.close()


def counts(url: str, *queues: str) -> list[int]:
    return [ready_count(url, q) for q in queues]


def test_topic_star_matches_one_word_and_hash_any_number(amqp_url: str) -> None:
    bind_queues(amqp_url, {"star": "weather:topic:europe.*", "hash": "weather:topic:europe.#"})
    publish(amqp_url, "weather", "europe.weather")
    publish(amqp_url, "weather", "europe.weather.bad")
    publish(amqp_url, "weather", "asia.weather")
    assert counts(amqp_url, "star", "hash") == [1, 2]


def test_direct_matches_the_exact_key_only(amqp_url: str) -> None:
    bind_queues(amqp_url, {"errors": "logs:direct:error", "infos": "logs:direct:info"})
    for key in ("error", "error.disk", "info", "warning"):
        publish(amqp_url, "logs", key)
    assert counts(amqp_url, "errors", "infos") == [1, 1]


def test_fanout_reaches_every_bound_queue(amqp_url: str) -> None:
    bind_queues(amqp_url, {"a": "news:fanout", "b": "news:fanout", "c": "news:fanout"})
    publish(amqp_url, "news", "ignored.key")
    assert counts(amqp_url, "a", "b", "c") == [1, 1, 1]


def test_headers_all_versus_any(amqp_url: str) -> None:
    bind_queues(amqp_url, {"all": "docs:headers:format=pdf,type=report",
                           "any": "docs:headers:x-match=any,format=pdf,type=report"})
    publish(amqp_url, "docs", "", headers={"format": "pdf", "type": "report"})
    publish(amqp_url, "docs", "", headers={"format": "pdf", "type": "log"})
    publish(amqp_url, "docs", "", headers={"format": "zip"})
    assert counts(amqp_url, "all", "any") == [1, 2]


def test_workers_bind_from_config_and_the_producer_publishes_through_exchanges(
        services: ServiceFactory, amqp_url: str) -> None:
    europe = services.start("worker", TASK_QUEUE="europe_tasks",
                            BINDINGS="weather:topic:europe.#;docs:headers:format=pdf")
    asia = services.start("worker", TASK_QUEUE="asia_tasks", BINDINGS="weather:topic:asia.*")
    for key in ("europe.weather", "europe.weather.bad", "asia.weather"):
        r = services.run("producer", "--exchange", "weather", "--exchange-type", "topic",
                         "--routing-key", key, "task.")
        assert r.returncode == 0, r.stdout + r.stderr
    r = services.run("producer", "--exchange", "docs", "--routing-key", "",
                     "--header", "format=pdf", "doc.")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: metric(europe, 'warren_worker_tasks_total{outcome="done"}') == 3, 15,
               "europe's three tasks")
    wait_until(lambda: metric(asia, 'warren_worker_tasks_total{outcome="done"}') == 1, 15,
               "asia's task")
    time.sleep(0.5)
    assert metric(europe, 'warren_worker_tasks_total{outcome="done"}') == 3
    assert metric(asia, 'warren_worker_tasks_total{outcome="done"}') == 1


def test_an_unroutable_message_is_returned_and_reported(services: ServiceFactory) -> None:
    r = services.run("producer", "--exchange", "nowhere", "--exchange-type", "direct",
                     "--routing-key", "nobody", "lost?")
    assert r.returncode == 1
    assert "returned 1" in r.stdout
    assert '"message_returned"' in r.stderr


def test_subscriber_takes_the_broadcast_of_task_events(services: ServiceFactory,
                                                       amqp_url: str) -> None:
    services.start("worker")
    sub = subprocess.Popen([sys.executable, "-m", "warren.subscribe", "--count", "2"], cwd=REPO,
                           env={**os.environ, "AMQP_URL": amqp_url, "PYTHONPATH": str(REPO)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert sub.stdout is not None
        assert "Waiting for messages on 'warren.events'" in sub.stdout.readline()
        assert services.run("producer", "--count", "1", "--type", "noop").returncode == 0
        assert services.run("producer", "--count", "1", "--type", "nope").returncode == 0
        out, _ = sub.communicate(timeout=20)
    finally:
        sub.kill()
    lines = out.rstrip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith(' [x] done: {"event": "done"')
    assert lines[1].startswith(' [x] rejected: {"event": "rejected"')
    assert "unknown task type 'nope'" in lines[1]


def test_two_subscribers_both_get_a_fanout_broadcast(services: ServiceFactory,
                                                     amqp_url: str) -> None:
    env = {**os.environ, "AMQP_URL": amqp_url, "PYTHONPATH": str(REPO)}
    subs = [subprocess.Popen([sys.executable, "-m", "warren.subscribe", "--exchange", "m1",
                              "--count", "1"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        for sub in subs:
            assert sub.stdout is not None and "Waiting" in sub.stdout.readline()
        r = services.run("producer", "--exchange", "m1", "--exchange-type", "fanout",
                         "--routing-key", "", "nihao")
        assert r.returncode == 0, r.stdout + r.stderr
        outputs = [sub.communicate(timeout=15)[0] for sub in subs]
    finally:
        for sub in subs:
            sub.kill()
    assert all(" [x] : nihao" in out for out in outputs), outputs
