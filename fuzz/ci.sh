#!/usr/bin/env bash
# Bounded fuzzing run for CI: every cargo-fuzz target in fuzz/ runs for FUZZ_SECONDS (default 60)
# from its committed seeds (fuzz/seeds/<target>, read only) plus a scratch corpus in a temporary
# directory. Any crash, panic, leak or timeout fails the run; the reproducer is left in
# fuzz/artifacts/<target>/ (see fuzz/README.md to replay or minimize it).
#
# Works on the stable toolchain: cargo-fuzz needs nightly-only sanitizer flags, which
# RUSTC_BOOTSTRAP=1 unlocks. Builds go to their own target directory outside the clone
# (FUZZ_TARGET_DIR, default ~/.cache/commucat-fuzz-target): sanitizer builds share nothing with
# the workspace's.
#
#   FUZZ_SECONDS=60     seconds per target
#   FUZZ_TARGETS="a b"  only these targets (default: every target `cargo fuzz list` prints:
#                       decoder, control_json, session, handshake, obf_unwrap, fec_symbol)
#   FUZZ_TARGET_DIR     build directory
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
target_dir="${FUZZ_TARGET_DIR:-${HOME}/.cache/commucat-fuzz-target}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    # Its own build directory, not the workspace's CARGO_TARGET_DIR.
    env -u CARGO_TARGET_DIR cargo install --locked cargo-fuzz
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "== cargo fuzz build (${target_dir})"
cargo fuzz build --target-dir "$target_dir"

failed=()
summary=()
for target in $targets; do
    corpus="$scratch/$target"
    log="$scratch/$target.log"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    args=(
        "-max_total_time=${seconds}"
        # A single input that runs this long is a hang (the session target's own waits give
        # up after 20 s).
        -timeout=120
        -print_final_stats=1
    )
    if [[ -f "fuzz/dict/$target.dict" ]]; then
        args+=("-dict=fuzz/dict/$target.dict")
    fi
    echo "== fuzz ${target}: ${seconds} s from fuzz/seeds/${target}"
    set +e
    cargo fuzz run --target-dir "$target_dir" "$target" "$corpus" "fuzz/seeds/$target" \
        -- "${args[@]}" 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|==[0-9]+==|SUMMARY|thread .* panicked|Failing input|artifact_prefix)'
    status=${PIPESTATUS[0]}
    set -e
    # libFuzzer's last status line: "#<runs> DONE cov: <edges> ft: <features> corp: <n>/<size> ...".
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
    runs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)"
    cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")"
    corp="$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$done_line")"
    summary+=("${target}: ${runs:-?} executions in ${seconds} s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, exit ${status}")
    if [[ "$status" -ne 0 ]]; then
        failed+=("$target")
        tail -n 60 "$log"
    fi
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "fuzz: failed: ${failed[*]} (reproducers in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "fuzz: $(wc -w <<<"$targets") targets, no failure"
