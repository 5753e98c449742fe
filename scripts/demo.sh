#!/usr/bin/env bash
# Runs the main job for real on this machine: brings up PostgreSQL, RabbitMQ and the KMS stand-in (installing
# them if missing), starts the Clerk sandbox, migrates a demo database, stores the sandbox instances' secret
# keys through KMS, extracts and stores the repo-scan artifact of a small demo repo (scripts/demo/repo),
# enqueues one scan job per sandbox scenario, runs the worker until every scan is finished, and prints the
# findings (id and title, evidence, why, fix).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="demo"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found: the Rust toolchain (rustup) must be installed on this machine"

work="${TMPDIR:-/tmp}/clerk-audit-demo"
mkdir -p "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "==> services (PostgreSQL, RabbitMQ, KMS stand-in)"
bash scripts/services.sh
eval "$(bash scripts/services.sh --print-env)"

echo "==> build"
cargo build --locked --quiet --package clerk-audit --package clerk-audit-sandbox
bin="$PWD/target/debug/clerk-audit"
sandbox_bin="$PWD/target/debug/clerk-audit-sandbox"

echo "==> Clerk sandbox"
"$sandbox_bin" serve --port 0 --dns-port 0 >"$work/sandbox.json" 2>"$work/sandbox.log" &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$work/sandbox.json" ]] && break; sleep 0.1; done
[[ -s "$work/sandbox.json" ]] || die "the sandbox did not start: $(tail -5 "$work/sandbox.log")"
sandbox_field() { python3 -c "import json,sys; print(json.load(open('$work/sandbox.json'))['$1'])"; }

# The worker's configuration: local defaults plus the sandbox and a demo database.
demo_db="clerk_audit_demo"
admin_url="${CLERK_AUDIT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PGOPTIONS='-c client_min_messages=warning' psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $demo_db WITH (FORCE)" -c "CREATE DATABASE $demo_db" >/dev/null
export CLERK_AUDIT_ENVIRONMENT=local
export CLERK_AUDIT_DATABASE__URL="${admin_url%/*}/$demo_db"
export CLERK_AUDIT_AMQP__URL="${CLERK_AUDIT_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export CLERK_AUDIT_KMS__ENDPOINT_URL="${CLERK_AUDIT_TEST_KMS_ENDPOINT:-http://127.0.0.1:4599}"
export CLERK_AUDIT_CLERK__BACKEND_API_URL="$(sandbox_field backend_api_url)"
export CLERK_AUDIT_SVIX__API_URL="$(sandbox_field svix_api_url)"
export CLERK_AUDIT_DNS__NAMESERVER="$(sandbox_field dns_addr)"
export CLERK_AUDIT_HTTP__ALLOW_LOOPBACK=true
export CLERK_AUDIT_OPS__LISTEN=127.0.0.1:0
# Demo queues of their own, so the demo never mixes with another worker on this broker.
export CLERK_AUDIT_AMQP__JOBS_EXCHANGE=demo.pulselight.scans
export CLERK_AUDIT_AMQP__JOBS_QUEUE=demo.clerk-audit.jobs
export CLERK_AUDIT_AMQP__RETRY_QUEUE=demo.clerk-audit.jobs.retry
export CLERK_AUDIT_AMQP__DEAD_LETTER_EXCHANGE=demo.clerk-audit.dlx
export CLERK_AUDIT_AMQP__DEAD_LETTER_QUEUE=demo.clerk-audit.jobs.dead
export CLERK_AUDIT_AMQP__FINDINGS_EXCHANGE=demo.pulselight.findings
export RUST_LOG="${RUST_LOG:-warn}"

echo "==> migrate"
"$bin" migrate >/dev/null
kms_key="$("$sandbox_bin" kms create-key)"

echo "==> connect the sandbox instances and enqueue one scan each"
scans=()
while IFS=$'\t' read -r name secret; do
    project="prj_demo_${name//-/_}"
    key_ref="$(printf '%s' "$secret" | "$bin" credentials put --project "$project" --instance "$name" --kms-key-id "$kms_key")"
    # What the platform's repo scanner does: extract the artifact from the checkout and store it.
    "$bin" repo-scan --store --project "$project" --repo-scan-id rs_demo \
        --repo github.com/acme/web --commit demo scripts/demo/repo >/dev/null
    scans+=("$("$bin" enqueue --project "$project" --instance "$name" --key-ref "$key_ref")")
done < <(python3 -c "
import json
for i in json.load(open('$work/sandbox.json'))['instances']:
    print(i['name'] + '\t' + i['secret_key'])
")

echo "==> worker (${#scans[@]} jobs)"
"$bin" events --count "${#scans[@]}" --idle-secs 60 >"$work/events.jsonl" 2>"$work/events.log" &
events=$!
pids+=("$events")
for _ in $(seq 1 100); do grep -q listening "$work/events.log" 2>/dev/null && break; sleep 0.1; done
"$bin" worker 2>"$work/worker.log" &
worker=$!
pids+=("$worker")
for _ in $(seq 1 600); do
    pending="$(psql -tA "$CLERK_AUDIT_DATABASE__URL" -c "SELECT count(*) FROM scans WHERE status <> 'running'")"
    [[ "$pending" -ge "${#scans[@]}" ]] && break
    kill -0 "$worker" 2>/dev/null || die "the worker exited: $(tail -20 "$work/worker.log")"
    sleep 0.2
done
[[ "$pending" -ge "${#scans[@]}" ]] || die "scans did not finish in time: $(tail -20 "$work/worker.log")"
wait "$events" || true
kill -TERM "$worker"
wait "$worker" || true

echo
for scan in "${scans[@]}"; do
    "$bin" report --scan-id "$scan"
    echo "------------------------------------------------------------------------"
done
python3 - "$work/events.jsonl" <<'PY'
import collections, json, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
kinds = collections.Counter(e["type"] for e in events)
print(f"{len(events)} CloudEvents received on the findings exchange: " + ", ".join(f"{n} x {t}" for t, n in sorted(kinds.items())))
PY
echo "events: $work/events.jsonl  worker log: $work/worker.log"
