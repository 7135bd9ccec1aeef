"""Bad RPC requests beyond tests/integration/test_rpc.py's ten, and the decoder's property:
any bytes under any content type give a Request or a BadRequest, nothing else."""

from __future__ import annotations

import json
import time
from typing import Any

import pika
from hypothesis import given, settings
from hypothesis import strategies as st

from rpc_server.client import RpcClient
from rpc_server.protocol import MAX_DIGITS, BadRequest, Request, encode_request, parse_request
from testbed.processes import ServiceFactory
from tests.support.amqp import connect, ready_count
from tests.support.faults import event_names, metric
from warren.settings import Settings

JSON = "application/json"
CONTENT_TYPES = [None, JSON, "text/plain", "application/json; charset=utf-8", "",
                 "application/octet-stream"]

# (case, body, content type, reply_to, correlation id, what the reply must be or say)
REQUESTS: list[tuple[str, bytes, str | None, str, str | None, bytes | None]] = [
    ("deeply nested JSON", b"[" * 100_000, JSON, "mine", "deep", b'{"error": '),
    ("two megabytes of padding", b'{"a": 1, "b": 2, "pad": "' + b" " * 2_000_000 + b'"}',
     JSON, "mine", "padded", b'{"result": 3}'),
    ("text body sent as JSON", b"1.2", JSON, "mine", "text-as-json",
     b"request must be a JSON object"),
    ("infinity", b'{"a": Infinity, "b": 1}', JSON, "mine", "inf",
     b"'a' must be an integer, got float"),
    ("no correlation id", b"20.22", None, "mine", None, b"42"),
    # Replies nobody can receive: the server must ack the request and go on.
    ("reply_to a queue that does not exist", b"1.2", None, "no-such-queue", "lost-1", None),
    ("reply_to a direct reply-to address of no channel", b"1.2", None,
     "amq.rabbitmq.reply-to.garbage", "lost-2", None),
]


def test_odd_requests_get_answers_or_are_dropped_and_the_server_stays_up(
        services: ServiceFactory, amqp_url: str) -> None:
    server = services.start("rpc_server")
    conn = connect(amqp_url)
    replies: dict[str | None, bytes] = {}
    try:
        channel = conn.channel()
        mine = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_consume(mine, auto_ack=True, on_message_callback=lambda _c, _m, p, b:
                              replies.update({p.correlation_id: b}))
        for _, body, ctype, reply_to, correlation_id, _ in REQUESTS:
            channel.basic_publish("", "rpc_queue", body, pika.BasicProperties(
                content_type=ctype, correlation_id=correlation_id,
                reply_to=mine if reply_to == "mine" else reply_to))
        expected = sum(1 for *_, says in REQUESTS if says is not None)
        deadline = time.monotonic() + 20
        while len(replies) < expected and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        conn.process_data_events(time_limit=0.5)  # and nothing more arrives
    finally:
        conn.close()
    assert len(replies) == expected, replies.keys()
    for case, _, _, _, correlation_id, says in REQUESTS:
        if says is not None:
            assert says in replies[correlation_id], (case, replies[correlation_id][:200])
    assert ready_count(amqp_url, "rpc_queue") == 0  # everything acked, nothing looping
    ok = metric(server, 'warren_rpc_requests_total{outcome="ok"}')
    errors = metric(server, 'warren_rpc_requests_total{outcome="error"}')
    assert ok + errors == len(REQUESTS)
    assert server.probe("/readyz") == 200
    with RpcClient(Settings.from_env({"AMQP_URL": amqp_url})) as client:
        assert client.call(40, 2) == 42


FORGED_REPLY_TO = "amq.rabbitmq.reply-to.g1h2ZAAAAAAAAA==.bogus"


def test_a_forged_direct_reply_to_address_costs_one_reply_not_a_loop(
        services: ServiceFactory, amqp_url: str) -> None:
    """A reply_to that looks like a direct reply-to address but does not decode makes
    RabbitMQ 3.10 crash the connection that publishes to it (541 INTERNAL_ERROR,
    pid_recomposition case_clause). The server acks a request only after publishing
    its reply, so the request goes back to the queue and kills the next connection
    too: one message takes the RPC service down, in a loop, with every request in
    flight on that connection requeued each time."""
    server = services.start("rpc_server")
    conn = connect(amqp_url)
    answers: list[bytes] = []
    try:
        channel = conn.channel()
        mine = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_consume(mine, auto_ack=True,
                              on_message_callback=lambda _c, _m, _p, b: answers.append(b))
        channel.basic_publish("", "rpc_queue", b"1.2", pika.BasicProperties(
            reply_to=FORGED_REPLY_TO, correlation_id="forged"))
        time.sleep(4)  # long enough for several redeliveries
        channel.basic_publish("", "rpc_queue", b"2.3", pika.BasicProperties(
            reply_to=mine, correlation_id="good"))
        deadline = time.monotonic() + 5
        while not answers and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
    finally:
        conn.close()
    assert answers == [b"5"]
    assert ready_count(amqp_url, "rpc_queue") == 0
    assert event_names(server).count("broker_connection_lost") <= 1


def _check(body: bytes, ctype: str | None) -> Request | None:
    try:
        request = parse_request(body, ctype)
    except BadRequest as exc:
        assert str(exc) and exc.form in ("json", "text")
        return None
    assert isinstance(request.a, int) and not isinstance(request.a, bool)
    assert isinstance(request.b, int) and not isinstance(request.b, bool)
    assert max(abs(request.a), abs(request.b)) < 10**MAX_DIGITS
    return request


@settings(max_examples=400)
@given(st.binary(max_size=400), st.sampled_from(CONTENT_TYPES))
def test_any_bytes_give_a_request_or_a_bad_request(body: bytes, ctype: str | None) -> None:
    _check(body, ctype)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), _JSON_VALUES, max_size=3)
       | _JSON_VALUES, st.sampled_from(CONTENT_TYPES))
def test_json_documents_are_requests_exactly_when_a_and_b_are_integers(
        doc: Any, ctype: str | None) -> None:
    body = json.dumps(doc).encode()
    request = _check(body, ctype)
    if not body.lstrip().startswith(b"{"):
        return  # non-object JSON may read as the text form (e.g. '1.2' is a float)
    fits = (isinstance(doc, dict) and all(
        isinstance(doc.get(k), int) and not isinstance(doc.get(k), bool)
        and abs(doc[k]) < 10**MAX_DIGITS for k in ("a", "b")))
    assert (request is not None) == fits, (doc, request)
    if request is not None:
        assert (request.a, request.b, request.form) == (doc["a"], doc["b"], "json")


@given(st.integers(min_value=-(10**MAX_DIGITS) + 1, max_value=10**MAX_DIGITS - 1),
       st.integers(min_value=-(10**MAX_DIGITS) + 1, max_value=10**MAX_DIGITS - 1),
       st.sampled_from(["json", "text"]))
def test_every_encoded_request_parses_back(a: int, b: int, form: str) -> None:
    body, ctype = encode_request(a, b, form)  # type: ignore[arg-type]
    assert parse_request(body, ctype) == Request(a, b, form)  # type: ignore[arg-type]


@given(st.integers(min_value=2_000, max_value=200_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_a_bad_request(depth: int, opener: str) -> None:
    """json.loads raises RecursionError past ~1,000 levels; parse_request lets it out.
    The server still answers (its catch-all replies 'internal error: RecursionError'
    and logs a traceback), but the decoder's contract is BadRequest."""
    body = (opener * depth).encode()
    try:
        parse_request(body, JSON)
    except BadRequest:
        return
    except RecursionError:
        raise AssertionError("RecursionError escaped parse_request") from None
