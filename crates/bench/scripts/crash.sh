#!/usr/bin/env bash
# The kill -9 runs of docs/RELIABILITY.md: `commucat bench crash` with KILLS SIGKILLs of a
# `commucat serve` child under load, once on SQLite (a fresh data directory) and once on
# PostgreSQL (a fresh schema of POSTGRES_URL, skipped with a line if unset), under `nice -n 10`.
#
#   cargo build --release -p commucat
#   POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test crates/bench/scripts/crash.sh [OUT]
#
# Writes OUT/crash-sqlite.json and OUT/crash-postgres.json (the reports: ACKed, lost,
# duplicated, kills, restart times), OUT/crash-*-warnings.txt (the server's WARN and ERROR
# lines) and OUT/crash-machine.txt. Exits non-zero if a run lost an
# acknowledged envelope.
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/commucat}
# The server binary (default: BIN); the load runs in BIN.
SERVER_BIN=${SERVER_BIN:-$BIN}
OUT=${1:-bench-results}
KILLS=${KILLS:-20}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)"
    echo "load tool: $BIN, sha256 $(sha256sum "$BIN" | cut -c1-16)"
    echo "server: $SERVER_BIN, sha256 $(sha256sum "$SERVER_BIN" | cut -c1-16)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/crash-machine.txt"

status=0
run() {
    local name=$1
    shift
    echo "== crash $name: $KILLS kills" >&2
    RUST_LOG=warn nice -n 10 "$BIN" bench --json crash --kills "$KILLS" --server-bin "$SERVER_BIN" \
        --data-dir "$WORK/$name" --server-log "$WORK/$name.log" "$@" >"$OUT/crash-$name.json" \
        || status=1
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/$name.log" | grep -E ' (WARN|ERROR) ' \
        >"$OUT/crash-$name-warnings.txt" || true
    echo "$name server warnings/errors: $(wc -l <"$OUT/crash-$name-warnings.txt")" \
        >>"$OUT/crash-machine.txt"
}

run sqlite
if [ -n "${POSTGRES_URL:-}" ]; then
    run postgres --store-url "$POSTGRES_URL" --store-schema "crash_$(date +%s)_$$"
else
    echo "skipped: PostgreSQL run (POSTGRES_URL is not set)" >&2
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/crash-machine.txt"
exit $status
