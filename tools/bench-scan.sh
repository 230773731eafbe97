#!/usr/bin/env bash
# Time `reroot check` (the /proc scan) with N extra processes running.
#
#   tools/bench-scan.sh [N=2000] [RUNS=5]
#
# Starts N `sleep` processes (each with a file of the root open, cwd on the
# root), runs `reroot check --root / --json` RUNS times with the release
# binary, prints min/median/max wall time and the number of processes
# scanned, then kills exactly the pids it started. Read-only for the system.
set -euo pipefail
n=${1:-2000}
runs=${2:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/reroot
pids=()
cleanup() { ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
for ((i = 0; i < n; i++)); do
  (cd / && exec sleep 100000 3</etc/hostname) &
  pids+=($!)
done
sleep 1
times=()
cpu=()
for ((r = 0; r < runs; r++)); do
  start=$(date +%s%N)
  scanned=$("$bin" check --root / --json | sed -n 's/^  "scanned": \([0-9]*\),$/\1/p' || true)
  end=$(date +%s%N)
  times+=($(((end - start) / 1000000)))
  # CPU time (user + system) of one more run: robust against a busy machine.
  cpu+=($( { /usr/bin/time -f '%U %S' "$bin" check --root / --json >/dev/null || true; } 2>&1 |
    tail -1 | awk '{ printf "%d", ($1 + $2) * 1000 }'))
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
min() { printf '%s\n' "$@" | sort -n | head -1; }
echo "processes scanned: $scanned (with $n extra sleeps), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "check wall ms: min $(min "${times[@]}") median $(median "${times[@]}")"
echo "check cpu ms (user+sys): min $(min "${cpu[@]}") median $(median "${cpu[@]}")"
