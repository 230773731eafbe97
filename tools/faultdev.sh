#!/usr/bin/env bash
# A block device that fails I/O at chosen sectors, for trying reroot by hand.
# The same stack as tests/integration/faultdev.rs:
#   qcow2 image -> blkdebug (EIO rules) -> raw -> qemu-storage-daemon FUSE export
#   -> losetup --direct-io=off
# The loop device is buffered on purpose: with --direct-io=on, concurrent or 1 MiB
# O_DIRECT writes through qemu-storage-daemon's FUSE export land at the wrong place
# (seen with 7.2 and 10.0; tests/integration/faultdev.rs harness_round_trips_...).
# So read faults fail the whole 4 KiB page around their sector.
#
#   tools/faultdev.sh up DIR SIZE [read:SECTOR|write:SECTOR]...   blank device of SIZE bytes (64M ok)
#   tools/faultdev.sh up DIR --from RAW.img [read:N|write:N]...   device with a copy of RAW.img
#   tools/faultdev.sh down DIR                                   detach, stop the daemon, remove DIR
#
# `up` prints the loop device. Sectors are 512 bytes. Needs root, qemu-utils (qemu-storage-daemon, qemu-img).
set -euo pipefail

die() { echo "faultdev: $*" >&2; exit 1; }

up() {
  local dir=$1; shift
  [[ $# -ge 1 ]] || die "usage: $0 up DIR SIZE|--from RAW [read:N|write:N]..."
  [[ -e $dir/pid ]] && die "$dir already holds a fault device (run: $0 down $dir)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ $1 == --from ]]; then
    [[ -f ${2:-} ]] || die "--from needs a raw image"
    qemu-img convert -q -f raw -O qcow2 "$2" "$dir/disk.qcow2"
    shift 2
  else
    qemu-img create -q -f qcow2 "$dir/disk.qcow2" "$1"
    shift
  fi
  : > "$dir/blkdebug.conf"
  for rule in "$@"; do
    local kind=${rule%%:*} sector=${rule#*:}
    [[ $sector =~ ^[0-9]+$ ]] || die "bad rule $rule (want read:SECTOR or write:SECTOR)"
    case $kind in
      read|write) ;;
      *) die "bad rule $rule (want read:SECTOR or write:SECTOR)" ;;
    esac
    printf '[inject-error]\nevent = "%s_aio"\niotype = "%s"\nerrno = "5"\nsector = "%s"\nonce = "off"\n\n' \
      "$kind" "$kind" "$sector" >> "$dir/blkdebug.conf"
  done
  [[ -e /dev/fuse ]] || modprobe fuse
  : > "$dir/export.raw"
  qemu-storage-daemon \
    --blockdev "driver=file,node-name=file0,filename=$dir/disk.qcow2" \
    --blockdev driver=qcow2,node-name=qcow0,file=file0 \
    --blockdev "driver=blkdebug,node-name=debug0,image=qcow0,config=$dir/blkdebug.conf" \
    --blockdev driver=raw,node-name=raw0,file=debug0 \
    --export "type=fuse,id=exp0,node-name=raw0,mountpoint=$dir/export.raw,writable=on" \
    </dev/null >"$dir/qsd.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 300); do
    findmnt -n "$dir/export.raw" >/dev/null && break
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { cat "$dir/qsd.log" >&2; rm -f "$dir/pid"; die "daemon exited"; }
    sleep 0.05
  done
  findmnt -n "$dir/export.raw" >/dev/null || { down "$dir"; die "the FUSE export did not appear"; }
  losetup --find --show --direct-io=off "$dir/export.raw" | tee "$dir/loopdev"
}

down() {
  local dir=$1
  [[ -d $dir ]] || die "no such directory $dir"
  if [[ -s $dir/loopdev ]]; then
    losetup -d "$(cat "$dir/loopdev")" || true
  fi
  if [[ -s $dir/pid ]]; then
    local pid
    pid=$(cat "$dir/pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if findmnt -n "$dir/export.raw" >/dev/null; then umount -l "$dir/export.raw"; fi
  rm -f "$dir/loopdev" "$dir/pid" "$dir/disk.qcow2" "$dir/blkdebug.conf" "$dir/export.raw" "$dir/qsd.log"
  rmdir "$dir" 2>/dev/null || true
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) shift; [[ $# -eq 1 ]] || die "usage: $0 down DIR"; down "$1" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
