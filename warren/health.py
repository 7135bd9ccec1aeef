"""Liveness and readiness, as one small shared object the HTTP server reads."""

from __future__ import annotations

import threading
import time


class Health:
    """`alive` is false only when the process is wedged; `ready` means connected and consuming."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._alive = True
        self.started_at = time.monotonic()

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._ready and self._alive

    @property
    def alive(self) -> bool:
        with self._lock:
            return self._alive

    def set_ready(self, ready: bool) -> None:
        with self._lock:
            self._ready = ready

    def set_alive(self, alive: bool) -> None:
        with self._lock:
            self._alive = alive
