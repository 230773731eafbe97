#!/bin/bash
# reroot's acceptance run on a real machine (issue #12): a Debian 12 VM under
# qemu (TCG), migrated from an SSH session as an operator would.
#
#   tools/vm/accept.sh [SCENARIO] [FLAVOUR]
#
# SCENARIO
#   logout   (default) migrate; the command returns; log out; log in again;
#            check everything; reboot; check it came back on the new disk.
#   reboot   migrate; reboot right after the pivot, while the operator's
#            session is still open; check it came back on the new disk.
#   refuse   (sysvinit) migrate must refuse up front, changing nothing.
# FLAVOUR    systemd (default) or sysvinit: images/<flavour>.img from
#            tools/vm/build-image.sh.
#
# Needs: the image, qemu-system-x86_64 (or the unpacked copy, see
# tools/vm/README.md), qemu-img, ssh, and target/release/reroot
# (`cargo build --release`). Everything lives under /var/tmp/reroot-vm/run-*;
# the image itself is never written (qcow2 overlays). Prints a table of checks
# and timings (also in $RUN/results.md); exits 0 only when every check passed.
set -uo pipefail

SCENARIO=${1:-logout}
FLAVOUR=${2:-systemd}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${REROOT_BIN:-$HERE/../../target/release/reroot}
RUN=/var/tmp/reroot-vm/run-$FLAVOUR-$SCENARIO-$(date +%H%M%S)
mkdir -p "$RUN"
BOOTS=0
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ -f "$VM/images/$FLAVOUR.img" ] || { echo "no image: run tools/vm/build-image.sh $FLAVOUR" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release" >&2; exit 2; }

PASS=0 FAIL=0
: >"$RUN/results.md"
check() { # check NAME OK(0/1) DETAIL
    local res=PASS
    if [ "$2" = 0 ]; then PASS=$((PASS + 1)); else res=FAIL; FAIL=$((FAIL + 1)); fi
    printf '| %s | %s | %s |\n' "$1" "$res" "$3" | tee -a "$RUN/results.md"
}
timing() { printf '| %s | time | %s |\n' "$1" "$2" | tee -a "$RUN/results.md"; }

cleanup() {
    [ -n "${POLLER:-}" ] && kill "$POLLER" 2>/dev/null
    vm_stop
}
trap cleanup EXIT

qemu-img create -q -f qcow2 -F raw -b "$VM/images/$FLAVOUR.img" "$RUN/disk1.qcow2"
qemu-img create -q -f qcow2 "$RUN/disk2.qcow2" 3G

log "booting $FLAVOUR ($RUN)"
t=$SECONDS
vm_boot "$FLAVOUR"
wait_ssh 600 || { check "first boot" 1 "no SSH login after 600 s"; exit 1; }
timing "boot to first SSH login" "$((SECONDS - t)) s"

scp -q -i "$KEY" -P "$SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    "$BIN" root@127.0.0.1:/usr/local/sbin/reroot
vssh 'cd /var/lib/reroot-data && sha256sum blob small > /root/data.sha256 && readlink link > /root/data.link'
OLD_DEV=$(vssh 'cat /sys/class/block/vda2/dev')          # major:minor of the old root
log "old root /dev/vda2 is $OLD_DEV"

# New SSH logins, once a second, for the whole run (each a new session).
# A login that takes longer than LOGIN_LIMIT seconds counts as failed; each
# line has the time, the seconds it took, and for failures ssh's exit code
# and message (under TCG on a loaded host a login takes seconds).
LOGIN_LIMIT=${LOGIN_LIMIT:-60}
poll_logins() {
    while :; do
        local t0=$SECONDS at err rc
        at=$(date +%T)
        err=$(timeout "$LOGIN_LIMIT" ssh "${SSH_OPTS[@]}" -o ConnectTimeout="$LOGIN_LIMIT" \
            root@127.0.0.1 true 2>&1)
        rc=$?
        if [ $rc = 0 ]; then
            echo "ok $at $((SECONDS - t0))s" >>"$RUN/logins"
        else
            echo "fail $at $((SECONDS - t0))s rc=$rc ${err//$'\n'/ }" >>"$RUN/logins"
        fi
        sleep 1
    done
}
: >"$RUN/logins"
poll_logins &
POLLER=$!
# Stop polling (before a reboot, or at the end) and check the count.
logins_checked() {
    kill "$POLLER" 2>/dev/null; wait "$POLLER" 2>/dev/null; POLLER=
    local ok bad
    ok=$(grep -c '^ok' "$RUN/logins"); bad=$(grep -c '^fail' "$RUN/logins")
    slowest=$(awk '/^ok/ {sub("s","",$3); if ($3 > m) m = $3} END {print m + 0}' "$RUN/logins")
    check "new SSH logins (one a second, ${LOGIN_LIMIT} s limit) until now: none failed" \
        "$([ "$bad" = 0 ] && echo 0 || echo 1)" "$ok ok (slowest ${slowest} s), $bad failed $(grep '^fail' "$RUN/logins" | head -3 | tr '\n' ' ')"
}

if [ "$SCENARIO" = refuse ]; then
    vssh 'reroot migrate /dev/vda2 /dev/vdb --grow --yes' >"$RUN/migrate.out" 2>&1
    rc=$?
    check "migrate refused up front (exit 3)" "$([ $rc = 3 ] && echo 0 || echo 1)" "exit $rc"
    grep -q 'sysvinit' "$RUN/migrate.out"
    check "the refusal names sysvinit" $? "$(grep -m1 -o 'PID 1 is [^:]*' "$RUN/migrate.out")"
    src=$(vssh 'findmnt -no SOURCE /')
    check "nothing changed: / is still /dev/vda2" "$([ "$src" = /dev/vda2 ] && echo 0 || echo 1)" "$src"
    sig=$(vssh 'blkid -p /dev/vdb; echo rc=$?')
    check "target untouched" "$(echo "$sig" | grep -q 'rc=2' && echo 0 || echo 1)" "blkid: $sig"
else
    # The operator: an interactive SSH session (a pty, a logind session, a
    # shell whose cwd is on the old root) running migrate.
    log "migrate from an SSH session"
    t=$SECONDS
    if [ "$SCENARIO" = logout ]; then
        ssh -tt "${SSH_OPTS[@]}" root@127.0.0.1 \
            'cd /root; reroot migrate /dev/vda2 /dev/vdb --grow --yes; echo "EXIT=$?"' \
            >"$RUN/migrate.out" 2>&1 </dev/null
        took=$((SECONDS - t))
        rc=$(grep -ao 'EXIT=[0-9]*' "$RUN/migrate.out" | tail -1 | cut -d= -f2)
        timing "reroot migrate, start to its return" "$took s (exit ${rc:-?})"
        check "the operator's command returns with 0 or 10 (pending: own session)" \
            "$([ "${rc:-x}" = 0 ] || [ "${rc:-x}" = 10 ]; echo $?)" "exit ${rc:-none}"
        # The session has ended (logout). Log in again: the worker finishes by itself.
        t=$SECONDS
        released=1
        while ((SECONDS - t < 180)); do
            if ! vssh "grep -q ' $OLD_DEV ' /proc/self/mountinfo" 2>/dev/null; then released=0; break; fi
            sleep 2
        done
        timing "logout to the old root unmounted (no command)" "$((SECONDS - t)) s"
        check "old root released after logout, no command run" $released ""
        vssh 'reroot status' >"$RUN/status.out" 2>&1
        grep -qi 'done' "$RUN/status.out"
        check "reroot status says done" $? "$(grep -m1 -i 'done' "$RUN/status.out")"
        vssh 'reroot finish' >"$RUN/finish.out" 2>&1
        frc=$?
        grep -q 'nothing left' "$RUN/finish.out"
        check "reroot finish: nothing left, exit 0" "$([ $frc = 0 ] && grep -q 'nothing left' "$RUN/finish.out"; echo $?)" "exit $frc: $(head -1 "$RUN/finish.out")"
    else
        # reboot: the operator's session stays open; reboot as soon as the pivot is done.
        ssh -tt "${SSH_OPTS[@]}" root@127.0.0.1 \
            'cd /root; reroot migrate /dev/vda2 /dev/vdb --grow --yes; echo "EXIT=$?"; sleep 600' \
            >"$RUN/migrate.out" 2>&1 </dev/null &
        OPERATOR=$!
        while ((SECONDS - t < 900)); do
            if vssh 'findmnt -no SOURCE / | grep -q vdb' 2>/dev/null; then break; fi
            sleep 1
        done
        timing "migrate start to / on /dev/vdb" "$((SECONDS - t)) s"
        vssh 'reroot status' >"$RUN/status-before-reboot.out" 2>&1
        vssh 'blkid /dev/vda2 /dev/vdb' >"$RUN/blkid-before-reboot.out" 2>&1
        logins_checked
        log "rebooting right after the pivot (operator still logged in)"
        t=$SECONDS
        vm_reboot "$FLAVOUR"
        kill "$OPERATOR" 2>/dev/null
        wait_ssh 600
        timing "reboot to first SSH login" "$((SECONDS - t)) s"
    fi

    # --- the checks of issue 12 ---
    root=$(vssh 'findmnt -no SOURCE /')
    check "/ is the new disk" "$([ "$root" = /dev/vdb ] && echo 0 || echo 1)" "$root"
    vssh 'touch /.reroot-w && rm /.reroot-w'
    check "/ is writable" $? ""
    n=$(vssh "grep -l ' $OLD_DEV ' /proc/[0-9]*/mountinfo 2>/dev/null | wc -l")
    check "old device in no /proc/*/mountinfo" "$([ "$n" = 0 ] && echo 0 || echo 1)" "$n processes see it"
    vssh 'test ! -e /sys/fs/ext4/vda2'
    check "superblock released (/sys/fs/ext4/vda2 gone)" $? ""
    hexdev=$(printf '%02x:%02x' "${OLD_DEV%:*}" "${OLD_DEV#*:}")
    n=$(vssh "cat /proc/[0-9]*/maps 2>/dev/null | awk '\$4==\"$hexdev\"' | wc -l")
    check "no process maps a file from the old device" "$([ "$n" = 0 ] && echo 0 || echo 1)" "$n maps on $hexdev"
    vssh '[ "$(stat -Lc %d /proc/1/exe)" = "$(stat -c %d /)" ]'
    check "PID 1 runs from the new root" $? "$(vssh 'readlink /proc/1/exe')"
    if [ "$FLAVOUR" = systemd ]; then
        failed=$(vssh 'systemctl --failed --no-legend --plain | wc -l')
        act=$(vssh 'for u in ssh cron rsyslog dbus systemd-journald systemd-logind systemd-networkd; do printf "%s=%s " $u $(systemctl is-active $u); done')
        check "every service active, none failed" "$([ "$failed" = 0 ] && ! echo "$act" | grep -qv '=active ' ; echo $?)" "$failed failed; $act"
        jp=$(vssh 'journalctl --header 2>/dev/null | sed -n "s/^File path: //p" | head -1')
        js=$(vssh "findmnt -no SOURCE -T ${jp:-/nonexistent}")
        check "journal persistent on the new root" "$([ -n "$jp" ] && [ "$js" = /dev/vdb ] && echo 0 || echo 1)" "$jp on $js"
    fi
    dup=$(vssh 'for k in UUID LABEL; do blkid -o value -s $k /dev/vda1 /dev/vda2 /dev/vdb; done | sort | uniq -d')
    check "each label and UUID on one device only" "$([ -z "$dup" ] && echo 0 || echo 1)" "$(vssh 'blkid /dev/vda2 /dev/vdb' | tr '\n' ' ')"
    vssh 'cd /var/lib/reroot-data && sha256sum -c --quiet /root/data.sha256 && [ "$(readlink link)" = "$(cat /root/data.link)" ]'
    check "data unchanged" $? ""

    if [ "$SCENARIO" = logout ]; then
        logins_checked
        log "rebooting"
        t=$SECONDS
        vm_reboot "$FLAVOUR"
        wait_ssh 600
        timing "reboot to first SSH login" "$((SECONDS - t)) s"
        root=$(vssh 'findmnt -no SOURCE /')
        check "after the reboot / is the new disk" "$([ "$root" = /dev/vdb ] && echo 0 || echo 1)" "$root"
        vssh 'cd /var/lib/reroot-data && sha256sum -c --quiet /root/data.sha256'
        check "after the reboot the data are unchanged" $? ""
    fi
fi

[ -n "${POLLER:-}" ] && logins_checked
echo
echo "$PASS passed, $FAIL failed; log and outputs in $RUN"
[ "$FAIL" = 0 ]
