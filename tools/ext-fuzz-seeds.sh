#!/usr/bin/env bash
# Seed corpus for the ext_map fuzz target: small real images made by mkfs
# over the layouts reroot handles (1 KiB blocks so they stay tiny).
# Usage: tools/ext-fuzz-seeds.sh [DIR]   (default fuzz/corpus/ext_map)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-fuzz/corpus/ext_map}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/d"
for i in 1 2 3; do head -c $((i * 3000)) /dev/urandom > "$tmp/src/d/f$i"; done
n=0
make() { # make SIZE_KIB MKFS_ARGS...
  local kib=$1; shift
  n=$((n + 1))
  local img="$tmp/img$n"
  truncate -s "${kib}K" "$img"
  if mke2fs -F -q -b 1024 -N 32 -d "$tmp/src" "$@" "$img" >/dev/null 2>&1; then
    cp "$img" "$out/seed-$n"
  fi
}
make 768 -t ext2 -g 256
make 768 -t ext4 -O ^has_journal,^resize_inode -g 256
make 768 -t ext4 -O ^has_journal,^resize_inode,meta_bg -g 256
make 768 -t ext4 -O ^has_journal,^resize_inode,^metadata_csum,uninit_bg -g 256
make 768 -t ext4 -O ^has_journal,^resize_inode,^64bit -g 256
make 768 -t ext4 -O ^has_journal,^resize_inode,sparse_super2 -g 256
make 768 -t ext4 -O ^has_journal,^resize_inode,bigalloc -C 4096 -g 256
make 768 -t ext4 -O ^has_journal,^resize_inode,^flex_bg -g 256
ls -l "$out" | tail -n +2 | wc -l | xargs echo "seeds in $out:"
