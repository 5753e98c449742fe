#!/usr/bin/env bash
# Chaos run of the clerk-audit worker: 3 replicas of the real binary against a private RabbitMQ node and
# a private PostgreSQL cluster (started here on their own ports, restarted by the run, removed at the
# end: the machine's shared services are never touched), the sandbox with 20-150 ms latency and a few
# percent 429/5xx, and the KMS stand-in. Faults at random moments from a seeded generator; at the end every
# delivery guarantee is checked and the report printed. Exits non-zero on any violation.
#
# Usage: scripts/chaos.sh [--short] [--release] [--soak] [clerk-audit-chaos options...]
#   (default)   10,000 jobs over 10 minutes of faults (the long run)
#   --short     600 jobs over 90 s of faults (CI, about 2-3 minutes)
#   --soak      one replica, steady arrival rate, RSS sampled every 10 s
#               (add --minutes 30 --rate R; see clerk-audit-chaos --help)
#   --release   build and run the release worker binary
# Anything else is passed to clerk-audit-chaos (e.g. --seed 42 --jobs 2000 --duration-secs 120).
# Needs root (or the rabbitmq and postgres users' rights) for the private servers; installs the Debian
# packages rabbitmq-server and postgresql when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="chaos"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found: the Rust toolchain (rustup) must be installed on this machine"

profile=debug
short=0
args=()
while (($#)); do
    case "$1" in
    --short) short=1 ;;
    --release) profile=release ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) args+=("$1") ;;
    esac
    shift
done
if ((short)); then
    args=(--jobs 600 --duration-secs 90 --fault-every-secs 5 --settle-secs 300 "${args[@]}")
fi

# The servers the run starts privately (the binaries only; nothing is started here).
if [[ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
    note "RabbitMQ is not installed; installing it"
    apt_install rabbitmq-server
fi
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    note "PostgreSQL is not installed; installing it"
    apt_install postgresql
fi
# The Debian package may start its own node on install; the run does not need or touch it.

build=(cargo build --locked -p clerk-audit --bin clerk-audit -p clerk-audit-loadgen --bin clerk-audit-chaos)
[[ $profile == release ]] && build+=(--release)
note "${build[*]}"
"${build[@]}"

exec "target/$profile/clerk-audit-chaos" --worker-bin "target/$profile/clerk-audit" "${args[@]}"
