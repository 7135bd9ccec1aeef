"""The AMQP wire under pika: properties decoded leniently, headers carried on byte for byte.

Other clients put things in a message's properties that pika decodes badly or not at all:
short strings that are not UTF-8 (pika hands over `bytes`), doubles and floats (pika
truncates them to int), tables nested past the recursion limit or timestamps past year
9999 (pika's decoder raises inside its frame parser, the connection drops, and the broker
hands the message out again, forever). warren needs three things from any such message:
run or park it without crashing, name it in a log line, and pass it on (retry, park)
exactly as it came.

`install()` makes pika build every incoming message's properties as `Properties`, whose
decoding never raises and which remember the headers table as it arrived;
`republished()` builds a copy's properties that carry that table on byte for byte, with
warren's own headers beside it. The field-type sizes are AMQP 0-9-1's as RabbitMQ
implements them (rabbit_common's rabbit_binary_parser), plus pika's 'U' and 'L'.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Collection, Mapping
from typing import Any

import pika
import pika.data
import pika.spec

_FLAG_CONTENT_TYPE = pika.spec.BasicProperties.FLAG_CONTENT_TYPE
_FLAG_CONTENT_ENCODING = pika.spec.BasicProperties.FLAG_CONTENT_ENCODING
_FLAG_HEADERS = pika.spec.BasicProperties.FLAG_HEADERS
# What a table the broker accepted can still make pika's decoder raise.
_DECODE_ERRORS = (RecursionError, OverflowError, ValueError, struct.error, TypeError,
                  pika.exceptions.InvalidFieldTypeException)
_FIXED_SIZE = {b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"U": 2, b"I": 4, b"i": 4,
               b"l": 8, b"L": 8, b"f": 4, b"d": 8, b"D": 5, b"T": 8, b"V": 0}
_SIZED = frozenset({b"S", b"A", b"F", b"x"})  # a 32-bit length, then that many bytes
_EMPTY_TABLE = b"\0\0\0\0"


class Properties(pika.spec.BasicProperties):
    """BasicProperties as they came off the wire: decoding never raises.

    `headers_undecodable` is True when pika could not decode the headers table; `headers`
    is then None, and `raw_headers()` still has the table for a copy to carry on.
    """

    headers_undecodable = False
    _encoded: bytes = b""
    _offset = 0

    def decode(self, encoded: bytes, offset: int = 0) -> Properties:
        self._encoded, self._offset = encoded, offset
        try:
            return super().decode(encoded, offset)
        except _DECODE_ERRORS:
            span = _headers_span(encoded, offset)
            if span is None:
                raise
            super().decode(encoded[: span[0]] + _EMPTY_TABLE + encoded[span[1]:], offset)
            self.headers, self.headers_undecodable = None, True
            return self

    def raw_headers(self) -> bytes | None:
        """The headers table's entries exactly as received (None when there was none)."""
        span = _headers_span(self._encoded, self._offset) if self._encoded else None
        return None if span is None else self._encoded[span[0] + 4: span[1]]


class _Republished(pika.spec.BasicProperties):
    """Outgoing properties whose headers table is given as encoded entries."""

    table: bytes = b""

    def encode(self) -> list[bytes]:
        encoded = b"".join(super().encode())  # headers == {}: an empty table to replace
        span = _headers_span(encoded, 0)
        assert span is not None
        return [encoded[: span[0]], struct.pack(">I", len(self.table)), self.table,
                encoded[span[1]:]]


def install() -> None:
    """Decode every incoming message's properties as `Properties` (process-wide).

    pika's frame parser builds properties as `pika.spec.props[class_id]()`; replacing that
    one entry is atomic, and nothing else in pika changes. Called by service start-up.
    """
    pika.spec.props[pika.spec.BasicProperties.INDEX] = Properties


def republished(properties: pika.spec.BasicProperties, *, set_headers: Mapping[str, Any],
                drop: Collection[str] = (), **changes: Any) -> pika.spec.BasicProperties:
    """Properties for a copy of a message: everything it came with, and warren's additions.

    Every property is kept unless named in `changes`; every header is kept (byte for byte
    when the message came off the wire) except those in `drop` and those `set_headers`
    replaces. Raises TypeError for a `set_headers` value pika cannot encode.
    """
    out = copy.copy(properties)
    out.__class__ = _Republished
    for name, value in changes.items():
        setattr(out, name, value)
    replaced = {key.encode() for key in (*drop, *set_headers)}
    kept = [raw for key, raw in _entries(_original_table(properties)) if key not in replaced]
    out.headers = {}
    out.table = b"".join(kept) + _encode_entries(set_headers)
    return out


def encoded_size(properties: pika.spec.BasicProperties) -> int:
    """Bytes the properties take in a content header frame (they must fit one frame)."""
    return sum(len(piece) for piece in properties.encode())


def text(value: str | bytes | None) -> str:
    """A short-string property as text for logs and events, whatever bytes it holds: bytes
    that are not UTF-8 and control characters (a terminal escape, NUL) shown as escapes."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in value)


def printable(value: str, limit: int = 1000) -> str:
    """Text that any encoder accepts (no lone surrogates), cut to `limit` characters."""
    clean = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _original_table(properties: pika.spec.BasicProperties) -> bytes:
    if isinstance(properties, _Republished):
        return properties.table
    if isinstance(properties, Properties):
        raw = properties.raw_headers()
        if raw is not None or properties.headers_undecodable:
            return raw or b""
    return _encode_entries(properties.headers or {})


def _encode_entries(headers: Mapping[str, Any]) -> bytes:
    pieces: list[bytes] = []
    pika.data.encode_table(pieces, dict(headers))
    return b"".join(pieces)[4:]


def _entries(table: bytes) -> list[tuple[bytes, bytes]]:
    """Split a table's entries without decoding their values: (key, encoded entry)."""
    out = []
    offset = 0
    while offset < len(table):
        start = offset
        key_end = offset + 1 + table[offset]
        key, kind, offset = table[offset + 1: key_end], table[key_end: key_end + 1], key_end + 1
        if kind in _FIXED_SIZE:
            offset += _FIXED_SIZE[kind]
        elif kind in _SIZED:
            offset += 4 + struct.unpack_from(">I", table, offset)[0]
        else:  # not a type the broker accepts: keep the rest as it is, unsplit
            return [*out, (b"", table[start:])]
        out.append((key, table[start:offset]))
    return out


def _headers_span(encoded: bytes, offset: int) -> tuple[int, int] | None:
    """Where the headers table (its size field included) sits in encoded properties."""
    flags, index = 0, 0
    while True:
        (partial,) = struct.unpack_from(">H", encoded, offset)
        offset += 2
        flags |= partial << (index * 16)
        index += 1
        if not partial & 1:
            break
    if not flags & _FLAG_HEADERS:
        return None
    for flag in (_FLAG_CONTENT_TYPE, _FLAG_CONTENT_ENCODING):
        if flags & flag:
            offset += 1 + encoded[offset]
    (size,) = struct.unpack_from(">I", encoded, offset)
    return offset, offset + 4 + size
