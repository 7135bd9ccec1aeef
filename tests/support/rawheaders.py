"""Header values pika cannot send, for tests: doubles, floats, out-of-range timestamps.

Other clients (Java, Go, .NET) send AMQP field-table types that pika decodes
but cannot encode again, or values pika would never produce. Put a `Raw` value
in a headers dict and publish with `RawProperties`: it goes on the wire as the
given type tag and payload, inside an otherwise ordinary table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pika
import pika.data


@dataclass(frozen=True)
class Raw:
    kind: bytes  # one AMQP field type tag, e.g. b"d"
    payload: bytes

    @property
    def wire(self) -> bytes:
        return self.kind + self.payload


def double(value: float) -> Raw:
    return Raw(b"d", struct.pack(">d", value))


def single(value: float) -> Raw:
    return Raw(b"f", struct.pack(">f", value))


def timestamp(seconds: int) -> Raw:
    return Raw(b"T", struct.pack(">Q", seconds))


class RawProperties(pika.BasicProperties):
    """BasicProperties whose headers may hold `Raw` values (encoding on this thread only)."""

    def encode(self) -> list[bytes]:
        original = pika.data.encode_value

        def encode_value(pieces: list[bytes], value: object) -> int:
            if isinstance(value, Raw):
                pieces.append(value.wire)
                return len(value.wire)
            return original(pieces, value)

        pika.data.encode_value = encode_value  # encode_table looks it up at each call
        try:
            return super().encode()
        finally:
            pika.data.encode_value = original
