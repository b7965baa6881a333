#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a few seconds; any crash (a panic,
# a failed invariant, a sanitizer report) fails the script. Longer runs: README, "Fuzzing".
#
#   scripts/fuzz-smoke.sh
#
# Environment: FUZZ_SECONDS (per target, default 12), FUZZ_TARGETS (default: all).
#
# The smoke build is the cheap one: cargo-fuzz's dev profile (opt-level 0, see fuzz/Cargo.toml;
# debug assertions on) without a sanitizer, in fuzz/target. Rekey's code is safe Rust, so
# coverage-guided inputs plus the targets' invariants are the point here; the longer runs by
# hand use cargo-fuzz's default optimized build with AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-12}"
# cargo-fuzz needs nightly flags (-Z sanitizer, sancov); the stable toolchain allows them with
# RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1
flags=(--dev --sanitizer none)

log() { printf '\n==> %s\n' "$*" >&2; }

# libfuzzer-sys compiles libFuzzer, which is C++.
if ! command -v c++ >/dev/null 2>&1; then
  log "Installing a C++ compiler (Debian package g++)"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "Installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

log "Building the fuzz targets"
start=$SECONDS
cargo fuzz build "${flags[@]}"
log "fuzz build took $((SECONDS - start)) s"

start=$SECONDS
for target in $targets; do
  log "Fuzzing $target for ${seconds} s"
  # The corpus grows in fuzz/corpus/<target> (gitignored); crashes land in fuzz/artifacts/.
  mkdir -p "fuzz/corpus/$target"
  output="fuzz/target/smoke-$target.log"
  if ! cargo fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$output" 2>&1; then
    tail -n 80 "$output" >&2
    echo "fuzz target $target crashed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )' "$output" || true
done
log "fuzzing took $((SECONDS - start)) s; no crashes"
