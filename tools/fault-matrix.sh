#!/usr/bin/env bash
# The fault matrix of tests/RELIABILITY.md, run in full: every case once
# (those that also run in CI) and the long loops (20 kills of a copy, 10
# power cuts, kill -9 and SIGHUP in each of the 10 migrate stages, EIO at
# the start and end of a migration). Each case is an integration test in
# tests/integration/{reliability,faultdev}.rs; the long ones are #[ignore]d
# there and run here with --include-ignored. The rows the tests print
# ("MATRIX | case | runs | result") become a Markdown table.
#
#   tools/fault-matrix.sh [OUT.md]      default: target/fault-matrix.md
#   REROOT_MATRIX_RUNS=N                kills / power cuts per loop (default 20 / 10)
#
# Needs root and what the tests need: qemu-utils (qemu-storage-daemon,
# qemu-img), e2fsprogs, btrfs-progs, busybox (the sandbox), util-linux.
# Every device is a loop device over a sparse file under /var/tmp; every
# migration runs in the sandbox's own namespaces (see tests/integration/migrate.rs).
# Takes about 15 minutes. Do not rebuild target/debug while it runs.
set -uo pipefail

cd "$(dirname "$0")/.."
out=${1:-target/fault-matrix.md}
log=${out%.md}.log
mkdir -p "$(dirname "$out")"
: >"$log"

[[ $(id -u) -eq 0 ]] || { echo "fault-matrix: run as root (loop devices, mounts, namespaces)" >&2; exit 2; }

cases=(
  faultdev::harness_round_trips_concurrent_direct_writes
  faultdev::the_complete_below_hint_holds_byte_for_byte
  reliability::eio_at_the_start_middle_and_end_for_copy_verify_and_delta
  reliability::enospc_on_a_file_target_that_cannot_grow
  reliability::a_target_that_disappears_in_the_middle
  reliability::a_power_cut_on_the_target_is_found_and_repaired
  reliability::kill_9_of_copy_then_resume_is_identical
  reliability::migrate_with_eio_on_the_target_rolls_back
  reliability::a_restart_is_reported_from_the_kept_journal_and_a_resumed_precopy_keeps_its_progress
  reliability::matrix_kill_9_of_copy_20_times
  reliability::matrix_power_cut_10_times
  reliability::matrix_migrate_eio_at_the_start_and_end
  reliability::matrix_migrate_kill_9_in_every_stage
  reliability::matrix_sighup_in_every_stage
)

# Build once, then run the test binary itself (the tests call target/debug/reroot).
bin=$(cargo test --test integration --no-run --message-format=json 2>>"$log" \
  | sed -n 's/.*"executable":"\([^"]*\/integration-[^"]*\)".*/\1/p' | tail -1)
[[ -x $bin ]] || { echo "fault-matrix: build failed (see $log)" >&2; exit 1; }

failed=0
status_rows=()
for c in "${cases[@]}"; do
  echo "== $c" | tee -a "$log"
  t0=$(date +%s)
  if REROOT_TEST_STRICT=1 "$bin" "$c" --exact --include-ignored --nocapture >>"$log" 2>&1; then
    st=passed
  else
    st=FAILED; failed=$((failed + 1))
  fi
  secs=$(( $(date +%s) - t0 ))
  echo "   $st in ${secs}s" | tee -a "$log"
  status_rows+=("| \`${c#*::}\` | $st | ${secs} s |")
done

{
  echo "Fault matrix, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(qemu-storage-daemon --version | head -1), commit $(git rev-parse --short HEAD)"
  echo
  echo "| case | runs | result |"
  echo "| --- | ---: | --- |"
  grep '^MATRIX | ' "$log" | sed 's/^MATRIX | /| /; s/$/ |/'
  echo
  echo "| test | status | time |"
  echo "| --- | --- | ---: |"
  printf '%s\n' "${status_rows[@]}"
} >"$out"
cat "$out"
echo "fault-matrix: $failed case(s) failed; log in $log" >&2
[[ $failed -eq 0 ]]
