"""The operator's toolbox, `warren` (issue 17), against a real broker and real workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pika
import pytest

from testbed.broker import LocalBroker
from testbed.processes import REPO, ServiceFactory
from testbed.record_tasks import read_records
from tests.support.amqp import connect, drain, ready_count
from tests.support.broker import BrokerUnderTest
from tests.support.faults import wait_until

JSON = "application/json"


def warren(url: str, *args: str, stdin: str = "", timeout_s: float = 60,
           **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "AMQP_URL": url, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "warren.admin", *args], env=full, cwd=REPO,
                          input=stdin, capture_output=True, text=True, timeout=timeout_s,
                          check=False)


def park(url: str, bodies: list[tuple[str, bytes, dict[str, object]]]) -> None:
    """Put messages straight into task_queue.dead, as a worker parks them."""
    conn = connect(url)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for name in ("task_queue", "task_queue.dead"):
            ch.queue_declare(name, durable=True)
        for message_id, body, headers in bodies:
            ch.basic_publish("", "task_queue.dead", body, pika.BasicProperties(
                content_type=JSON, delivery_mode=2, message_id=message_id, headers=headers))
    finally:
        conn.close()


def failed(reason: str, attempts: int = 3, at: int | None = None) -> dict[str, object]:
    at = at or int(time.time())
    return {"x-warren-reason": reason, "x-warren-attempts": attempts,
            "x-warren-first-failed-at": at - 10, "x-warren-last-failed-at": at,
            "x-death": [{"count": 2, "queue": "task_queue.retry", "reason": "expired"}],
            "keep-me": "yes"}


def task(task_type: str, **args: object) -> bytes:
    return json.dumps({"type": task_type, "args": args}).encode()


def ids_in(url: str, queue: str) -> list[str]:
    return [props.message_id for props, _ in drain(url, queue)]


def test_status_shows_queues_and_every_live_worker(services: ServiceFactory,
                                                   amqp_url: str) -> None:
    for name in ("w1", "w2"):
        services.start("worker", WORKER_ID=name)
    result = warren(amqp_url, "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("task_queue ", "task_queue.retry", "task_queue.dead", "rpc_queue",
                     "(missing)", "w1", "w2", "fairness (Jain's index"):
        assert expected in out, out
    assert "warren:***@" in out and services.base_env["AMQP_URL"].split(":")[2].split("@")[0] \
        not in out
    doc = json.loads(warren(amqp_url, "--json", "status").stdout)
    queues = {q["name"]: q for q in doc["queues"]}
    assert queues["task_queue"]["consumers"] == 2 and queues["rpc_queue"]["ready"] is None
    assert sorted(w["worker"] for w in doc["workers"]) == ["w1", "w2"]
    # Recent rates: the ready count's change over the listening window, and what the
    # queue's workers finish. A backlog published at a steady rate with nobody consuming
    # grows the ready count.
    publisher = services.start("producer", "--count", "0", "--rate", "50", "--no-progress",
                               TASK_QUEUE="other_queue", ready=False)
    time.sleep(2)
    doc = json.loads(warren(amqp_url, "--json", "status", TASK_QUEUE="other_queue").stdout)
    publisher.signal(15)
    growing = {q["name"]: q for q in doc["queues"]}["other_queue"]
    assert growing["ready_per_s"] > 10, growing
    assert queues["task_queue"]["done_per_s"] == 0.0 and queues["task_queue"]["ready_per_s"] == 0


def test_dead_list_show_and_filters(amqp_url: str) -> None:
    old = int(time.time()) - 3600
    park(amqp_url, [("a", task("resize", url="x"), failed("failed 3 times: time limit")),
                    ("b", task("mail", to="y"), failed("failed 3 times: SMTPError: 550")),
                    ("c", task("resize", url="z"), failed("rejected: bad arguments", 0, old)),
                    ("d", b"\xff\xfe not json", failed("rejected: body is not valid UTF-8"))])
    listed = json.loads(warren(amqp_url, "--json", "dead", "list").stdout)
    assert [p["message_id"] for p in listed] == ["a", "b", "c", "d"]  # oldest first
    assert json.loads(warren(amqp_url, "dead", "list", "--json").stdout) == listed
    def ids(*args: str) -> list[str]:
        return [p["message_id"] for p in json.loads(
            warren(amqp_url, "--json", "dead", "list", *args).stdout)]
    assert ids("--type", "resize") == ["a", "c"]
    assert ids("--reason", "time limit|SMTP") == ["a", "b"]
    assert ids("--older-than", "600") == ["c"]
    assert ids("--limit", "1") == ["a"]
    assert ready_count(amqp_url, "task_queue.dead") == 4  # listing removes nothing
    human = warren(amqp_url, "dead", "list").stdout
    assert "SMTPError: 550" in human and "resize" in human
    shown = warren(amqp_url, "dead", "show", "b")
    assert shown.returncode == 0
    for expected in ("reason:           failed 3 times: SMTPError: 550", "attempts:         3",
                     "first_failed_at:", "keep-me", '"to": "y"'):
        assert expected in shown.stdout, shown.stdout
    raw = json.loads(warren(amqp_url, "--json", "dead", "show", "d").stdout)
    assert raw["body"].startswith("base64:")
    missing = warren(amqp_url, "dead", "show", "nope")
    assert missing.returncode == 64 and "no parked task" in missing.stderr


def test_requeue_resets_attempts_and_the_workers_run_them(
        services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "records"
    park(amqp_url, [(f"r{i}", task("record", path=str(out)), failed("failed 3 times: x"))
                    for i in range(5)] + [("m", task("mail"), failed("failed 3 times: y"))])
    refused = warren(amqp_url, "dead", "requeue")
    assert refused.returncode == 64 and "--all" in refused.stderr
    moved = warren(amqp_url, "--json", "dead", "requeue", "--type", "record")
    assert json.loads(moved.stdout) == {"requeued": 5}
    requeued = drain(amqp_url, "task_queue")
    assert len(requeued) == 5
    for props, _ in requeued:
        headers = props.headers or {}
        assert not any(k.startswith("x-warren-") for k in headers), headers  # attempts reset
        assert "x-death" not in headers and headers["keep-me"] == "yes"
    assert ids_in(amqp_url, "task_queue.dead") == ["m"]  # the other type stayed parked
    park(amqp_url, [(f"r{i}", task("record", path=str(out)), failed("x")) for i in range(5)])
    services.start("worker", TASK_MODULES="testbed.record_tasks")
    assert warren(amqp_url, "dead", "requeue", "--all").returncode == 0
    wait_until(lambda: len(read_records(str(out))) == 5, 30, "the requeued tasks to run")


def test_purge_asks_first_unless_yes(amqp_url: str) -> None:
    park(amqp_url, [(f"p{i}", task("noop"), failed("x")) for i in range(3)])
    kept = warren(amqp_url, "dead", "purge", "--all", stdin="n\n")
    assert "delete 3 parked task(s)" in kept.stdout and ready_count(
        amqp_url, "task_queue.dead") == 3
    assert warren(amqp_url, "dead", "purge", "p1", stdin="y\n").returncode == 0
    assert sorted(ids_in(amqp_url, "task_queue.dead")) == ["p0", "p2"]
    park(amqp_url, [("p3", task("noop"), failed("x"))])
    assert warren(amqp_url, "dead", "purge", "--all", "--yes").stdout.startswith("purged 1")


def test_events_follow_what_the_workers_do(services: ServiceFactory, amqp_url: str) -> None:
    services.start("worker", WORKER_ID="w1", MAX_ATTEMPTS="1")
    follower = subprocess.Popen(
        [sys.executable, "-m", "warren.admin", "--json", "events", "--outcome", "parked",
         "--count", "1"], env={**os.environ, "AMQP_URL": amqp_url, "PYTHONPATH": str(REPO)},
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # bound before anything happens
    services.run("producer", "--count", "2", "--type", "noop", "--args", "{}")
    services.run("producer", "--count", "1", "--type", "fail", "--args", "{}")
    out, _ = follower.communicate(timeout=30)
    event = json.loads(out.strip())
    assert event["event"] == "parked" and event["type"] == "fail" and event["worker"] == "w1"


def test_clear_errors_and_no_password(node_and_url: tuple[LocalBroker, str]) -> None:
    node, url = node_and_url
    vhost = url.rsplit("/", 1)[1]
    secret = url.split(":")[2].split("@")[0]
    wrong = url.replace(secret, "not-the-password")
    results = {
        "wrong password": (warren(wrong, "status"), 69, "refused the login"),
        "nothing listens": (warren("amqp://u:hunter2@127.0.0.1:1/%2F", "status"), 69,
                            "cannot reach RabbitMQ at amqp://u:***@127.0.0.1:1/"),
        "events, nothing listens": (warren("amqp://u:hunter2@127.0.0.1:1/%2F", "events",
                                           timeout_s=20), 69, "cannot reach RabbitMQ"),
        "events, wrong password": (warren(wrong, "events", timeout_s=20), 69,
                                   "refused the login"),
        "bad url": (warren("http://u:hunter2@h/", "status"), 78, "AMQP_URL"),
        "no scheme": (warren("u:hunter2@h/", "status"), 78, "AMQP_URL"),
        "no dead queue": (warren(url, "dead", "list"), 78, "404"),
    }
    node.api("PUT", "/api/users/peeker", {"password": "peeker-pass", "tags": ""})
    node.api("PUT", f"/api/permissions/{vhost}/peeker",
             {"configure": "^$", "write": "^$", "read": "^$"})
    park(url, [("x", task("noop"), failed("x"))])
    peeker = f"amqp://peeker:peeker-pass@127.0.0.1:{node.amqp_port}/{vhost}"
    results["no read permission"] = (warren(peeker, "dead", "list"), 77, "403")
    for case, (result, code, text) in results.items():
        assert result.returncode == code, (case, result.stdout, result.stderr)
        assert text in result.stderr, (case, result.stderr)
        for password in (secret, "hunter2", "peeker-pass", "not-the-password"):
            assert password not in result.stdout + result.stderr, case


@pytest.fixture
def node_and_url(broker: BrokerUnderTest, amqp_url: str) -> tuple[LocalBroker, str]:
    return broker.private, amqp_url


def test_a_requeue_killed_mid_move_loses_and_doubles_nothing(amqp_url: str) -> None:
    count = 10_000
    park(amqp_url, [(f"k{i:05d}", task("noop"), failed("x")) for i in range(count)])
    mover = subprocess.Popen([sys.executable, "-m", "warren.admin", "dead", "requeue", "--all"],
                             env={**os.environ, "AMQP_URL": amqp_url, "PYTHONPATH": str(REPO)},
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: ready_count(amqp_url, "task_queue") >= count // 4, 60, "a quarter moved")
    mover.send_signal(signal.SIGKILL)
    mover.wait(timeout=10)
    moved, parked = ids_in(amqp_url, "task_queue"), ids_in(amqp_url, "task_queue.dead")
    assert 0 < len(moved) < count, len(moved)
    seen = Counter(moved + parked)
    assert len(seen) == count and set(seen.values()) == {1}  # each exactly once, in one queue


def test_a_requeue_into_workers_being_killed_loses_nothing(
        services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "records"
    count = 600
    park(amqp_url, [(f"q{i:04d}", task("record", path=str(out)), failed("x"))
                    for i in range(count)])
    env = {"TASK_MODULES": "testbed.record_tasks", "PREFETCH": "5"}
    workers = [services.start("worker", ready=False, **env) for _ in range(3)]
    mover = subprocess.Popen([sys.executable, "-m", "warren.admin", "dead", "requeue", "--all"],
                             env={**os.environ, "AMQP_URL": amqp_url, "PYTHONPATH": str(REPO)},
                             cwd=REPO)
    deadline = time.monotonic() + 90
    kills = 0
    while len({k for k, _ in read_records(str(out))}) < count and time.monotonic() < deadline:
        time.sleep(0.7)
        victim = workers[kills % len(workers)]
        if victim.process and victim.process.poll() is None and kills < 6:
            victim.signal(signal.SIGKILL)
            kills += 1
            workers[workers.index(victim)] = services.start("worker", ready=False, **env)
    assert mover.wait(timeout=30) == 0
    done = {k for k, _ in read_records(str(out))}
    assert len(done) == count, f"{count - len(done)} lost after {kills} kills"
    assert ready_count(amqp_url, "task_queue.dead") == 0


def _read_and_return(url: str, queue: str, times: int) -> None:
    """What `warren dead list` does to each message: take it unacked, close the channel."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for _ in range(times):
            channel = conn.channel()
            method, _props, _body = channel.basic_get(queue)
            assert method is not None, "the parked task is gone"
            channel.close()
    finally:
        conn.close()


def test_reading_a_quorum_parked_queue_warns_and_the_documented_policy_keeps_it(
        node_and_url: tuple[LocalBroker, str]) -> None:
    """A quorum queue counts each read as a delivery; RabbitMQ 4.x drops a message past
    its delivery limit (20 by default). warren warns, and the README's policy lifts it."""
    node, url = node_and_url
    vhost = url.rsplit("/", 1)[1]
    env = {"TASK_QUEUE": "tq", "QUEUE_TYPE": "quorum"}
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.queue_declare("tq.dead", durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()
        channel.basic_publish("", "tq.dead", task("resize", url="x"), pika.BasicProperties(
            message_id="p", delivery_mode=2, headers={"x-warren-reason": "failed 3 times"}))
    finally:
        conn.close()
    _read_and_return(url, "tq.dead", 11)
    listed = warren(url, "dead", "list", **env)
    assert listed.returncode == 0 and "warning: a parked task in 'tq.dead'" in listed.stderr
    if node.runtime.major >= 4:  # 3.x has no default limit, and refuses -1
        node.ctl("set_policy", "-p", vhost, "warren-dead", r"\.dead$",
                 '{"delivery-limit": -1}', "--apply-to", "quorum_queues")
    _read_and_return(url, "tq.dead", 25)  # past 4.x's default limit of 20
    assert [p["message_id"] for p in json.loads(warren(url, "--json", "dead", "list",
                                                       **env).stdout)] == ["p"]
