"""The producer's command line: the tutorial's `new_task` form and a load generator."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from producer.load import LoadSpec, Route, generate, parse_args_json, text_message
from producer.publisher import ConfirmingPublisher, Outgoing, PublishReport
from warren.amqp import Channel
from warren.errors import ExitCode
from warren.settings import Settings
from warren.topology import EXCHANGE_TYPES, declare_exchange, declare_task_queues

EPILOG = """examples:
  python -m producer "Hello World..."                 one tutorial task (3 units of work)
  python -m producer --count 1000 --args '{"seconds": 0.1}'
  python -m producer --count 400 --heavy-light 1.0 0.1   the tutorial's heavy/light mix
  python -m producer --count 0 --rate 20               endless load at 20 msg/s
  python -m producer --exchange logs --exchange-type topic --routing-key europe.weather "hi"
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m producer", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Publish tasks with publisher confirms.")
    p.add_argument("message", nargs="*", help="the tutorial form: one plain-text task")
    p.add_argument("--count", type=at_least(0), help="publish N generated tasks (0 = endless)")
    p.add_argument("--type", default="sleep", dest="task_type", help="task type (default sleep)")
    p.add_argument("--args", type=as_argument(parse_args_json),
                   help='task arguments as a JSON object (default for sleep: {"seconds": 0.1})')
    p.add_argument("--size", type=at_least(0), default=0,
                   help="pad each body by this many bytes")
    p.add_argument("--heavy-light", nargs=2, type=float, metavar=("HEAVY_S", "LIGHT_S"),
                   help="alternate heavy and light sleep tasks, as in the tutorial")
    p.add_argument("--rate", type=positive_rate,
                   help="messages per second, bursts of at most one second's worth "
                        "(default: as fast as confirms)")
    p.add_argument("--window", type=at_least(1), default=1000,
                   help="confirms in flight (default 1000)")
    p.add_argument("--exchange", default="", help="publish through this exchange")
    p.add_argument("--exchange-type", choices=EXCHANGE_TYPES,
                   help="declare --exchange with this type first")
    p.add_argument("--routing-key", help="routing key (default: TASK_QUEUE)")
    p.add_argument("--header", action="append", default=[], metavar="KEY=VALUE",
                   help="message header, for a headers exchange (repeatable)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress line (default: when stderr is a terminal)")
    return p


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer not below `minimum` (a negative --count published nothing
    and exited 0)."""
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return integer


def as_argument(parse: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """argparse type from a parser that raises ValueError: its message is the error (argparse
    itself would print only the function's name)."""
    def argument(text: str) -> dict[str, Any]:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return argument


def positive_rate(text: str) -> float:
    """argparse type: a rate in messages per second, > 0 and finite."""
    rate = float(text)
    if not 0 < rate < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 messages per second, got {text}")
    return rate


def parse_headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--header needs KEY=VALUE, got {item!r}")
        headers[key] = value
    return headers


def run_cli(settings: Settings, stop: threading.Event, argv: list[str] | None = None,
            out: TextIO = sys.stdout) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    try:
        route = Route(opts.routing_key if opts.routing_key is not None else settings.task_queue,
                      opts.exchange, parse_headers(opts.header))
    except ValueError as exc:
        parser.error(str(exc))
    if opts.heavy_light and opts.args is not None:
        parser.error("--heavy-light makes its own sleep tasks: --args would be ignored")
    tutorial = opts.count is None
    text = " ".join(opts.message) or "Hello World!"
    messages: Iterable[Outgoing] = (
        [text_message(text, route)] if tutorial else generate(_spec(opts), route)
    )
    progress = opts.progress if opts.progress is not None else sys.stderr.isatty()
    publisher = ConfirmingPublisher(
        settings, messages, stop=stop, prepare=_preparer(settings, opts), window=opts.window,
        rate=opts.rate, on_progress=_progress_line(opts.count) if progress else None,
        endless=opts.count == 0,
    )
    report = publisher.run()
    if progress:
        sys.stderr.write("\n")
    if tutorial and report.complete:
        print(f" [x] Sent {text!r}", file=out)
    else:
        print(_summary(report), file=out)
    return ExitCode.OK if report.complete else ExitCode.PARTIAL


def _spec(opts: argparse.Namespace) -> LoadSpec:
    heavy_light = tuple(opts.heavy_light) if opts.heavy_light else None
    args = opts.args if opts.args is not None else (
        {"seconds": 0.1} if opts.task_type == "sleep" else {})
    return LoadSpec(count=opts.count, task_type=opts.task_type, args=args,
                    pad_bytes=opts.size, heavy_light=heavy_light)


def _preparer(settings: Settings, opts: argparse.Namespace):
    def prepare(channel: Channel) -> None:
        declare_task_queues(channel, settings)
        if opts.exchange and opts.exchange_type:
            declare_exchange(channel, opts.exchange, opts.exchange_type)
        elif opts.exchange:
            channel.exchange_declare(opts.exchange, passive=True)

    return prepare


def _summary(r: PublishReport) -> str:
    rate = r.confirmed / r.elapsed_s if r.elapsed_s else 0.0
    cut = "" if r.exhausted or r.endless else "; stopped before every message was sent"
    return (f"published {r.total} messages ({r.published} sends): confirmed {r.confirmed}, "
            f"nacked {r.nacked}, returned {r.returned}, unconfirmed {r.unconfirmed} "
            f"in {r.elapsed_s:.2f}s ({rate:.0f} msg/s){cut}")


def _progress_line(count: int | None):
    def show(r: PublishReport) -> None:
        width = 30
        goal = count or 0
        done = min(width, int(width * r.confirmed / goal)) if goal else 0
        bar = ("#" * done).ljust(width, ".") if goal else ""
        sys.stderr.write(f"\r[{bar}] confirmed {r.confirmed}/{goal or '∞'} "
                         f"in flight {r.published - r.confirmed - r.nacked}  ")
        sys.stderr.flush()

    return show
