#!/usr/bin/env bash
# bench-paired.sh - reroot copy against the disk's own limits, measured in pairs.
#
# On a shared or virtual disk, throughput drifts by +-30% from minute to minute, more than the
# gaps bench-peers.sh tries to measure when it times every tool in a block of its own. This script
# interleaves: each iteration measures fio's sequential read (source) and write (target) rates and
# then times `reroot copy` in each verify mode, so every ratio compares numbers taken seconds apart.
# Ratios: copy (--verify hash/none) / (N/R + N/W), readback / (N/R + N/W + N/R), N = used bytes.
#
# Usage (as root): bench-paired.sh [-n ITERATIONS] IMAGE
#   IMAGE  an ext4 image (e.g. from shared/bench/make-corpus.sh), attached read-only with
#          --direct-io=on; the target is a sparse file of the same size beside BENCH_DATA.
#   Env: BENCH_DATA=/var/tmp/reroot-bench, REROOT=target/release/reroot
# Output: one line per iteration and the median of each ratio.
set -euo pipefail

ITER=6
while getopts "n:h" o; do
  case $o in n) ITER=$OPTARG ;; h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 && -f $1 ]] || { echo "usage: $0 [-n N] IMAGE" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "must run as root" >&2; exit 1; }
for t in fio losetup blkdiscard dumpe2fs python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
REROOT=${REROOT:-target/release/reroot}
[[ -x $REROOT ]] || { echo "no reroot binary at $REROOT (cargo build --release)" >&2; exit 1; }
BENCH_DATA=${BENCH_DATA:-/var/tmp/reroot-bench}
mkdir -p "$BENCH_DATA"
TGTFILE=$BENCH_DATA/paired-target-$$.img

SRC="" TGT=""
cleanup() {
  set +e
  [[ -n $TGT ]] && losetup -d "$TGT"
  [[ -n $SRC ]] && losetup -d "$SRC"
  rm -f "$TGTFILE"
}
trap cleanup EXIT
SRC=$(losetup --find --show --read-only --direct-io=on "$1")
truncate -s "$(stat -c %s "$1")" "$TGTFILE"
TGT=$(losetup --find --show --direct-io=on "$TGTFILE")
USED=$(dumpe2fs -h "$SRC" 2>/dev/null | awk -F: '/^Block count:/ {bc = $2} /^Free blocks:/ {fb = $2}
  /^Block size:/ {bs = $2} END {printf "%d", (bc - fb) * bs}')
echo "source $1 on $SRC, target $TGT, used $((USED / 1000000)) MB, load $(cut -d' ' -f1-3 /proc/loadavg)"

prep() { blkdiscard -f "$TGT" >/dev/null 2>&1; sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1; }
# seconds for "$@" plus the fsync of the target, as bench-peers.sh times every tool
timed() { local a b; a=$(date +%s.%N); "$@" >/dev/null; sync "$TGT"; b=$(date +%s.%N); echo "$b - $a" | bc; }
fio_mbps() {  # fio terse v3: field 7 = read KiB/s, 48 = write KiB/s
  fio --bs=1M --direct=1 --ioengine=io_uring --iodepth=32 --output-format=terse --terse-version=3 "$@" \
    | awk -F';' '{printf "%.0f", ($7 > 0 ? $7 : $48) * 1024 / 1e6}'
}

rows=()
for ((i = 1; i <= ITER; i++)); do
  prep; r=$(fio_mbps --name=r --filename="$SRC" --readonly --rw=read)
  prep; w=$(fio_mbps --name=w --filename="$TGT" --rw=write --end_fsync=1)
  prep; th=$(timed "$REROOT" copy -q --verify hash "$SRC" "$TGT")
  prep; tn=$(timed "$REROOT" copy -q --verify none "$SRC" "$TGT")
  prep; tr=$(timed "$REROOT" copy -q --verify readback "$SRC" "$TGT")
  rows+=("$r $w $th $tn $tr")
  echo "iteration $i: fio read $r MB/s, write $w MB/s; reroot hash $th s, none $tn s, readback $tr s"
done
printf '%s\n' "${rows[@]}" | python3 -c "
import statistics, sys
n = $USED / 1e6
h, no, rb = [], [], []
for line in sys.stdin:
    r, w, th, tn, tr = map(float, line.split())
    lim = n / r + n / w
    h.append(th / lim); no.append(tn / lim); rb.append(tr / (lim + n / r))
med = statistics.median
print(f'median ratios over {len(h)} pairs: --verify hash {med(h):.2f} x (N/R+N/W), '
      f'none {med(no):.2f} x, readback {med(rb):.2f} x (N/R+N/W+N/R); '
      f'ranges {min(h):.2f}-{max(h):.2f}, {min(no):.2f}-{max(no):.2f}, {min(rb):.2f}-{max(rb):.2f}')
"
