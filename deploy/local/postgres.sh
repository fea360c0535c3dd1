#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on 127.0.0.1 for tests and development, without Docker:
# initdb into a temporary directory, its own port, trust authentication on loopback.
# Durability is switched off (fsync=off, synchronous_commit=off, full_page_writes=off): a
# crash of the machine may lose or corrupt this cluster, which is fine for data that every
# `start` throws away, and it makes test databases several times faster to create and fill.
#
#   deploy/local/postgres.sh start    start (or reuse a running) cluster; last stdout line is
#                                     DATABASE_URL=postgresql://postgres@127.0.0.1:PORT/postgres
#   deploy/local/postgres.sh stop     stop it (the data directory stays until the next start)
#   deploy/local/postgres.sh status   exit 0 when running, 3 when not
#   deploy/local/postgres.sh env      print `export DATABASE_URL=...`
#   deploy/local/postgres.sh install  only make sure the server binaries are there
#
# The PostgreSQL 15 server binaries are looked for in ROOMSERVER_PG_BIN, then
# /usr/lib/postgresql/15/bin, then PATH; when none is found they are installed with apt-get
# (package postgresql-15; needs root). PostgreSQL refuses to run as root: when this script runs
# as root, the server runs as ROOMSERVER_PG_OS_USER (default: `postgres`, which the Debian
# package creates, else a system user `roomserver-pg` made with useradd).
#
# Settings (environment):
#   ROOMSERVER_PG_PORT     port on 127.0.0.1          (default 55432)
#   ROOMSERVER_PG_DIR      data directory and log     (default /tmp/roomserver-pg-PORT)
#   ROOMSERVER_PG_BIN      directory holding initdb, pg_ctl, postgres
#   ROOMSERVER_PG_OS_USER  OS user the server runs as when started by root
set -euo pipefail

PG_MAJOR=15
PORT="${ROOMSERVER_PG_PORT:-55432}"
RUN_DIR="${ROOMSERVER_PG_DIR:-${TMPDIR:-/tmp}/roomserver-pg-$PORT}"
DATA_DIR="$RUN_DIR/data"
LOG_FILE="$RUN_DIR/postgres.log"
DATABASE_URL="postgresql://postgres@127.0.0.1:$PORT/postgres"

say() { echo "postgres.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

has_server_bins() {
    [[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]
}

find_bin_dir() {
    local candidate
    for candidate in "${ROOMSERVER_PG_BIN:-}" "/usr/lib/postgresql/$PG_MAJOR/bin"; do
        if [[ -n "$candidate" ]] && has_server_bins "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    if candidate="$(command -v pg_ctl 2>/dev/null)"; then
        candidate="$(dirname "$(readlink -f "$candidate")")"
        if has_server_bins "$candidate" &&
            "$candidate/postgres" --version | grep -q " $PG_MAJOR\."; then
            echo "$candidate"
            return 0
        fi
    fi
    return 1
}

ensure_server_bins() {
    if BIN="$(find_bin_dir)"; then
        return 0
    fi
    [[ "$(id -u)" == 0 ]] ||
        die "PostgreSQL $PG_MAJOR server binaries not found and not root to install them;" \
            "install postgresql-$PG_MAJOR or set ROOMSERVER_PG_BIN"
    say "PostgreSQL $PG_MAJOR not found: installing postgresql-$PG_MAJOR with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "postgresql-$PG_MAJOR" >&2
    BIN="$(find_bin_dir)" || die "postgresql-$PG_MAJOR installed but initdb/pg_ctl still missing"
}

# Commands that touch the cluster run as an unprivileged user when we are root.
ensure_os_user() {
    OS_USER=""
    [[ "$(id -u)" == 0 ]] || return 0
    OS_USER="${ROOMSERVER_PG_OS_USER:-}"
    if [[ -z "$OS_USER" ]]; then
        if id postgres >/dev/null 2>&1; then
            OS_USER=postgres
        else
            OS_USER=roomserver-pg
        fi
    fi
    if ! id "$OS_USER" >/dev/null 2>&1; then
        say "creating system user $OS_USER to run PostgreSQL (it refuses to run as root)"
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$OS_USER"
    fi
}

as_server_user() {
    if [[ -n "$OS_USER" ]]; then
        runuser -u "$OS_USER" -- "$@"
    else
        "$@"
    fi
}

is_running() {
    [[ -f "$DATA_DIR/PG_VERSION" ]] &&
        as_server_user "$BIN/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    ensure_server_bins
    ensure_os_user
    if is_running; then
        say "already running on 127.0.0.1:$PORT (data $DATA_DIR, log $LOG_FILE)"
        echo "DATABASE_URL=$DATABASE_URL"
        return 0
    fi
    if port_open "$PORT"; then
        die "port $PORT on 127.0.0.1 is already in use by another process;" \
            "choose another with ROOMSERVER_PG_PORT"
    fi
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    if [[ -n "$OS_USER" ]]; then
        chown "$OS_USER" "$RUN_DIR"
        as_server_user test -w "$RUN_DIR" ||
            die "user $OS_USER cannot write to $RUN_DIR (is a parent directory private" \
                "to root?); choose another ROOMSERVER_PG_DIR"
    fi
    # C collation: byte order, the same everywhere, and what Matrix IDs compare by.
    if ! as_server_user "$BIN/initdb" --pgdata="$DATA_DIR" --username=postgres --auth=trust \
        --encoding=UTF8 --no-locale --no-sync >"$RUN_DIR/initdb.log" 2>&1; then
        cat "$RUN_DIR/initdb.log" >&2
        die "initdb into $DATA_DIR failed"
    fi
    cat >>"$DATA_DIR/postgresql.conf" <<EOF

# Added by deploy/local/postgres.sh: a throwaway cluster for tests and development.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN_DIR'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_min_error_statement = error
EOF
    say "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$PORT (data $DATA_DIR, log $LOG_FILE)"
    # setsid: the postmaster does not share the caller's process group, so a Ctrl-C aimed
    # at a test run does not take the database down under it; it is stopped with `stop`.
    local as_user=()
    if [[ -n "$OS_USER" ]]; then
        as_user=(runuser -u "$OS_USER" --)
    fi
    if ! setsid --wait "${as_user[@]}" "$BIN/pg_ctl" start --pgdata="$DATA_DIR" \
        --log="$LOG_FILE" --wait --timeout=60 >"$RUN_DIR/pg_ctl.log" 2>&1; then
        cat "$RUN_DIR/pg_ctl.log" >&2
        tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
        die "PostgreSQL did not start on 127.0.0.1:$PORT"
    fi
    say "ready"
    echo "DATABASE_URL=$DATABASE_URL"
}

stop() {
    ensure_server_bins
    ensure_os_user
    if ! is_running; then
        say "not running"
        return 0
    fi
    as_server_user "$BIN/pg_ctl" stop --pgdata="$DATA_DIR" --mode=fast --wait --timeout=60 \
        >/dev/null
    say "stopped (data and log kept in $RUN_DIR until the next start)"
}

status() {
    ensure_server_bins
    ensure_os_user
    if is_running; then
        say "running on 127.0.0.1:$PORT (data $DATA_DIR, log $LOG_FILE)"
        return 0
    fi
    say "not running"
    return 3
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
env) echo "export DATABASE_URL=$DATABASE_URL" ;;
install)
    ensure_server_bins
    say "PostgreSQL $PG_MAJOR server binaries in $BIN"
    ;;
*)
    echo "usage: $0 start|stop|status|env|install" >&2
    exit 2
    ;;
esac
