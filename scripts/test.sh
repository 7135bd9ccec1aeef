#!/usr/bin/env bash
# The test command: lint, then every test suite against real RabbitMQ nodes.
#
#   scripts/test.sh              the matrix: every suite with RabbitMQ 3.10 test nodes, then
#                                the suites that drive a broker again with 4.3 nodes
#   scripts/test.sh ARGS...      one pytest run with ARGS, on the nodes WARREN_TEST_RABBITMQ
#                                picks (3.10 unless set; 4.3 runs in a container)
#   AMQP_URL=... scripts/test.sh one run against that broker
#
# e2e (compose) and monitoring run once, on the 4.3 / Prometheus 3.5 stand-ins, in the
# first leg. Both legs always run; the exit status is non-zero if either failed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .

if [ $# -gt 0 ] || [ -n "${AMQP_URL:-}" ] || [ -n "${WARREN_TEST_RABBITMQ:-}" ]; then
  exec "$VENV/bin/pytest" "$@"
fi

# The suites whose tests start, stop, kill, restart or cluster a node, or talk to one.
BOTH_VERSIONS=(tests/integration tests/faults tests/chaos tests/cluster tests/security)
status=0
summary=()

leg() {
  local name=$1 started rc=0
  shift
  started=$(date +%s)
  echo "=== test leg: $name" >&2
  "$@" || rc=$?
  summary+=("test leg: $name: exit $rc in $(( $(date +%s) - started ))s")
  [ "$rc" -eq 0 ] || status=1
}

leg "RabbitMQ 3.10, every suite" \
  env WARREN_TEST_RABBITMQ=3.10 "$VENV/bin/pytest"
leg "RabbitMQ 4.3, ${BOTH_VERSIONS[*]}" \
  env WARREN_TEST_RABBITMQ=4.3 "$VENV/bin/pytest" "${BOTH_VERSIONS[@]}"
printf '%s\n' "${summary[@]}" >&2
exit "$status"
