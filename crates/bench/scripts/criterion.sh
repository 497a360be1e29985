#!/usr/bin/env bash
# Runs the criterion benches behind docs/BENCHMARKS.md and keeps their raw estimates: for every
# benchmark, criterion's estimates.json and benchmark.json are copied to
# OUT/criterion/<group>/<benchmark>/ (tables.py reads them), and OUT/criterion/run-<bench>.txt
# records when, on which commit and under which load each ran.
#
#   crates/bench/scripts/criterion.sh [OUT] [codec|handshake|store|pq]...   # default: all four
#
# `store` measures SQLite, and PostgreSQL too when COMMUCAT_TEST_POSTGRES is set (a fresh schema
# of that database). Each bench writes into a directory of its own (CRITERION_HOME), so nothing
# from an earlier run is copied.
set -euo pipefail

OUT=${1:-bench-results}
shift || true
WHICH=("$@")
[ ${#WHICH[@]} -gt 0 ] || WHICH=(codec handshake store pq)
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/criterion"

run() {
    local name=$1
    shift
    echo "== $name: cargo bench $*" >&2
    {
        echo "bench: cargo bench $*"
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)"
        echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$OUT/criterion/run-$name.txt"
    rm -rf "${WORK:?}/$name"
    (cd "$ROOT" && CRITERION_HOME="$WORK/$name" cargo bench --locked "$@")
    # <home>/<group>/<benchmark...>/new/{estimates,benchmark}.json → OUT/criterion/<group>/<benchmark...>/
    (cd "$WORK/$name" && find . -path '*/new/estimates.json') | while read -r file; do
        local dir=${file%/new/estimates.json}
        rm -rf "$OUT/criterion/${dir#./}"
        mkdir -p "$OUT/criterion/${dir#./}"
        cp "$WORK/$name/$dir/new/estimates.json" "$WORK/$name/$dir/new/benchmark.json" \
            "$OUT/criterion/${dir#./}/"
    done
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/criterion/run-$name.txt"
}

for which in "${WHICH[@]}"; do
    case $which in
        codec) run codec -p commucat-ccp --bench codec -- --warm-up-time 1 --measurement-time 4 ;;
        handshake) run handshake -p commucat-server --bench handshake ;;
        store) run store -p commucat-store --bench backends ;;
        pq) run pq -p commucat-keys --bench pq ;;
        *) echo "unknown bench: $which" >&2; exit 2 ;;
    esac
done
