"""What every service's main() shares: settings → logging → metrics → run, and signals."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

import structlog
from prometheus_client import disable_created_metrics

from warren.amqp import wire
from warren.errors import AuthenticationFailed, ExitCode, Refused, SettingsError
from warren.health import Health
from warren.httpserver import serve_http
from warren.logs import configure_logging
from warren.settings import Settings


def load_settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(ExitCode.CONFIG) from None


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT only set a flag: pika must never be called from a signal handler."""
    log = structlog.get_logger("warren.service")

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        log.info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_service(name: str, run: Callable[[Settings, Health, threading.Event], int]) -> int:
    settings = load_settings_or_exit()
    configure_logging(settings, service=name)
    disable_created_metrics()  # half the series, and nothing on the dashboard reads them
    wire.install()  # any bytes another client put in a message's properties decode
    health = Health()
    try:
        serve_http(settings.metrics_port, health)
    except OSError as exc:
        print(f"configuration error: METRICS_PORT: cannot listen on {settings.metrics_port}: "
              f"{exc.strerror}", file=sys.stderr)
        return ExitCode.CONFIG
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        return run(settings, health, stop)
    except AuthenticationFailed as exc:
        structlog.get_logger(name).error("giving_up", reason=str(exc))
        return ExitCode.UNAVAILABLE
    except Refused as exc:
        structlog.get_logger(name).error("giving_up", reason=str(exc))
        kind = "configuration error" if exc.exit_code == ExitCode.CONFIG else "error"
        print(f"{kind}: {exc}", file=sys.stderr)
        return exc.exit_code
