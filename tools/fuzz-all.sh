#!/usr/bin/env bash
# Run every cargo-fuzz target in turn for SECONDS each (one process at a
# time: the machine is shared) and print a results table (Markdown) of runs,
# seconds, corpus size and crashes, also written to fuzz/artifacts/results.md.
# Each target starts from its committed seeds (fuzz/seeds/<target>) and its
# own growing corpus (fuzz/corpus/<target>, not committed). A crash or
# timeout leaves its input in fuzz/artifacts/<target>/ and the run goes on
# with the next target; the script then exits 1.
#
# Usage: tools/fuzz-all.sh [SECONDS] [TARGET...]   (default 600 s, all targets)
# Env:   FUZZ_SANITIZER=address|none (default none: the parsers are safe
#        Rust, so overflow checks and debug assertions, always on, find what
#        matters, at twice the speed of ASan).
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain, or
# else the stable one with RUSTC_BOOTSTRAP=1 (set here when no nightly).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
san=${FUZZ_SANITIZER:-none}

command -v cargo-fuzz >/dev/null || { echo "fuzz-all: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 2; }
tc=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  tc=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
cargo() { command cargo "${tc[@]}" "$@"; }

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi
# Build once, then run the binaries themselves: a source change while the
# run goes on does not trigger a rebuild in the middle.
cargo fuzz build -s "$san" >/dev/null
bin=target/x86_64-unknown-linux-gnu/release

# Inputs far larger than libFuzzer's 4 KiB default where the parser reads
# whole images or a device head.
max_len() {
  case $1 in
    ext_map) echo 1048576 ;;
    signature) echo 200000 ;;
    fs_superblock) echo 140000 ;;
    journal) echo 65536 ;;
    *) echo 4096 ;;
  esac
}

mkdir -p artifacts
results=artifacts/results.md
{
  echo "| target | seconds | runs | runs/s | corpus | crashes | result |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
} > "$results"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=artifacts/$t.log
  before=$(find "artifacts/$t" -type f | wc -l)
  start=$(date +%s)
  rc=0
  "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
      -max_len="$(max_len "$t")" -timeout=10 -print_final_stats=1 \
      "corpus/$t" "seeds/$t" >"$log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))
  runs=$(grep -oP '^stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1 || true)
  [[ -n $runs ]] || runs=$(grep -oP '^#\K[0-9]+' "$log" | tail -1 || echo 0)
  corpus=$(find "corpus/$t" -type f | wc -l)
  crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
  if ((rc == 0 && crashes == 0)); then
    result=ok
  else
    result="FAILED (rc $rc, see fuzz/artifacts/$t/ and fuzz/$log)"
    failed=1
  fi
  rate=$((took > 0 ? runs / took : runs))
  echo "| $t | $took | $runs | $rate | $corpus | $crashes | $result |" | tee -a "$results"
done
echo
cat "$results"
exit "$failed"
