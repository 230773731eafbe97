#!/usr/bin/env bash
# bench-peers.sh - time `reroot copy` against existing block-copy tools ("peers") copying an ext4
# source device to a target device, plus the physical limits (fio) and the hashing cost, and verify
# every copy. Started from shared/bench/peers.sh; adds the reroot rows (each --verify mode, the sync
# engine), a queue-depth x chunk-size sweep, reroot's peak memory, and ratios to e2image -ra and to
# the N/R+N/W (copy) and N/R+N/W+N/R (copy + readback) limits.
#
# Usage (as root):
#   bench-peers.sh [-r RUNS] [-m MODES] [-s SECTIONS] [-o OUTDIR] IMAGE
#     IMAGE        ext4 image file (e.g. from make-corpus.sh); attached READ-ONLY on a loop device
#     -r RUNS      timed runs per peer (default 3); the table shows the median
#     -m MODES     loop modes, space/comma list (default "direct"):
#                    buffered = losetup --direct-io=off (loop I/O goes through the backing
#                               file's page cache), direct = --direct-io=on
#     -s SECTIONS  comma list of reroot,copy,fio,sweep,memory,mixed,hash,raw (default
#                  reroot,copy,fio,memory). reroot = reroot copy rows; copy = the peers;
#                  e2image = only the e2image -ra row of the peers (quick reruns);
#                  sweep = reroot --verify hash at queue depths 4..64 x chunks 256K..4M (one run
#                  each unless -r); memory = peak RSS of one default reroot copy (GNU time). mixed = fio reading the
#                  source and writing the target at the same time (do reads and writes overlap?);
#                  raw = fio on the image file itself and on a scratch file, no loop device
#     -o OUTDIR    results dir (default $BENCH_DATA/results/<image>-<YYYYmmdd-HHMMSS>)
#   bench-peers.sh -T OUTDIR   re-render OUTDIR/results.md from OUTDIR/results.tsv and meta.env
#   Env: BENCH_DATA=/var/tmp/reroot-bench (target files, mountpoint, results)
#        REROOT=target/release/reroot (the binary under test; build with cargo build --release)
#
# Per mode: the source loop device and a target loop device on a fresh sparse file of the same
# size are attached with the same --direct-io setting. Every timed run (hyperfine) is prepared by:
# discarding the target (blkdiscard on the loop device punches the backing file back to a sparse
# file), sync, echo 3 > /proc/sys/vm/drop_caches, sleep 1. Every copy command ends with
# `sync <target>` (fsync of the target device -> loop flush -> fsync of the backing file), so the
# time covers data reaching the virtual disk, not the page cache.
#
# Peers: dd bs=8M (plain, iflag/oflag=direct, conv=sparse), e2image -ra -p, partclone.ext4 -b,
# cp --sparse=always of the image file, a negative control (e2image -r without -a: metadata
# only, must FAIL verification) and a page-cache control (dd with the source already cached and no
# final fsync: shows how a naive measurement flatters). Limits: fio sequential read of the source and write of the target
# (O_DIRECT, bs=1M, libaio/io_uring, iodepth 16/32). Hashing: xxhsum -H3 and b3sum of the source
# device, cold (after drop_caches) and hot (from page cache, buffered mode only).
#
# Verification of each copy (target as left by the last run, after drop_caches): e2fsck -fn must
# be clean and the mounted (ro,noload) tree hash - listing of type/mode/owner/size/mtime/path/
# symlink target plus xxh3 of every file - must equal the source's.
#
# Output: a markdown table on stdout and OUTDIR/{results.md,results.tsv,hyperfine/*.json,
# fio/*.terse,verify/*.log,machine.txt}. MB = 10^6 bytes. "used" = dumpe2fs used blocks x block size.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
RUNS=3 MODES="direct" SECTIONS="reroot,copy,fio,memory" OUTDIR="" REPORT_ONLY=""
while getopts "r:m:s:o:T:h" o; do
  case $o in r) RUNS=$OPTARG ;; m) MODES=${OPTARG//,/ } ;; s) SECTIONS=$OPTARG ;; o) OUTDIR=$OPTARG ;;
             T) REPORT_ONLY=$OPTARG ;; h) usage 0 ;; *) usage 2 ;; esac
done
shift $((OPTIND - 1))

# ------------------------------------------------------------------ report (table + limits + ratios)
# Physical limit R/W = best fio read/write bandwidth (fio's own figure, median of runs) among the
# direct-mode rows (any mode if there are none). Reads and writes share this disk's bandwidth (see
# the "mixed" row), so the least time to copy N bytes is N/R + N/W. Ratios: median time / that
# least time, for the used bytes (what a bitmap-aware copier must move) and for the whole device.
render_report() {
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/meta.env"
  awk -F'\t' -v S="$SIZE" -v U="$USED" -v img="$IMG_NAME" -v runs="$RUNS" -v h="$SRC_HASH" '
    function fiobw(note) { return (match(note, /fio [0-9]+ MB\/s/) ? substr(note, RSTART + 4, RLENGTH - 9) + 0 : 0) }
    NR == FNR { if (FNR > 1) {
        d = ($1 == "direct"); b = fiobw($9)
        if ($2 ~ /^fio read (libaio|io_uring)/)  { if (b > rd[d]) rd[d] = b }
        if ($2 ~ /^fio write (libaio|io_uring)/) { if (b > wr[d]) wr[d] = b }
        if ($2 ~ /^e2image -ra/ && $3 + 0 > 0) e2[$1] = $3 }
      next }
    FNR == 1 {
      R = rd[1] ? rd[1] : rd[0]; W = wr[1] ? wr[1] : wr[0]
      printf "Image: `%s` - device %.0f MB, used %.0f MB (%.1f%%), runs=%s (median shown), source tree hash %s\n\n", img, S/1e6, U/1e6, 100*U/S, runs, h
      if (R && W) {
        lu = U/1e6/R + U/1e6/W; lf = S/1e6/R + S/1e6/W
        lr = lu + U/1e6/R
        printf "Physical limit (best %sfio, fio-reported): read %d MB/s, write %d MB/s. Least copy time N/R+N/W: used bytes %.2f s, whole device %.2f s. With readback (N/R+N/W+N/R): %.2f s.\n\n", (rd[1] ? "direct-mode " : ""), R, W, lu, lf, lr
      }
      print "| mode | tool | median s | min-max s | MB/s of device | MB/s of used | verified | x used-limit | x readback-limit | x device-limit | e2image / this | note |"
      print "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
      next }
    { xu = "-"; xf = "-"; xr = "-"; xe = "-"
      if ($7 != "-" && R && W && $3 + 0 > 0) { xu = sprintf("%.2f", $3 / lu); xf = sprintf("%.2f", $3 / lf); xr = sprintf("%.2f", $3 / lr) }
      if ($7 != "-" && ($1 in e2) && $3 + 0 > 0) xe = sprintf("%.2f", e2[$1] / $3)
      printf "| %s | %s | %s | %s-%s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, xu, xr, xf, xe, $9 }
  ' "$dir/results.tsv" "$dir/results.tsv"
}
if [[ -n $REPORT_ONLY ]]; then render_report "$REPORT_ONLY" | tee "$REPORT_ONLY/results.md"; exit 0; fi
[[ $# -eq 1 ]] || usage 2
IMG=$(readlink -f "$1")
[[ -f $IMG ]] || { echo "no such image: $1" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "must run as root" >&2; exit 1; }
REROOT=$(readlink -f "${REROOT:-target/release/reroot}")
[[ -x $REROOT ]] || { echo "no reroot binary at $REROOT (cargo build --release, or set REROOT)" >&2; exit 1; }
for t in losetup blkdiscard mount e2fsck dumpe2fs e2image partclone.ext4 fio hyperfine xxhsum perl dd cp; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
HAVE_B3=0; command -v b3sum >/dev/null && HAVE_B3=1
has() { [[ ,$SECTIONS, == *,$1,* ]]; }

BENCH_DATA=${BENCH_DATA:-/var/tmp/reroot-bench}
NAME=$(basename "$IMG" .img)
OUTDIR=${OUTDIR:-$BENCH_DATA/results/$NAME-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR"/{hyperfine,fio,verify}
TGTFILE=$BENCH_DATA/peers-target-$$.img      # sparse target behind the target loop device
CPTFILE=$BENCH_DATA/peers-cp-target-$$.img   # cp target (file to file)
RAWFILE=$BENCH_DATA/peers-fio-raw-$$.img     # fio raw write scratch file
MT=$BENCH_DATA/.mnt-peers-$$
mkdir -p "$MT"

ATTACHED=()
attach() {   # attach VAR losetup-args... ; remembers the device for cleanup
  local __d; __d=$(losetup --find --show "${@:2}"); ATTACHED+=("$__d"); printf -v "$1" %s "$__d"; }
detach() {
  local d=$1 keep=() x
  losetup -d "$d"
  for x in "${ATTACHED[@]}"; do [[ $x == "$d" ]] || keep+=("$x"); done
  ATTACHED=("${keep[@]+"${keep[@]}"}")
}
cleanup() {
  set +e
  mountpoint -q "$MT" && umount "$MT"
  for d in "${ATTACHED[@]+"${ATTACHED[@]}"}"; do losetup -d "$d"; done
  rmdir "$MT" 2>/dev/null
  rm -f "$TGTFILE" "$CPTFILE" "$RAWFILE"
}
trap cleanup EXIT
log() { printf '[peers %s] %s\n' "$(date +%T)" "$*" >&2; }

# ------------------------------------------------------------------ facts about the image
eval "$(dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '
  /^Block count:/ {gsub(/ /,"",$2); print "BC=" $2} /^Free blocks:/ {gsub(/ /,"",$2); print "FB=" $2}
  /^Block size:/  {gsub(/ /,"",$2); print "BSZ=" $2}')"
SIZE=$(stat -c %s "$IMG")
USED=$(( (BC - FB) * BSZ ))
log "image $IMG: size $SIZE B, used $USED B ($(( 100 * (BC - FB) / BC ))%), block $BSZ"

# keep in sync with tree_manifest() in make-corpus.sh
tree_manifest() {
  ( cd "$1" && find . -xdev -path ./lost+found -prune -o -printf '%y %m %U:%G %s %T@ %p -> %l\n' | LC_ALL=C sort
    find . -xdev -path ./lost+found -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r xxhsum -H3 2>/dev/null )
}
tree_hash() { tree_manifest "$1" | xxhsum -H3 2>/dev/null | awk '{print $NF}'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mounted_hash() {  # device -> tree hash, or "MOUNTFAIL"
  if mount -t ext4 -o ro,noload "$1" "$MT" 2>/dev/null; then tree_hash "$MT"; umount "$MT"; else echo MOUNTFAIL; fi
}

# ------------------------------------------------------------------ machine notes
( set +e
  echo "date: $(date -Is)"; uname -a; echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2))"
  free -m | head -2
  echo "backing fs: $(findmnt -no SOURCE,FSTYPE,OPTIONS -T "$BENCH_DATA")"
  for q in scheduler rotational max_sectors_kb nr_requests read_ahead_kb write_cache; do
    echo "vda/$q: $(cat /sys/block/vda/queue/$q 2>/dev/null)"; done
  echo "vm.dirty_ratio=$(cat /proc/sys/vm/dirty_ratio) dirty_background_ratio=$(cat /proc/sys/vm/dirty_background_ratio)"
  dd --version | head -1; e2image -V 2>&1 | head -1; partclone.ext4 -v 2>&1 | head -1
  "$REROOT" --version; fio --version; hyperfine --version; xxhsum --version 2>&1 | head -1; [[ $HAVE_B3 == 1 ]] && b3sum --version
  echo "xxh3 in-memory (xxhsum -b5): $(xxhsum -b5 2>&1 | tr '\r' '\n' | grep '#XXH3' | tail -1 | tr -s ' ')"
  echo "image: $IMG size=$SIZE used=$USED"; [[ -f $IMG.info ]] && cat "$IMG.info"
) > "$OUTDIR/machine.txt" 2>&1

# ------------------------------------------------------------------ source tree hash
attach S0 --read-only "$IMG"
drop_caches
SRC_HASH=$(mounted_hash "$S0")
detach "$S0"
[[ $SRC_HASH != MOUNTFAIL ]] || { echo "cannot mount source image" >&2; exit 1; }
if [[ -f $IMG.manifest ]]; then
  MH=$(awk '/^tree_hash / {print $2}' "$IMG.manifest")
  [[ $MH == "$SRC_HASH" ]] || log "WARNING: source tree hash $SRC_HASH != manifest $MH"
fi
log "source tree hash $SRC_HASH"
printf 'IMG_NAME=%q\nSIZE=%s\nUSED=%s\nRUNS=%s\nSRC_HASH=%s\n' "$(basename "$IMG")" "$SIZE" "$USED" "$RUNS" "$SRC_HASH" > "$OUTDIR/meta.env"

# ------------------------------------------------------------------ timing + verification
printf 'mode\ttool\tmedian_s\tmin_s\tmax_s\tdev_MBps\tused_MBps\tverified\tnote\ttimes\n' > "$OUTDIR/results.tsv"
PREP_DROP="sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1"

# fio_median TERSEFILE [JOBNAME]: median over runs of fio's own bandwidth (MB/s), terse v3 fields
# 3 = job name, 7 = read KiB/s, 48 = write KiB/s
fio_median() {
  awk -F';' -v j="$2" 'j == "" || $3 == j { print ($7 > 0 ? $7 : $48) * 1024 / 1e6 }' "$1" | sort -n \
    | awk '{a[NR] = $1} END {printf "%.0f", a[int((NR + 1) / 2)]}'
}

# bench MODE NAME KIND PREP CMD [VERIFY_TARGET]
#   KIND: copy (MB/s of used too) | fio | hash; VERIFY_TARGET: device or file to verify, or ""
bench() {
  local mode=$1 name=$2 kind=$3 prep=$4 cmd=$5 vt=${6:-} tag json stats med mn mx times ver note=""
  tag=$(printf '%s-%s' "$mode" "$name" | tr -c 'A-Za-z0-9._-' '_')
  json=$OUTDIR/hyperfine/$tag.json
  log "$mode | $name"
  echo "# $mode | $name: $cmd" >> "$OUTDIR/commands.txt"
  if hyperfine --runs "$RUNS" --style basic --prepare "$prep" --export-json "$json" \
       --command-name "$name" "$cmd" >> "$OUTDIR/hyperfine.log" 2>&1; then
    stats=$(perl -MJSON::PP -e 'local $/; my $r = decode_json(<STDIN>)->{results}[0];
      printf "%.3f %.3f %.3f %s\n", $r->{median}, $r->{min}, $r->{max}, join(",", map { sprintf "%.3f", $_ } @{$r->{times}})' < "$json")
    read -r med mn mx times <<< "$stats"
  else
    med=NaN mn=NaN mx=NaN times=FAILED; note="command failed (see hyperfine.log)"
  fi
  ver="n/a"
  if [[ -n $vt && $times != FAILED ]]; then
    local dev=$vt fsck_rc=0 h tmpdev=""
    drop_caches
    if [[ -f $vt ]]; then attach tmpdev --read-only "$vt"; dev=$tmpdev; fi
    e2fsck -fn "$dev" > "$OUTDIR/verify/$tag.fsck.log" 2>&1 || fsck_rc=$?
    h=$(mounted_hash "$dev")
    [[ -n $tmpdev ]] && detach "$tmpdev"
    echo "fsck_rc=$fsck_rc tree_hash=$h source=$SRC_HASH" >> "$OUTDIR/verify/$tag.fsck.log"
    if [[ $fsck_rc == 0 && $h == "$SRC_HASH" ]]; then ver=yes
    elif [[ $fsck_rc != 0 && $h != "$SRC_HASH" ]]; then ver="NO (fsck+hash)"
    elif [[ $fsck_rc != 0 ]]; then ver="NO (fsck)"
    else ver="NO (hash)"; fi
  fi
  if [[ $kind == fio && -s $OUTDIR/fio/$tag.terse ]]; then   # fio's own bandwidth, median over runs
    note="fio $(fio_median "$OUTDIR/fio/$tag.terse" '') MB/s"
  fi
  if [[ $kind == mixed && -s $OUTDIR/fio/$tag.terse ]]; then
    note="fio read $(fio_median "$OUTDIR/fio/$tag.terse" rd) + write $(fio_median "$OUTDIR/fio/$tag.terse" wr) MB/s concurrently"
  fi
  local devmb usedmb
  devmb=$(awk -v s="$SIZE" -v t="$med" 'BEGIN { if (t + 0 > 0) printf "%.0f", s / 1e6 / t; else print "-" }')
  usedmb="-"; [[ $kind == copy ]] && usedmb=$(awk -v s="$USED" -v t="$med" 'BEGIN { if (t + 0 > 0) printf "%.0f", s / 1e6 / t; else print "-" }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$name" "$med" "$mn" "$mx" "$devmb" "$usedmb" "$ver" "$note" "$times" >> "$OUTDIR/results.tsv"
}

for mode in $MODES; do
  case $mode in buffered) dio=off ;; direct) dio=on ;; *) echo "bad mode $mode" >&2; exit 2 ;; esac
  rm -f "$TGTFILE"; truncate -s "$SIZE" "$TGTFILE"
  attach SRC --read-only --direct-io=$dio "$IMG"
  attach TGT --direct-io=$dio "$TGTFILE"
  q=/sys/block/${SRC#/dev/}/queue
  echo "mode $mode: src $SRC dio=$(cat /sys/block/${SRC#/dev/}/loop/dio) tgt $TGT dio=$(cat /sys/block/${TGT#/dev/}/loop/dio)" \
    "loop read_ahead_kb=$(cat $q/read_ahead_kb) max_sectors_kb=$(cat $q/max_sectors_kb) nr_requests=$(cat $q/nr_requests) scheduler=$(cat $q/scheduler)" >> "$OUTDIR/machine.txt"
  log "mode $mode: src $SRC tgt $TGT (direct-io=$dio)"
  PREP_TGT="blkdiscard -f $TGT >/dev/null 2>&1; $PREP_DROP"

  if has reroot; then
    for v in hash readback none; do
      bench "$mode" "reroot copy --verify $v" copy "$PREP_TGT" "$REROOT copy -q --verify $v $SRC $TGT" "$TGT"
    done
    bench "$mode" "reroot copy --engine sync --verify hash" copy "$PREP_TGT" "$REROOT copy -q --engine sync --verify hash $SRC $TGT" "$TGT"
    bench "$mode" "reroot copy --full --verify hash" copy "$PREP_TGT" "$REROOT copy -q --full --verify hash $SRC $TGT" "$TGT"
  fi
  if has sweep; then
    for qd in 4 8 16 32 64; do for cs in 256K 1M 4M; do
      bench "$mode" "reroot sweep --verify hash qd$qd chunk$cs" copy "$PREP_TGT" "$REROOT copy -q --verify hash --queue-depth $qd --chunk-size $cs $SRC $TGT"
    done; done
  fi
  if has memory; then   # peak RSS of a default copy (readback), GNU time's %M in KiB
    eval "$PREP_TGT"
    /usr/bin/time -f '%M' -o "$OUTDIR/reroot-maxrss-kib.txt" "$REROOT" copy -q "$SRC" "$TGT" >/dev/null
    echo "reroot copy (defaults) peak RSS: $(( $(tail -1 "$OUTDIR/reroot-maxrss-kib.txt") / 1024 )) MiB" | tee -a "$OUTDIR/machine.txt" >&2
  fi
  if has e2image && ! has copy; then   # the reference peer alone (quick reruns)
    bench "$mode" "e2image -ra -p" copy "$PREP_TGT" "e2image -ra -p $SRC $TGT && sync $TGT" "$TGT"
  fi
  if has copy; then
    bench "$mode" "dd bs=8M" copy "$PREP_TGT" "dd if=$SRC of=$TGT bs=8M status=none && sync $TGT" "$TGT"
    bench "$mode" "dd bs=8M iflag,oflag=direct" copy "$PREP_TGT" "dd if=$SRC of=$TGT bs=8M iflag=direct oflag=direct status=none && sync $TGT" "$TGT"
    bench "$mode" "dd bs=8M conv=sparse" copy "$PREP_TGT" "dd if=$SRC of=$TGT bs=8M conv=sparse status=none && sync $TGT" "$TGT"
    bench "$mode" "e2image -ra -p" copy "$PREP_TGT" "e2image -ra -p $SRC $TGT && sync $TGT" "$TGT"
    bench "$mode" "partclone.ext4 -b" copy "$PREP_TGT" "partclone.ext4 -b -q -s $SRC -o $TGT -L $OUTDIR/partclone.log && sync $TGT" "$TGT"
    bench "$mode" "control: e2image -r (no -a)" copy "$PREP_TGT" "e2image -r $SRC $TGT && sync $TGT" "$TGT"
    if [[ $mode == buffered ]]; then
      # what the page cache does to a naive measurement: source pre-read into cache, no final fsync
      bench "$mode" "control: dd bs=8M, hot cache, no sync" copy "blkdiscard -f $TGT >/dev/null 2>&1; $PREP_DROP; cat $SRC >/dev/null" "dd if=$SRC of=$TGT bs=8M status=none" "$TGT"
      bench file "cp --sparse=always (image file)" copy "rm -f $CPTFILE; $PREP_DROP" "cp --sparse=always $IMG $CPTFILE && sync $CPTFILE" "$CPTFILE"
      rm -f "$CPTFILE"
    fi
  fi
  if has fio; then
    for eng in libaio io_uring; do for qd in 16 32; do
      n="fio read $eng qd$qd"; t=$(printf '%s-%s' "$mode" "$n" | tr -c 'A-Za-z0-9._-' '_')
      bench "$mode" "$n" fio "$PREP_DROP" "fio --name=seqread --filename=$SRC --readonly --rw=read --bs=1M --direct=1 --ioengine=$eng --iodepth=$qd --output-format=terse --terse-version=3 >> $OUTDIR/fio/$t.terse"
    done; done
    for eng in libaio io_uring; do for qd in 16 32; do
      n="fio write $eng qd$qd"; t=$(printf '%s-%s' "$mode" "$n" | tr -c 'A-Za-z0-9._-' '_')
      bench "$mode" "$n" fio "$PREP_TGT" "fio --name=seqwrite --filename=$TGT --rw=write --bs=1M --direct=1 --ioengine=$eng --iodepth=$qd --end_fsync=1 --output-format=terse --terse-version=3 >> $OUTDIR/fio/$t.terse"
    done; done
  fi
  if has mixed; then   # can reads of the source and writes of the target overlap on this disk?
    n="fio read src + write tgt concurrently, io_uring qd32"; t=$(printf '%s-%s' "$mode" "$n" | tr -c 'A-Za-z0-9._-' '_')
    bench "$mode" "$n" mixed "$PREP_TGT" "fio --bs=1M --direct=1 --ioengine=io_uring --iodepth=32 --output-format=terse --terse-version=3 --name=rd --filename=$SRC --rw=read --name=wr --filename=$TGT --rw=write --end_fsync=1 >> $OUTDIR/fio/$t.terse"
  fi
  if has hash; then
    bench "$mode" "xxhsum -H3 (cold)" hash "$PREP_DROP" "xxhsum -H3 $SRC >/dev/null 2>&1"
    [[ $HAVE_B3 == 1 ]] && bench "$mode" "b3sum (cold)" hash "$PREP_DROP" "b3sum $SRC >/dev/null"
    if [[ $mode == buffered ]]; then
      bench hot "xxhsum -H3 (page cache)" hash "cat $SRC >/dev/null" "xxhsum -H3 $SRC >/dev/null 2>&1"
      [[ $HAVE_B3 == 1 ]] && bench hot "b3sum (page cache)" hash "cat $SRC >/dev/null" "b3sum $SRC >/dev/null"
    fi
  fi
  detach "$TGT"; detach "$SRC"
done

if has raw; then
  n="fio read image file libaio qd32"; t=$(printf 'raw-%s' "$n" | tr -c 'A-Za-z0-9._-' '_')
  bench raw "$n" fio "$PREP_DROP" "fio --name=rawread --filename=$IMG --readonly --rw=read --bs=1M --direct=1 --ioengine=libaio --iodepth=32 --output-format=terse --terse-version=3 >> $OUTDIR/fio/$t.terse"
  n="fio write new file libaio qd32"; t=$(printf 'raw-%s' "$n" | tr -c 'A-Za-z0-9._-' '_')
  bench raw "$n" fio "rm -f $RAWFILE; $PREP_DROP" "fio --name=rawwrite --filename=$RAWFILE --size=$SIZE --fallocate=none --rw=write --bs=1M --direct=1 --ioengine=libaio --iodepth=32 --end_fsync=1 --output-format=terse --terse-version=3 >> $OUTDIR/fio/$t.terse"
  rm -f "$RAWFILE"
fi

# ------------------------------------------------------------------ table
render_report "$OUTDIR" | tee "$OUTDIR/results.md"
grep -h 'peak RSS' "$OUTDIR/machine.txt" | tee -a "$OUTDIR/results.md" || true
log "results in $OUTDIR"
