#!/usr/bin/env bash
# The full partition runs: tests/partition with PARTITION_PLAN=full (every fault with 30 s
# holds, PARTITION_REPEAT times — default 3 — with the heartbeat the README recommends
# and with the broker's default), then the table docs/RELIABILITY.md takes its rows from.
# Needs root (network namespaces); about 12 minutes per repeat on a 2-core machine.
#   scripts/partition.sh                      # the full plan
#   PARTITION_PLAN=ci scripts/partition.sh    # what CI runs (~5 minutes)
#   scripts/partition.sh -k isolate-leader    # extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
bash .ci/install-netns-tools.sh >/dev/null
VENV=${VENV:-.venv}
export PARTITION_PLAN=${PARTITION_PLAN:-full}
export PARTITION_RESULTS=${PARTITION_RESULTS:-$(mktemp -t partition-XXXXXX.jsonl)}
status=0
"$VENV/bin/pytest" tests/partition -q -s "$@" || status=$?
echo
echo "results: $PARTITION_RESULTS"
if [ -s "$PARTITION_RESULTS" ]; then
  "$VENV/bin/python" -m testbed.partition_report "$PARTITION_RESULTS"
fi
exit "$status"
