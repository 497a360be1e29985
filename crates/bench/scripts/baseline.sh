#!/usr/bin/env bash
# Records the `commucat bench` baseline of docs/BENCHMARKS.md: a release server and the echo
# fixture in their own processes, every scenario against them, one JSON file per run in OUT.
#
#   cargo build --release -p commucat
#   crates/bench/scripts/baseline.sh [OUT]        # default OUT: bench-results
#   python3 crates/bench/scripts/plot_latency.py OUT docs/bench-latency.png
#   python3 crates/bench/scripts/tables.py OUT    # the tables of docs/BENCHMARKS.md
#
# Scenarios that measure memory get a fresh server each (its RSS before the run is the
# baseline). Everything binds loopback only.
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/commucat}
OUT=${1:-bench-results}
RATES=${RATES:-"5000 10000 20000 30000 40000 50000 60000"}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
ADDR=127.0.0.1:8443
ECHO=127.0.0.1:9443
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)
SERVER_PID=
ECHO_PID=

stop() {
    for pid in $ECHO_PID $SERVER_PID; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    ECHO_PID=
    SERVER_PID=
}
trap 'stop; rm -rf "$WORK"' EXIT

start() {
    stop
    rm -rf "$WORK/data"
    # Per-IP limits off: the load comes from loopback addresses by design.
    COMMUCAT_LISTEN=$ADDR COMMUCAT_MAX_CONNECTIONS=19000 COMMUCAT_SHUTDOWN_GRACE=1 RUST_LOG=warn \
        COMMUCAT_RATE_LIMIT_CONNECT=0 COMMUCAT_RATE_LIMIT_REST=0 \
        "$BIN" serve --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        [ -s "$WORK/data/tls/dev_cert.pem" ] && (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null && break
        sleep 0.1
    done
    "$BIN" bench echo-server --listen $ECHO --data-dir "$WORK/data" >"$WORK/echo.log" 2>&1 &
    ECHO_PID=$!
    sleep 0.5
}

bench() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    "$BIN" bench --json --addr $ADDR --ca "$WORK/data/tls/dev_cert.pem" --server-pid "$SERVER_PID" \
        "$@" >"$OUT/$name.json"
}

# The one machine description the documentation uses (tables.py reads it): `key: value` lines.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores: $(nproc)"
    echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- 'crates/*/src' Cargo.toml Cargo.lock || echo ' + uncommitted source changes')"
    echo "binary: $BIN, sha256 $(sha256sum "$BIN" | cut -c1-16)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

start
bench handshake handshake --loops 8 --count 3000
bench handshake-fresh handshake --loops 8 --count 1000 --fresh
bench relay relay --pairs 8 --size 256 --duration 10 --transport both --echo $ECHO
for rate in $RATES; do
    bench "relay-rate-$rate" relay --pairs 8 --size 256 --duration 5 --rate "$rate" --echo $ECHO
done
bench fanout fanout --members 1000 --messages 500 --window 16
bench offline offline --envelopes 10000
start
bench idle-1k idle --sessions 1000 --hold 5
start
bench idle-15k idle --sessions 15000 --concurrency 64 --hold 5
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
