#!/usr/bin/env bash
# Audits Cargo.lock against the RustSec advisory snapshot in ../shared/reference (no network needed).
# The only accepted warnings: `backoff` and its dependency `instant` are unmaintained (kept behind src/retry.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
db="../shared/reference/rustsec-advisory-db"
if [[ ! -d "$db" ]]; then
    echo "audit: no advisory snapshot at $db; skipping" >&2
    exit 0
fi
if ! command -v cargo-audit >/dev/null 2>&1; then
    echo "audit: installing cargo-audit" >&2
    cargo install cargo-audit --locked --quiet
fi
echo "==> cargo audit"
cargo audit --db "$db" --no-fetch --stale --deny warnings \
    --ignore RUSTSEC-2025-0012 --ignore RUSTSEC-2024-0384
