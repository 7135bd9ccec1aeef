"""`python -m testbed.chaos_producer`: warren's ConfirmingPublisher, with ids a checker knows.

The producer CLI gives every message a random id and reports counts only. A
Jepsen-style check needs to know *which* messages the broker confirmed, so this
runs the same publisher (same reconnects, re-sends and service wrapper) over
messages with deterministic ids `<prefix>-<seq>`, and writes the confirmed ids
to a file when it exits. Its last stdout line has the CLI's shape
(`published N messages (S sends): confirmed N, ...`).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from producer.publisher import ConfirmingPublisher, PublishReport
from warren.amqp import Channel, Outgoing
from warren.errors import ExitCode
from warren.health import Health
from warren.messages import JSON, encode_task, task_properties
from warren.service import run_service
from warren.settings import Settings
from warren.topology import declare_task_queues

TASK_TYPE = "chaos_record"


def message_id(prefix: str, seq: int) -> str:
    return f"{prefix}-{seq:07d}"


class TrackingPublisher(ConfirmingPublisher):
    """Also keeps the message_id of every positively confirmed message."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.confirmed_ids: list[str] = []
        super().__init__(*args, on_confirmed=self._track, **kwargs)  # type: ignore[arg-type]

    def _track(self, message: Outgoing) -> None:
        self.confirmed_ids.append(message.properties.message_id)


def messages(settings: Settings, prefix: str, count: int, seconds: float) -> Iterator[Outgoing]:
    args = {"seconds": seconds} if seconds else {}
    for seq in range(count):
        yield Outgoing(encode_task(TASK_TYPE, args, seq=seq),
                       task_properties(JSON, message_id=message_id(prefix, seq)),
                       settings.task_queue)


def summary(r: PublishReport) -> str:
    return (f"published {r.total} messages ({r.published} sends): confirmed {r.confirmed}, "
            f"nacked {r.nacked}, returned {r.returned}, unconfirmed {r.unconfirmed} "
            f"in {r.elapsed_s:.2f}s")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed.chaos_producer")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", required=True, help="message ids are <prefix>-<seq>")
    p.add_argument("--confirmed", type=Path, required=True, help="write confirmed ids here")
    p.add_argument("--rate", type=float, help="messages per second (default: as fast as it can)")
    p.add_argument("--window", type=int, default=1000, help="confirms in flight")
    p.add_argument("--seconds", type=float, default=0.0, help="each task sleeps this long")
    return p


def run(settings: Settings, health: Health, stop: threading.Event) -> int:
    opts = build_parser().parse_args(sys.argv[1:])
    health.set_ready(True)

    def prepare(channel: Channel) -> None:
        declare_task_queues(channel, settings)

    publisher = TrackingPublisher(
        settings, messages(settings, opts.prefix, opts.count, opts.seconds), stop=stop,
        prepare=prepare, window=opts.window, rate=opts.rate)
    try:
        report = publisher.run()
    finally:
        # Also when the run ends in a refusal (a declare that timed out while a cluster
        # healed): what was confirmed until then is history the checker needs.
        opts.confirmed.write_text("".join(f"{mid}\n" for mid in publisher.confirmed_ids))
        print(summary(publisher.report), flush=True)
    return ExitCode.OK if report.complete else ExitCode.PARTIAL


if __name__ == "__main__":
    sys.exit(run_service("producer", run))
