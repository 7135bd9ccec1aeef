"""The `warren` command line: parse, connect, run one command, exit with a named code."""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Callable

from warren.admin import dead, status
from warren.admin.events import EventFilter, Follower, follow
from warren.amqp import Link, connect, wire
from warren.errors import (
    AuthenticationFailed,
    ConnectionLost,
    ExitCode,
    Refused,
    SettingsError,
)
from warren.settings import Settings

EPILOG = """examples:
  warren status --watch                         refresh every 2 s
  warren dead list --reason 'time limit'        parked for hitting their time limit
  warren dead show 3f18474eaff7fd01a0f916caf8d64579
  warren dead requeue --type resize             try every parked resize task again
  warren dead purge --older-than 604800 --yes   drop what failed over a week ago
  warren events --outcome parked                follow failures as they happen
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="warren", epilog=EPILOG, description=(
        "Inspect a warren deployment and put parked tasks right. Reads AMQP_URL, TASK_QUEUE, "
        "RPC_QUEUE and EVENTS_EXCHANGE like the services."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    # --json after the command too (`warren dead list --json`); SUPPRESS keeps a --json
    # given before the command when it is not repeated after it.
    json_too = argparse.ArgumentParser(add_help=False)
    json_too.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                          help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="queues and live workers", parents=[json_too])
    st.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0,
                    help="seconds between refreshes, and of listening for workers (default 2)")
    d = sub.add_parser("dead", help="parked tasks").add_subparsers(dest="action", required=True)
    listing = _filters(d.add_parser("list", help="parked tasks, oldest first",
                                    parents=[json_too]))
    listing.add_argument("--limit", type=int, default=50,
                         help="at most this many (0: all; default 50)")
    d.add_parser("show", help="one parked task, whole", parents=[json_too]).add_argument(
        "id", help="its message id")
    for name, text in (("requeue", "move back to the task queue, attempts reset"),
                       ("purge", "delete for good")):
        action = _filters(d.add_parser(name, help=text, parents=[json_too]))
        action.add_argument("ids", nargs="*", metavar="ID", help="message ids")
        action.add_argument("--all", action="store_true", help="every parked task")
        action.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="a progress line (default: on a terminal)")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="do not ask first")
    ev = sub.add_parser("events", help="follow task events", parents=[json_too])
    ev.add_argument("--type", default="", help="only this task type")
    ev.add_argument("--worker", default="", help="only this worker id")
    ev.add_argument("--outcome", default="", choices=("", "done", "retried", "parked",
                                                      "rejected"))
    ev.add_argument("--status", action="store_true", help="also the workers' status events")
    ev.add_argument("--count", type=int, default=0, help="exit after N events")
    return p


def _regex(raw: str) -> str:
    try:
        re.compile(raw)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {exc}") from None
    return raw


def _filters(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--reason", default="", type=_regex,
                   help="a regular expression searched in the reason")
    p.add_argument("--type", default="", help="task type")
    p.add_argument("--older-than", type=float, default=0.0, metavar="SECONDS",
                   help="last failed at least this long ago")
    return p


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    wire.install()
    try:
        settings = Settings.from_env()
        return COMMANDS[opts.command](settings, opts)
    except SettingsError as exc:
        return _fail(f"configuration error: {exc}", ExitCode.CONFIG)
    except KeyboardInterrupt:
        return 130 if opts.command == "dead" else ExitCode.OK
    except ConnectionLost as exc:
        return _fail(f"error: cannot reach RabbitMQ at {_target()}: {exc}", ExitCode.UNAVAILABLE)
    except AuthenticationFailed as exc:
        return _fail(f"error: {exc} (at {_target()})", ExitCode.UNAVAILABLE)
    except Refused as exc:
        return _fail(f"error: {exc}", exc.exit_code)
    except BrokenPipeError:  # `warren ... | head`
        return ExitCode.OK


def _target() -> str:
    try:
        return ", ".join(Settings.from_env().redacted_urls)
    except SettingsError:
        return "AMQP_URL"


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


# -- commands -----------------------------------------------------------------------------

def run_status(settings: Settings, opts: argparse.Namespace) -> int:
    reader = status.StatusReader(settings)
    listen_s = max(opts.interval, status.FIRST_LISTEN_S)  # every worker speaks once in this
    try:
        while True:
            snap = reader.snapshot(listen_s=listen_s)
            listen_s = opts.interval
            if opts.json:
                print(snap.to_json(), flush=True)
            else:
                clear = "\x1b[H\x1b[2J" if opts.watch and sys.stdout.isatty() else ""
                print(clear + status.render(snap), flush=True)
            if not opts.watch:
                return ExitCode.OK
    finally:
        reader.close()


def run_dead(settings: Settings, opts: argparse.Namespace) -> int:
    link = Link(connect(settings, "warren-admin"))
    try:
        return DEAD[opts.action](link, settings, opts)
    finally:
        link.close()


# A quorum queue counts every read of `warren dead` as a delivery; RabbitMQ 4.x drops a
# message past its delivery limit (20 by default) when the queue has nowhere to send it.
READS_WARNING = 10


def _warn_of_read_counts(found: list[dead.Parked], queue: str) -> None:
    worst = max((_count(p.headers.get("x-delivery-count")) for p in found), default=0)
    if worst >= READS_WARNING:
        print(f"warning: a parked task in {queue!r} has been read {worst} times: on RabbitMQ "
              "4.x a quorum queue drops it past its delivery limit (20 by default). Lift the "
              "limit: rabbitmqctl set_policy warren-dead '\\.dead$' "
              "'{\"delivery-limit\": -1}' --apply-to quorum_queues", file=sys.stderr)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dead_list(link: Link, settings: Settings, opts: argparse.Namespace) -> int:
    found = dead.browse(link, settings.dead_queue, _filter(opts), opts.limit,
                        settings.max_body_bytes)
    _warn_of_read_counts(found, settings.dead_queue)
    if opts.json:
        print(json.dumps([p.to_dict() for p in found], indent=2))
        return ExitCode.OK
    print(f"{'message id':<34} {'type':<12} {'attempts':>8}  {'last failed':<19}  reason")
    for p in found:
        print(f"{p.message_id[:34]:<34} {p.task_type[:12]:<12} {_or_dash(p.attempts):>8}  "
              f"{_when(p.failed_at):<19}  {p.reason}")
    print(f"({len(found)} shown)", file=sys.stderr)
    return ExitCode.OK


def dead_show(link: Link, settings: Settings, opts: argparse.Namespace) -> int:
    found = dead.browse(link, settings.dead_queue, dead.Filter(ids=frozenset({opts.id})), 1,
                        settings.max_body_bytes)
    _warn_of_read_counts(found, settings.dead_queue)
    if not found:
        return _fail(f"error: no parked task with message id {opts.id!r} in "
                     f"{settings.dead_queue!r}", ExitCode.USAGE)
    doc = found[0].to_dict(with_body=True)
    if opts.json:
        print(json.dumps(doc, indent=2))
        return ExitCode.OK
    for key in ("message_id", "type", "reason", "attempts"):
        print(f"{key + ':':<17} {_or_dash(doc[key])}")
    for key in ("first_failed_at", "last_failed_at"):
        print(f"{key + ':':<17} {_when(doc[key])}")  # type: ignore[arg-type]
    print("headers:")
    for key, value in doc["headers"].items():  # type: ignore[attr-defined]
        print(f"  {key}: {json.dumps(value)}")
    print(f"body:\n{_inert(str(doc['body']))}")
    return ExitCode.OK


def dead_move(link: Link, settings: Settings, opts: argparse.Namespace) -> int:
    match = _filter(opts)
    if match.everything and not opts.all:
        return _fail(f"error: name message ids, a filter, or --all to {opts.action} every "
                     "parked task", ExitCode.USAGE)
    progress = _progress(opts)
    if opts.action == "requeue":
        moved = dead.requeue(link, settings.dead_queue, settings.task_queue, match, progress,
                             settings.max_body_bytes)
        return _report({"requeued": moved}, opts, f"requeued {moved} to {settings.task_queue}")
    if not opts.yes:
        count = len(dead.browse(link, settings.dead_queue, match,
                                max_body_bytes=settings.max_body_bytes))
        try:
            answer = input(f"delete {count} parked task(s) from {settings.dead_queue}? [y/N] ")
        except EOFError:  # no terminal to ask (stdin closed): no is the answer
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            return _fail("nothing deleted", ExitCode.OK)
    purged = dead.purge(link, settings.dead_queue, match, progress, settings.max_body_bytes)
    return _report({"purged": purged}, opts, f"purged {purged} from {settings.dead_queue}")


def run_events(settings: Settings, opts: argparse.Namespace) -> int:
    if not settings.events_exchange:
        return _fail("error: EVENTS_EXCHANGE is empty: the workers send no events",
                     ExitCode.CONFIG)
    match = EventFilter(opts.type, opts.worker, opts.outcome, opts.status)
    follower = Follower(settings, match, lambda text: print(text, flush=True), opts.json,
                        opts.count)
    follow(settings, follower, threading.Event())
    return ExitCode.OK


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "status": run_status, "dead": run_dead, "events": run_events}
DEAD: dict[str, Callable[[Link, Settings, argparse.Namespace], int]] = {
    "list": dead_list, "show": dead_show, "requeue": dead_move, "purge": dead_move}


def _filter(opts: argparse.Namespace) -> dead.Filter:
    return dead.Filter(frozenset(getattr(opts, "ids", ()) or ()), opts.reason, opts.type,
                       opts.older_than)


def _progress(opts: argparse.Namespace) -> Callable[[int, int], None]:
    shown = opts.progress if opts.progress is not None else sys.stderr.isatty()

    def show(done: int, of: int) -> None:
        if shown and of:
            bar = "#" * int(30 * done / of)
            sys.stderr.write(f"\r[{bar:<30}] {done}/{of}")
            sys.stderr.flush()
            if done >= of:
                sys.stderr.write("\n")

    return show


def _report(doc: dict[str, int], opts: argparse.Namespace, text: str) -> int:
    print(json.dumps(doc) if opts.json else text)
    return ExitCode.OK


def _when(epoch: int | None) -> str:
    """Local time of an epoch, or the number itself when the platform has no date for it
    (anyone may publish to the dead queue: a header of 2**62 seconds is a valid long)."""
    if not epoch:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    except (OverflowError, OSError, ValueError):
        return str(epoch)


def _inert(body: str) -> str:
    """A body for a terminal: its lines and tabs kept, other control characters (a
    terminal escape, a carriage return) shown as escapes."""
    return "\n".join("\t".join(wire.text(part) for part in line.split("\t"))
                     for line in body.split("\n"))


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
