from __future__ import annotations

import pytest

from rpc_server.protocol import (
    BadRequest,
    RpcError,
    decode_reply,
    encode_error,
    encode_result,
    parse_request,
)

JSON = "application/json"


@pytest.mark.parametrize(("body", "ctype", "expected"), [
    (b'{"a": 1, "b": 2}', JSON, (1, 2, "json")),
    (b'{"a": -5, "b": 2}', None, (-5, 2, "json")),
    (b"1.2", None, (1, 2, "text")),
    (b" -7.+3 ", "text/plain", (-7, 3, "text")),
])
def test_good_requests(body: bytes, ctype: str | None, expected: tuple) -> None:
    r = parse_request(body, ctype)
    assert (r.a, r.b, r.form) == expected


@pytest.mark.parametrize(("body", "ctype", "says"), [
    (b'{"a": 1}', JSON, "needs both"),
    (b'{"a": 1.5, "b": 2}', JSON, "'a' must be an integer"),
    (b'{"a": "1", "b": 2}', JSON, "'a' must be an integer"),
    (b'{"a": true, "b": 2}', JSON, "'a' must be an integer"),
    (b'{"a": 1, "b": null}', JSON, "'b' must be an integer"),
    (b"[1, 2]", JSON, "JSON object"),
    (b"[1, 2]", "Application/JSON; charset=utf-8", "JSON object"),
    (b"[1, 2]", "application/vnd.api+json", "JSON object"),
    (b'{"a": 1, "b": ', JSON, "invalid JSON"),
    (b'{"a": ' + b"9" * 101 + b', "b": 1}', JSON, "limited to 100 digits"),
    (b'{"a": ' + b"9" * 5000 + b', "b": 1}', JSON, "invalid JSON"),
    (b"1." + b"9" * 101, None, "limited to 100 digits"),
    (b"1.2.3", None, "two integers"),
    (b"one.two", None, "two integers"),
    (b"1,2", None, "two integers"),
    (b"\xff\xfe", None, "not valid UTF-8"),
    (b"", None, "empty request"),
    (b"   ", None, "empty request"),
])
def test_bad_requests_say_why(body: bytes, ctype: str | None, says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        parse_request(body, ctype)


def test_replies_round_trip_in_both_forms() -> None:
    assert decode_reply(encode_result(3, "json")[0]) == 3
    assert encode_result(3, "text")[0] == b"3"
    assert decode_reply(b"3") == 3
    with pytest.raises(RpcError, match="nope"):
        decode_reply(encode_error("nope", "json")[0])
    assert encode_error("nope", "text")[0] == b"error: nope"
