#!/usr/bin/env bash
# The full partition runs (`make partition`): tests/partition with PARTITION_PLAN=full —
# every fault with 30 s holds, PARTITION_REPEAT times (default 3), on RabbitMQ 3.10 with
# the heartbeat the README recommends and with the broker's default, and on 4.3 with the
# recommended one — then the table docs/RELIABILITY.md takes its rows from.
#
# The versions run side by side, a pytest each, as in CI (a run mostly holds a fault, so
# two clusters share 2 cores well enough); the suite's other tests go with the first
# version, the negative control (a 3.10 cluster of its own) with the last. Needs root
# (network namespaces), and for 4.3 Docker with the stand-in image (.ci/install-docker.sh).
# About 40 minutes on a 2-core machine (28 with PARTITION_REPEAT=2).
#
#   scripts/partition.sh                                  # the full plan
#   PARTITION_PLAN=ci scripts/partition.sh                # what CI runs
#   PARTITION_REPEAT=1 PARTITION_VERSIONS=3.10 scripts/partition.sh -k isolate-leader
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${VENV:-.venv}
bash .ci/install-netns-tools.sh >/dev/null
export PARTITION_PLAN=${PARTITION_PLAN:-full}
IFS=, read -r -a versions <<<"${PARTITION_VERSIONS:-3.10,4.3}"
for v in "${versions[@]}"; do  # before anything runs, not after the first version's run
  case "$v" in
    3.10 | 4.3) ;;
    *) echo "PARTITION_VERSIONS: unknown version '$v' (expected 3.10 and/or 4.3)" >&2; exit 2 ;;
  esac
done
if [[ " ${versions[*]} " == *" 4.3 "* ]]; then
  VENV="$VENV" bash .ci/install-docker.sh >/dev/null  # Docker and the 4.3 stand-in image
fi
out=${PARTITION_OUT:-$(mktemp -d -t partition-XXXXXX)}
mkdir -p "$out"

run_version() {  # VERSION PYTEST-ARGS...: one pytest; its log ends with its time
  local version=$1 t0 rc=0
  shift
  t0=$(date +%s)
  env PARTITION_VERSIONS="$version" PARTITION_RESULTS="$out/results-$version.jsonl" \
    "$VENV/bin/pytest" -q -s --basetemp="$out/tmp-$version" "$@" || rc=$?
  echo "partition suite ($PARTITION_PLAN plan) on RabbitMQ $version: exit $rc after" \
    "$(( $(date +%s) - t0 ))s"
  return "$rc"
}

pids=()
# Ctrl-C (or SIGTERM) stops every version's pytest; their janitors remove the test hosts.
# shellcheck source=scripts/stop-tree.sh
. scripts/stop-tree.sh
trap 'stop_tree "${pids[@]}"; exit 130' INT TERM
last=$(( ${#versions[@]} - 1 ))
for i in "${!versions[@]}"; do
  if [ "$i" -eq 0 ]; then
    files=(tests/partition)  # everything, the control perhaps left to the last version
    [ "$last" -eq 0 ] || files+=(--ignore=tests/partition/test_negative_control.py)
  else
    files=(tests/partition/test_partition_runs.py)
    [ "$i" -ne "$last" ] || files+=(tests/partition/test_negative_control.py)
  fi
  run_version "${versions[$i]}" "${files[@]}" "$@" >"$out/log-${versions[$i]}.txt" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
for v in "${versions[@]}"; do
  tail -n 30 "$out/log-$v.txt"
done
echo
echo "logs, results and the failed runs' directories: $out"
cat "$out"/results-*.jsonl >"$out/results.jsonl" 2>/dev/null || true
if [ -s "$out/results.jsonl" ]; then
  "$VENV/bin/python" -m testbed.partition_report "$out/results.jsonl"
fi
exit "$status"
