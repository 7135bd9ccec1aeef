#!/usr/bin/env bash
# A whole cluster on this machine, no Docker: a private RabbitMQ node, workers, a producer,
# and a live view of each worker's share. Ctrl-C stops it all cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec "${VENV:-.venv}/bin/python" -m testbed.local_cluster "$@"
