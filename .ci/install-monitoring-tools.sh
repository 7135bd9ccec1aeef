#!/usr/bin/env bash
# What tests/monitoring needs on a fresh Debian machine, run as root by .ci/run:
#   - prometheus + promtool 2.x (Debian's `prometheus` package, 2.42 on bookworm): promtool
#     checks the config and rules and runs the rule unit tests; the prometheus binary is
#     started privately by the live tests (free port, temp storage);
#   - prometheus + promtool 3.x (Debian unstable's packages, unpacked into
#     /opt/prometheus-3/bin): the same checks and live tests again, on what users pull;
#   - rabbitmq-server (the live tests start their own node through testbed.broker);
#   - the local/rabbitmq:4.3-management image (../shared/tools/offline-images --suite sid):
#     the live tests run a second stack on a RabbitMQ 4.x node in Docker.
# Idempotent: installs only what is missing (a second run takes about a second). It
# leaves no server running: the tests never use port 9090 or the packaged services, and a
# packaged Prometheus would only get in the way of a developer's compose stack.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
PROM3_DIR=${PROMETHEUS3_BIN:-/opt/prometheus-3/bin}
repo="$(cd "$(dirname "$0")/.." && pwd)"
log() { echo "install-monitoring-tools: $*" >&2; }

cleanup=()
on_exit() { [ "${#cleanup[@]}" -eq 0 ] || rm -rf "${cleanup[@]}"; }
trap on_exit EXIT

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "need root to install $*"
    exit 1
  fi
}

# 1. Prometheus 2.x and RabbitMQ from the machine's own Debian release.
missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
  || missing+=(prometheus)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)

if [ "${#missing[@]}" -gt 0 ]; then
  need_root "${missing[*]}"
  # Keep the packages' maintainer scripts from starting their services.
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    cleanup+=("$POLICY")
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

# 2. Prometheus 3.x beside it. Installing unstable's package would replace 2.x, so its
# two binaries are unpacked instead, through a private apt state directory that keeps
# unstable out of the machine's sources. They are Go binaries needing only libc >= 2.34
# (bookworm has 2.36). About 11 MB of package lists and 36 MB of packages.
is_prom3() { "$1" --version 2>&1 | grep -q 'version 3\.'; }
if ! is_prom3 "$PROM3_DIR/prometheus" || ! is_prom3 "$PROM3_DIR/promtool"; then
  need_root "Prometheus 3 into $PROM3_DIR"
  log "unpacking Prometheus 3 from Debian unstable into $PROM3_DIR"
  tmp="$(mktemp -d)"
  cleanup+=("$tmp")
  # The mirror the machine's apt already uses (a proxy or a local mirror may be all
  # that is reachable); deb.debian.org if none is configured.
  mirror="$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | head -n 1 | tr -d ' ' || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial" "$tmp/etc" "$tmp/root"
  : >"$tmp/status"
  cat >"$tmp/etc/unstable.sources" <<SOURCES
Types: deb
URIs: ${mirror%/}
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$tmp/etc"
            -o "Dir::State::Lists=$tmp/lists" -o "Dir::State::status=$tmp/status"
            -o "Dir::Cache::Archives=$tmp/archives" -o "Dir::Cache::pkgcache="
            -o "Dir::Cache::srcpkgcache=" -o "Acquire::Languages=none"
            -o "APT::Sandbox::User=root" -o "APT::Architectures=$(dpkg --print-architecture)")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$tmp" && apt-get "${apt_opts[@]}" download -qq prometheus promtool)
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
  install -D -m 0755 "$tmp/root/usr/bin/prometheus" "$PROM3_DIR/prometheus"
  install -D -m 0755 "$tmp/root/usr/bin/promtool" "$PROM3_DIR/promtool"
fi

# 3. RabbitMQ 4.x for the live tests: the stand-in image built from Debian unstable (no
# registry can be reached here). offline-images installs and starts Docker if no engine
# answers, builds only what is missing and takes well under a second when warm.
stand_ins="$repo/../shared/tools/offline-images"
if [ -x "$stand_ins" ]; then
  "$stand_ins" --suite sid rabbitmq >/dev/null
else
  log "no $stand_ins: the RabbitMQ 4.x live tests will not find their image"
fi

for tool in prometheus promtool "$PROM3_DIR/prometheus" "$PROM3_DIR/promtool"; do
  "$tool" --version 2>&1 | sed -n 1p
done
