#!/usr/bin/env bash
# Checks the dependency graph with cargo-deny (deny.toml): licenses, bans (banned crates, wildcard
# versions, duplicate majors as warnings) and sources (crates.io only).
# - cargo-deny is installed from crates.io when missing. If it cannot be installed (no registry), the
#   check is skipped with a message saying so, and the script succeeds: it must not fail an offline CI run
#   for a tool it could not fetch.
# - Advisories are cargo audit's job (scripts/audit.sh, offline RustSec snapshot). cargo-deny's own
#   advisories check runs only when that snapshot exists at ../shared/reference/rustsec-advisory-db, and
#   without fetching.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="deny"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found: the Rust toolchain (rustup) must be installed on this machine"

if ! have cargo-deny; then
    note "installing cargo-deny from crates.io"
    if ! cargo install cargo-deny --locked --quiet; then
        note "SKIPPED: cargo-deny is not installed and could not be installed (is crates.io reachable?);"
        note "the licenses/bans/sources check did not run. Install it with: cargo install cargo-deny --locked"
        exit 0
    fi
fi

echo "==> cargo deny check licenses bans sources ($(cargo deny --version))"
cargo deny --locked check --hide-inclusion-graph licenses bans sources

snapshot="../shared/reference/rustsec-advisory-db"
if [[ ! -d "$snapshot" ]]; then
    note "no offline advisory snapshot at $snapshot: advisories are left to scripts/audit.sh"
    exit 0
fi
# cargo-deny reads a database from a git checkout at <db-path>/advisory-db-<hash of its URL>, and never
# fetches with --offline. A first run names the directory it wants; the snapshot (a plain folder) is copied
# there as a one-commit repository. Like `cargo audit --stale`, an old snapshot is accepted.
dbs="$(mktemp -d)"
trap 'rm -rf "$dbs"' EXIT
config="$dbs/deny.toml"
sed -e "s|^\[advisories\]|[advisories]\ndb-path = \"$dbs\"\ndb-urls = [\"https://github.com/rustsec/advisory-db\"]|" \
    deny.toml >"$config"
wanted="$(cargo deny --offline --locked --config "$config" check advisories 2>&1 | grep -o 'advisory-db-[0-9a-f]*' | head -n 1 || true)"
if [[ -z "$wanted" ]] || ! have git; then
    note "SKIPPED: cargo-deny's advisories check (could not place the offline snapshot); scripts/audit.sh covers advisories"
    exit 0
fi
cp -r "$snapshot" "$dbs/$wanted"
git -C "$dbs/$wanted" init --quiet
git -C "$dbs/$wanted" add --all
git -C "$dbs/$wanted" -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
    commit --quiet --message "offline snapshot"
echo "==> cargo deny check advisories (offline snapshot: $snapshot)"
cargo deny --offline --locked --config "$config" check --hide-inclusion-graph advisories
