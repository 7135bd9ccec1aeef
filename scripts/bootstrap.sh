#!/usr/bin/env bash
# Make this machine able to run warren locally: RabbitMQ from Debian, and a venv with the deps.
# Idempotent; installs system packages only when it can (root, or sudo without a prompt).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

apt_install() {
  local missing=()
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
  command -v make >/dev/null || missing+=(make)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "warren needs: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2; exit 1
    fi
  fi
  echo "installing ${missing[*]} from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

apt_install
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import warren, pytest, ruff, grafana_foundation_sdk, mypy' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
fi
