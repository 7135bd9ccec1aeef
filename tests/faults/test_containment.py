"""Failure containment (issue 13): no single message, task or broker refusal can kill,
stall or loop the fleet. Each case is a kind of fault, replayed on a real broker with its
smallest input and its relatives.

Node-wide settings (consumer_timeout, max_message_size, the memory watermark) are set on
the session's private node for one test and restored whatever happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from testbed.broker import LocalBroker
from testbed.processes import Service, ServiceFactory
from testbed.record_tasks import read_records
from tests.support.amqp import connect, drain, publish_raw, publish_tasks, ready_count
from tests.support.broker import BrokerUnderTest
from tests.support.faults import event_names, log_events, metric, settled, wait_until

TASKS = "testbed.record_tasks,tests.support.hostile_tasks"
JSON = "application/json"
DONE = 'warren_worker_tasks_total{outcome="done"}'


def task(task_type: str, **args: object) -> bytes:
    return json.dumps({"type": task_type, "args": args}).encode()


def record(out: Path, key: str) -> bytes:
    return task("record", path=str(out), key=key)


def alive(service: Service) -> bool:
    return service.process is not None and service.process.poll() is None


def consumers(url: str, queue: str = "task_queue") -> int:
    conn = connect(url)
    try:
        return conn.channel().queue_declare(queue, passive=True).method.consumer_count
    finally:
        conn.close()


def parked(url: str) -> list[tuple[pika.BasicProperties, bytes]]:
    return drain(url, "task_queue.dead")


@pytest.fixture
def node(broker: BrokerUnderTest) -> Iterator[LocalBroker]:
    node = broker.private
    config = node.extra_config
    yield node
    node.ctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000).")
    node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 60000).")
    node.ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).")
    node.ctl("set_vm_memory_high_watermark", "0.4")
    if node.extra_config != config:
        node.extra_config = config
        node.restart()


def set_max_message_size(node: LocalBroker, size: int) -> None:
    """RabbitMQ 3.10 takes a new limit at run time; 4.x only from its config, at a start."""
    if node.runtime.major >= 4:
        node.extra_config += f"max_message_size = {size}\n"
        node.restart()
    else:
        node.ctl("eval", f"application:set_env(rabbit, max_message_size, {size}).")


def declare_quorum(url: str) -> None:
    conn = connect(url)
    try:
        ch = conn.channel()
        ch.queue_declare("task_queue.dead", durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_declare("task_queue", durable=True, arguments={
            "x-queue-type": "quorum", "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "task_queue.dead"})
    finally:
        conn.close()


# -- 1. a delivery that outlives consumer_timeout -----------------------------------------

@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_delivery_past_consumer_timeout_is_noticed_counted_and_parked(
        node: LocalBroker, services: ServiceFactory, amqp_url: str, tmp_path: Path,
        queue_type: str) -> None:
    node.ctl("eval", "application:set_env(rabbit, consumer_timeout, 3000).")
    # Channels check the timeout on their tick (60 s by default): tick faster, for a short test.
    node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 500).")
    worker = services.start("worker", MAX_ATTEMPTS="2", QUEUE_TYPE=queue_type,
                            TASK_MODULES=TASKS)
    no_timeout = node.runtime.major >= 4 and queue_type == "classic"
    # 30 s: longer than the rest of the test, so that a task queued behind the orphaned
    # run (its delivery gone with the channel) would time out in turn.
    publish_tasks(amqp_url, [("sleep", {"seconds": 7 if no_timeout else 30})], declare=False)
    if no_timeout:
        # RabbitMQ 4.3: classic queues have no consumer timeout; nothing cuts the task short.
        wait_until(lambda: metric(worker, DONE) == 1, 20, "the long task to be done")
        assert "broker_connection_lost" not in event_names(worker)
        return
    # 3.10 closes the channel ~3 s in (406); 4.3 cancels a quorum consumer (basic.cancel).
    # Either way the worker notices at once and consumes again.
    wait_until(lambda: "broker_connection_lost" in event_names(worker), 15,
               "the worker to notice its channel was closed")
    lost = str(next(e for e in log_events(worker)
                    if e["event"] == "broker_connection_lost")["error"])
    assert "timed out" in lost or "PRECONDITION_FAILED" in lost or "cancelled" in lost, lost
    wait_until(lambda: consumers(amqp_url) == 1, 10, "the worker to consume again")
    # Each delivery that timed out counted: parked after MAX_ATTEMPTS=2 of them.
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 30, "the parked task")
    [(props, _)] = parked(amqp_url)
    assert props.headers["x-warren-reason"].startswith("failed 2 times: interrupted")
    # The worker carries on with the next task, ready and consuming.
    out = tmp_path / "after"
    publish_raw(amqp_url, record(out, "next"), declare=False, content_type=JSON)
    # Not behind the orphaned 30 s run: its lane was released with the old channel.
    wait_until(lambda: read_records(str(out)), 15, "the next task to run")
    assert "task_released" in event_names(worker)
    # Ready again once it consumes (a re-open may be under way on a loaded machine).
    wait_until(lambda: alive(worker) and worker.probe("/readyz") == 200, 15, "ready again")
    wait_until(lambda: consumers(amqp_url) == 1, 10, "consuming")


# -- 2. string properties and headers that are not UTF-8 ----------------------------------

ODD_PROPERTIES = {
    "message_id": b"\xff\xfe-7",
    "correlation_id": b"\xc3\x28",
    "type": b"\x80abc",
    "app_id": b"\xed\xa0\x80",
    "reply_to": b"\xfe",
    "cluster_id": b"\xff",
    "content_encoding": b"\xff\xff",
}


@pytest.mark.parametrize("prop", sorted(ODD_PROPERTIES))
def test_a_short_string_that_is_not_utf8_never_takes_a_worker_down(
        services: ServiceFactory, amqp_url: str, tmp_path: Path, prop: str) -> None:
    workers = [services.start("worker", TASK_MODULES=TASKS, WORKER_ID=f"w{i}")
               for i in range(2)]
    out = tmp_path / "records"
    publish_raw(amqp_url, record(out, "odd"), content_type=JSON,
                **{prop: ODD_PROPERTIES[prop]})
    publish_raw(amqp_url, record(out, "plain"), content_type=JSON, message_id="plain")
    wait_until(lambda: {k for k, _ in read_records(str(out))} == {"odd", "plain"}, 30,
               "both tasks to be done")
    assert all(alive(w) for w in workers)
    assert settled(lambda: sum(metric(w, DONE) for w in workers), 2) == 2


def test_odd_content_type_and_header_bytes_are_parked_or_done_and_kept(
        services: ServiceFactory, amqp_url: str) -> None:
    worker = services.start("worker", TASK_MODULES=TASKS, MAX_ATTEMPTS="1")
    # Not a media type warren knows: the tutorial's text form, one unit of work per dot.
    publish_raw(amqp_url, b"odd.", content_type=b"\xff/\xfe", message_id=b"\xfe")
    wait_until(lambda: metric(worker, DONE) == 1, 30, "the text task")
    headers = {"raw": b"\xff\x00", "text": "z\u00fcrich"}
    publish_raw(amqp_url, task("fail"), content_type=JSON, message_id=b"\xff",
                headers=headers, app_id=b"\x80")
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 30, "the parked task")
    [(props, body)] = parked(amqp_url)
    assert body == task("fail") and props.message_id == b"\xff" and props.app_id == b"\x80"
    assert props.headers["raw"] == b"\xff\x00" and props.headers["text"] == "z\u00fcrich"
    assert alive(worker)


@pytest.mark.parametrize("kind", ["surrogate", "huge", "unprintable", "bytes", "exit",
                                  "interrupt"])
def test_any_exception_text_is_retried_and_parked_without_harm(
        services: ServiceFactory, amqp_url: str, tmp_path: Path, kind: str) -> None:
    worker = services.start("worker", TASK_MODULES=TASKS, MAX_ATTEMPTS="2",
                            RETRY_DELAY_MS="50")
    publish_raw(amqp_url, task("raise_odd", kind=kind), content_type=JSON, message_id=kind)
    out = tmp_path / "records"
    publish_raw(amqp_url, record(out, "after"), content_type=JSON)
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 30, "the parked task")
    [(props, _)] = parked(amqp_url)
    reason = props.headers["x-warren-reason"]
    assert reason.startswith("failed 2 times: ") and len(reason) < 1200
    wait_until(lambda: read_records(str(out)), 30, "the next task")
    assert alive(worker) and event_names(worker).count("consuming") == 1


# -- 3. a memory alarm: consuming and acking never wait on it -------------------------------

def test_a_memory_alarm_pauses_publishing_only(node: LocalBroker, services: ServiceFactory,
                                               amqp_url: str) -> None:
    publish_tasks(amqp_url, [("sleep", {"seconds": 0.01})] * 200)
    node.ctl("set_vm_memory_high_watermark", "0.0000001")
    started = time.monotonic()
    workers = [services.start("worker", WORKER_ID=f"w{i}", ready=False) for i in range(2)]
    wait_until(lambda: sum(metric(w, DONE) for w in workers) == 200, 20,
               "200 tasks done under the alarm")
    drained_s = time.monotonic() - started
    assert ready_count(amqp_url, "task_queue") == 0
    assert all(alive(w) for w in workers)
    print(f"\nRELIABILITY alarm: 200 tasks drained by 2 workers in {drained_s:.1f}s "
          "with publishing blocked")


def test_an_empty_events_exchange_turns_events_off(services: ServiceFactory,
                                                   amqp_url: str) -> None:
    worker = services.start("worker", EVENTS_EXCHANGE="")
    publish_tasks(amqp_url, [("noop", {})])
    wait_until(lambda: metric(worker, DONE) == 1, 20, "the task")
    conn = connect(amqp_url)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="404"):
            conn.channel().exchange_declare("warren.events", passive=True)
    finally:
        conn.close()


# -- 4 and 5. refusals the producer and the worker cannot get past ---------------------------

def test_a_message_over_max_message_size_ends_the_producer(
        node: LocalBroker, services: ServiceFactory) -> None:
    set_max_message_size(node, 1048576)
    started = time.monotonic()
    result = services.run("producer", "--count", "1", "--size", "1200000", timeout_s=60)
    assert time.monotonic() - started < 20
    assert result.returncode == 65, result.stdout + result.stderr  # EX_DATAERR
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "max size" in lines[0] and "406" in lines[0], result.stderr
    assert "Sent" not in result.stdout
    assert result.stderr.count("reconnect_scheduled") == 0


def test_a_task_queue_with_other_arguments_is_a_clear_configuration_error(
        services: ServiceFactory, amqp_url: str) -> None:
    conn = connect(amqp_url)
    conn.channel().queue_declare("task_queue", durable=True, arguments={"x-max-priority": 10})
    conn.close()
    result = services.run("producer", "hello.", timeout_s=60)
    assert result.returncode == 78, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("configuration")]
    assert "task_queue" in line and "x-max-priority" in line and "406" in line
    assert "Sent" not in result.stdout
    worker = services.run("worker", timeout_s=60)
    assert worker.returncode == 78
    assert "x-max-priority" in worker.stderr


def test_publishing_to_a_missing_exchange_is_a_configuration_error(
        services: ServiceFactory) -> None:
    result = services.run("producer", "--exchange", "nope", "hi", timeout_s=60)
    assert result.returncode == 78, result.stdout + result.stderr
    assert "nope" in result.stderr and "404" in result.stderr
    assert "Sent" not in result.stdout


def test_a_user_without_write_permission_is_refused_once(
        node: LocalBroker, services: ServiceFactory, amqp_url: str) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    node.api("PUT", "/api/users/reader", {"password": "reader-pass", "tags": ""})
    node.api("PUT", f"/api/permissions/{vhost}/reader",
             {"configure": ".*", "write": "^$", "read": ".*"})
    url = f"amqp://reader:reader-pass@127.0.0.1:{node.amqp_port}/{vhost}"
    result = services.run("producer", "hello.", timeout_s=60, AMQP_URL=url)
    assert result.returncode == 77, result.stdout + result.stderr  # EX_NOPERM
    assert "403" in result.stderr and "reader-pass" not in result.stderr + result.stdout
    assert "Sent" not in result.stdout


def test_a_stopped_producer_never_claims_a_message_was_sent(
        services: ServiceFactory) -> None:
    producer = services.start("producer", "hello.", ready=False,
                              AMQP_URL="amqp://u:p@127.0.0.1:1/%2F")
    wait_until(lambda: "reconnect_scheduled" in producer.log(), 20, "a failed connect")
    producer.signal(15)
    code = producer.wait(timeout_s=30)
    assert code != 0 and "Sent" not in producer.log()


# -- 6. a task that kills its own process ------------------------------------------------

@pytest.mark.parametrize(("queue_type", "headers"), [
    ("classic", None), ("quorum", None),
    # any client may set x-delivery-count: on a classic queue it must not stop the count
    ("classic", {"x-delivery-count": 0})], ids=["classic", "quorum", "classic-forged-count"])
def test_a_task_that_kills_its_worker_is_parked_after_max_attempts(
        services: ServiceFactory, amqp_url: str, tmp_path: Path, queue_type: str,
        headers: dict | None) -> None:
    if queue_type == "quorum":
        declare_quorum(amqp_url)
    out = tmp_path / "records"
    publish_raw(amqp_url, task("suicide"), declare=queue_type == "classic", content_type=JSON,
                message_id="killer", headers=headers)
    publish_raw(amqp_url, record(out, "after"), declare=queue_type == "classic",
                content_type=JSON)
    env = {"MAX_ATTEMPTS": "3", "QUEUE_TYPE": queue_type, "TASK_MODULES": TASKS}
    deaths = 0
    worker = services.start("worker", ready=False, **env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (
            read_records(str(out)) and ready_count(amqp_url, "task_queue.dead") == 1):
        if not alive(worker):  # restarted on death, as compose or Kubernetes would
            deaths += 1
            worker = services.start("worker", ready=False, **env)
        time.sleep(0.1)
    assert read_records(str(out)), "the task behind the killer never ran"
    assert deaths == 3
    [(props, body)] = parked(amqp_url)
    assert body == task("suicide") and props.message_id == "killer"
    assert props.headers["x-warren-reason"].startswith("failed 3 times: interrupted")
    assert alive(worker)


# -- found by trying to break it ------------------------------------------------------------

def test_a_user_id_of_another_user_is_carried_as_a_header(
        node: LocalBroker, services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    node.api("PUT", "/api/users/alice", {"password": "alice-pass", "tags": ""})
    node.api("PUT", f"/api/permissions/{vhost}/alice",
             {"configure": ".*", "write": ".*", "read": ".*"})
    alice = f"amqp://alice:alice-pass@127.0.0.1:{node.amqp_port}/{vhost}"
    worker = services.start("worker", TASK_MODULES=TASKS, MAX_ATTEMPTS="1")
    publish_raw(alice, task("fail"), content_type=JSON, message_id="from-alice",
                user_id="alice")
    out = tmp_path / "records"
    publish_raw(alice, record(out, "next"), content_type=JSON, user_id="alice")
    wait_until(lambda: read_records(str(out)), 30, "the next task")
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 30, "the parked task")
    [(props, _)] = parked(amqp_url)
    assert props.user_id is None and props.headers["x-warren-user-id"] == "alice"
    assert alive(worker)


def test_a_body_the_broker_no_longer_takes_is_parked_as_a_stub(
        node: LocalBroker, services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    big = b'{"type": "fail", "pad": "' + b"x" * 1_100_000 + b'"}'
    publish_raw(amqp_url, big, content_type=JSON, message_id="big-fail", headers={"k": "v"})
    set_max_message_size(node, 1048576)  # lowered with the message already queued
    worker = services.start("worker", TASK_MODULES=TASKS, MAX_BODY_BYTES="2000000",
                            MAX_ATTEMPTS="1")
    out = tmp_path / "records"
    publish_raw(amqp_url, record(out, "next"), content_type=JSON)
    wait_until(lambda: read_records(str(out)), 30, "the next task")
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 60, "the stub parked")
    [(props, body)] = parked(amqp_url)
    assert props.message_id == "big-fail" and body == b""
    assert props.headers["x-warren-body-dropped"] == len(big)
    assert props.headers["k"] == "v" and "refused" in props.headers["x-warren-reason"]
    assert "copy_refused" in event_names(worker) and alive(worker)


def test_headers_near_the_frame_limit_still_park(services: ServiceFactory, amqp_url: str,
                                                 tmp_path: Path) -> None:
    worker = services.start("worker", TASK_MODULES=TASKS, MAX_ATTEMPTS="1")
    publish_raw(amqp_url, task("fail", message="x" * 500), content_type=JSON,
                message_id="fat", headers={"blob": "z" * 130_000})
    out = tmp_path / "records"
    publish_raw(amqp_url, record(out, "next"), content_type=JSON)
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 30, "the parked task")
    wait_until(lambda: read_records(str(out)), 30, "the next task")
    [(props, _)] = parked(amqp_url)
    assert props.headers["x-warren-attempts"] == 1
    assert alive(worker) and "broker_connection_lost" not in event_names(worker)


def test_events_refused_leave_tasks_and_copies_alone(
        node: LocalBroker, services: ServiceFactory, amqp_url: str, tmp_path: Path) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    node.api("PUT", "/api/users/bob", {"password": "bob-pass", "tags": ""})
    node.api("PUT", f"/api/permissions/{vhost}/bob",
             {"configure": ".*", "write": "^(amq\\.default|task_queue.*)$", "read": ".*"})
    bob = f"amqp://bob:bob-pass@127.0.0.1:{node.amqp_port}/{vhost}"
    worker = services.start("worker", AMQP_URL=bob, TASK_MODULES=TASKS, MAX_ATTEMPTS="2",
                            RETRY_DELAY_MS="50")
    out = tmp_path / "records"
    publish_raw(amqp_url, task("fail"), content_type=JSON, message_id="failing")
    for i in range(3):
        publish_raw(amqp_url, record(out, f"r{i}"), content_type=JSON)
    wait_until(lambda: len(read_records(str(out))) == 3, 30, "the good tasks")
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 30, "the parked task")
    time.sleep(1)
    assert [p.message_id for p, _ in parked(amqp_url)] == ["failing"]  # once, not again
    assert "events_refused" in event_names(worker) and alive(worker)


def test_a_producer_stopped_under_an_alarm_ends_within_its_grace_period(
        node: LocalBroker, services: ServiceFactory) -> None:
    """Its message went out on a blocked connection, so the broker reads nothing more from
    it: the close handshake waited for the alarm to clear (it never exited)."""
    node.ctl("set_vm_memory_high_watermark", "0.0000001")
    producer = services.start("producer", "--count", "1", "during alarm.", ready=False,
                              SHUTDOWN_GRACE_S="3")
    time.sleep(3)  # connected, published, blocked
    started = time.monotonic()
    producer.signal(15)
    code = producer.wait(timeout_s=30)
    assert time.monotonic() - started < 3 + 3, "one grace period, and a little to exit"
    assert code == 1, producer.log()  # a message the broker never confirmed
    assert "unconfirmed 1" in producer.log()


def test_sigterm_under_an_alarm_ends_within_one_grace_period(
        node: LocalBroker, services: ServiceFactory, amqp_url: str) -> None:
    worker = services.start("worker", TASK_MODULES=TASKS, SHUTDOWN_GRACE_S="4",
                            RETRY_DELAY_MS="3000")
    publish_raw(amqp_url, task("fail"), content_type=JSON, message_id="f")
    wait_until(lambda: ready_count(amqp_url, "task_queue.retry") == 1, 20, "the retry copy")
    node.ctl("set_vm_memory_high_watermark", "0.0000001")
    time.sleep(4)  # the copy comes back; its next copy cannot be published
    started = time.monotonic()
    worker.signal(15)
    assert worker.wait(timeout_s=30) == 0
    # One grace period, and a little to exit (7.1 s seen with a load average of 30).
    assert time.monotonic() - started < 4 + 5


def test_a_type_that_ran_fast_many_times_still_meets_its_time_limit(
        services: ServiceFactory, amqp_url: str) -> None:
    """`sleep` ran in 0 s forty times, then a long one: it runs in a lane under its time
    limit, not on the I/O thread where nothing could stop it (only `inline=True` types
    may run there)."""
    worker = services.start("worker", TASK_TIME_LIMIT_S="1", MAX_ATTEMPTS="1")
    publish_tasks(amqp_url, [("sleep", {"seconds": 0})] * 40 + [("sleep", {"seconds": 8})],
                  declare=False)
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 1, 20, "the long run parked")
    [(props, _)] = parked(amqp_url)
    assert "time limit" in props.headers["x-warren-reason"], props.headers
    assert settled(lambda: metric(worker, DONE), 40) == 40
    assert "broker_connection_lost" not in event_names(worker)


def test_unknown_task_types_leave_no_trace_in_the_worker(services: ServiceFactory,
                                                         amqp_url: str) -> None:
    """Each distinct type once kept its own record of durations: 5,000 unknown types
    with long names must cost the worker no memory that stays."""
    worker = services.start("worker", MAX_ATTEMPTS="1")
    publish_tasks(amqp_url, [("noop", {})] * 50)
    wait_until(lambda: metric(worker, DONE) == 50, 20, "the warm-up")
    before = metric(worker, "process_resident_memory_bytes")
    unknown = [(f"unknown-{n}-" + "x" * 4000, {}) for n in range(5000)]
    publish_tasks(amqp_url, unknown, declare=False)
    wait_until(lambda: ready_count(amqp_url, "task_queue.dead") == 5000, 90, "all parked")
    grown_mb = (metric(worker, "process_resident_memory_bytes") - before) / 2**20
    assert grown_mb < 5, f"RSS grew {grown_mb:.1f} MB"
