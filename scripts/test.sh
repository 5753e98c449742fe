#!/usr/bin/env bash
# The project's test command (README): make sure the local services are up,
# then run the whole test suite against them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="test"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

# The machine's Rust toolchain comes from rustup; a non-login shell may lack it on PATH.
if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found: the Rust toolchain (rustup) must be installed on this machine"

echo "==> services (PostgreSQL, RabbitMQ, KMS)"
bash scripts/services.sh
service_env="$(bash scripts/services.sh --print-env)"
eval "$service_env"
printf '%s\n' "$service_env" | sed -e 's/^export /    /'

# Lints where the toolchain has them (rustup's default profile does).
if cargo fmt --version >/dev/null 2>&1; then
    echo "==> cargo fmt --check"
    cargo fmt --check
fi
if cargo clippy --version >/dev/null 2>&1; then
    echo "==> cargo clippy"
    cargo clippy --workspace --locked --all-targets --quiet -- -D warnings
fi

echo "==> cargo test --workspace --locked --all-targets ($(cargo --version))"
cargo test --workspace --locked --all-targets

# The benchmark's own tooling that no cargo test covers (scripts/instructions.sh counts allocations with it).
# python3 is there: the KMS stand-in (moto) above runs on it.
echo "==> scripts/lib/callgrind_allocs.py --self-test"
python3 scripts/lib/callgrind_allocs.py --self-test
