#!/usr/bin/env bash
# Durable offline queueing before and after group commit, on both stores, in one run:
# `commucat bench offline` (10,000 envelopes to one absent device, each ACKed after its commit,
# then the device reconnects and the replay is timed) against release servers started here.
#
#   BEFORE=/path/to/commucat-of-main AFTER=target/release/commucat \
#   COMMUCAT_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test \
#       crates/bench/scripts/offline.sh docs/bench-results/offline-group-commit
#
# Servers: BEFORE (one transaction per enqueue; optional) and AFTER (with
# store.group_commit_max_batch = 1, i.e. one enqueue per transaction, then with the default group
# commit, from 64 senders and from 1), each on a fresh
# SQLite data directory and on a fresh PostgreSQL schema (left in the database). The load is
# always AFTER's `bench` client (it has --senders). One JSON report per run in OUT.
set -euo pipefail

AFTER=${AFTER:-${CARGO_TARGET_DIR:-target}/release/commucat}
# A binary of the base revision; unset skips its runs (the batch-of-1 runs remain).
BEFORE=${BEFORE:-}
PG=${COMMUCAT_TEST_POSTGRES:-}
OUT=${1:-bench-results/offline-group-commit}
ENVELOPES=${ENVELOPES:-10000}
ADDR=127.0.0.1:8443
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=
trap 'stop; rm -rf "$WORK"' EXIT

stop() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}

# start BIN STORE [VAR=value…]: a server on a fresh data directory (and schema).
start() {
    local bin=$1 store=$2
    shift 2
    stop
    rm -rf "$WORK/data"
    local env=(COMMUCAT_LISTEN=$ADDR COMMUCAT_SHUTDOWN_GRACE=1 RUST_LOG=warn
        COMMUCAT_RATE_LIMIT_CONNECT=0 COMMUCAT_RATE_LIMIT_REST=0 "$@")
    if [ "$store" = postgres ]; then
        env+=(COMMUCAT_STORE_URL="$PG" COMMUCAT_STORE_SCHEMA="bench_offline_$$_$RANDOM")
    fi
    env "${env[@]}" "$bin" serve --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        [ -s "$WORK/data/tls/dev_cert.pem" ] && (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null && return
        sleep 0.1
    done
    cat "$WORK/server.log" >&2
    return 1
}

bench() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    "$AFTER" bench --json --addr $ADDR --ca "$WORK/data/tls/dev_cert.pem" \
        offline --envelopes "$ENVELOPES" "$@" >"$OUT/$name.json"
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores: $(nproc)"
    echo "before: ${BEFORE:-not run}${BEFORE:+, sha256 $(sha256sum "$BEFORE" | cut -c1-16)}"
    echo "after: $AFTER, sha256 $(sha256sum "$AFTER" | cut -c1-16)"
    echo "postgres: $([ -n "$PG" ] && echo yes || echo no)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

# STORES overrides the stores run, RUNS the runs (default: all four), ENVELOPES the count.
if [ -z "${STORES:-}" ]; then
    STORES=sqlite
    [ -n "$PG" ] && STORES="sqlite postgres"
fi
for store in $STORES; do
    for run in ${RUNS:-before-64 batch1-64 after-64 after-1}; do
        case $run in
            before-64)
                [ -n "$BEFORE" ] || continue
                start "$BEFORE" "$store"
                bench "$store-$run" --senders 64 --window 4
                ;;
            batch1-64)
                start "$AFTER" "$store" COMMUCAT_STORE_GROUP_COMMIT_MAX_BATCH=1
                bench "$store-$run" --senders 64 --window 4
                ;;
            after-64)
                start "$AFTER" "$store"
                bench "$store-$run" --senders 64 --window 4
                ;;
            after-1)
                start "$AFTER" "$store"
                bench "$store-$run" --senders 1 --window 64
                ;;
        esac
    done
done
stop
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
