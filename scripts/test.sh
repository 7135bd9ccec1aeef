#!/usr/bin/env bash
# The test command: lint, then every test suite against a real RabbitMQ node.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
exec "$VENV/bin/pytest" "$@"
