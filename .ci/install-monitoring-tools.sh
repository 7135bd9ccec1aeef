#!/usr/bin/env bash
# What tests/monitoring needs on a fresh Debian machine, run as root by .ci/run:
#   - prometheus + promtool (Debian's `prometheus` package, 2.42 on bookworm): promtool
#     checks the config and rules and runs the rule unit tests; the prometheus binary is
#     started privately by the live tests (free port, temp storage);
#   - rabbitmq-server (the live tests start their own node through testbed.broker).
# Idempotent: installs only what is missing. It leaves no server running: the tests
# never use port 9090 or the packaged services, and a packaged Prometheus would only
# get in the way of a developer's compose stack.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d

missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
  || missing+=(prometheus)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-monitoring-tools: need root to install ${missing[*]}" >&2
    exit 1
  fi
  # Keep the packages' maintainer scripts from starting their services.
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
  fi
  apt-get update -qq
  # --no-install-recommends: prometheus recommends prometheus-node-exporter (port 9100,
  # the services' METRICS_PORT), which nothing here needs.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Stop a packaged Prometheus if one was started anyway (its own init script, its own pid).
pidfile=/run/prometheus/prometheus.pid
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  if [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop || true
  fi
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" || true
  fi
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

prometheus --version 2>&1 | sed -n 1p
promtool --version 2>&1 | sed -n 1p
