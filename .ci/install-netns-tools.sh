#!/usr/bin/env bash
# What tests/partition needs on a fresh Debian machine, run as root by .ci/run:
#   - iproute2   `ip netns`, veth pairs and a bridge: the test hosts (testbed/netns.py)
#   - iptables   the cuts between them (`iptables -A INPUT -s <peer> -j DROP` inside a host)
#   - rabbitmq-server, if scripts/bootstrap.sh has not installed it yet (the nodes)
# Idempotent: installs only what is missing (a second run takes well under a second). It
# starts nothing and changes no firewall rule of the machine: the suite's rules live in
# namespaces of its own, created and removed by each run.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
log() { echo "install-netns-tools: $*" >&2; }
cleanup=""
probe=""
on_exit() {
  [ -z "$probe" ] || ip netns delete "$probe" 2>/dev/null || true
  [ -z "$cleanup" ] || rm -f "$cleanup"
}
trap on_exit EXIT

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "need root to install ${missing[*]}"
    exit 1
  fi
  # Keep the packages' maintainer scripts from starting the packaged RabbitMQ service.
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    cleanup="$POLICY"
  fi
  log "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Network namespaces need the kernel's support and root; say so here rather than in a test.
if [ "$(id -u)" -eq 0 ]; then
  probe="wlab-probe-$$"
  ip netns add "$probe"
  ip netns exec "$probe" iptables -w 5 -S INPUT >/dev/null
fi
ip -V
iptables --version
