#!/bin/bash
# Build a Debian 12 test machine for reroot's acceptance run (tools/vm/accept.sh).
#
#   tools/vm/build-image.sh [systemd|sysvinit]
#
# Writes under /var/tmp/reroot-vm only:
#   images/<flavour>.img      raw disk: p1 = /boot (ext4, LABEL=boot, 200 MiB),
#                             p2 = /     (ext4, LABEL=rootfs, 1.8 GiB)
#   images/<flavour>.vmlinuz  kernel and initramfs extracted from the image's /boot,
#   images/<flavour>.initrd   for qemu's -kernel/-initrd
#   id_ed25519[.pub]          root's SSH key, generated on the host
#
# The guest's kernel command line is root=LABEL=rootfs, its fstab mounts by
# label: the layout issue #12 was found on. Packages come from the archive the
# host's apt uses (/etc/apt/sources.list.d/debian.sources).
#
# Needs: mmdebstrap, sfdisk, losetup, mkfs.ext4, ssh-keygen (run as root).
set -euo pipefail

FLAVOUR=${1:-systemd}
VM=/var/tmp/reroot-vm
IMG=$VM/images/$FLAVOUR.img
TREE=$VM/tree-$FLAVOUR
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (mmdebstrap, losetup, mount)" >&2; exit 1; }
for t in mmdebstrap sfdisk losetup mkfs.ext4 ssh-keygen; do
    command -v $t >/dev/null || { echo "build-image.sh: $t missing (apt-get install mmdebstrap fdisk e2fsprogs openssh-client)" >&2; exit 1; }
done
mkdir -p $VM/images
[ -f $VM/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -C reroot-vm -f $VM/id_ed25519

COMMON=openssh-server,rsyslog,cron,dbus,e2fsprogs,linux-image-amd64,initramfs-tools,procps,iproute2,util-linux,kmod,udev,less,psmisc,lsof
case $FLAVOUR in
    systemd)  PKGS=$COMMON,systemd,systemd-sysv,libpam-systemd,systemd-timesyncd ;;
    sysvinit) PKGS=$COMMON,sysvinit-core,sysv-rc,orphan-sysvinit-scripts,ifupdown,isc-dhcp-client,elogind,libpam-elogind ;;
    *) echo "build-image.sh: flavour is systemd or sysvinit" >&2; exit 2 ;;
esac

if [ -f "$TREE/.reroot-complete" ] && [ -z "${REBUILD:-}" ]; then
    echo "== reusing $TREE (REBUILD=1 to build it again)"
else
echo "== mmdebstrap $FLAVOUR -> $TREE"
rm -rf "$TREE"
mmdebstrap --variant=minbase --include="$PKGS" \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='echo reroot-vm > "$1/etc/hostname"' \
    bookworm "$TREE" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY bookworm-security main"
touch "$TREE/.reroot-complete"
fi

echo "== configure"
cat > $TREE/etc/fstab <<'EOF'
LABEL=rootfs  /      ext4  errors=remount-ro  0 1
LABEL=boot    /boot  ext4  defaults           0 2
EOF
install -d -m 700 $TREE/root/.ssh
install -m 600 $VM/id_ed25519.pub $TREE/root/.ssh/authorized_keys
echo 'root:reroot' | chroot $TREE chpasswd
mkdir -p $TREE/var/lib/reroot-data
# Data the acceptance run checks after the migration: a few files of each kind.
head -c 8M /dev/urandom > $TREE/var/lib/reroot-data/blob
ln -s blob $TREE/var/lib/reroot-data/link
echo hello > $TREE/var/lib/reroot-data/small
if [ "$FLAVOUR" = systemd ]; then
    mkdir -p $TREE/var/log/journal                 # persistent journal
    mkdir -p $TREE/etc/systemd/network
    cat > $TREE/etc/systemd/network/50-eth.network <<'EOF'
[Match]
Name=eth0
[Network]
DHCP=ipv4
EOF
    chroot $TREE systemctl enable systemd-networkd ssh cron rsyslog >/dev/null 2>&1
    chroot $TREE systemctl enable serial-getty@ttyS0 >/dev/null 2>&1 || true
else
    cat > $TREE/etc/network/interfaces <<'EOF'
auto lo
iface lo inet loopback
auto eth0
iface eth0 inet dhcp
EOF
    # a getty on the serial console
    grep -q ttyS0 $TREE/etc/inittab || echo 'T0:23:respawn:/sbin/getty -L ttyS0 115200 vt100' >> $TREE/etc/inittab
fi
# fast boots: no RESUME probing in the initramfs
echo 'RESUME=none' > $TREE/etc/initramfs-tools/conf.d/resume
chroot $TREE update-initramfs -u -k all >/dev/null
cp -L $TREE/vmlinuz $VM/images/$FLAVOUR.vmlinuz
cp -L $TREE/initrd.img $VM/images/$FLAVOUR.initrd
rm -f $TREE/var/cache/apt/archives/*.deb

echo "== disk image $IMG"
rm -f "$IMG"
truncate -s 2G "$IMG"
sfdisk -q "$IMG" <<'EOF'
label: dos
start=2048, size=409600, type=83
start=411648, type=83
EOF
# One loop device per partition, by offset (partition nodes need udev).
LBOOT=$(losetup -f --show -o $((2048 * 512)) --sizelimit $((409600 * 512)) "$IMG")
LROOT=$(losetup -f --show -o $((411648 * 512)) "$IMG")
MNT=$(mktemp -d /var/tmp/reroot-vm/mnt.XXXX)
cleanup() {
    mountpoint -q $MNT/boot && umount $MNT/boot
    mountpoint -q $MNT && umount $MNT
    rmdir $MNT 2>/dev/null || true
    losetup -d $LBOOT $LROOT
}
trap cleanup EXIT
mkfs.ext4 -q -L boot $LBOOT
mkfs.ext4 -q -L rootfs $LROOT
mount $LROOT $MNT
mkdir -p $MNT/boot
mount $LBOOT $MNT/boot
cp -a $TREE/. $MNT/
sync
echo "== done: $IMG ($(du -h --apparent-size "$IMG" | cut -f1), $(du -h "$IMG" | cut -f1) used)"
