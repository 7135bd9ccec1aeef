"""`python -m warren.healthcheck [--ready]`: exit 0 when the local service answers, else 1.

For container healthchecks in images that carry no curl.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready", action="store_true", help="check /readyz instead of /healthz")
    parser.add_argument("--port", type=int, default=int(os.environ.get("METRICS_PORT", "9100")))
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    path = "/readyz" if args.ready else "/healthz"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.port}{path}",
                                    timeout=args.timeout) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck {path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
