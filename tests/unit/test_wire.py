"""warren.amqp.wire on encoded properties, as pika puts them on and takes them off the wire."""

from __future__ import annotations

import struct

import pika
from hypothesis import given
from hypothesis import strategies as st

from tests.support.rawheaders import Raw, RawProperties, double, single, timestamp
from warren.amqp.wire import Properties, _entries, printable, republished, text


def wire(props: pika.BasicProperties) -> bytes:
    return b"".join(props.encode())


def received(props: pika.BasicProperties) -> Properties:
    out = Properties()
    out.decode(wire(props))
    return out


def nested(depth: int) -> Raw:
    """A table nested `depth` deep: past Python's recursion limit, pika's decoder raises."""
    payload = b""
    for _ in range(depth):
        inner = b"\x01kF" + struct.pack(">I", len(payload)) + payload
        payload = inner
    return Raw(b"F", struct.pack(">I", len(payload)) + payload)


def test_undecodable_headers_are_flagged_and_the_rest_decodes() -> None:
    for bad in (nested(5000), timestamp(2**63)):
        props = received(RawProperties(content_type="application/json", message_id="m-1",
                                       headers={"bad": bad, "ok": 1}, delivery_mode=2))
        assert props.headers_undecodable and props.headers is None
        assert (props.content_type, props.message_id, props.delivery_mode) == (
            "application/json", "m-1", 2)


def test_a_copy_carries_the_original_headers_byte_for_byte() -> None:
    original = RawProperties(headers={"d": double(1.5), "f": single(2.25), "s": "x",
                                      "x-death": [{"count": 1}], "x-warren-attempts": 1},
                             message_id=b"\xff\xfe-7", correlation_id="c")
    props = received(original)
    assert props.headers is not None and props.headers["d"] == 1  # what pika makes of 1.5
    copy = republished(props, set_headers={"x-warren-attempts": 2, "x-warren-reason": "r"},
                       drop={"x-death"}, expiration="100")
    again = Properties().decode(wire(copy))
    entries = dict(_entries(again.raw_headers() or b""))
    assert entries[b"d"] == b"\x01dd" + struct.pack(">d", 1.5)
    assert entries[b"f"] == b"\x01ff" + struct.pack(">f", 2.25)
    assert b"x-death" not in entries
    assert again.headers is not None
    assert again.headers["x-warren-attempts"] == 2 and again.headers["x-warren-reason"] == "r"
    assert again.headers["s"] == "x"
    assert (again.message_id, again.correlation_id, again.expiration) == (
        b"\xff\xfe-7", "c", "100")


def test_a_copy_of_undecodable_headers_still_carries_them() -> None:
    props = received(RawProperties(headers={"bad": timestamp(2**63), "k": "v"}))
    copy = republished(props, set_headers={"x-warren-reason": "r"})
    again = Properties().decode(wire(copy))
    keys = [key for key, _ in _entries(again.raw_headers() or b"")]
    assert keys == [b"bad", b"k", b"x-warren-reason"]
    assert again.headers_undecodable


def test_a_copy_of_properties_built_here_keeps_their_headers() -> None:
    copy = republished(pika.BasicProperties(headers={"a": 1}), set_headers={"b": "2"})
    assert Properties().decode(wire(copy)).headers == {"a": 1, "b": "2"}


@given(st.dictionaries(st.text(min_size=1, max_size=20).filter(lambda k: len(k.encode()) < 200),
                       st.one_of(st.integers(-2**31, 2**31 - 1), st.text(max_size=50),
                                 st.booleans(), st.binary(max_size=20)), max_size=8))
def test_any_headers_survive_a_copy(headers: dict) -> None:
    props = received(pika.BasicProperties(headers=headers))
    copy = republished(props, set_headers={"x-warren-attempts": 1})
    assert Properties().decode(wire(copy)).headers == {**headers, "x-warren-attempts": 1}


def test_text_and_printable_take_anything() -> None:
    assert text(b"\xff\xfe-7") == "\\xff\\xfe-7"
    assert text(None) == ""
    assert text("\x1b[31mred\x00") == "\\x1b[31mred\\x00"
    assert text("zürich") == "zürich"
    assert printable("a\udcffb") == "a\\udcffb"
    assert len(printable("x" * 5000)) == 1000
