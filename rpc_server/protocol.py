"""The adder's wire format as pure functions: JSON `{"a": 1, "b": 2}` or the seed's `"1.2"`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from warren.errors import WarrenError
from warren.messages import is_json_type

Form = Literal["json", "text"]
JSON = "application/json"
MAX_DIGITS = 100  # bigger numbers are refused, not computed
_TEXT_NUMBER = re.compile(r"[+-]?\d+")


class BadRequest(WarrenError):
    def __init__(self, reason: str, form: Form) -> None:
        super().__init__(reason)
        self.form = form


@dataclass(frozen=True)
class Request:
    a: int
    b: int
    form: Form


def detect_form(body: bytes, content_type: str | None) -> Form:
    if is_json_type(content_type) or body.lstrip()[:1] == b"{":
        return "json"
    return "text"


def parse_request(body: bytes, content_type: str | None) -> Request:
    form = detect_form(body, content_type)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request is not valid UTF-8", form) from None
    if not text.strip():
        raise BadRequest("empty request", form)
    a, b = _parse_json(text) if form == "json" else _parse_text(text)
    return Request(_checked(a, "a", form), _checked(b, "b", form), form)


def _parse_json(text: str) -> tuple[object, object]:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply", "json") from None
    except ValueError as exc:  # also too-long integer literals
        raise BadRequest(f"invalid JSON: {exc}", "json") from None
    if not isinstance(doc, dict):
        raise BadRequest("request must be a JSON object with integers a and b", "json")
    if "a" not in doc or "b" not in doc:
        raise BadRequest("request needs both 'a' and 'b'", "json")
    return doc["a"], doc["b"]


def _parse_text(text: str) -> tuple[object, object]:
    parts = text.strip().split(".")
    if len(parts) != 2 or not all(_TEXT_NUMBER.fullmatch(p.strip()) for p in parts):
        raise BadRequest("text request must be two integers joined by '.', like '1.2'", "text")
    if any(len(p.strip().lstrip("+-")) > MAX_DIGITS for p in parts):
        raise BadRequest(f"numbers are limited to {MAX_DIGITS} digits", "text")
    return int(parts[0]), int(parts[1])


def _checked(value: object, name: str, form: Form) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer, got {type(value).__name__}", form)
    if abs(value) >= 10**MAX_DIGITS:
        raise BadRequest(f"numbers are limited to {MAX_DIGITS} digits", form)
    return value


def encode_result(result: int, form: Form) -> tuple[bytes, str]:
    if form == "json":
        return json.dumps({"result": result}).encode(), JSON
    return str(result).encode(), "text/plain"


def encode_error(reason: str, form: Form) -> tuple[bytes, str]:
    if form == "json":
        return json.dumps({"error": reason}).encode(), JSON
    return f"error: {reason}".encode(), "text/plain"


def encode_request(a: int, b: int, form: Form = "json") -> tuple[bytes, str]:
    if form == "json":
        return json.dumps({"a": a, "b": b}).encode(), JSON
    return f"{a}.{b}".encode(), "text/plain"


def decode_reply(body: bytes) -> int:
    """The result of a reply, or RpcError with the server's reason."""
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        doc = json.loads(text)
        if "error" in doc:
            raise RpcError(str(doc["error"]))
        return int(doc["result"])
    if text.startswith("error:"):
        raise RpcError(text.removeprefix("error:").strip())
    return int(text)


class RpcError(WarrenError):
    """The server answered with an error."""
