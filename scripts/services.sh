#!/usr/bin/env bash
# Make sure the local services the tests and the demo talk to are installed,
# running and answering on loopback:
#
#   PostgreSQL  127.0.0.1:${CLERK_AUDIT_PG_PORT:-5432}   user postgres, trust auth over TCP
#   RabbitMQ    127.0.0.1:${CLERK_AUDIT_AMQP_PORT:-5672} guest/guest, all feature flags enabled
#   KMS (moto)  127.0.0.1:${MOTO_PORT:-4599}             any credentials
#
# A service that is missing is installed (Debian packages; moto from PyPI), one
# that is stopped is started, and services started here keep running after the
# script exits. Idempotent; quiet when there is nothing to do (actions taken are
# noted on stderr); exits non-zero with a message when a service can't be had.
#
# Usage: scripts/services.sh [--print-env] [--only pg|rabbitmq|kms]...
#   --print-env   after the checks, print `export` lines for the test suite and
#                 the demo on stdout (AWS_* only where not already set), for
#                 `eval "$(scripts/services.sh --print-env)"`.
#   --only NAME   check only that service (repeatable).
set -euo pipefail

LOG_PREFIX="services"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PG_PORT="${CLERK_AUDIT_PG_PORT:-5432}"
AMQP_PORT="${CLERK_AUDIT_AMQP_PORT:-5672}"
MOTO_PORT="${MOTO_PORT:-4599}"
# Range of moto releases the tests are written against (moto 5 speaks KMS with
# encryption-context enforcement). Override with CLERK_AUDIT_MOTO_PIP_SPEC.
MOTO_PIP_SPEC="${CLERK_AUDIT_MOTO_PIP_SPEC:-moto[server]>=5.1,<6}"
# Fallback virtualenv for moto when the machine's python3 refuses `pip install`
# (e.g. Debian's externally-managed python).
MOTO_VENV="${CLERK_AUDIT_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/clerk-audit/moto-venv}"

PG_WAIT=60
RABBIT_WAIT=90
MOTO_WAIT=60

print_env=0
only=()
while (($#)); do
    case "$1" in
    --print-env) print_env=1 ;;
    --only)
        [[ $# -ge 2 ]] || die "--only needs a value (pg, rabbitmq or kms)"
        case "$2" in pg | rabbitmq | kms) only+=("$2") ;; *) die "unknown service for --only: $2" ;; esac
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

wanted() {
    ((${#only[@]} == 0)) && return 0
    local s
    for s in "${only[@]}"; do [[ $s == "$1" ]] && return 0; done
    return 1
}

# ---------------------------------------------------------------------------
# PostgreSQL

pg_query_ok() {
    have psql || return 1
    local out
    out="$(PGCONNECT_TIMEOUT=5 psql -X -w -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c 'select 1' 2>/dev/null)" || return 1
    [[ $out == 1 ]]
}

pg_ready() {
    if have pg_isready; then
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 3
    else
        tcp_open 127.0.0.1 "$PG_PORT"
    fi
}

# Prints "VERSION NAME STATUS" of the cluster configured for $PG_PORT, if any.
pg_cluster_for_port() {
    pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; exit }'
}

pg_ctl() {
    # --skip-systemctl-redirect: there is no systemd on these machines.
    pg_ctlcluster --skip-systemctl-redirect "$@"
}

# Add trust for loopback TCP connections at the top of the cluster's pg_hba.conf
# (first match wins), once, and reload.
pg_trust_loopback() {
    local ver="$1" name="$2"
    local hba="/etc/postgresql/$ver/$name/pg_hba.conf"
    local marker="# clerk-audit test rig: trust loopback TCP (added by scripts/services.sh)"
    [[ -f $hba ]] || die "PostgreSQL $ver/$name answers on 127.0.0.1:$PG_PORT but refuses user postgres, and $hba does not exist to fix it"
    if grep -qF "$marker" "$hba"; then
        return 1 # already done; something else is wrong
    fi
    note "PostgreSQL $ver/$name: adding trust auth for 127.0.0.1 and ::1 to $hba"
    local tmp
    tmp="$(mktemp "$hba.XXXXXX")"
    {
        printf '%s\n' "$marker"
        printf 'host    all    all    127.0.0.1/32    trust\n'
        printf 'host    all    all    ::1/128         trust\n'
        printf '\n'
        cat "$hba"
    } >"$tmp"
    chown --reference="$hba" "$tmp"
    chmod --reference="$hba" "$tmp"
    mv "$tmp" "$hba"
    pg_ctl "$ver" "$name" reload >/dev/null 9>&-
}

ensure_postgres() {
    pg_query_ok && return 0

    if ! have pg_ctlcluster || ! have pg_lsclusters; then
        if tcp_open 127.0.0.1 "$PG_PORT"; then
            # A server we did not install answers; we only need the client to check it.
            have psql || apt_install postgresql-client
            pg_query_ok && return 0
            die "something answers on 127.0.0.1:$PG_PORT but does not accept user postgres without a password (not a Debian-packaged cluster, so not touching it)"
        fi
        note "PostgreSQL is not installed; installing it"
        apt_install postgresql
    fi

    local cluster ver name status
    cluster="$(pg_cluster_for_port)"
    if [[ -z $cluster ]]; then
        if [[ -n "$(pg_lsclusters -h 2>/dev/null)" ]]; then
            note "existing clusters:"
            pg_lsclusters >&2 || true
            die "no PostgreSQL cluster is configured for port $PG_PORT"
        fi
        ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
        [[ -n $ver ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
        note "creating PostgreSQL cluster $ver/main on port $PG_PORT"
        pg_createcluster -p "$PG_PORT" "$ver" main >/dev/null 9>&-
        cluster="$(pg_cluster_for_port)"
        [[ -n $cluster ]] || die "pg_createcluster did not create a cluster on port $PG_PORT"
    fi
    read -r ver name status <<<"$cluster"

    if [[ $status != online* ]]; then
        note "starting PostgreSQL $ver/$name"
        local log
        log="$(state_dir)/pg-start.log"
        if ! pg_ctl "$ver" "$name" start >"$log" 2>&1 9>&-; then
            # It may have been started concurrently; readiness decides below.
            pg_ready || {
                tail_log "$log"
                tail_log "/var/log/postgresql/postgresql-$ver-$name.log"
                die "could not start PostgreSQL $ver/$name"
            }
        fi
    fi

    if ! wait_for "$PG_WAIT" "PostgreSQL on 127.0.0.1:$PG_PORT" pg_ready; then
        tail_log "/var/log/postgresql/postgresql-$ver-$name.log"
        die "PostgreSQL $ver/$name is not accepting connections on 127.0.0.1:$PG_PORT (is listen_addresses set to include localhost?)"
    fi

    pg_query_ok && return 0
    have psql || apt_install postgresql-client
    pg_query_ok && return 0
    if pg_trust_loopback "$ver" "$name" && wait_for 10 "PostgreSQL reload" pg_query_ok; then
        return 0
    fi
    local err
    err="$(PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'select 1' 2>&1 >/dev/null || true)"
    die "PostgreSQL answers on 127.0.0.1:$PG_PORT but user postgres cannot connect without a password: $err"
}

# ---------------------------------------------------------------------------
# RabbitMQ

rmq() { rabbitmqctl -q "$@"; }

rabbit_configure_fresh() {
    # Only for an installation with no settings of its own (none, or Debian's
    # all-commented rabbitmq-env.conf) and no node running: name the node after
    # localhost (the machine's hostname may not resolve) and keep every
    # listener on loopback.
    local f
    for f in /etc/rabbitmq/rabbitmq-env.conf /etc/rabbitmq/rabbitmq.conf /etc/rabbitmq/advanced.config; do
        if [[ -e $f ]] && grep -Eqv '^[[:space:]]*(#|$)' "$f"; then
            return 0
        fi
    done
    if have pgrep && pgrep -u rabbitmq beam.smp >/dev/null 2>&1; then
        return 0
    fi
    note "writing a loopback-only RabbitMQ configuration to /etc/rabbitmq"
    mkdir -p /etc/rabbitmq
    cat >/etc/rabbitmq/rabbitmq-env.conf <<'CONF'
# Written by clerk-audit scripts/services.sh: a local test broker on loopback.
NODENAME=rabbit@localhost
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
CONF
    printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$AMQP_PORT" >/etc/rabbitmq/rabbitmq.conf
}

rabbit_started() {
    tcp_open 127.0.0.1 "$AMQP_PORT" && timeout 30 rabbitmqctl -q await_startup --timeout 20 >/dev/null 2>&1
}

# guest/guest works and the feature flags quorum queues need are on.
rabbit_verify() {
    local out
    if ! out="$(timeout 60 rabbitmqctl -q authenticate_user guest guest 2>&1)"; then
        die "RabbitMQ answers on 127.0.0.1:$AMQP_PORT but \`rabbitmqctl authenticate_user guest guest\` failed (guest/guest refused, or the local rabbitmqctl does not reach that broker): $out"
    fi
    if ! out="$(timeout 60 rabbitmqctl -q enable_feature_flag all 2>&1)"; then
        die "could not enable RabbitMQ feature flags: $out"
    fi
}

ensure_rabbitmq() {
    if tcp_open 127.0.0.1 "$AMQP_PORT"; then
        if have rabbitmqctl; then
            rabbit_verify
        fi
        return 0
    fi

    if ! have rabbitmq-server || ! have rabbitmqctl; then
        note "RabbitMQ is not installed; installing it"
        apt_install rabbitmq-server
    fi

    if ! timeout 30 rabbitmqctl -q ping >/dev/null 2>&1; then
        rabbit_configure_fresh
        note "starting RabbitMQ"
        local log
        log="$(state_dir)/rabbitmq-start.log"
        # The Debian wrapper drops to the rabbitmq user; -detached daemonises.
        if ! rabbitmq-server -detached >"$log" 2>&1 9>&-; then
            tail_log "$log"
            die "rabbitmq-server -detached failed"
        fi
    fi

    if ! wait_for "$RABBIT_WAIT" "RabbitMQ on 127.0.0.1:$AMQP_PORT" rabbit_started; then
        tail_log "$(state_dir)/rabbitmq-start.log"
        local f
        for f in /var/log/rabbitmq/rabbit@*.log; do
            [[ -e $f ]] && tail_log "$f"
        done
        die "RabbitMQ did not come up on 127.0.0.1:$AMQP_PORT"
    fi
    rabbit_verify
}

# ---------------------------------------------------------------------------
# KMS (moto server)

MOTO_PY=""

moto_importable() { "$1" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; }

# Set MOTO_PY to a python that has moto[server], installing it if needed.
find_or_install_moto() {
    local py
    for py in python3 "$MOTO_VENV/bin/python"; do
        if [[ $py == python3 ]]; then have python3 || continue; else [[ -x $py ]] || continue; fi
        if moto_importable "$py"; then
            MOTO_PY="$py"
            return 0
        fi
    done

    if ! have python3; then
        note "python3 is not installed; installing it"
        apt_install python3 python3-venv
    fi
    local log
    log="$(state_dir)/pip-moto.log"
    local -a pip_opts=(-q --disable-pip-version-check --no-input)
    note "installing '$MOTO_PIP_SPEC' from PyPI"
    if python3 -m pip --version >/dev/null 2>&1 &&
        python3 -m pip install "${pip_opts[@]}" --root-user-action=ignore "$MOTO_PIP_SPEC" >"$log" 2>&1 &&
        moto_importable python3; then
        MOTO_PY=python3
        return 0
    fi
    note "pip install into $(command -v python3) did not work; using a virtualenv at $MOTO_VENV"
    if ! python3 -m venv "$MOTO_VENV" >>"$log" 2>&1; then
        apt_install python3-venv
        python3 -m venv "$MOTO_VENV" >>"$log" 2>&1 || {
            tail_log "$log"
            die "could not create a virtualenv at $MOTO_VENV"
        }
    fi
    if ! "$MOTO_VENV/bin/python" -m pip install "${pip_opts[@]}" "$MOTO_PIP_SPEC" >>"$log" 2>&1 ||
        ! moto_importable "$MOTO_VENV/bin/python"; then
        tail_log "$log"
        die "could not install '$MOTO_PIP_SPEC' (full log: $log)"
    fi
    MOTO_PY="$MOTO_VENV/bin/python"
}

# True if the endpoint answers a KMS ListKeys call (any credentials will do).
kms_answers() {
    local py="${MOTO_PY:-python3}"
    have "$py" || [[ -x $py ]] || py=python3
    "$py" - "http://127.0.0.1:$MOTO_PORT/" >/dev/null 2>&1 <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(
    sys.argv[1],
    data=b"{}",
    method="POST",
    headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TrentService.ListKeys",
        "X-Amz-Date": "20240101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/kms/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00",
    },
)
with urllib.request.urlopen(req, timeout=5) as resp:
    body = json.load(resp)
sys.exit(0 if isinstance(body.get("Keys"), list) else 1)
PY
}

ensure_kms() {
    if tcp_open 127.0.0.1 "$MOTO_PORT"; then
        if kms_answers; then
            return 0
        fi
        # Maybe a moto server that is still starting: give it a moment.
        if wait_for 15 "KMS on 127.0.0.1:$MOTO_PORT" kms_answers; then
            return 0
        fi
        die "something listens on 127.0.0.1:$MOTO_PORT but does not answer KMS ListKeys (set MOTO_PORT to use another port)"
    fi

    find_or_install_moto

    local dir log pidfile
    dir="$(state_dir)"
    log="$dir/moto-$MOTO_PORT.log"
    pidfile="$dir/moto-$MOTO_PORT.pid"
    note "starting the moto KMS server on 127.0.0.1:$MOTO_PORT (log: $log)"
    # setsid + nohup: keep running after this script, and its caller's session, exit.
    setsid nohup "$MOTO_PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$log" 2>&1 </dev/null 9>&- &
    local pid=$!
    printf '%s\n' "$pid" >"$pidfile"

    local deadline=$((SECONDS + MOTO_WAIT))
    until kms_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            # Lost a race with another starter? Then the port answers now.
            sleep 1
            kms_answers && return 0
            tail_log "$log"
            die "the moto server exited before answering on 127.0.0.1:$MOTO_PORT"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$log"
            die "the moto server did not answer KMS calls on 127.0.0.1:$MOTO_PORT within ${MOTO_WAIT}s"
        fi
        sleep 1
    done
}

# ---------------------------------------------------------------------------

print_exports() {
    local -a lines=(
        "CLERK_AUDIT_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
        "CLERK_AUDIT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
        "CLERK_AUDIT_TEST_KMS_ENDPOINT=http://127.0.0.1:$MOTO_PORT"
    )
    [[ -n ${AWS_ACCESS_KEY_ID:-} ]] || lines+=("AWS_ACCESS_KEY_ID=testing")
    [[ -n ${AWS_SECRET_ACCESS_KEY:-} ]] || lines+=("AWS_SECRET_ACCESS_KEY=testing")
    [[ -n ${AWS_REGION:-} ]] || lines+=("AWS_REGION=us-east-1")
    local l
    for l in "${lines[@]}"; do
        printf 'export %s=%q\n' "${l%%=*}" "${l#*=}"
    done
}

main() {
    # One run at a time on this machine: installs and starts must not race.
    # Fd 9 holds the lock; every daemon started below gets `9>&-` so that it
    # does not inherit (and keep holding) it.
    local lock
    lock="$(state_dir)/services.lock"
    exec 9>"$lock"
    if have flock && ! flock -w 900 9; then
        die "timed out waiting for another scripts/services.sh run (lock: $lock)"
    fi

    if wanted pg; then ensure_postgres; fi
    if wanted rabbitmq; then ensure_rabbitmq; fi
    if wanted kms; then ensure_kms; fi

    exec 9>&-
    if ((print_env)); then print_exports; fi
}

main
