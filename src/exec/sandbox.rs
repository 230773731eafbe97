//! A small bootable "server" root for tests and `reroot demo`: [`build`]
//! fills a directory (normally a freshly made ext4 on a loop device) with a
//! static busybox userland, host binaries with their libraries, an init
//! (PID 1), a tiny service manager that answers as `systemctl`, and a few
//! services that hold the root busy the ways real ones do (a log file open
//! for writing, a deleted file, a cwd, a mapped library, a listening
//! socket, a private mount namespace). [`boot_command`] boots it as PID 1 of
//! a private mount + PID + network (+ cgroup) namespace.
//!
//! Safety: the boot script refuses to run unless its mount namespace differs
//! from the caller's and from the machine's PID 1's; the namespace is created
//! with `--propagation private`, and `/` is made shared only after the
//! sandbox root is the namespace's root. Nothing it mounts is visible outside.
//!
//! May import `error`; changes only the directory it is given and, when asked
//! ([`CgroupDir`]), one cgroup below the caller's own.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// A service of the sandbox: a unit name and the `sh` script it runs
/// (busybox sh; `exec` the daemon so the unit's main process is the daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Unit name, e.g. `logger.service`.
    pub name: String,
    /// Script body.
    pub script: String,
}

impl Service {
    /// A service named `name` running `script`.
    pub fn new(name: &str, script: &str) -> Self {
        Self {
            name: name.to_owned(),
            script: script.to_owned(),
        }
    }

    /// The default set, each holding the root busy in its own way:
    /// - `syslog.service`: busybox syslogd writing `/var/log/messages` (log);
    /// - `logger.service`: a shell loop with `/var/log/app.log` open for writing;
    /// - `app.service`: a daemon whose cwd is `/var/lib/app`;
    /// - `holder.service`: holds a deleted file of the root open;
    /// - `mapper.service`: a host (dynamic) `sleep`, mapping libc from the root
    ///   (busybox sleep when no host sleep was copied);
    /// - `ssh.service`: busybox httpd listening on 127.0.0.1:2222 (the "sshd"
    ///   that must listen again after the pivot);
    /// - `nsholder.service`: a process in a mount namespace of its own.
    pub fn defaults() -> Vec<Service> {
        vec![
            Service::new("syslog.service", "exec syslogd -n -O /var/log/messages\n"),
            Service::new(
                "logger.service",
                "exec 3>>/var/log/app.log\nwhile :; do echo \"$(date) tick\" >&3; sleep 1; done\n",
            ),
            Service::new(
                "app.service",
                "mkdir -p /var/lib/app\ncd /var/lib/app\nexec sleep 1000000\n",
            ),
            Service::new(
                "holder.service",
                "mkdir -p /var/lib/holder\necho held >/var/lib/holder/deleted\n\
                 exec 4</var/lib/holder/deleted\nrm /var/lib/holder/deleted\nexec sleep 1000000\n",
            ),
            Service::new(
                "mapper.service",
                "if [ -x /opt/host/bin/sleep ]; then exec /opt/host/bin/sleep 1000000; fi\n\
                 exec sleep 1000000\n",
            ),
            Service::new(
                "ssh.service",
                "mkdir -p /var/www\necho sandbox >/var/www/index.html\n\
                 exec httpd -f -p 127.0.0.1:2222 -h /var/www\n",
            ),
            Service::new(
                "nsholder.service",
                "exec unshare -m --propagation slave sleep 1000000\n",
            ),
        ]
    }
}

/// A mount the boot script makes under the sandbox root before pivoting
/// into it (besides `/proc`, `/sys`, `/dev`, `/dev/pts`, `/run` and, with a
/// cgroup, `/sys/fs/cgroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraMount {
    /// A tmpfs at `target`.
    Tmpfs {
        /// Absolute path inside the sandbox.
        target: PathBuf,
    },
    /// A bind mount of the sandbox root's own directory `source` at `target`.
    Bind {
        /// Absolute path inside the sandbox.
        source: PathBuf,
        /// Absolute path inside the sandbox.
        target: PathBuf,
    },
}

impl ExtraMount {
    /// A tmpfs at `/srv` and a bind of `/var/lib/shared` at `/home/shared`.
    pub fn defaults() -> Vec<ExtraMount> {
        vec![
            ExtraMount::Tmpfs {
                target: "/srv".into(),
            },
            ExtraMount::Bind {
                source: "/var/lib/shared".into(),
                target: "/home/shared".into(),
            },
        ]
    }

    fn line(&self) -> String {
        match self {
            ExtraMount::Tmpfs { target } => format!("tmpfs - {}", target.display()),
            ExtraMount::Bind { source, target } => {
                format!("bind {} {}", source.display(), target.display())
            }
        }
    }
}

/// A host binary copied into the sandbox with the libraries it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBinary {
    /// Path on the host.
    pub from: PathBuf,
    /// Absolute path inside the sandbox.
    pub to: PathBuf,
}

/// What [`build`] puts into the root.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// A statically linked busybox; found on the host when `None`.
    pub busybox: Option<PathBuf>,
    /// Host binaries to copy (with their libraries, found with `ldd`).
    pub host_binaries: Vec<HostBinary>,
    /// The services started at boot, in this order.
    pub services: Vec<Service>,
    /// Mounts made under the root at boot.
    pub mounts: Vec<ExtraMount>,
    /// First field of `/etc/fstab`'s root line (`LABEL=...`, `UUID=...`, a device).
    pub fstab_root: String,
    /// A script (busybox sh) that init runs in a session of its own (cgroup
    /// `session-1.scope`, cwd `/root`) once the services are up. It ends the
    /// sandbox by writing an exit code to [`SCENARIO_DONE`]; if it exits
    /// without doing so, the sandbox ends with code 98.
    pub scenario: Option<String>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        let mut host_binaries = Vec::new();
        if let Some(sleep) = host_tool("sleep") {
            host_binaries.push(HostBinary {
                from: sleep,
                to: "/opt/host/bin/sleep".into(),
            });
        }
        Self {
            busybox: None,
            host_binaries,
            services: Service::defaults(),
            mounts: ExtraMount::defaults(),
            fstab_root: "LABEL=sandbox-root".into(),
            scenario: None,
        }
    }
}

impl SandboxOptions {
    /// The defaults plus what a migration inside the sandbox needs: the
    /// `reroot` binary at `/usr/sbin/reroot` and the host's e2fsprogs
    /// (`e2fsck`, `tune2fs`, `resize2fs`, `dumpe2fs`) in `/sbin`, each with
    /// its libraries. Tools missing on the host are left out.
    pub fn for_migration(reroot_exe: &Path) -> Self {
        let mut o = Self::default();
        o.host_binaries.push(HostBinary {
            from: reroot_exe.to_path_buf(),
            to: "/usr/sbin/reroot".into(),
        });
        for t in ["e2fsck", "tune2fs", "resize2fs", "dumpe2fs"] {
            if let Some(from) = host_tool(t) {
                o.host_binaries.push(HostBinary {
                    from,
                    to: Path::new("/sbin").join(t),
                });
            }
        }
        o
    }
}

/// Where a scenario writes its exit code to power the sandbox off: init
/// exits with it, which ends the PID namespace (and so the boot command).
pub const SCENARIO_DONE: &str = "/run/sandbox/poweroff";

/// The directory (inside the sandbox) used by reroot's pivot tests as the
/// mount point for the machine's root during boot; removed after boot.
const HOSTROOT: &str = ".hostroot";

/// A binary of the host found on PATH (or in /usr/bin, /bin), following symlinks.
pub fn host_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .and_then(|p| fs::canonicalize(p).ok())
}

/// The ELF interpreter (`PT_INTERP`) of an executable: `None` for a static
/// binary. Errors when `data` is not a 64-bit little-endian ELF file.
pub fn elf_interpreter(data: &[u8]) -> Result<Option<String>> {
    let bad = || Error::invalid("not a 64-bit little-endian ELF executable");
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| -> Option<u16> {
        Some(u16::from_le_bytes(
            data.get(o..o.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            data.get(o..o.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            data.get(o..o.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let ph = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(bad)?;
        if u32_at(ph).ok_or_else(bad)? == 3 {
            // PT_INTERP: p_offset at +8, p_filesz at +32.
            let off = usize::try_from(u64_at(ph + 8).ok_or_else(bad)?).map_err(|_| bad())?;
            let len = usize::try_from(u64_at(ph + 32).ok_or_else(bad)?).map_err(|_| bad())?;
            let raw = data
                .get(off..off.checked_add(len).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            let s = String::from_utf8_lossy(raw);
            return Ok(Some(s.trim_end_matches('\0').to_owned()));
        }
    }
    Ok(None)
}

/// Find a statically linked busybox on the host (Debian's `busybox-static`
/// installs it as `/bin/busybox`).
pub fn find_busybox() -> Result<PathBuf> {
    let candidates = [
        host_tool("busybox"),
        Some(PathBuf::from("/bin/busybox")),
        Some(PathBuf::from("/usr/bin/busybox")),
    ];
    for c in candidates.into_iter().flatten() {
        if let Ok(data) = fs::read(&c) {
            if matches!(elf_interpreter(&data), Ok(None)) {
                return Ok(c);
            }
        }
    }
    Err(Error::tool("no statically linked busybox found")
        .hint("install Debian's busybox-static package (.ci/run does)"))
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::io(msg, e)
}

fn inside(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").unwrap_or(abs))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    fs::write(path, text).map_err(io("writing", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    // Replace, never write through, an existing file or symlink.
    let _ = fs::remove_file(to);
    fs::copy(from, to).map_err(io("copying to", to))?;
    Ok(())
}

/// The absolute library paths `ldd` lists for `bin` (including the interpreter).
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| Error::io("running ldd", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Copy a host binary into `root` at `to`, with the libraries it needs at
/// the paths `ldd` shows (symlinks on the host become plain files).
pub fn copy_host_binary(root: &Path, from: &Path, to: &Path) -> Result<()> {
    copy_file(from, &inside(root, to))?;
    let data = fs::read(from).map_err(io("reading", from))?;
    if elf_interpreter(&data)?.is_some() {
        for lib in libraries(from)? {
            copy_file(&lib, &inside(root, &lib))?;
        }
    }
    Ok(())
}

/// Populate `root` (an empty directory, normally a fresh filesystem) with
/// the sandbox userland. Returns the busybox applets installed.
pub fn build(root: &Path, opts: &SandboxOptions) -> Result<usize> {
    let busybox = match &opts.busybox {
        Some(b) => b.clone(),
        None => find_busybox()?,
    };
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/lib/sandbox",
        "etc/sandbox/services",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
        "srv",
        "mnt",
        "home",
        "var/log",
        "var/lib/shared",
        "var/tmp",
        HOSTROOT,
    ] {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(io("creating", &p))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))
        .map_err(io("chmod", &root.join("tmp")))?;
    copy_file(&busybox, &root.join("bin/busybox"))?;
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &root.join("bin/busybox")))?;

    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| Error::io("running busybox --list", e))?;
    let mut applets = 0;
    for name in String::from_utf8_lossy(&list.stdout).lines() {
        let name = name.trim();
        if name.is_empty() || name.contains('/') || name == "busybox" {
            continue;
        }
        let link = root.join("bin").join(name);
        if link.symlink_metadata().is_err() {
            symlink("busybox", &link).map_err(io("symlinking", &link))?;
            applets += 1;
        }
    }
    for hb in &opts.host_binaries {
        copy_host_binary(root, &hb.from, &hb.to)?;
    }

    write_file(
        &root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    write_file(&root.join("etc/group"), "root:x:0:\n", 0o644)?;
    write_file(&root.join("etc/hostname"), "sandbox\n", 0o644)?;
    write_file(
        &root.join("etc/fstab"),
        &format!(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             {} / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n",
            opts.fstab_root
        ),
        0o644,
    )?;
    write_file(&root.join("var/lib/shared/README"), "shared\n", 0o644)?;
    let mounts: Vec<String> = opts.mounts.iter().map(ExtraMount::line).collect();
    write_file(
        &root.join("etc/sandbox/mounts"),
        &(mounts.join("\n") + "\n"),
        0o644,
    )?;
    for m in &opts.mounts {
        let t = match m {
            ExtraMount::Tmpfs { target } | ExtraMount::Bind { target, .. } => target,
        };
        let p = inside(root, t);
        fs::create_dir_all(&p).map_err(io("creating", &p))?;
    }
    let mut order = String::new();
    for s in &opts.services {
        write_file(
            &root.join("etc/sandbox/services").join(&s.name),
            &s.script,
            0o644,
        )?;
        order.push_str(&s.name);
        order.push('\n');
    }
    write_file(&root.join("etc/sandbox/order"), &order, 0o644)?;
    if let Some(sc) = &opts.scenario {
        write_file(&root.join("etc/sandbox/scenario"), sc, 0o755)?;
    }
    write_file(&root.join("usr/lib/sandbox/units.sh"), UNITS_SH, 0o644)?;
    write_file(&root.join("usr/bin/systemctl"), SYSTEMCTL, 0o755)?;
    write_file(&root.join("sbin/init"), INIT, 0o755)?;
    Ok(applets)
}

/// Functions of the sandbox's service manager, sourced by init and systemctl.
const UNITS_SH: &str = r#"# The sandbox's service manager: units are scripts in /etc/sandbox/services,
# each run in a session of its own and, when cgroup2 is mounted, in the cgroup
# /system.slice/UNIT (so /proc/PID/cgroup names the unit, as under systemd).
SVC=/etc/sandbox/services
ST=/run/sandbox
CG=/sys/fs/cgroup

have_cg() { [ -f "$CG/cgroup.procs" ]; }

unit_pids() {
    if have_cg; then
        [ -f "$CG/system.slice/$1/cgroup.procs" ] && cat "$CG/system.slice/$1/cgroup.procs"
    elif [ -f "$ST/$1.pgid" ]; then
        pg=$(cat "$ST/$1.pgid")
        for d in /proc/[0-9]*; do
            s=$(cat "$d/stat" 2>/dev/null) || continue
            s=${s##*) }
            set -- $s
            [ "$3" = "$pg" ] && echo "${d#/proc/}"
        done
    fi
    return 0
}

unit_start() {
    [ -f "$SVC/$1" ] || { echo "systemctl: unit $1 not found" >&2; return 5; }
    mkdir -p "$ST"
    setsid /bin/busybox sh -c '
        if [ -f /sys/fs/cgroup/cgroup.procs ]; then
            mkdir -p "/sys/fs/cgroup/system.slice/$1"
            echo $$ >"/sys/fs/cgroup/system.slice/$1/cgroup.procs"
        fi
        echo $$ >"/run/sandbox/$1.pgid"
        cd /
        exec </dev/null >>"/run/sandbox/$1.out" 2>&1
        exec /bin/busybox sh "/etc/sandbox/services/$1"' sh "$1" &
    i=0
    while [ -z "$(unit_pids "$1")" ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
    echo "$(date +%s) start $1" >>"$ST/units.log"
}

unit_stop() {
    for p in $(unit_pids "$1"); do kill -TERM "$p" 2>/dev/null; done
    i=0
    while [ -n "$(unit_pids "$1")" ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
    for p in $(unit_pids "$1"); do kill -KILL "$p" 2>/dev/null; done
    i=0
    while [ -n "$(unit_pids "$1")" ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
    echo "$(date +%s) stop $1" >>"$ST/units.log"
}
"#;

/// A `systemctl` that drives the sandbox's units: start, stop, restart,
/// is-active, show -p MainPID, daemon-reexec (re-executes init), daemon-reload.
const SYSTEMCTL: &str = r#"#!/bin/busybox sh
. /usr/lib/sandbox/units.sh
while [ $# -gt 0 ]; do
    case "$1" in
        --*|-q) shift ;;
        *) break ;;
    esac
done
cmd=${1:-list-units}
[ $# -gt 0 ] && shift
case "$cmd" in
    start) for u; do unit_start "$u" || exit $?; done ;;
    stop) for u; do unit_stop "$u"; done ;;
    restart|try-restart|reload-or-restart)
        for u; do [ -f "$SVC/$u" ] || { echo "systemctl: unit $u not found" >&2; exit 5; }; done
        for u; do unit_stop "$u"; unit_start "$u"; done ;;
    is-active)
        rc=0
        for u; do if [ -n "$(unit_pids "$u")" ]; then echo active; else echo inactive; rc=3; fi; done
        exit $rc ;;
    show)
        u=
        for a; do case "$a" in -*|MainPID|--property=*) ;; *) u=$a ;; esac; done
        echo "MainPID=$(unit_pids "$u" | head -n1)" ;;
    daemon-reexec)
        gen=$(cat "$ST/init.gen" 2>/dev/null)
        kill -HUP 1
        i=0
        while [ "$(cat "$ST/init.gen" 2>/dev/null)" = "$gen" ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
        [ $i -lt 100 ] || { echo "systemctl: init did not re-execute" >&2; exit 1; } ;;
    daemon-reload) ;;
    list-units)
        while read -r u; do
            [ -n "$u" ] || continue
            if [ -n "$(unit_pids "$u")" ]; then echo "$u active"; else echo "$u inactive"; fi
        done </etc/sandbox/order ;;
    *) echo "systemctl (sandbox): unsupported command $cmd" >&2; exit 1 ;;
esac
"#;

/// PID 1 of the sandbox. `init` boots (cgroups, loopback, units, scenario);
/// SIGHUP re-executes it from whatever `/sbin/init` now resolves to (the
/// new root after a pivot); the scenario writing [`SCENARIO_DONE`] powers off.
const INIT: &str = r#"#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
. /usr/lib/sandbox/units.sh
mkdir -p "$ST"
if [ "${1:-}" != reexec ]; then
    # sd_booted(): the sandbox's units answer to systemctl.
    mkdir -p /run/systemd/system
    if have_cg; then
        mkdir -p "$CG/init.scope" "$CG/user.slice/user-0.slice/session-1.scope"
        echo 1 >"$CG/init.scope/cgroup.procs"
    fi
    ip link set lo up 2>/dev/null
    while read -r u; do [ -n "$u" ] && unit_start "$u"; done </etc/sandbox/order
    echo booted >"$ST/ready"
    if [ -f /etc/sandbox/scenario ]; then
        # The scenario is the operator's login session; it writes its exit
        # code to /run/sandbox/poweroff (init does it with 98 if it dies without).
        setsid /bin/busybox sh -c '
            if [ -f /sys/fs/cgroup/cgroup.procs ]; then
                echo $$ >/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope/cgroup.procs
            fi
            cd /root
            exec /bin/busybox sh /etc/sandbox/scenario' &
        echo $! >"$ST/scenario.pid"
    fi
fi
gen=$(( $(cat "$ST/init.gen" 2>/dev/null || echo 0) + 1 ))
echo "$gen" >"$ST/init.gen"
echo "init generation $gen: $(readlink /proc/1/exe) $(stat -c %d:%i /proc/1/exe 2>/dev/null)" >>"$ST/init.log"
trap 'exec /bin/busybox sh /sbin/init reexec' HUP
trap 'echo 143 >"$ST/poweroff"' TERM INT
scenario_gone() {
    [ -f "$ST/scenario.pid" ] || return 1
    p=$(cat "$ST/scenario.pid")
    [ -r "/proc/$p/stat" ] || return 0
    s=$(cat "/proc/$p/stat" 2>/dev/null) || return 0
    s=${s##*) }
    [ "${s%% *}" = Z ]
}
while :; do
    if [ ! -f "$ST/poweroff" ] && scenario_gone; then
        echo 98 >"$ST/poweroff"
    fi
    if [ -f "$ST/poweroff" ]; then
        rc=$(cat "$ST/poweroff")
        kill -TERM -1 2>/dev/null
        exit "${rc:-1}"
    fi
    sleep 1 &
    wait $!
done
"#;

/// The script that boots a sandbox image: run it (with `sh`) inside
/// `unshare --mount --pid --fork --net --propagation private` (see
/// [`boot_command`]). Environment: `REROOT_HOST_MNT_NS` (the caller's mount
/// namespace, which it must not be in), `REROOT_SANDBOX_DEV` (the image's
/// device), `REROOT_SANDBOX_DIR` (an empty directory to mount it on),
/// `REROOT_SANDBOX_BLOCKDEVS` (devices to create nodes for inside),
/// `REROOT_SANDBOX_CGROUP` (`1`: mount cgroup2 at /sys/fs/cgroup).
pub const BOOT_SCRIPT: &str = r#"set -eu
self=$(readlink /proc/self/ns/mnt)
if [ -z "${REROOT_HOST_MNT_NS:-}" ] || [ "$self" = "$REROOT_HOST_MNT_NS" ] \
   || [ "$self" = "$(readlink /proc/1/ns/mnt)" ]; then
    echo "sandbox boot: refusing: not inside a private mount namespace" >&2
    exit 97
fi
# `unshare --propagation private` made every mount private; a shared one
# would carry what is mounted here back to the machine.
if grep -q ' shared:' /proc/self/mountinfo; then
    echo "sandbox boot: refusing: a mount in this namespace is shared" >&2
    exit 97
fi
r=$REROOT_SANDBOX_DIR
# Device numbers of the block devices to show inside, read while the
# machine's /dev is still visible.
nodes=
for d in ${REROOT_SANDBOX_BLOCKDEVS:-}; do
    nodes="$nodes $d:$(( 0x$(stat -Lc %t "$d") )):$(( 0x$(stat -Lc %T "$d") ))"
done
# Leave the copy of the machine's mount table first: until it is detached,
# this namespace holds a reference to every mount the machine had when it
# was created (other tests' mounts included).
mount "$REROOT_SANDBOX_DEV" "$r"
cd "$r"
pivot_root . .hostroot
cd /
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# This namespace's copy of the machine's mounts: private, so detaching it
# changes nothing outside.
umount -l /.hostroot
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o nosuid,mode=755,size=16m dev /dev
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
    set -- $n
    mknod -m 666 "/dev/$1" c "$2" "$3"
done
for n in $nodes; do
    IFS=:
    set -- $n
    IFS=' '
    mkdir -p "$(dirname "$1")"
    mknod -m 660 "$1" b "$2" "$3"
done
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs -o nosuid,nodev,mode=755,size=32m run /run
if [ "${REROOT_SANDBOX_CGROUP:-0}" = 1 ]; then
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
fi
while read -r kind src dst; do
    case "$kind" in
        tmpfs) mount -t tmpfs -o mode=755,size=16m tmpfs "$dst" ;;
        bind) mount --bind "$src" "$dst" ;;
    esac
done </etc/sandbox/mounts
# A shared root, as under systemd, in peer groups of this namespace only.
mount --make-rshared /
exec /sbin/init
"#;

/// A cgroup (v2) made for a sandbox below the caller's own cgroup; on drop,
/// kills what is left in it (only sandbox processes can be there) and
/// removes it.
#[derive(Debug)]
pub struct CgroupDir {
    path: PathBuf,
}

impl CgroupDir {
    /// Create `<own cgroup>/<name>` in the cgroup2 hierarchy; `None` when
    /// there is no writable cgroup2 hierarchy.
    pub fn create(name: &str) -> Option<CgroupDir> {
        let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mounts = crate::probe::mountinfo::parse(&mi).ok()?;
        let base = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup2" && m.root == Path::new("/"))
            .map(|m| m.mount_point.clone())
            .next()?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        let path = inside(&base, Path::new(rel)).join(name);
        fs::create_dir(&path).ok()?;
        Some(CgroupDir { path })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn subtree(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.path.clone()];
        let mut i = 0;
        while let Some(d) = dirs.get(i).cloned() {
            if let Ok(rd) = fs::read_dir(&d) {
                dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            i += 1;
        }
        dirs
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        for _ in 0..50 {
            let dirs = self.subtree();
            for d in &dirs {
                if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            for d in dirs.iter().rev() {
                let _ = fs::remove_dir(d);
            }
            if !self.path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// How to boot a sandbox image.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    /// Block device holding the sandbox root (built by [`build`]).
    pub device: &'a Path,
    /// An empty directory on the host to mount it on (only inside the namespace).
    pub mount_dir: &'a Path,
    /// Block devices to make visible inside (`/dev/loopN` nodes).
    pub blockdevs: Vec<PathBuf>,
    /// A cgroup to run the sandbox in (gives units real cgroups).
    pub cgroup: Option<&'a CgroupDir>,
}

/// The command that boots a sandbox: `sh -c` moving itself into the cgroup
/// (if any), then `unshare [--cgroup] --mount --pid --fork --net
/// --kill-child --propagation private sh -c BOOT_SCRIPT`. Its exit code is
/// the scenario's (or 97 when the namespace check refused).
pub fn boot_command(b: &Boot<'_>) -> Result<Command> {
    let host_ns = fs::read_link("/proc/self/ns/mnt")
        .map_err(|e| Error::io("reading /proc/self/ns/mnt", e))?;
    let devs: Vec<String> = b
        .blockdevs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut cmd = Command::new("sh");
    let outer = "if [ -n \"${REROOT_SANDBOX_CGPATH:-}\" ]; then \
                   echo $$ >\"$REROOT_SANDBOX_CGPATH/cgroup.procs\" || exit 96; \
                   exec unshare --cgroup --mount --pid --fork --net --kill-child \
                   --propagation private sh -c \"$REROOT_SANDBOX_BOOT\"; \
                 fi; \
                 exec unshare --mount --pid --fork --net --kill-child \
                   --propagation private sh -c \"$REROOT_SANDBOX_BOOT\"";
    cmd.arg("-c")
        .arg(outer)
        .env("REROOT_SANDBOX_BOOT", BOOT_SCRIPT)
        .env("REROOT_HOST_MNT_NS", host_ns)
        .env("REROOT_SANDBOX_DEV", b.device)
        .env("REROOT_SANDBOX_DIR", b.mount_dir)
        .env("REROOT_SANDBOX_BLOCKDEVS", devs.join(" "))
        .env(
            "REROOT_SANDBOX_CGROUP",
            if b.cgroup.is_some() { "1" } else { "0" },
        );
    if let Some(cg) = b.cgroup {
        cmd.env("REROOT_SANDBOX_CGPATH", cg.path());
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_interpreter_of_static_and_dynamic() {
        let me = fs::read("/proc/self/exe").unwrap();
        let interp = elf_interpreter(&me).unwrap();
        assert!(interp.is_some_and(|i| i.starts_with('/')));
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
        let mut fake = me[..64].to_vec();
        // Program headers beyond the end: an error, not a panic.
        fake[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        fake[0x38] = 1;
        assert!(elf_interpreter(&fake).is_err());
        match find_busybox() {
            Ok(bb) => assert_eq!(elf_interpreter(&fs::read(bb).unwrap()).unwrap(), None),
            Err(e) => crate::test_skip::skip(&format!("static busybox not checked: {e}")),
        }
    }

    #[test]
    fn build_makes_a_bootable_tree() {
        let bb = match find_busybox() {
            Ok(bb) => bb,
            Err(e) => return crate::test_skip::skip(&e.to_string()),
        };
        let d = tempfile::tempdir().unwrap();
        let opts = SandboxOptions {
            busybox: Some(bb),
            scenario: Some("echo hi\n".into()),
            ..SandboxOptions::default()
        };
        let n = build(d.path(), &opts).unwrap();
        assert!(n > 100, "{n} applets");
        let r = d.path();
        assert!(
            r.join("bin/sh")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        for f in ["sbin/init", "usr/bin/systemctl", "etc/sandbox/scenario"] {
            let m = fs::metadata(r.join(f)).unwrap();
            assert_eq!(m.permissions().mode() & 0o111, 0o111, "{f}");
        }
        let order = fs::read_to_string(r.join("etc/sandbox/order")).unwrap();
        assert!(order.starts_with("syslog.service\n"));
        assert!(
            fs::read_to_string(r.join("etc/fstab"))
                .unwrap()
                .contains("LABEL=sandbox-root / ext4")
        );
        assert!(r.join("home/shared").is_dir() && r.join(".hostroot").is_dir());
        if opts
            .host_binaries
            .iter()
            .any(|b| b.to == Path::new("/opt/host/bin/sleep"))
        {
            assert!(r.join("opt/host/bin/sleep").is_file());
            let interp = elf_interpreter(&fs::read(r.join("opt/host/bin/sleep")).unwrap())
                .unwrap()
                .unwrap();
            assert!(inside(r, Path::new(&interp)).is_file(), "{interp} copied");
        }
        // The scripts parse (sh -n).
        for f in ["sbin/init", "usr/bin/systemctl", "usr/lib/sandbox/units.sh"] {
            let st = Command::new(r.join("bin/busybox"))
                .args(["sh", "-n"])
                .arg(r.join(f))
                .status()
                .unwrap();
            assert!(st.success(), "{f} has a syntax error");
        }
        let st = Command::new("sh")
            .args(["-n", "-c", BOOT_SCRIPT])
            .status()
            .unwrap();
        assert!(st.success());
    }

    #[test]
    fn boot_script_refuses_the_callers_namespace() {
        // Run the boot script right here, in this process's own mount
        // namespace: it must refuse before mounting anything.
        let ns = fs::read_link("/proc/self/ns/mnt").unwrap();
        let out = Command::new("sh")
            .args(["-c", BOOT_SCRIPT])
            .env("REROOT_HOST_MNT_NS", ns)
            .env("REROOT_SANDBOX_DEV", "/nonexistent")
            .env("REROOT_SANDBOX_DIR", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(97));
        assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
    }
}
