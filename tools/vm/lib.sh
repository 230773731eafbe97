# Shared helpers of tools/vm/*.sh (sourced, not run).
#
# A machine is a qcow2 overlay on images/<flavour>.img (the image itself is
# never written), an optional second disk, qemu-system-x86_64 under TCG with
# the kernel and initramfs extracted by build-image.sh, user-mode networking
# with ssh forwarded to 127.0.0.1:$SSH_PORT only, and the serial console in
# $RUN/console.log.

VM=/var/tmp/reroot-vm
KEY=$VM/id_ed25519
SSH_PORT=${SSH_PORT:-10022}
# Debian's qemu-system-x86 7.2 conflicts with the host's qemu-utils 10 from
# backports, so it may be unpacked under $VM/qemu (apt-get download + dpkg -x,
# see tools/vm/README.md) instead of installed.
if command -v qemu-system-x86_64 >/dev/null; then
    QEMU=(qemu-system-x86_64)
else
    QEMU=("$VM/qemu/usr/bin/qemu-system-x86_64" -L "$VM/qemu/usr/share/seabios" -L "$VM/qemu/usr/share/qemu")
fi
QEMU_MEM=${QEMU_MEM:-1536}

log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$RUN/accept.log" >&2; }

SSH_OPTS=(-i "$KEY" -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10)

# Run a command in the guest as root, in a new SSH session.
vssh() { ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@"; }

# Boot FLAVOUR with overlay $RUN/disk1.qcow2 and, when given, $RUN/disk2.qcow2 as vdb.
# The kernel command line is the guest's own (root=LABEL=rootfs) plus the console.
vm_boot() {
    local flavour=$1
    local args=(-accel tcg,thread=multi -smp 2 -m "$QEMU_MEM" -nographic -no-reboot
        -kernel "$VM/images/$flavour.vmlinuz" -initrd "$VM/images/$flavour.initrd"
        -append "root=LABEL=rootfs ro console=ttyS0 net.ifnames=0 ${EXTRA_CMDLINE:-}"
        -drive "file=$RUN/disk1.qcow2,if=virtio,format=qcow2,cache=unsafe"
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22"
        -device virtio-net-pci,netdev=n0
        -serial "file:$RUN/console.$BOOTS.log" -monitor none -display none)
    [ -f "$RUN/disk2.qcow2" ] && args+=(-drive "file=$RUN/disk2.qcow2,if=virtio,format=qcow2,cache=unsafe")
    "${QEMU[@]}" "${args[@]}" </dev/null >"$RUN/qemu.$BOOTS.log" 2>&1 &
    QEMU_PID=$!
    echo $QEMU_PID >"$RUN/qemu.pid"
    BOOTS=$((BOOTS + 1))
}

# Wait until a new SSH login works (at most $1 seconds).
wait_ssh() {
    local limit=${1:-300} t0=$SECONDS
    while ((SECONDS - t0 < limit)); do
        if vssh true 2>/dev/null; then return 0; fi
        kill -0 "$QEMU_PID" 2>/dev/null || { log "qemu exited"; return 1; }
        sleep 2
    done
    return 1
}

# The machine reboots: -no-reboot makes qemu exit on the guest's reboot, and
# the same disks are booted again (what a reboot of real hardware does).
vm_reboot() {
    vssh 'nohup sh -c "sleep 1; reboot" >/dev/null 2>&1 &' || true
    local t0=$SECONDS
    while kill -0 "$QEMU_PID" 2>/dev/null && ((SECONDS - t0 < 300)); do sleep 1; done
    if kill -0 "$QEMU_PID" 2>/dev/null; then
        log "guest did not shut down within 300 s: stopping qemu"
        kill "$QEMU_PID"; wait "$QEMU_PID" 2>/dev/null || true
    fi
    vm_boot "$1"
}

vm_stop() {
    if [ -n "${QEMU_PID:-}" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        vssh poweroff >/dev/null 2>&1 || true
        local t0=$SECONDS
        while kill -0 "$QEMU_PID" 2>/dev/null && ((SECONDS - t0 < 60)); do sleep 1; done
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
}
