"""`python -m worker`: consume TASK_QUEUE and run registered tasks until SIGTERM."""

from __future__ import annotations

import importlib
import sys
import threading

from warren.errors import ExitCode
from warren.health import Health
from warren.service import run_service
from warren.settings import Settings
from worker import tasks
from worker.consumer import Worker


def run(settings: Settings, health: Health, stop: threading.Event) -> int:
    tasks.dot_seconds = settings.dot_seconds
    for module in settings.task_modules:
        try:
            importlib.import_module(module)  # registers the user's @task functions
        except Exception as exc:  # a syntax error, or anything the module raises on import
            print(f"configuration error: TASK_MODULES: cannot import {module!r}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
    return Worker(settings, health, stop, tasks.registry).run()


def main() -> int:
    return run_service("worker", run)


if __name__ == "__main__":
    sys.exit(main())
