#!/usr/bin/env bash
# Audits Cargo.lock against the RustSec advisory database.
# - With the offline snapshot at ../shared/reference/rustsec-advisory-db (CI, no network): uses it.
# - Otherwise: the normal way, `cargo audit` fetching the database (needs network).
# cargo-audit is installed from crates.io when missing. The only accepted warnings: `backoff` and its
# dependency `instant` are unmaintained (kept behind src/retry.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo-audit >/dev/null 2>&1; then
    echo "audit: installing cargo-audit" >&2
    cargo install cargo-audit --locked --quiet
fi
ignores=(--ignore RUSTSEC-2025-0012 --ignore RUSTSEC-2024-0384)
db="../shared/reference/rustsec-advisory-db"
if [[ -d "$db" ]]; then
    echo "==> cargo audit (offline advisory snapshot: $db)"
    cargo audit --db "$db" --no-fetch --stale --deny warnings "${ignores[@]}"
else
    echo "==> cargo audit (no offline snapshot at $db: fetching the advisory database)"
    cargo audit --deny warnings "${ignores[@]}"
fi
