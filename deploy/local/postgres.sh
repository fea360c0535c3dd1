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
#   ROOMSERVER_PG_TLS      1: secured mode (default 0)
#
# Secured mode (ROOMSERVER_PG_TLS=1): ssl=on with a server certificate for 127.0.0.1 signed
# by a test CA (tls.sh, in ROOMSERVER_TLS_DIR, default RUN_DIR/tls; share it with kafka.sh for
# one CA), and TCP connections only over TLS with scram-sha-256 passwords (pg_hba: hostssl
# scram-sha-256, everything else on TCP rejected; the Unix socket in RUN_DIR stays trust, for
# this script). The superuser `postgres` gets the password ROOMSERVER_PG_PASSWORD (default:
# random), and the printed DATABASE_URL carries it and
# sslmode=verify-full&sslrootcert=CA (test credentials: printed on purpose).
#   ROOMSERVER_PG_PASSWORD the superuser's password   (default: random)
#   ROOMSERVER_TLS_DIR     CA and certificates        (default RUN_DIR/tls)
set -euo pipefail

PG_MAJOR=15
PORT="${ROOMSERVER_PG_PORT:-55432}"
RUN_DIR="${ROOMSERVER_PG_DIR:-${TMPDIR:-/tmp}/roomserver-pg-$PORT}"
DATA_DIR="$RUN_DIR/data"
LOG_FILE="$RUN_DIR/postgres.log"
TLS="${ROOMSERVER_PG_TLS:-0}"
TLS_DIR="${ROOMSERVER_TLS_DIR:-$RUN_DIR/tls}"
# The URL clients use: in secured mode written by `start` (it holds the password; mode 600).
URL_FILE="$RUN_DIR/database_url"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

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

database_url() {
    if [[ -f "$URL_FILE" ]]; then
        cat "$URL_FILE"
    else
        echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
    fi
}

# Secured mode, after initdb: the certificate and key in the data directory (the server
# reads them as its own user, and refuses a key others can read), ssl=on, and pg_hba.conf
# that takes TCP connections only over TLS, with a SCRAM password.
secure_cluster() {
    local password="$1"
    bash "$HERE/tls.sh" "$TLS_DIR" postgres
    cp "$TLS_DIR/postgres.pem" "$DATA_DIR/server.crt"
    cp "$TLS_DIR/postgres.key" "$DATA_DIR/server.key"
    chmod 600 "$DATA_DIR/server.key"
    if [[ -n "$OS_USER" ]]; then
        chown "$OS_USER" "$DATA_DIR/server.crt" "$DATA_DIR/server.key"
    fi
    cat >>"$DATA_DIR/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
EOF
    cat >"$DATA_DIR/pg_hba.conf" <<EOF
# Written by deploy/local/postgres.sh (secured mode).
# The Unix socket lives in $RUN_DIR: only this script's user reaches it.
local     all  all                  trust
hostssl   all  all  127.0.0.1/32    scram-sha-256
host      all  all  0.0.0.0/0       reject
host      all  all  ::/0            reject
EOF
    local query="sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem"
    (
        umask 077
        echo "postgresql://postgres:$password@127.0.0.1:$PORT/postgres?$query" >"$URL_FILE"
    )
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    ensure_server_bins
    ensure_os_user
    if is_running; then
        say "already running on 127.0.0.1:$PORT (data $DATA_DIR, log $LOG_FILE)"
        echo "DATABASE_URL=$(database_url)"
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
    local auth=(--auth=trust) password=""
    if [[ "$TLS" == 1 ]]; then
        command -v openssl >/dev/null 2>&1 || die "openssl not found (it makes the test certificates)"
        password="${ROOMSERVER_PG_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')}"
        (umask 077 && echo "$password" >"$RUN_DIR/pwfile")
        if [[ -n "$OS_USER" ]]; then
            chown "$OS_USER" "$RUN_DIR/pwfile"
        fi
        auth=(--auth-local=trust --auth-host=scram-sha-256 --pwfile="$RUN_DIR/pwfile")
    fi
    # C collation: byte order, the same everywhere, and what Matrix IDs compare by.
    if ! as_server_user "$BIN/initdb" --pgdata="$DATA_DIR" --username=postgres "${auth[@]}" \
        --encoding=UTF8 --no-locale --no-sync >"$RUN_DIR/initdb.log" 2>&1; then
        cat "$RUN_DIR/initdb.log" >&2
        die "initdb into $DATA_DIR failed"
    fi
    rm -f "$RUN_DIR/pwfile"
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
    if [[ "$TLS" == 1 ]]; then
        secure_cluster "$password"
    fi
    say "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$PORT$([[ "$TLS" == 1 ]] && echo " (TLS, scram-sha-256)") (data $DATA_DIR, log $LOG_FILE)"
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
    echo "DATABASE_URL=$(database_url)"
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
env) echo "export DATABASE_URL='$(database_url)'" ;;
install)
    ensure_server_bins
    say "PostgreSQL $PG_MAJOR server binaries in $BIN"
    ;;
*)
    echo "usage: $0 start|stop|status|env|install" >&2
    exit 2
    ;;
esac
