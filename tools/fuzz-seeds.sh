#!/usr/bin/env bash
# Remake the committed seed corpora under fuzz/seeds/<target>/: small real
# inputs (`ok-*`: the parser must accept them), crafted edge cases and, kept
# by hand, every input a fuzzer crashed on (`crash-*`). The seeds are
# replayed by `cargo test` (tests/integration/fuzz_replay.rs) and start
# every `tools/fuzz-all.sh` run. Needs e2fsprogs, xfsprogs, btrfs-progs,
# util-linux (mkswap). The journal seed is written by the journal's tests
# and kept as is.
# Usage: tools/fuzz-seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
S=fuzz/seeds
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mk() { mkdir -p "$S/$1"; cat > "$S/$1/$2"; }

# --- text parsers -------------------------------------------------------
mk maps ok-sample <<'EOF'
55d0c8a00000-55d0c8a02000 r--p 00000000 fd:01 1311003                    /usr/bin/sleep
55d0ca0e3000-55d0ca104000 rw-p 00000000 00:00 0                          [heap]
7f2b4c000000-7f2b4c022000 r-xp 00000000 07:03 12                         /mnt/t/lib copy.so (deleted)
7f2b4d000000-7f2b4d001000 rw-s 00001000 103:10005 77                     /var/lib/db/data
7ffd1a5e1000-7ffd1a602000 rw-p 00000000 00:00 0                          [stack]
7f2b4e000000-7f2b4e001000 rw-p 00000000 00:00 0 
EOF
mk maps edge-fields <<'EOF'
ffffffffffffffff-0 rwxs ffffffffffffffff ffffffff:ffffffff 18446744073709551615 /x (deleted) (deleted)
1-2 r--p +0 +fd:+1 +5  (deleted)
1-2 r--p 0 fd:1ffffffff 5 /x
1-2 rw 0 0:0 0
EOF
mk cgroup ok-v1-systemd <<'EOF'
12:pids:/system.slice/cron.service
11:memory:/system.slice/cron.service
1:name=systemd:/system.slice/cron.service
0::/system.slice/cron.service
EOF
mk cgroup ok-v2-user <<'EOF'
0::/user.slice/user-1000.slice/user@1000.service/app.slice/_foo.mount.scope
EOF
mk cgroup ok-openrc <<'EOF'
2:name=openrc:/sshd
0::/openrc.sshd
EOF
mk cgroup edge-lines <<'EOF'
x:y:z
4294967296::/a.service
0:::/a:b.service
0::/.service/_.scope/user@.service/x.swap
1:name=systemd,name=openrc:
EOF
mk unix ok-sample <<'EOF'
Num       RefCount Protocol Flags    Type St Inode Path
00000000ff0f03a2: 00000003 00000000 00000000 0001 03 19288
0000000052e8d0aa: 00000002 00000000 00010000 0001 01 123456 /run/systemd/journal/stdout
00000000a1b2c3d4: 00000002 00000000 00010000 0005 01  1056 @/org/kernel/udev
00000000deadbeef: 00000002 00000000 00000000 0002 01 77 /mnt/t/my sock
EOF
mk unix edge-fields <<'EOF'
x: 1 2 FFFFFFFF FFFF FF 18446744073709551615   spaces before
x: 1 2 0 10000 1 5 /too/wide/type
x: 1 2 0 1 100 5 /too/wide/state
: 
EOF
printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/dm-1                               partition\t1003516\t\t0\t\t-2\n/mnt/t/swap\\040file                      file\t\t16380\t\t12\t\t5\n/var/old.swap\\040(deleted)              file\t\t1024\t\t0\t\t-3\n' | mk swaps ok-sample
printf '/raw (deleted) file 1 2 3\n/a\\040(deleted)\\040(deleted) file 1 2 3\n/nbsp\xc2\xa0and\x0bvt file 1 2 3\n/x file 1 2 99999999999\n/\\777 file 18446744073709551615 0 -2147483648\n' | mk swaps edge-fields
# loops: dev, backing_file, offset, sizelimit, autoclear, ro, NUL-separated.
printf '7:0\n\0/var/tmp/small.img\n\0001048576\n\0000\n\0001\n\0000\n' | mk loops ok-attached
printf '7:3\n\0/var/tmp/gone.img (deleted)\n\0000\n\0004096\n\0000\n\0001\n' | mk loops ok-deleted
printf '7:1\n\0\0000\n' | mk loops edge-detached
printf ' 4294967295:4294967295 \0\n\n\0-1\0 18446744073709551615\0x\0\xff\xfe' | mk loops edge-numbers
cp src/exec/testdata/e2fsck-C-fd.txt "$tmp/e2fsck"
{
  cat <<'EOF'
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=2E1FDD67-A13D-45AF-B916-94DA3DAA38B6 /               ext4    errors=remount-ro 0       1
PARTUUID=6c2b0a8f-01  /boot           ext2    defaults        0       2
LABEL=my\040data /srv/my\040data xfs defaults,nofail 0 0
/dev/mapper/vg-swap none            swap    sw              0       0
BOOT_IMAGE=/vmlinuz-6.1.0 root=UUID=2e1fdd67-a13d-45af-b916-94da3daa38b6 ro quiet
EOF
} | mk boot_refs ok-fstab-cmdline
cp src/exec/testdata/e2fsck-C-fd.txt "$S/boot_refs/ok-e2fsck-C"
cp src/exec/testdata/resize2fs-p.txt "$S/boot_refs/ok-resize2fs-p"
mk mountinfo ok-sample <<'EOF'
22 27 0:21 / /proc rw,relatime shared:5 - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
36 27 8:1 /srv /mnt/with\040space ro,noatime master:3 propagate_from:2 - ext3 /dev/sda1 rw,errors=continue
40 27 0:45 / /weird rw unbindable - fuse.sshfs user@host:/a\134b rw
EOF
mk mountinfo edge-fields <<'EOF'
4294967295 0 4095:1048575 / / rw - ext4 /dev/x rw
1 1 0:0 \777 \0 rw shared:0 master:0 - - - -
EOF
mk fdinfo ok-sample <<'EOF'
pos:	4096
flags:	0100002
mnt_id:	27
ino:	1311003
EOF
printf 'pos:\t18446744073709551615\nflags:\t037777777777\nmnt_id:\t-1\n' | mk fdinfo edge-numbers

# --- copy plan: the byte layout fuzz/check/copy_plan.rs decodes ----------
# shape, flags, [base u64], source u32, max_gap u32, targets, extents (u32, u16)*
le32() { printf "$(printf '\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"; }
le16() { printf "$(printf '\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)))"; }
# 4 KiB blocks, 64 KiB chunks, 8 MiB source, gap 0, one target (= source), three used ranges.
{ printf '\x23\x04'; le32 8388608; le32 0; printf '\x00'; le32 0; le16 1024; le32 70000; le16 5000; le32 8000000; le16 65535; } | mk copy_plan ok-three-ranges
# near the end of u64: base 2^64-2^20, odd source size, two targets, bridged gaps
{ printf '\x1a\x0e'; printf '\x00\x00\xf0\xff\xff\xff\xff\xff'; le32 1000001; le32 65536; printf '\x00\x01'; le32 999999; le32 0; le16 4096; le32 8192; le16 1; le32 900000; le16 65535; } | mk copy_plan ok-near-u64-max
# a target smaller than the data: refused
{ printf '\x00\x04'; le32 1048576; le32 0; printf '\x01'; le32 4096; le32 500000; le16 100; } | mk copy_plan edge-small-target
# block size 0x85 (not a power of two): refused
{ printf '\x85\x01'; le32 1048576; le32 0; } | mk copy_plan edge-bad-align

# --- on-disk formats: tiny real images ------------------------------------
mkdir -p "$tmp/src/d" "$S/ext_map" "$S/fs_superblock" "$S/signature"
echo hello > "$tmp/src/d/f"
head -c 3000 /dev/zero | tr '\0' x > "$tmp/src/d/g"
ext() { # ext NAME MKE2FS_ARGS...
  local name=$1; shift
  truncate -s 64K "$tmp/$name"
  mke2fs -F -q -b 1024 -N 16 -d "$tmp/src" "$@" "$tmp/$name" >/dev/null
  cp "$tmp/$name" "$S/ext_map/ok-$name"
}
ext ext2 -t ext2
ext ext4-nojournal -t ext4 -O ^has_journal,^resize_inode
ext ext4-metabg -t ext4 -O ^has_journal,^resize_inode,meta_bg
ext ext4-no64bit -t ext4 -O ^has_journal,^resize_inode,^64bit,^metadata_csum,uninit_bg
cp "$S/ext_map/ok-ext4-nojournal" "$S/fs_superblock/ok-ext4"
# Signatures live in the first sectors (btrfs: at 64 KiB): keep the heads.
head -c 2048 "$S/ext_map/ok-ext4-nojournal" > "$S/signature/ok-ext4-head"
truncate -s 300M "$tmp/xfs"
mkfs.xfs -q -f -L seed "$tmp/xfs"
head -c 4096 "$tmp/xfs" > "$S/signature/ok-xfs-head"
head -c 4096 "$tmp/xfs" > "$S/fs_superblock/edge-xfs-head"
truncate -s 128M "$tmp/btrfs"
mkfs.btrfs -q -f -L seed "$tmp/btrfs" >/dev/null
head -c $((64 * 1024 + 4096)) "$tmp/btrfs" > "$S/signature/ok-btrfs-head"
head -c $((64 * 1024 + 4096)) "$tmp/btrfs" > "$S/fs_superblock/edge-btrfs-head"
truncate -s 64K "$tmp/swap"
mkswap -q -L seed "$tmp/swap" >/dev/null 2>&1 || mkswap -L seed "$tmp/swap" >/dev/null
head -c 4096 "$tmp/swap" > "$S/signature/ok-swap-head"
# The journal: ok-sample is what the journal's own tests write (kept as is);
# a torn last line and a bad checksum are cut from it.
j=$S/journal/ok-sample
if [[ -f $j ]]; then
  head -c -20 "$j" > "$S/journal/edge-torn"
  sed '2s/^./0/' "$j" > "$S/journal/edge-bad-checksum"
fi
ls "$S" | while read -r t; do echo "$t: $(ls "$S/$t" | wc -l) seeds, $(du -sk "$S/$t" | cut -f1) KiB"; done
