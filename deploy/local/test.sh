#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, type-check, and every test against a real Kafka 4
# broker and a real PostgreSQL 15 server.
#
#   deploy/local/test.sh [PYTEST ARGS...]
#
# 1. Starts Kafka and PostgreSQL with deploy/local/{kafka,postgres}.sh on free ports in private
#    temporary directories — unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL already point at
#    running services — and exports those two variables for the tests. (Ports can be pinned with
#    ROOMSERVER_KAFKA_PORT, ROOMSERVER_KAFKA_CONTROLLER_PORT, ROOMSERVER_PG_PORT.)
# 2. Runs `ruff check .`, `mypy` (strict; settings in pyproject.toml) and `pytest -ra`, with
#    the services starting in the background meanwhile. All three run even if one fails.
# 3. Stops the services it started (also on Ctrl-C or error); keeps their logs if anything
#    failed and says where.
# Exits non-zero if anything failed. Needs ./.venv (see README.md): python3.11, java 17+, mvn.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
VENV="$REPO/.venv"
if [[ ! -x "$VENV/bin/pytest" || ! -x "$VENV/bin/ruff" || ! -x "$VENV/bin/mypy" ]]; then
    cat >&2 <<EOF
test.sh: no virtualenv with the test tools at $VENV. Create it with:
    python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
or run the whole thing, virtualenv included, with: bash .ci/run
EOF
    exit 2
fi

say() { echo "test.sh: $*" >&2; }

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

STARTED=()      # scripts whose services this run started
WORK_DIR=""     # their private directories, and what their start commands printed
declare -A SERVICE_ENV=()
FAILED=0

cleanup() {
    local script
    for script in "${STARTED[@]}"; do
        # shellcheck disable=SC2086  # SERVICE_ENV holds NAME=VALUE words without spaces
        env ${SERVICE_ENV[$script]} bash "$REPO/deploy/local/$script" stop 2>/dev/null || true
    done
    if [[ -n "$WORK_DIR" ]]; then
        if ((FAILED)); then
            say "service data and logs kept in $WORK_DIR"
        else
            rm -rf "$WORK_DIR"
        fi
    fi
}
trap cleanup EXIT
trap 'FAILED=1; exit 130' INT TERM

# Start a service in the background; its KEY=VALUE line lands in $WORK_DIR/<script>.out.
START_PIDS=()
start_service() {
    local script="$1" dir_var="$2"
    shift 2
    local settings="" var
    if [[ -z "$WORK_DIR" ]]; then
        WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/roomserver-test-XXXXXX")"
        chmod 755 "$WORK_DIR"  # PostgreSQL runs as its own user and must reach its directory
    fi
    settings="$dir_var=$WORK_DIR/${script%.sh}"
    for var in "$@"; do
        settings+=" $var=${!var:-$(free_port)}"
    done
    SERVICE_ENV[$script]="$settings"
    STARTED+=("$script")
    # shellcheck disable=SC2086
    env $settings bash "$REPO/deploy/local/$script" start >"$WORK_DIR/$script.out" &
    START_PIDS+=("$!:$script")
}

if [[ -z "${DATABASE_URL:-}" ]]; then
    start_service postgres.sh ROOMSERVER_PG_DIR ROOMSERVER_PG_PORT
else
    say "using DATABASE_URL from the environment"
fi
if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    start_service kafka.sh ROOMSERVER_KAFKA_DIR ROOMSERVER_KAFKA_PORT \
        ROOMSERVER_KAFKA_CONTROLLER_PORT
else
    say "using KAFKA_BOOTSTRAP_SERVERS from the environment"
fi

RESULTS=()
run_step() {
    local name="$1"
    shift
    say "running $*"
    if "$@"; then
        RESULTS+=("$name ok")
    else
        RESULTS+=("$name FAILED")
        FAILED=1
    fi
}

run_step ruff "$VENV/bin/ruff" check .
run_step mypy "$VENV/bin/mypy"

# Collect the services (the broker needs ~10 s; the first run of a machine also fetches jars).
services_ok=1
for entry in "${START_PIDS[@]}"; do
    IFS=: read -r pid script <<<"$entry"
    line=""
    if wait "$pid"; then
        line="$(grep -E '^[A-Z_]+=' "$WORK_DIR/$script.out" | tail -n 1 || true)"
    fi
    if [[ -n "$line" ]]; then
        export "${line?}"
        say "${script%.sh} ready: $line"
    else
        say "deploy/local/$script start failed (see the messages above)"
        services_ok=0
        FAILED=1
    fi
done

# pytest's summary line is the last thing printed: report the other steps first.
summary="$(IFS=';'; echo "${RESULTS[*]}")"
say "${summary//;/, }"
if ((services_ok)); then
    run_step pytest "$VENV/bin/pytest" -ra "$@"
else
    say "pytest NOT RUN: a service failed to start"
fi
exit "$FAILED"
