#!/usr/bin/env bash
# The connect flood of docs/RELIABILITY.md: a release server in its own process, and
# `commucat bench flood` opening 15,000 TLS connections that never send a request (each from its
# own 127.x.y.z source address) while bystander pairs keep completing handshakes and chatting.
#
#   cargo build --release -p commucat
#   crates/bench/scripts/flood.sh [OUT]        # default OUT: docs/reliability-results/flood
#
# Two runs, each on a fresh server with the default bounds except where stated:
#   held.json  bounds.idle_connection_timeout = 600 s: the server holds every connection for
#              the whole hold, bystanders served throughout;
#   idle.json  the default 30 s idle time-out, a 40 s hold: the server closes them itself.
# Everything binds loopback only; every loop of the load tool is bounded in count and time.
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/commucat}
OUT=${1:-docs/reliability-results/flood}
CONNECTIONS=${CONNECTIONS:-15000}
ADDR=127.0.0.1:8443
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)
SERVER_PID=

stop() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}
trap 'stop; rm -rf "$WORK"' EXIT

# start VAR=VALUE...: a fresh server with these extra settings.
start() {
    stop
    rm -rf "$WORK/data"
    env COMMUCAT_LISTEN=$ADDR COMMUCAT_MAX_CONNECTIONS=19000 COMMUCAT_SHUTDOWN_GRACE=1 \
        COMMUCAT_RATE_LIMIT_CONNECT=0 COMMUCAT_RATE_LIMIT_REST=0 RUST_LOG=warn "$@" \
        "$BIN" serve --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        [ -s "$WORK/data/tls/dev_cert.pem" ] && (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null && break
        sleep 0.1
    done
}

flood() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    "$BIN" bench --json --addr $ADDR --ca "$WORK/data/tls/dev_cert.pem" --server-pid "$SERVER_PID" \
        flood --connections "$CONNECTIONS" "$@" >"$OUT/$name.json"
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores: $(nproc)"
    echo "commit: $(git rev-parse --short HEAD)"
    echo "binary: $BIN, sha256 $(sha256sum "$BIN" | cut -c1-16)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

start COMMUCAT_BOUND_IDLE_CONNECTION_TIMEOUT=600
flood held --concurrency 64 --hold 20 --bystanders 4 --messages 10
start
flood idle --concurrency 64 --hold 40 --bystanders 4 --messages 10
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
