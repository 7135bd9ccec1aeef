#!/usr/bin/env bash
# `make up`: the whole stack with Docker Compose, detached, back when every
# service is healthy.  Equivalent to
#     docker compose up -d --build --wait --scale worker=4
# plus two conveniences: where the public images cannot be pulled it uses this
# machine's local stand-ins, and where no Grafana image can be had it starts
# everything else and says so.
#
#   scripts/compose-up.sh [extra `docker compose up` arguments]
#   WORKERS=8 scripts/compose-up.sh
#
# Stop with `docker compose down` (add -v to drop the broker's and Prometheus' data).
set -euo pipefail
cd "$(dirname "$0")/.."

workers="${WORKERS:-4}"

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "compose-up: no Docker engine answers here; run warren without Docker instead: make local" >&2
  exit 1
fi
if ! docker compose version >/dev/null 2>&1; then
  echo "compose-up: Docker Compose v2 (\`docker compose\`) is missing: see docs/COMPOSE.md, or run: make local" >&2
  exit 1
fi

# A machine that cannot pull (like the one warren is developed on) has a tool
# beside the checkout that builds local stand-ins and names them. The images
# may also be set in the environment or in .env, which then win.
stand_ins=../shared/tools/offline-images
if [ -z "${PYTHON_IMAGE:-}" ] && [ -x "$stand_ins" ] && ! grep -qs '^PYTHON_IMAGE=' .env; then
  echo "compose-up: using local stand-in images ($stand_ins)" >&2
  eval "$("$stand_ins" --env)"
fi

services=()  # empty: every service
if ! docker compose pull --quiet --policy missing grafana >/dev/null 2>&1; then
  echo "compose-up: no Grafana image here and none can be pulled: starting every service but grafana" >&2
  services=(rabbitmq producer worker rpc_server prometheus)
fi

docker compose up --detach --build --wait --scale "worker=$workers" "$@" ${services[@]+"${services[@]}"}

env_value() {  # NAME DEFAULT: from the environment, else .env, else the default
  local value="${!1:-}"
  if [ -z "$value" ] && [ -f .env ]; then
    value="$(sed -n "s/^$1=//p" .env | tail -n 1)"
  fi
  echo "${value:-$2}"
}
bind="$(env_value HOST_BIND 127.0.0.1)"
cat <<EOF

warren is up with $workers workers:
  RabbitMQ management  http://$bind:$(env_value MANAGEMENT_HOST_PORT 15672)  (AMQP on port $(env_value AMQP_HOST_PORT 5672))
  Prometheus           http://$bind:$(env_value PROMETHEUS_HOST_PORT 9090)
EOF
if [ ${#services[@]} -eq 0 ]; then
  echo "  Grafana              http://$bind:$(env_value GRAFANA_HOST_PORT 3000)"
fi
cat <<'EOF'
  logs:      docker compose logs -f worker
  scale:     docker compose up -d --scale worker=8
  a batch:   docker compose run --rm producer python -m producer --count 400 --heavy-light 0.2 0.02
  RPC:       docker compose exec rpc_server python -m rpc_server.client 2 3
  stop:      docker compose down        (-v also drops the data volumes)
EOF
