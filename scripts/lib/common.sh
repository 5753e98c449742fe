# shellcheck shell=bash
# Helpers shared by the project's scripts. Source it; do not run it.
# Messages go to stderr so that stdout stays clean for machine-readable output
# (e.g. `scripts/services.sh --print-env`).

# Prefix for every message; callers may set it before sourcing.
: "${LOG_PREFIX:=clerk-audit}"

note() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }

die() {
    printf '%s: error: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# Directory for logs, pid files and locks.
state_dir() {
    local d="${TMPDIR:-/tmp}/clerk-audit"
    mkdir -p "$d"
    printf '%s\n' "$d"
}

# tcp_open HOST PORT: true if something accepts TCP connections there (2 s bound).
tcp_open() {
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash.
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# wait_for SECONDS DESCRIPTION COMMAND...: run COMMAND once a second until it
# succeeds; false if it has not succeeded within SECONDS.
wait_for() {
    local secs="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + secs))
    while true; do
        if "$@"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            note "gave up waiting for $what after ${secs}s"
            return 1
        fi
        sleep 1
    done
}

# tail_log FILE: show the end of a log file on stderr, for failure messages.
tail_log() {
    if [[ -s "$1" ]]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n 30 "$1" >&2 || true
        printf -- '---\n' >&2
    fi
}

_APT_UPDATED=0

# apt_install PACKAGE...: install Debian packages non-interactively, running
# `apt-get update` once per process first. Quiet unless it fails.
apt_install() {
    have apt-get || die "need to install $* but apt-get is not available on this machine"
    if [[ $(id -u) -ne 0 ]]; then
        die "need to install $* from Debian packages, which needs root (run as root or install them by hand)"
    fi
    local log
    log="$(state_dir)/apt.log"
    export DEBIAN_FRONTEND=noninteractive
    local -a apt_opts=(-q -o DPkg::Lock::Timeout=300)
    if ((_APT_UPDATED == 0)); then
        note "apt-get update"
        # 9>&-: services that package scripts start must not inherit a caller's lock fd.
        if ! apt-get "${apt_opts[@]}" update >"$log" 2>&1 9>&-; then
            # Stale or partial lists may still be enough to install from.
            note "warning: apt-get update failed; trying to install from the lists already on the machine"
            tail_log "$log"
        fi
        _APT_UPDATED=1
    fi
    note "apt-get install $*"
    if ! apt-get "${apt_opts[@]}" install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@" >>"$log" 2>&1 9>&-; then
        tail_log "$log"
        die "apt-get install $* failed (full log: $log)"
    fi
}
