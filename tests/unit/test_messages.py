from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warren.amqp import BasicProperties, Message
from warren.errors import MalformedMessage
from warren.messages import Task, decode_message, decode_task, encode_task, task_properties


def test_json_task_round_trips() -> None:
    body = encode_task("sleep", {"seconds": 0.5})
    assert decode_task(body, "application/json", max_bytes=1000) == Task("sleep", {"seconds": 0.5})


def test_tutorial_text_is_one_unit_of_work_per_dot() -> None:
    assert decode_task(b"Hello World...", None, max_bytes=1000) == Task("dots", {"count": 3})
    assert decode_task(b"Hello World!", "text/plain", max_bytes=1000) == Task("dots", {"count": 0})


def test_json_is_utf8_only_and_a_bom_is_no_json() -> None:
    """RFC 8259, 8.1: JSON between systems is UTF-8. json.loads would guess UTF-16 from
    the bytes; warren decodes UTF-8 and says so when the body is not."""
    body = json.dumps({"type": "noop", "args": {}})
    cases = ((body.encode("utf-16"), "looks like UTF-16"),
             (body.encode("utf-16-le"), "looks like UTF-16"),
             (body.encode("utf-16-be"), "looks like UTF-16"),
             (body.encode("utf-8-sig"), "byte order mark"),
             (b'{"type": "\xff"}', "not valid UTF-8"))
    for content_type in ("application/json", None):  # no type: still JSON, still refused
        for encoded, reason in cases:
            with pytest.raises(MalformedMessage, match=reason):
                decode_task(encoded, content_type, max_bytes=1000)


def test_tutorial_text_with_a_bom_or_odd_bytes_is_still_text() -> None:
    for body in ("\ufeffHello...".encode("utf-8"), b"\x00...", b"..{"):
        assert decode_task(body, None, max_bytes=100).type == "dots"


def test_json_without_content_type_is_recognised() -> None:
    assert decode_task(b' {"type": "noop"}', None, max_bytes=100) == Task("noop", {})


def test_a_json_suffix_is_json_whatever_the_vocabulary() -> None:
    """A JSON task sent as application/vnd.api+json ran as the tutorial's dotted text and
    counted done; a +json type is JSON (RFC 6839), held to the same contract."""
    body = encode_task("fail", {"message": "a.b."})
    for ctype in ("application/vnd.api+json", "Application/Problem+JSON; charset=utf-8"):
        assert decode_task(body, ctype, max_bytes=1000) == Task("fail", {"message": "a.b."})
    try:
        decode_task(b'["not", "an", "object."]', "application/vnd.api+json", max_bytes=1000)
    except MalformedMessage as exc:
        assert "must be an object" in str(exc)
    else:
        raise AssertionError("a +json list was taken for a task")
    assert decode_task(b"{...}", "text/plain", max_bytes=100) == Task("dots", {"count": 3})


def test_properties_are_persistent_with_id_and_timestamp() -> None:
    props = task_properties()
    assert props.delivery_mode == 2
    assert props.message_id and props.timestamp
    assert props.content_type == "application/json"


@given(st.binary(max_size=300), st.sampled_from([None, "application/json", "text/plain"]))
def test_decoder_never_fails_with_anything_but_malformed(body: bytes, ctype: str | None) -> None:
    try:
        task = decode_task(body, ctype, max_bytes=200)
    except MalformedMessage as exc:
        assert str(exc)
    else:
        assert isinstance(task.type, str) and task.type
        assert isinstance(task.args, dict)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                    max_leaves=10))
def test_a_json_document_is_a_task_exactly_when_it_fits_the_contract(doc: object) -> None:
    fits = (isinstance(doc, dict) and isinstance(doc.get("type"), str) and bool(doc["type"])
            and isinstance(doc.get("args", {}), dict))
    try:
        task = decode_task(json.dumps(doc).encode(), "application/json", max_bytes=10_000)
    except MalformedMessage:
        assert not fits
    else:
        assert fits and isinstance(doc, dict)
        assert task == Task(doc["type"], doc.get("args", {}))


def test_a_content_type_that_is_not_utf8_is_no_type() -> None:
    """pika hands such a property over as bytes: the body alone then says what it is."""
    body = encode_task("noop", {})
    for content_type in (b"application/json\xff", None, ""):
        message = Message(1, False, "", "task_queue",
                          BasicProperties(content_type=content_type), body)
        assert decode_message(message, max_bytes=1000) == Task("noop", {})
