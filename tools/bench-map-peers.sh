#!/usr/bin/env bash
# Peer comparison for `reroot map`: wall time of reroot's map against
# e2fsprogs reading the same bitmaps (`dumpe2fs`, which prints every group)
# on the 1 TiB images `cargo bench --bench map` leaves in /var/tmp/reroot-bench.
# Warm page cache; best of 5. Usage: tools/bench-map-peers.sh [IMAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/reroot
images=("$@")
((${#images[@]})) || images=(/var/tmp/reroot-bench/map-1t-*.img)
best() { # best of 5 runs of "$@", in ms
  local b=999999 t0 t1 ms
  for _ in 1 2 3 4 5; do
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000)); ((ms < b)) && b=$ms
  done
  echo "$b"
}
printf '%-40s %12s %12s\n' image "reroot map" dumpe2fs
for img in "${images[@]}"; do
  [[ -e $img ]] || { echo "no image $img (run cargo bench --bench map first)" >&2; continue; }
  printf '%-40s %10s ms %10s ms\n' "$(basename "$img")" \
    "$(best "$bin" map --summary "$img")" "$(best dumpe2fs "$img")"
done
