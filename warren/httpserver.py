"""One HTTP port per process: /metrics (Prometheus), /healthz (alive), /readyz (consuming)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from warren.health import Health


def _handler(health: Health, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._probe(health.alive)
            elif path == "/readyz":
                self._probe(health.ready)
            else:
                self._send(404, b"not found\n")

        def _probe(self, ok: bool) -> None:
            self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the service's own log

    return Handler


def serve_http(port: int, health: Health, registry: CollectorRegistry = REGISTRY,
               host: str = "0.0.0.0") -> ThreadingHTTPServer | None:
    """Start the server in a daemon thread; port 0 disables it."""
    if port == 0:
        return None
    server = ThreadingHTTPServer((host, port), _handler(health, registry))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
