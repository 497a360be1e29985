#!/usr/bin/env bash
# The soak of docs/RELIABILITY.md: a release server in its own process, its maximum relay
# rate measured first (`commucat bench relay`, 8 pairs, window mode), then `commucat bench soak`
# at half that rate for DURATION seconds, the server's RSS and open descriptors sampled every
# 10 s. Everything runs under `nice -n $NICE` (default 10: the machine is shared; as root,
# NICE=-15 gives the server and the load tool priority over other work) and binds loopback only.
# A device whose session the server ends reconnects and fetches its offline queue; after the
# sending phase, DRAIN seconds (default 60) let outstanding messages arrive.
#
#   cargo build --release -p commucat
#   crates/bench/scripts/soak.sh [OUT]            # default OUT: bench-results
#   DURATION=1800 NICE=-15 NAME=soak-2 crates/bench/scripts/soak.sh docs/bench-results
#   python3 crates/bench/scripts/plot_soak.py OUT/NAME-samples.csv docs/soak.png
#
# Writes OUT/NAME-relay-max.json (the maximum), OUT/NAME.json (the report),
# OUT/NAME-samples.csv (t_s,rss_bytes,open_fds,delivered), OUT/NAME-machine.txt and
# OUT/NAME-server-warnings.txt (the server's WARN and ERROR lines); NAME defaults to soak.
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/commucat}
OUT=${1:-bench-results}
DURATION=${DURATION:-1800}
DRAIN=${DRAIN:-60}
NICE=${NICE:-10}
# Prefix of the files written (so that a new run does not replace an earlier one's).
NAME=${NAME:-soak}
# Device pairs of the soak (the maximum is measured with 8): many pairs at a low rate each, so
# that a load tool descheduled for a second on a busy machine stays far below the server's
# slow-consumer bound (`limits.mailbox_capacity`, 1024 frames per session).
PAIRS=${PAIRS:-64}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
ADDR=${ADDR:-127.0.0.1:8543}
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

COMMUCAT_LISTEN=$ADDR COMMUCAT_SHUTDOWN_GRACE=1 RUST_LOG=warn \
    COMMUCAT_RATE_LIMIT_CONNECT=0 COMMUCAT_RATE_LIMIT_REST=0 \
    nice -n "$NICE" "$BIN" serve --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
    [ -s "$WORK/data/tls/dev_cert.pem" ] && (exec 3<>/dev/tcp/${ADDR%:*}/${ADDR#*:}) 2>/dev/null && break
    sleep 0.1
done

bench() {
    nice -n "$NICE" "$BIN" bench --json --addr "$ADDR" --ca "$WORK/data/tls/dev_cert.pem" \
        --server-pid "$SERVER_PID" "$@"
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores: $(nproc)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)"
    echo "binary: $BIN, sha256 $(sha256sum "$BIN" | cut -c1-16)"
    echo "nice: $NICE (server and load tool)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/$NAME-machine.txt"

echo "== maximum relay rate" >&2
bench relay --pairs 8 --size 256 --duration 10 >"$OUT/$NAME-relay-max.json"
MAX=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["plain"]["msgs_per_s"]))' "$OUT/$NAME-relay-max.json")
RATE=$((MAX / 2))
echo "== soak at $RATE msgs/s (half of $MAX) for $DURATION s" >&2
bench soak --pairs "$PAIRS" --size 256 --rate "$RATE" --duration "$DURATION" \
    --drain "$DRAIN" --samples "$OUT/$NAME-samples.csv" >"$OUT/$NAME.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$NAME-machine.txt"
sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep -E ' (WARN|ERROR) ' >"$OUT/$NAME-server-warnings.txt" || true
echo "server warnings/errors: $(wc -l <"$OUT/$NAME-server-warnings.txt")" >>"$OUT/$NAME-machine.txt"
cat "$OUT/$NAME.json"
