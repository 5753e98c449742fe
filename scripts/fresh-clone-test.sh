#!/usr/bin/env bash
# Proves that a clone of the repository passes its own tests with nothing beside it: clones the committed
# HEAD into a temporary folder (no ../shared next to it), checks that no source reads a path outside the
# repository, and runs the unit, sandbox and repo-extractor tests there. Needs no services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="fresh-clone"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-hardlinks "$PWD" "$work/clerk-audit"
cd "$work/clerk-audit"
[[ ! -e ../shared ]] || die "the temporary clone has a ../shared beside it"

echo "==> no source reads outside the repository"
if grep -rnE '\.\./shared|\.\./\.\./' src tests crates --include='*.rs'; then
    die "a source names a path outside the repository (above)"
fi

# Reuse the caller's compiled dependencies: only the clone's own crates are built again.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$OLDPWD/target}"
echo "==> unit, sandbox and repo-extractor tests in a fresh clone ($PWD)"
cargo test --locked --workspace --lib
cargo test --locked -p clerk-repo-scan --test corpus
