#!/bin/sh
# Several nodes benchmark, one run: three `commucat serve` nodes on one PostgreSQL schema and a
# private Redis (so INFO commandstats counts only this deployment), then
#   1. relay, both devices of every pair on node 1          (--target n1)
#   2. relay, the two devices of every pair on two nodes    (--target n1,n2,n3)
#   3. relay at half of (2)'s rate on three nodes, for p99 at half load
#   4. fan-out to 1,000 members spread over the three nodes
# with Redis INFO commandstats before and after each, raw output in this directory.
# Usage: BIN=target/release/commucat PG=postgres://... sh docs/bench-results/cluster/run.sh
set -eu
BIN=${BIN:-commucat}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
OUT=${OUT:-$(dirname "$0")}
PAIRS=${PAIRS:-8}
DURATION=${DURATION:-10}
SCHEMA=cluster_bench_$$
PREFIX=cluster-bench-$$:
RPORT=${RPORT:-6391}
DIR=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

redis-server --port "$RPORT" --save '' --appendonly no --daemonize no >"$DIR/redis.log" 2>&1 &
PIDS="$PIDS $!"
REDIS=redis://127.0.0.1:$RPORT
sleep 1

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # node-id data-dir port
  COMMUCAT_LISTEN=127.0.0.1:$3 COMMUCAT_STORE_URL=$PG COMMUCAT_STORE_SCHEMA=$SCHEMA \
  COMMUCAT_REDIS_URL=$REDIS COMMUCAT_REDIS_KEY_PREFIX=$PREFIX COMMUCAT_NODE_ID=$1 \
  RUST_LOG=warn "$BIN" serve --data-dir "$2" >/dev/null 2>>"$OUT/serve-warnings.txt" &
  PIDS="$PIDS $!"
}
ready() { # port
  i=0
  until curl -skf "https://127.0.0.1:$1/readyz" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 600 ] && { echo "node on $1 not ready" >&2; exit 1; }; sleep 0.1
  done
}
: >"$OUT/serve-warnings.txt"
P1=$(port); mkdir -p "$DIR/n1"; start n1 "$DIR/n1" "$P1"; ready "$P1"
P2=$(port); cp -a "$DIR/n1" "$DIR/n2"; start n2 "$DIR/n2" "$P2"
P3=$(port); cp -a "$DIR/n1" "$DIR/n3"; start n3 "$DIR/n3" "$P3"
ready "$P2"; ready "$P3"
CA=$DIR/n1/tls/dev_cert.pem
N1=127.0.0.1:$P1; ALL=$N1,127.0.0.1:$P2,127.0.0.1:$P3

{ echo "date: $(date -u +%FT%TZ)"; uname -a; nproc; uptime; "$BIN" --version 2>/dev/null || true
  redis-server --version; psql --version 2>/dev/null || true; } >"$OUT/machine.txt"

stats() { redis-cli -p "$RPORT" INFO commandstats >"$OUT/$1-commandstats.txt"; }
bench() { # name args...
  name=$1; shift
  stats "$name-before"
  echo "\$ commucat bench --json --ca CA $*" >"$OUT/$name.cmd"
  "$BIN" bench --json --ca "$CA" "$@" >"$OUT/$name.json"
  stats "$name-after"
}
bench relay-same-node --target "$N1" relay --pairs "$PAIRS" --duration "$DURATION"
bench relay-cross-node --target "$ALL" relay --pairs "$PAIRS" --duration "$DURATION"
HALF=$(python3 -c "import json; r=json.load(open('$OUT/relay-cross-node.json')); print(max(1, int(r['plain']['msgs_per_s'] / 2)))")
bench relay-cross-node-half --target "$ALL" relay --pairs "$PAIRS" --duration "$DURATION" --rate "$HALF"
bench fanout-3-nodes --target "$ALL" fanout --members 1000 --messages 200
uptime >>"$OUT/machine.txt"
