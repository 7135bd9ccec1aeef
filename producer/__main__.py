"""`python -m producer`: publish tasks (see --help)."""

from __future__ import annotations

import sys
import threading

from producer.cli import run_cli
from warren.health import Health
from warren.service import run_service
from warren.settings import Settings


def run(settings: Settings, health: Health, stop: threading.Event) -> int:
    health.set_ready(True)
    return run_cli(settings, stop, sys.argv[1:])


def main() -> int:
    return run_service("producer", run)


if __name__ == "__main__":
    sys.exit(main())
