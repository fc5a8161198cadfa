#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller in one JVM) for tests and CI,
# run straight from the Maven Central jars (no distribution tarball needed).
#
#   scripts/kafka/kafka.sh fetch                  # copy kafka_2.13 + deps into scripts/kafka/lib/ (once)
#   scripts/kafka/kafka.sh start DIR PORT [CPORT] # format DIR, start broker on 127.0.0.1:PORT, wait till ready
#   scripts/kafka/kafka.sh stop DIR               # SIGTERM, wait, SIGKILL fallback
#   scripts/kafka/kafka.sh status DIR             # exit 0 if the broker of DIR is running
#
# Environment (all optional):
#   KAFKA_VERSION          override the kafka_2.13 version pinned in pom.xml
#   KAFKA_LIB_DIR          where the jars go (default: scripts/kafka/lib)
#   KAFKA_HEAP_OPTS        default "-Xms128m -Xmx512m"
#   KAFKA_JVM_OPTS         GC/JIT flags (default "-XX:+UseG1GC -XX:MaxGCPauseMillis=20")
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_PYTHON           python used for the readiness probe (default: python3)
#
# DIR receives server.properties, data/ (the log dirs), kafka.log, kafka.pid.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIB="${KAFKA_LIB_DIR:-$HERE/lib}"
WORK="$HERE/target"   # git-ignored: maven staging dir, fetch lock
PYTHON="${KAFKA_PYTHON:-python3}"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- fetch

fetch_stamp() {
    # Changes whenever the pom or the requested version changes, so an old lib/ is replaced.
    local sum
    sum="$(cksum <"$HERE/pom.xml" | cut -d' ' -f1)"
    printf 'pom=%s version=%s\n' "$sum" "${KAFKA_VERSION:-pom}"
}

lib_ready() {
    [ -f "$LIB/.fetched" ] && [ "$(cat "$LIB/.fetched")" = "$(fetch_stamp)" ] \
        && compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null
}

do_fetch() {
    local stage mvnlog rc=0
    lib_ready && return 0
    have mvn || die "maven (mvn) is not on PATH and $LIB is not populated"
    have java || die "java is not on PATH"
    stage="$(mktemp -d "$WORK/lib.stage.XXXXXX")"
    mvnlog="$stage.mvn.log"
    local -a args=(-B -q -Dstyle.color=never -f "$HERE/pom.xml" "-Dkafka.lib.dir=$stage")
    [ -n "${KAFKA_VERSION:-}" ] && args+=("-Dkafka.version=$KAFKA_VERSION")
    log "fetching Apache Kafka jars with maven into $LIB ..."
    # mvn's output goes to a file (even -q leaves colour escapes behind); shown on failure.
    mvn "${args[@]}" package >"$mvnlog" 2>&1 </dev/null || rc=$?
    if [ "$rc" -ne 0 ] || ! compgen -G "$stage/kafka_2.13-*.jar" >/dev/null; then
        tail -n 40 "$mvnlog" >&2 || true
        rm -rf "$stage" "$mvnlog"
        die "maven failed to fetch kafka_2.13 (exit $rc)"
    fi
    fetch_stamp >"$stage/.fetched"
    rm -rf "$LIB" "$mvnlog"
    mv "$stage" "$LIB"
    log "fetched $(ls "$LIB" | wc -l) jars ($(basename "$(compgen -G "$LIB/kafka_2.13-*.jar")"))"
}

cmd_fetch() {
    lib_ready && return 0
    mkdir -p "$WORK" "$(dirname "$LIB")"
    if have flock; then
        # Serialise concurrent fetches (parallel test workers); the loser finds lib/ ready.
        (
            flock 9
            do_fetch
        ) 9>"$WORK/fetch.lock"
    else
        do_fetch
    fi
}

# ---------------------------------------------------------------- helpers

free_port() {
    if have "$PYTHON"; then
        "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
        return
    fi
    local p i
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        port_open "$p" || { echo "$p"; return; }
    done
    die "could not find a free port"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Readiness probe: an ApiVersions request, then a Metadata request that must list a
# broker (i.e. the broker has registered with its controller and is unfenced).
# Only the Python standard library is used.
PROBE_PY='
import socket, struct, sys

def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf

def call(s, api_key, version, body, corr):
    client = b"kafka.sh-probe"
    msg = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
    s.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", recvn(s, 4))
    data = recvn(s, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise ValueError("bad correlation id")
    return data[4:]

try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        s.settimeout(3)
        r = call(s, 18, 0, b"", 1)                    # ApiVersions v0
        if struct.unpack(">h", r[:2])[0] != 0:
            sys.exit(1)
        r = call(s, 3, 4, struct.pack(">ib", -1, 0), 2)  # Metadata v4, all topics, no auto-create
        (brokers,) = struct.unpack(">i", r[4:8])         # after throttle_time_ms
        sys.exit(0 if brokers > 0 else 1)
except Exception:
    sys.exit(1)
'

probe() {
    local port="$1" dir="$2"
    if have "$PYTHON"; then
        "$PYTHON" -c "$PROBE_PY" "$port"
    else
        port_open "$port" && grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null
    fi
}

# Process exists and is not a zombie.
pid_alive() {
    local pid="$1" state
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/stat" ]; then
        state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
        [ "$state" != Z ] || return 1
    fi
}

# pid of DIR's broker if it is alive and really a Kafka JVM (not a recycled pid), else fail.
running_pid() {
    local dir="$1" pid
    [ -f "$dir/kafka.pid" ] || return 1
    pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
    fi
    echo "$pid"
}

alive() { running_pid "$1" >/dev/null; }

log_tail() {
    local dir="$1"
    if [ -f "$dir/kafka.log" ]; then
        log "---- last lines of $dir/kafka.log ----"
        tail -n "${2:-40}" "$dir/kafka.log" >&2 || true
        log "----"
    fi
}

# ---------------------------------------------------------------- start

write_properties() {
    local dir="$1" port="$2" cport="$3"
    cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka/kafka.sh: single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${dir}/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
}

cmd_start() {
    [ $# -ge 2 ] || usage
    local dir="$1" port="$2" cport="${3:-${KAFKA_CONTROLLER_PORT:-}}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    have java || die "java is not on PATH"

    if pid="$(running_pid "$dir")"; then
        die "a broker is already running for $dir (pid $pid); run: $0 stop $dir"
    fi
    rm -f "$dir/kafka.pid"
    port_open "$port" && die "port 127.0.0.1:$port is already in use"

    cmd_fetch

    if [ -z "$cport" ]; then
        cport="$(free_port)"
        [ "$cport" != "$port" ] || cport="$(free_port)"
    fi
    [[ "$cport" =~ ^[0-9]+$ ]] || die "controller port must be a number, got '$cport'"
    port_open "$cport" && die "controller port 127.0.0.1:$cport is already in use"

    write_properties "$dir" "$port" "$cport"

    local t0=$SECONDS
    if [ ! -f "$dir/data/meta.properties" ]; then
        local cid
        # Short-lived tool JVMs: C1 only and serial GC start a little faster.
        local -a tool=(java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$LIB/*" kafka.tools.StorageTool)
        cid="$("${tool[@]}" random-uuid 2>>"$dir/format.log")" \
            || { cat "$dir/format.log" >&2; die "kafka.tools.StorageTool random-uuid failed"; }
        "${tool[@]}" format \
            --cluster-id "$cid" --config "$dir/server.properties" >>"$dir/format.log" 2>&1 \
            || { cat "$dir/format.log" >&2; die "kafka.tools.StorageTool format failed"; }
    fi

    # shellcheck disable=SC2086  # word splitting of the option strings is intended
    nohup java ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} \
        ${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20} \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$HERE/log4j2.properties" \
        "-Dkafka.logs.dir=$dir/logs" \
        -cp "$LIB/*" kafka.Kafka "$dir/server.properties" \
        </dev/null >"$dir/kafka.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/kafka.pid"

    local timeout="${KAFKA_START_TIMEOUT:-90}"
    local deadline=$((SECONDS + timeout))
    while :; do
        if ! pid_alive "$pid"; then
            local rc=0
            wait "$pid" 2>/dev/null || rc=$?
            rm -f "$dir/kafka.pid"
            log_tail "$dir"
            die "Kafka exited during startup (exit $rc); see $dir/kafka.log"
        fi
        if probe "$port" "$dir"; then
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail "$dir"
            cmd_stop "$dir" >/dev/null 2>&1 || true
            die "Kafka did not become ready on 127.0.0.1:$port within ${timeout}s; see $dir/kafka.log"
        fi
        sleep 0.2
    done
    log "Kafka ready on 127.0.0.1:$port (controller 127.0.0.1:$cport, pid $pid, $((SECONDS - t0))s)"
    echo "127.0.0.1:$port"
}

# ---------------------------------------------------------------- stop / status

cmd_stop() {
    [ $# -ge 1 ] || usage
    local dir="$1" pid
    if ! pid="$(running_pid "$dir")"; then
        rm -f "$dir/kafka.pid"
        log "no broker running for $dir"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
    while alive "$dir"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "broker pid $pid ignored SIGTERM for ${KAFKA_STOP_TIMEOUT:-30}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    rm -f "$dir/kafka.pid"
    log "stopped broker pid $pid"
}

cmd_status() {
    [ $# -ge 1 ] || usage
    local pid
    if pid="$(running_pid "$1")"; then
        echo "running (pid $pid)"
    else
        echo "not running"
        return 1
    fi
}

case "${1:-}" in
    fetch) shift; cmd_fetch "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    -h | --help | help | "") usage ;;
    *) log "unknown command: $1"; usage ;;
esac
