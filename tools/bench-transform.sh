#!/bin/sh
# bench-transform.sh: `reroot copy --mkfs ext4` against mkfs.ext4 + rsync
# -aHAXS --numeric-ids and mkfs.ext4 + cp -a, onto the same target, from a
# root-shaped ext4 source (FILES files, mostly small, some large, hard links,
# symlinks, sparse files). One run of each, page cache dropped before each.
# Each timing covers mkfs, mount, the copy and the unmount (which writes
# everything back), so the three do the same work end to end.
#
# Usage: sudo tools/bench-transform.sh [FILES] [REROOT]
#   FILES   default 200000
#   REROOT  default target/release/reroot
# Everything lives in a scratch directory under /var/tmp (two sparse images,
# two loop devices, detached at the end) and a private mount namespace.
set -eu
FILES=${1:-200000}
REROOT=$(readlink -f "${2:-target/release/reroot}")
[ "$(id -u)" = 0 ] || { echo "run as root (loop devices, mounts)" >&2; exit 2; }
for t in rsync cp mkfs.ext4 python3 losetup unshare; do
    command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
W=$(mktemp -d /var/tmp/reroot-bench-transform.XXXXXX)
SRC=; DST=
cleanup() {
    [ -n "$SRC" ] && losetup -d "$SRC" 2>/dev/null || true
    [ -n "$DST" ] && losetup -d "$DST" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
truncate -s 8G "$W/src.img"; truncate -s 8G "$W/dst.img"
SRC=$(losetup -f --show "$W/src.img"); DST=$(losetup -f --show "$W/dst.img")
mkfs.ext4 -q -F -L bench-root -N 400000 "$SRC"

cat > "$W/make_tree.py" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(16)
big = bytes(rnd.getrandbits(8) for _ in range(1 << 20))
dirs = []
for i in range(n // 40):
    d = os.path.join(root, "usr" if i % 3 else "var", "d%03d" % (i % 97), "s%05d" % i)
    os.makedirs(d, exist_ok=True)
    dirs.append(d)
for i in range(n):
    d = dirs[i % len(dirs)]
    p = os.path.join(d, "f%06d" % i)
    r = rnd.random()
    if r < 0.02:
        os.symlink("../" + "f%06d" % (i - 1), p)
        continue
    if r < 0.04 and i > 0:
        prev = os.path.join(dirs[(i - 1) % len(dirs)], "f%06d" % (i - 1))
        if os.path.isfile(prev) and not os.path.islink(prev):
            os.link(prev, p)
            continue
    if r < 0.0005:  # some large files (1-64 MiB)
        size = rnd.randint(1, 64) << 20
        with open(p, "wb") as f:
            for _ in range(size >> 20):
                f.write(big)
        continue
    if r < 0.0010:  # sparse: a few MiB of data in 256 MiB
        with open(p, "wb") as f:
            f.truncate(256 << 20)
            for k in range(4):
                f.seek(k * (64 << 20)); f.write(big)
        continue
    size = int(rnd.expovariate(1 / 6000))  # mostly small: mean 6 KB
    with open(p, "wb") as f:
        f.write(big[(i * 7919) % (1 << 19):][:size])
    if i % 10 == 0:
        os.chmod(p, 0o755)
PY

# The whole benchmark runs in a private mount namespace.
unshare --mount --propagation private sh -eu <<SH
mkdir -p "$W/s" "$W/d"
mount "$SRC" "$W/s"
python3 "$W/make_tree.py" "$W/s" "$FILES"
setfattr -n user.bench -v 1 "$W/s/usr" 2>/dev/null || true
umount "$W/s"
mount -o ro,noatime "$SRC" "$W/s"
used=\$(df -h --output=used,iused "$W/s" | tail -1)
echo "source: $FILES files planned; used (bytes, inodes): \$used" >&2

t() { # name, then the command: prints "name seconds"
    name=\$1; shift
    sync; echo 3 > /proc/sys/vm/drop_caches
    s=\$(date +%s.%N)
    "\$@" >/dev/null
    e=\$(date +%s.%N)
    echo "\$name \$(echo "\$e - \$s" | bc)"
}
mkfs_cp() {
    mkfs.ext4 -q -F -b 4096 "$DST"; mount "$DST" "$W/d"
    cp -a "$W/s/." "$W/d/"; umount "$W/d"
}
mkfs_rsync() {
    mkfs.ext4 -q -F -b 4096 "$DST"; mount "$DST" "$W/d"
    rsync -aHAXS --numeric-ids "$W/s/" "$W/d/"; umount "$W/d"
}
rr() { # report file, then reroot's arguments; keeps the JSON report
    out=\$1; shift
    "$REROOT" copy --json --quiet "\$@" > "\$out"
}
phases() { # the phases of a kept report, on stderr
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("   phases:", ", ".join("%s %.2f s" % (p["name"], p["seconds"]) for p in d["phases"]), "; files", d["stats"]["files"], "links", d["stats"]["hard_links"])' "\$1" >&2
}
umount "$W/s"
t "reroot copy --mkfs ext4 --verify none" rr "$W/r1.json" --mkfs ext4 --force --verify none "$SRC" "$DST"
phases "$W/r1.json"
t "reroot copy --mkfs ext4 (with tree digests)" rr "$W/r2.json" --mkfs ext4 --force "$SRC" "$DST"
phases "$W/r2.json"
mount -o ro,noatime "$SRC" "$W/s"
t "mkfs.ext4 + rsync -aHAXS --numeric-ids" mkfs_rsync
t "mkfs.ext4 + cp -a" mkfs_cp
umount "$W/s"
if [ "\${BENCH_CONVERT:-1}" = 1 ] && command -v btrfs-convert >/dev/null; then
    block_convert() {
        "$REROOT" copy --quiet --force --verify none "$SRC" "$DST"; btrfs-convert "$DST"
    }
    t "ext4 -> btrfs: reroot copy --mkfs btrfs --new-uuid --verify none" "$REROOT" copy --quiet --mkfs btrfs --new-uuid --force --verify none "$SRC" "$DST"
    t "ext4 -> btrfs: reroot copy (block) + btrfs-convert" block_convert
fi
SH
