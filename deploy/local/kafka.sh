#!/usr/bin/env bash
# A throwaway single-node Apache Kafka broker (KRaft, combined broker+controller) on 127.0.0.1,
# without Docker: the broker's jars come from Maven Central via Maven into a cache directory
# outside the repository and are reused between runs; each `start` formats fresh storage.
#
#   deploy/local/kafka.sh start    start (or reuse a running) broker; last stdout line is
#                                  KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT
#   deploy/local/kafka.sh stop     stop it (data and logs stay until the next start)
#   deploy/local/kafka.sh status   exit 0 when running, 3 when not
#   deploy/local/kafka.sh env      print `export KAFKA_BOOTSTRAP_SERVERS=...`
#   deploy/local/kafka.sh fetch    only resolve the jars into the cache
#
# Settings (environment):
#   ROOMSERVER_KAFKA_VERSION          Apache Kafka version            (default 4.1.2)
#   ROOMSERVER_KAFKA_PORT             client listener port            (default 19092)
#   ROOMSERVER_KAFKA_CONTROLLER_PORT  KRaft controller listener port  (default 19093)
#   ROOMSERVER_CACHE_DIR              jar cache root                  (default ~/.cache/roomserver)
#   ROOMSERVER_KAFKA_DIR              config, data, logs, pid file    (default /tmp/roomserver-kafka-PORT)
#   ROOMSERVER_KAFKA_HEAP             JVM heap                        (default 1g)
#   ROOMSERVER_KAFKA_MESSAGE_MAX_BYTES  largest record batch accepted (default 10485760 = 10 MiB)
#   ROOMSERVER_KAFKA_START_TIMEOUT    seconds to wait for readiness   (default 120)
#   ROOMSERVER_KAFKA_SECURITY         plaintext, or sasl_ssl          (default plaintext)
#
# Secured mode (ROOMSERVER_KAFKA_SECURITY=sasl_ssl): the client listener speaks SASL/SCRAM-SHA-512
# over TLS only. The broker's certificate (PKCS12 keystore) is signed by a test CA made with
# tls.sh in ROOMSERVER_TLS_DIR (default RUN_DIR/tls; give kafka.sh and postgres.sh the same
# directory and they share one CA). The SCRAM users are created when the KRaft storage is
# formatted (kafka-storage format --add-scram): `admin` (the broker's own, and the readiness
# probe's) and the client user below. `start` then prints, before the bootstrap line,
# KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and
# KAFKA_SSL_CAFILE lines (test credentials: they are printed on purpose).
#   ROOMSERVER_KAFKA_SASL_USERNAME    client SCRAM user               (default roomserver)
#   ROOMSERVER_KAFKA_SASL_PASSWORD    its password                    (default: random)
#   ROOMSERVER_TLS_DIR                CA and certificates             (default RUN_DIR/tls)
set -euo pipefail

KAFKA_VERSION="${ROOMSERVER_KAFKA_VERSION:-4.1.2}"
SCALA_VERSION="2.13"
LOG4J_VERSION="2.25.3"
# Kafka's own jars call the SLF4J 1.7 API; SLF4J 2 serves those callers too and is what the
# log4j2 binding below needs (nearest declaration wins in Maven, so it overrides 1.7.36).
SLF4J_VERSION="2.0.17"
PORT="${ROOMSERVER_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${ROOMSERVER_KAFKA_CONTROLLER_PORT:-19093}"
CACHE_ROOT="${ROOMSERVER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/roomserver}"
KAFKA_HOME="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
RUN_DIR="${ROOMSERVER_KAFKA_DIR:-${TMPDIR:-/tmp}/roomserver-kafka-$PORT}"
HEAP="${ROOMSERVER_KAFKA_HEAP:-1g}"
MESSAGE_MAX_BYTES="${ROOMSERVER_KAFKA_MESSAGE_MAX_BYTES:-10485760}"
START_TIMEOUT="${ROOMSERVER_KAFKA_START_TIMEOUT:-120}"
SECURITY="${ROOMSERVER_KAFKA_SECURITY:-plaintext}"
BOOTSTRAP="127.0.0.1:$PORT"
PID_FILE="$RUN_DIR/kafka.pid"
LOG_DIR="$RUN_DIR/logs"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TLS_DIR="${ROOMSERVER_TLS_DIR:-$RUN_DIR/tls}"
# What a client needs, written by a secured start (KEY=VALUE lines; secrets, so mode 600).
CLIENT_ENV="$RUN_DIR/client.env"
# The readiness probe's client settings in secured mode.
PROBE_PROPERTIES="$RUN_DIR/probe.properties"
case "$SECURITY" in
plaintext | sasl_ssl) ;;
*)
    echo "kafka.sh: ERROR: ROOMSERVER_KAFKA_SECURITY must be plaintext or sasl_ssl, not $SECURITY" >&2
    exit 2
    ;;
esac

say() { echo "kafka.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH; $2"
}

# Resolve the broker's jars with Maven into $LIBS, once per version. A lock keeps two
# concurrent first runs from racing; the jars land in a temporary directory that is renamed
# into place only when complete, so an interrupted download is never mistaken for a cache.
fetch_jars() {
    if [[ -f "$LIBS/.complete" ]]; then
        return 0
    fi
    need java "install a JDK 17+ (Kafka 4 brokers need Java 17)"
    need mvn "install Maven (apt-get install maven)"
    mkdir -p "$KAFKA_HOME"
    exec 9>"$KAFKA_HOME/.lock"
    flock 9
    if [[ -f "$LIBS/.complete" ]]; then
        exec 9>&-
        return 0
    fi
    say "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
    cat >"$KAFKA_HOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.roomserver</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    rm -rf "$LIBS.tmp"
    if ! mvn -q -B -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$LIBS.tmp" -DincludeScope=runtime >"$KAFKA_HOME/mvn.log" 2>&1; then
        tail -n 40 "$KAFKA_HOME/mvn.log" >&2
        die "Maven could not resolve org.apache.kafka:kafka_$SCALA_VERSION:$KAFKA_VERSION" \
            "(full log: $KAFKA_HOME/mvn.log)"
    fi
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    touch "$LIBS/.complete"
    exec 9>&-
    say "cached $(find "$LIBS" -name '*.jar' | wc -l) jars in $LIBS"
}

running_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

random_secret() {
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))'
}

# The client listener: plain text, or SASL/SCRAM over TLS (the controller listener stays plain
# text on 127.0.0.1: only this node uses it).
listener_config() {
    if [[ "$SECURITY" == plaintext ]]; then
        cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
        return
    fi
    cat <<EOF
listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PASSWORD";
ssl.keystore.type=PKCS12
ssl.keystore.location=$RUN_DIR/keystore.p12
ssl.keystore.password=$KEYSTORE_PASSWORD
ssl.key.password=$KEYSTORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.client.auth=none
EOF
}

# Secured mode: the certificate, the keystore, the passwords, the probe's settings.
prepare_security() {
    [[ "$SECURITY" == sasl_ssl ]] || return 0
    need openssl "install openssl (it makes the test certificates)"
    bash "$HERE/tls.sh" "$TLS_DIR" kafka
    ADMIN_PASSWORD="$(random_secret)"
    KEYSTORE_PASSWORD="$(random_secret)"
    CLIENT_USER="${ROOMSERVER_KAFKA_SASL_USERNAME:-roomserver}"
    CLIENT_PASSWORD="${ROOMSERVER_KAFKA_SASL_PASSWORD:-$(random_secret)}"
    openssl pkcs12 -export -in "$TLS_DIR/kafka.pem" -inkey "$TLS_DIR/kafka.key" \
        -certfile "$TLS_DIR/ca.pem" -name kafka -out "$RUN_DIR/keystore.p12" \
        -passout "pass:$KEYSTORE_PASSWORD"
    (
        umask 077
        cat >"$PROBE_PROPERTIES" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
EOF
        cat >"$CLIENT_ENV" <<EOF
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=$CLIENT_USER
KAFKA_SASL_PASSWORD=$CLIENT_PASSWORD
KAFKA_SSL_CAFILE=$TLS_DIR/ca.pem
EOF
    )
}

# kafka-storage format arguments: the SCRAM users, in secured mode.
scram_users() {
    [[ "$SECURITY" == sasl_ssl ]] || return 0
    printf '%s\n' "--add-scram" "SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]" \
        "--add-scram" "SCRAM-SHA-512=[name=$CLIENT_USER,password=$CLIENT_PASSWORD]"
}

# What `start` prints: the client settings (secured mode), then the bootstrap line last.
print_client_env() {
    if [[ -f "$CLIENT_ENV" ]]; then
        cat "$CLIENT_ENV"
    fi
    echo "KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
}

write_config() {
    cat >"$RUN_DIR/server.properties" <<EOF
# Generated by deploy/local/kafka.sh: a single combined KRaft node for tests and development.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
log.dirs=$RUN_DIR/data
$(listener_config)

# Topics are created explicitly (by the roomserver's setup and by the test fixtures).
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1

# One node: every internal topic has a single replica. Fewer internal partitions than the
# default 50 make the first consumer group and the first transaction start faster.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests join consumer groups all the time: don't wait for more members to arrive.
group.initial.rebalance.delay.ms=0

# A state-rewriting join into a big room lists ~100k state event IDs: allow record batches
# up to $MESSAGE_MAX_BYTES bytes (Kafka's default is ~1 MiB). Producers must raise
# max.request.size / max_request_size to match; consumers fetch oversized batches anyway.
message.max.bytes=$MESSAGE_MAX_BYTES
replica.fetch.max.bytes=$MESSAGE_MAX_BYTES
EOF
    cat >"$RUN_DIR/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="server" fileName="$LOG_DIR/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
EOF
}

log_tail() {
    say "last lines of $LOG_DIR/server.log:"
    tail -n 40 "$LOG_DIR/server.log" >&2 2>/dev/null || true
    if [[ -s "$LOG_DIR/kafka.out" ]]; then
        say "last lines of $LOG_DIR/kafka.out:"
        tail -n 20 "$LOG_DIR/kafka.out" >&2
    fi
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail
            die "the broker (pid $pid) exited during startup"
        fi
        # Cheap check first; the metadata probe starts a JVM.
        if port_open "$PORT" &&
            java -cp "$LIBS/*" "$HERE/KafkaReady.java" "$BOOTSTRAP" 10000 \
                "$([[ "$SECURITY" == sasl_ssl ]] && echo "$PROBE_PROPERTIES")" \
                >>"$LOG_DIR/ready.log" 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    log_tail
    die "the broker did not answer a metadata request on $BOOTSTRAP within ${START_TIMEOUT}s" \
        "(raise ROOMSERVER_KAFKA_START_TIMEOUT if this machine is slow)"
}

start() {
    local pid
    if pid="$(running_pid)"; then
        say "already running (pid $pid), logs in $LOG_DIR"
        print_client_env
        return 0
    fi
    fetch_jars
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            die "port $p on 127.0.0.1 is already in use by another process;" \
                "choose others with ROOMSERVER_KAFKA_PORT / ROOMSERVER_KAFKA_CONTROLLER_PORT"
        fi
    done
    rm -rf "$RUN_DIR/data" "$LOG_DIR" "$CLIENT_ENV" "$PROBE_PROPERTIES"
    mkdir -p "$RUN_DIR/data" "$LOG_DIR"
    prepare_security
    (
        umask 077  # server.properties holds the keystore and admin passwords in secured mode
        write_config
    )
    local cluster_id
    # "=" form below: a random ID may start with "-", which the tool would take for a flag.
    cluster_id="$(python3 -c 'import base64, uuid
print(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())')"
    local java_opts=(
        "-Xms256m" "-Xmx$HEAP" "-XX:+ExitOnOutOfMemoryError" "-Djava.awt.headless=true"
        "-Dlog4j2.configurationFile=$RUN_DIR/log4j2.xml" "-Dkafka.logs.dir=$LOG_DIR"
    )
    local scram=()
    mapfile -t scram < <(scram_users)
    if ! java "${java_opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
        --cluster-id="$cluster_id" --config "$RUN_DIR/server.properties" "${scram[@]}" \
        >"$LOG_DIR/format.log" 2>&1; then
        cat "$LOG_DIR/format.log" >&2
        die "formatting the KRaft storage in $RUN_DIR/data failed"
    fi
    say "starting Apache Kafka $KAFKA_VERSION (KRaft, $SECURITY) on $BOOTSTRAP, logs in $LOG_DIR"
    # setsid: the broker outlives the shell that started it and ignores its terminal's signals;
    # it is stopped by pid. No inherited stdio, so a caller reading our output isn't held open.
    setsid java "${java_opts[@]}" -cp "$LIBS/*" kafka.Kafka "$RUN_DIR/server.properties" \
        </dev/null >"$LOG_DIR/kafka.out" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"
    wait_ready "$pid"
    say "ready (pid $pid)"
    print_client_env
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        say "not running"
        rm -f "$PID_FILE"
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "broker (pid $pid) ignored SIGTERM for 30s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    say "stopped (logs kept in $LOG_DIR)"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        say "running (pid $pid) on $BOOTSTRAP, logs in $LOG_DIR"
        return 0
    fi
    say "not running"
    return 3
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
env) print_client_env | sed 's/^/export /' ;;
fetch) fetch_jars ;;
*)
    echo "usage: $0 start|stop|status|env|fetch" >&2
    exit 2
    ;;
esac
