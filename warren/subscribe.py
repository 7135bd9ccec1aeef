"""`python -m warren.subscribe`: take a broadcast on an exclusive, server-named queue and print it.

    python -m warren.subscribe                              # the workers' task events
    python -m warren.subscribe --exchange logs --type topic --key 'europe.#'

The queue lives as long as the subscriber: a broadcast is for whoever is listening.
"""

from __future__ import annotations

import argparse
import sys
import threading

import pika
import pika.exceptions as pex

from warren.amqp import connect_blocking
from warren.bindings import EXCHANGE_TYPES
from warren.errors import ExitCode, SettingsError, WarrenError
from warren.settings import Settings
from warren.topology import declare_exchange


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m warren.subscribe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exchange", help="exchange to listen to (default: EVENTS_EXCHANGE)")
    p.add_argument("--type", default="fanout", choices=EXCHANGE_TYPES, dest="kind")
    p.add_argument("--key", action="append", default=[],
                   help="binding key or topic pattern (repeatable)")
    p.add_argument("--header", action="append", default=[], metavar="KEY=VALUE",
                   help="header match for a headers exchange (repeatable)")
    p.add_argument("--match", choices=("all", "any"), default="all", help="headers x-match")
    p.add_argument("--count", type=int, default=0, help="exit after N messages (0 = never)")
    return p


def subscribe(settings: Settings, opts: argparse.Namespace, stop: threading.Event) -> int:
    exchange = opts.exchange or settings.events_exchange
    conn = connect_blocking(settings, "subscriber")
    try:
        channel = conn.channel()
        declare_exchange(channel, exchange, opts.kind)
        queue = channel.queue_declare("", exclusive=True).method.queue
        for key, args in _bindings(opts):
            channel.queue_bind(queue, exchange, routing_key=key, arguments=args)
        print(f" [*] Waiting for messages on {exchange!r}. To exit press CTRL+C", flush=True)
        return _print_messages(channel, queue, opts.count, stop)
    finally:
        if conn.is_open:
            conn.close()


def _bindings(opts: argparse.Namespace) -> list[tuple[str, dict | None]]:
    if opts.kind == "headers":
        pairs = dict(item.split("=", 1) for item in opts.header)
        return [("", {"x-match": opts.match, **pairs})]
    return [(key, None) for key in (opts.key or [""])]


def _print_messages(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str,
                    count: int, stop: threading.Event) -> int:
    seen = 0
    for method, _props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.5):
        if stop.is_set():
            break
        if method is None:
            continue
        print(f" [x] {method.routing_key}: {body.decode('utf-8', errors='replace')}", flush=True)
        seen += 1
        if count and seen >= count:
            break
    channel.cancel()
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if any("=" not in item for item in opts.header):
        print("error: --header needs KEY=VALUE", file=sys.stderr)
        return ExitCode.USAGE
    stop = threading.Event()
    try:
        return subscribe(Settings.from_env(), opts, stop)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return ExitCode.OK
    except (WarrenError, pex.AMQPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
