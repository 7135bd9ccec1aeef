"""warren.amqp.link._join_runs: the frames pika queued, joined into fewer sends."""

from __future__ import annotations

from collections import deque

from warren.amqp.link import SEND_BYTES, _join_runs


def test_runs_keep_every_byte_in_order_and_reach_the_send_size() -> None:
    frames = [bytes([n % 251]) * (n * 313 % 9000 + 1) for n in range(400)]
    buffers = deque(frames)
    _join_runs(buffers)
    assert b"".join(buffers) == b"".join(frames)
    assert 1 < len(buffers) < len(frames)
    assert all(len(run) >= SEND_BYTES for run in list(buffers)[:-1])
    assert all(len(run) < SEND_BYTES + 9000 for run in buffers)


def test_a_lone_buffer_and_a_large_frame_are_left_as_they_are() -> None:
    lone = deque([b"frame"])
    _join_runs(lone)
    assert lone == deque([b"frame"])
    big = b"b" * (3 * SEND_BYTES)
    buffers = deque([big, b"small"])
    _join_runs(buffers)
    assert list(buffers) == [big, b"small"]
