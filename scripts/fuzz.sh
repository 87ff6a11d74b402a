#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECS seconds each (default 20: the
# smoke run `make test` does; use `make fuzz FUZZ_SECS=600` for real hunting).
# Crashes land in fuzz/artifacts/<target>/ and fail the run.
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them, since no other toolchain is available here.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${FUZZ_SECS:-20}
cargo_fuzz="$root/.tools/bin/cargo-fuzz"
version=0.13.1

if ! "$cargo_fuzz" --version 2>/dev/null | grep -q " $version"; then
  echo "==> cargo install cargo-fuzz $version into .tools/" >&2
  cargo install cargo-fuzz --version "$version" --locked --root "$root/.tools" --quiet
fi

export RUSTC_BOOTSTRAP=1
cd "$root"
targets=$("$cargo_fuzz" list --fuzz-dir fuzz)
"$cargo_fuzz" build --fuzz-dir fuzz
for target in $targets; do
  # A fresh corpus from the committed seeds, so runs never dirty the tree.
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  rm -rf "fuzz/artifacts/$target"
  echo "==> fuzz $target for ${secs}s" >&2
  log=$(mktemp)
  status=0
  "$cargo_fuzz" run --fuzz-dir fuzz "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
  if [ "$status" -ne 0 ]; then
    # A panic, a sanitizer report, an OOM or a timeout: show it and keep the input.
    grep -E -A12 "^(thread '|==[0-9]+==ERROR|SUMMARY)" "$log" | head -60 >&2
    echo "fuzz target $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
    echo "reproduce: RUSTC_BOOTSTRAP=1 .tools/bin/cargo-fuzz run --fuzz-dir fuzz $target fuzz/artifacts/$target/<file>" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
echo "==> fuzzing: no failures in $(echo $targets | wc -w) targets" >&2
