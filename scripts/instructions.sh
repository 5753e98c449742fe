#!/usr/bin/env bash
# The worker's CPU cost as a count of instructions per scan: the benchmark's instant regime with the worker
# running under `valgrind --tool=callgrind`. Timings on a shared 2-core machine vary by 20% from run to
# run; the instruction count of the same build varies by about 1%, so it shows what a change did to the
# worker's own work (user space only: the kernel's share is not counted). Under valgrind the CPU's SHA
# extensions are hidden, so KMS request signing counts more than it costs natively.
#
# Usage: scripts/instructions.sh [--jobs N] [--http1] [--log-filter F] [--top N]
#   --jobs N   jobs in the run (default 1,000; the worker runs about 40 scans/s under valgrind)
#   --http1    HTTP/1.1 to the sandbox instead of h2c (as clerk-audit-bench)
#   --log-filter F  the worker's RUST_LOG (default info, production's level; as clerk-audit-bench)
#   --top N    also list the crate's N functions with the most inclusive instructions, and the N functions
#              and crates that allocate most (default 0)
# Prints the total and the instructions per scan (the worker's start included, spread over the jobs), and the
# heap allocations per scan (scripts/lib/callgrind_allocs.py: counted from the same profile's calls into the
# allocator; with --top N, by the worker's function and by crate); keeps the callgrind profile for
# callgrind_annotate.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="instructions"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

jobs=1000
top=0
bench_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    --top) top="$2"; shift 2 ;;
    --http1) bench_args+=(--http1); shift ;;
    --log-filter) bench_args+=(--log-filter "$2"); shift 2 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found: the Rust toolchain (rustup) must be installed on this machine"
have valgrind || die "valgrind not found (Debian package valgrind)"
have callgrind_annotate || die "callgrind_annotate not found (Debian package valgrind)"

eval "$(bash scripts/services.sh --print-env --only pg --only rabbitmq)"
# Line tables, so that a profile names source lines; the code generated is the release build's.
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=none
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/profiling}"
build=(cargo build --locked --release -p clerk-audit --bin clerk-audit -p clerk-audit-loadgen --bin clerk-audit-bench)
note "${build[*]}"
"${build[@]}"

out_dir="$(state_dir)/instructions-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out_dir"
worker="$(realpath "$CARGO_TARGET_DIR/release/clerk-audit")"
# Each allocator entry point once per chain of its callers, so that scripts/lib/callgrind_allocs.py can charge
# an allocation to the worker's function that caused it (a chain costs a little memory in valgrind, no
# instructions in the worker).
separate=()
for entry in _rjem_malloc _rjem_mallocx _rjem_calloc _rjem_realloc _rjem_rallocx malloc calloc realloc; do
    separate+=("--separate-callers16=$entry")
done
# The driver starts the worker through this wrapper, so the process it measures is the one under valgrind.
cat >"$out_dir/worker.sh" <<EOF
#!/usr/bin/env bash
exec valgrind --tool=callgrind --callgrind-out-file="$out_dir/callgrind.out" ${separate[*]} "$worker" "\$@" 2>>"$out_dir/valgrind.log"
EOF
chmod +x "$out_dir/worker.sh"

"$CARGO_TARGET_DIR/release/clerk-audit-bench" --worker-bin "$out_dir/worker.sh" --regime instant \
    --jobs "$jobs" "${bench_args[@]}" >"$out_dir/bench.txt"
grep -E '^(====|scans/s|jobs)' "$out_dir/bench.txt" >&2

total="$(callgrind_annotate "$out_dir/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
[[ -n "$total" ]] || die "no callgrind totals in $out_dir (see valgrind.log there)"
printf 'instructions:           %s\n' "$total"
printf 'instructions per scan:  %s\n' "$((total / jobs))"
have python3 && python3 scripts/lib/callgrind_allocs.py "$out_dir/callgrind.out" "$jobs" "$top"
printf 'profile:                %s\n' "$out_dir/callgrind.out"
if [[ "$top" -gt 0 ]]; then
    echo "the worker's functions with the most inclusive instructions (top $top):"
    callgrind_annotate --inclusive=yes "$out_dir/callgrind.out" 2>/dev/null |
        grep -E '^ *[0-9,]+ \( *[0-9.]+%\)  .*clerk_audit::' | grep -v "'" | head -n "$top"
fi
