#!/usr/bin/env bash
# Audits Cargo.lock against the RustSec advisory database.
# - With the offline snapshot at ../shared/reference/rustsec-advisory-db (CI, no network): uses it.
# - Otherwise: the normal way, `cargo audit` fetching the database. Without network it falls back to a copy
#   fetched earlier (~/.cargo/advisory-db); with none at all the audit cannot run: it says so loudly and
#   exits 0 unless CLERK_AUDIT_REQUIRE_ADVISORIES=1 (then 1), since a machine without network cannot audit.
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
    fetched=0
    mkdir -p target
    cargo audit --deny warnings "${ignores[@]}" 2>&1 | tee target/cargo-audit.log || fetched=$?
    if ((fetched != 0)); then
        if ! grep -q "couldn't fetch advisory database" target/cargo-audit.log; then
            exit "$fetched" # the audit ran and found something
        fi
        cached="${CARGO_HOME:-$HOME/.cargo}/advisory-db"
        if [[ -d "$cached" ]]; then
            echo "==> cargo audit (offline: the copy fetched earlier at $cached)"
            cargo audit --db "$cached" --no-fetch --stale --deny warnings "${ignores[@]}"
        elif [[ "${CLERK_AUDIT_REQUIRE_ADVISORIES:-0}" == 1 ]]; then
            echo "audit: FAILED: no advisory database (no network, no snapshot, no earlier copy)" >&2
            exit 1
        else
            echo "audit: SKIPPED: no advisory database (no network, no snapshot at $db, no earlier copy);" \
                "run it where the database can be fetched, or set CLERK_AUDIT_REQUIRE_ADVISORIES=1 to fail" >&2
        fi
    fi
fi
