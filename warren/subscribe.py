"""`python -m warren.subscribe`: take a broadcast on an exclusive, server-named queue and print it.

    python -m warren.subscribe                              # the workers' task events
    python -m warren.subscribe --exchange logs --type topic --key 'europe.#'

The queue lives as long as the subscriber: a broadcast is for whoever is listening. After
a lost connection it subscribes again (what was broadcast meanwhile is not seen).
"""

from __future__ import annotations

import argparse
import sys
import threading

from warren.amqp import Link, Message, run_sessions, wire
from warren.amqp.wire import text
from warren.bindings import EXCHANGE_TYPES
from warren.errors import AuthenticationFailed, ExitCode, Refused, SettingsError
from warren.service import install_stop_handlers
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


class Subscriber:
    def __init__(self, settings: Settings, opts: argparse.Namespace) -> None:
        self.exchange = opts.exchange or settings.events_exchange
        self.opts = opts
        self.seen = 0

    def open(self, link: Link) -> None:
        channel = link.channel(f"subscribing to {self.exchange!r}")
        declare_exchange(channel, self.exchange, self.opts.kind)
        queue = channel.queue_declare("", exclusive=True)
        for key, args in _bindings(self.opts):
            channel.queue_bind(queue, self.exchange, routing_key=key, arguments=args)
        channel.watch()
        channel.consume(queue, self._print, auto_ack=True)
        print(f" [*] Waiting for messages on {self.exchange!r}. To exit press CTRL+C",
              flush=True)

    def _print(self, message: Message) -> None:
        if self.finished():
            return
        print(f" [x] {text(message.routing_key)}: "
              f"{message.body.decode('utf-8', errors='replace')}", flush=True)
        self.seen += 1

    def tick(self) -> None:
        pass

    def finished(self) -> bool:
        return bool(self.opts.count) and self.seen >= self.opts.count

    def drain(self, _link: Link) -> None:
        pass

    def closed(self) -> None:
        pass


def _bindings(opts: argparse.Namespace) -> list[tuple[str, dict | None]]:
    if opts.kind == "headers":
        pairs = dict(item.split("=", 1) for item in opts.header)
        return [("", {"x-match": opts.match, **pairs})]
    return [(key, None) for key in (opts.key or [""])]


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if any("=" not in item for item in opts.header):
        print("error: --header needs KEY=VALUE", file=sys.stderr)
        return ExitCode.USAGE
    stop = threading.Event()
    wire.install()
    try:
        settings = Settings.from_env()
        if not (opts.exchange or settings.events_exchange):
            print("configuration error: EVENTS_EXCHANGE is empty (events are off): name an "
                  "exchange with --exchange", file=sys.stderr)
            return ExitCode.CONFIG
        install_stop_handlers(stop)
        run_sessions(settings, "subscriber", stop, Subscriber(settings, opts), io_tick_s=0.2)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return ExitCode.OK
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except AuthenticationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
