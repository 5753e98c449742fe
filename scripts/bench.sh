#!/usr/bin/env bash
# Benchmark of the clerk-audit worker through the real broker and database: builds the release worker and
# the driver (`clerk-audit-bench`, in crates/loadgen), makes sure RabbitMQ and PostgreSQL are up (the run uses
# its own database and queue names on them), and runs one regime.
#
# Usage: scripts/bench.sh [--regime instant|50ms|150ms|backlog] [--jobs N] [--in-flight N] [--floor] [--http1]
#   instant   closed loop, no added latency (CPU-bound), 2,000 jobs, 64 in flight
#   50ms      closed loop, 50 ms added to every Clerk, Svix and Frontend API answer
#   150ms     the same with 150 ms
#   backlog   10,000 jobs queued before the worker starts, 256 in flight (memory)
#   --floor   also measure the floor: consume -> one transaction -> confirmed publish -> ack
#   --http1   HTTP/1.1 to the sandbox instead of HTTP/2 without TLS (h2c; production's HTTPS negotiates HTTP/2)
# Prints scans/s, p50/p99 job latency, worker CPU ms per scan, peak RSS and the per-stage breakdown.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="bench"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found: the Rust toolchain (rustup) must be installed on this machine"
case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
esac

eval "$(bash scripts/services.sh --print-env --only pg --only rabbitmq)"
build=(cargo build --locked --release -p clerk-audit --bin clerk-audit -p clerk-audit-loadgen --bin clerk-audit-bench)
note "${build[*]}"
"${build[@]}"
exec target/release/clerk-audit-bench --worker-bin target/release/clerk-audit "$@"
