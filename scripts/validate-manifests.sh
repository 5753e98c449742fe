#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/ offline (no cluster, no network once installed):
# built-in kinds against the Kubernetes schemas bundled by the PyPI package kubernetes-validate
# (strict), the KEDA kinds against deploy/schemas/, and the project's own rules (probes, grace
# period, secrets, scaler on the jobs queue counting unacknowledged messages). See
# scripts/lib/validate_manifests.py.
#
# Usage: scripts/validate-manifests.sh            (KUBERNETES_VERSIONS="1.31.0 1.37.0" by default)
# The validator is installed once into target/tools/manifest-venv (override: CLERK_AUDIT_TOOLS_DIR).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="validate-manifests"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

KUBERNETES_VALIDATE_VERSION="1.37.0"
tools_dir="${CLERK_AUDIT_TOOLS_DIR:-target/tools}"
venv="$tools_dir/manifest-venv"

have python3 || apt_install python3 python3-venv
# Python 3.11+ for tomllib (reads config/default.toml).
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python3 >= 3.11 is needed ($(python3 --version))"

installed() {
    [[ -x "$venv/bin/python" ]] &&
        "$venv/bin/python" - "$KUBERNETES_VALIDATE_VERSION" <<'PY' 2>/dev/null
import sys
import kubernetes_validate, jsonschema, yaml
sys.exit(kubernetes_validate.__version__ != sys.argv[1])
PY
}

if ! installed; then
    note "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p "$tools_dir"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
        die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
fi

exec "$venv/bin/python" scripts/lib/validate_manifests.py --self-test --kubernetes-versions "${KUBERNETES_VERSIONS:-1.31.0 1.37.0}" deploy
