"""`python -m rpc_server`: answer addition requests on RPC_QUEUE until SIGTERM."""

from __future__ import annotations

import sys
import threading

from rpc_server.server import RpcServer
from warren.health import Health
from warren.service import run_service
from warren.settings import Settings


def run(settings: Settings, health: Health, stop: threading.Event) -> int:
    return RpcServer(settings, health, stop).run()


def main() -> int:
    return run_service("rpc_server", run)


if __name__ == "__main__":
    sys.exit(main())
