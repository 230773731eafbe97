//! The sandbox rig shared by `reroot demo` and the integration tests: a
//! work directory, two loop devices ([`LoopGuard`]: detached by name, only
//! while still ours), the sandbox root written with `mkfs.ext4 -d`, its boot
//! with a scenario script ([`Rig::boot`]), the scenario's `=== section ===`
//! output ([`Run`], [`Facts`]) and the cleanup check ([`Cleanup`]).

use std::fs;
use std::io::{BufRead as _, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result, Stage};
use crate::exec::sandbox::{self, Boot, CgroupDir, HostBinary, SandboxOptions, Service};
use crate::probe::mountinfo::{self, Mount};

use super::data::fill_data;

/// The demo's `holder.service`: a deleted file held open until restarted.
const HOLDER_ONCE: &str = "mkdir -p /var/lib/holder\n\
if [ ! -e /run/holder.restarted ]; then\n\
    touch /run/holder.restarted\n\
    echo held >/var/lib/holder/deleted\n\
    exec 4</var/lib/holder/deleted\n\
    rm /var/lib/holder/deleted\n\
fi\n\
exec sleep 1000000\n";

/// Where the sandbox mounts nothing but finds the data tree to compare.
pub const DATA_DIR: &str = "/var/lib/demo";

/// A directory of our own under `/var/tmp`, removed on drop (unless kept).
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Create `/var/tmp/reroot-demo-<pid>-<nanos>` (or under `parent`).
    pub fn create(parent: &Path, keep: bool) -> Result<WorkDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!("reroot-demo-{}-{nanos}", std::process::id()));
        fs::create_dir_all(parent).map_err(|e| Error::io("creating", e).device(parent))?;
        fs::create_dir(&path).map_err(|e| Error::io("creating", e).device(&path))?;
        Ok(WorkDir { path, keep })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A loop device we attached to `backing`; on drop it is detached by its
/// name, and only while it is still backed by our file.
#[derive(Debug)]
pub struct LoopGuard {
    node: PathBuf,
    backing: PathBuf,
}

/// `loop3` for `/dev/loop3`.
pub(crate) fn loop_name(node: &Path) -> String {
    node.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The backing file of loop device `name` (`loop3`), if attached.
pub fn loop_backing(name: &str) -> Option<PathBuf> {
    fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .ok()
        .map(|s| PathBuf::from(s.trim_end_matches('\n')))
}

impl LoopGuard {
    /// `losetup --find --show FILE`.
    pub fn attach(backing: &Path) -> Result<LoopGuard> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .map_err(|e| Error::io("running losetup", e))?;
        let node = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || !node.starts_with("/dev/loop") {
            return Err(Error::tool(format!(
                "losetup --find --show {}: {}",
                backing.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
            .hint("the demo needs free loop devices (modprobe loop)"));
        }
        Ok(LoopGuard {
            node: node.into(),
            backing: backing.to_path_buf(),
        })
    }

    /// The device node (`/dev/loop3`).
    pub fn path(&self) -> &Path {
        &self.node
    }

    /// `major:minor` of the device.
    pub fn devno(&self) -> (u32, u32) {
        fs::metadata(&self.node).map_or((0, 0), |m| (libc::major(m.rdev()), libc::minor(m.rdev())))
    }

    /// Still attached to our file.
    pub fn attached(&self) -> bool {
        loop_backing(&loop_name(&self.node)).is_some_and(|b| b == self.backing)
    }

    /// Detach (if still ours) and wait up to 5 s for the device to go.
    pub fn detach(&mut self) -> bool {
        if !self.attached() {
            return true;
        }
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.node)
            .stderr(Stdio::null())
            .status();
        let t0 = Instant::now();
        while self.attached() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
        }
        !self.attached()
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        self.detach();
    }
}

/// What the demo (or a test) needs on this machine; the first thing
/// missing, explained.
pub fn requirements() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::refused(
            "reroot demo needs root: it attaches two loop devices and boots a sandbox in private \
             mount and PID namespaces",
        )
        .stage(Stage::Demo)
        .hint(
            "run it as root: `sudo reroot demo` (it never touches this machine's disks or root)",
        ));
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err(Error::refused("no loop devices: /dev/loop-control does not exist")
            .stage(Stage::Demo)
            .hint("load the loop module (`modprobe loop`); in a container, give it /dev/loop-control and /dev/loop*"));
    }
    for t in [
        "losetup",
        "unshare",
        "mkfs.ext4",
        "e2fsck",
        "resize2fs",
        "tune2fs",
        "ldd",
    ] {
        if sandbox::host_tool(t).is_none() {
            return Err(Error::tool(format!("`{t}` is not installed"))
                .stage(Stage::Demo)
                .hint("install util-linux, e2fsprogs and libc-bin (Debian: apt-get install util-linux e2fsprogs libc-bin)"));
        }
    }
    sandbox::find_busybox().map_err(|e| e.stage(Stage::Demo))?;
    Ok(())
}

/// How to build a rig.
#[derive(Debug, Clone)]
pub struct RigOptions {
    /// Where the work directory goes (`/var/tmp`).
    pub parent: PathBuf,
    /// Keep the work directory (images) afterwards.
    pub keep: bool,
    /// The reroot binary put into the sandbox (as `/usr/sbin/reroot`).
    pub reroot_exe: PathBuf,
    /// Size of the old root's device.
    pub old_bytes: u64,
    /// Size of the target device.
    pub new_bytes: u64,
    /// Bytes of data in [`DATA_DIR`].
    pub data_bytes: u64,
    /// The scenario: the operator's session, a busybox sh script (see
    /// [`SandboxOptions::scenario`]).
    pub scenario: String,
    /// More host programs for the scenario, by name (copied with their
    /// libraries to `/usr/bin`; missing ones are skipped).
    pub extra_tools: Vec<String>,
    /// A `churn.service` writing about this many bytes per second during
    /// the whole migration (0: none); see [`churn_script`].
    pub churn_bytes_per_s: u64,
}

/// The script of `churn.service`: four kinds of writes, four times a second,
/// together about `rate` bytes per second: appends with fsync (a log,
/// truncated at 16 MiB), rewrites in place with fsync, new small files
/// (the oldest deleted), and O_DIRECT rewrites of a database-like file.
/// It keeps `journal` open for writing, as a database would, so that
/// quiesce sees a writer and stops it before the remount to read-only.
pub fn churn_script(rate: u64) -> String {
    // Blocks of 4 KiB per kind per tick: rate / 4 ticks / 4 kinds.
    let n = (rate / 16 / 4096).max(1);
    format!(
        "mkdir -p /var/lib/churn/small\n\
         cd /var/lib/churn\n\
         exec 3>>journal\n\
         dd if=/dev/urandom of=db bs=4096 count=1024 2>/dev/null\n\
         dd if=/dev/urandom of=rw bs=4096 count=1024 conv=fsync 2>/dev/null\n\
         i=0\n\
         while :; do\n\
         dd if=/dev/urandom of=log bs=4096 count={n} oflag=append conv=notrunc,fsync 2>/dev/null\n\
         [ $(wc -c <log) -gt 16777216 ] && : >log\n\
         dd if=/dev/urandom of=rw bs=4096 count={n} seek=$(( (i * {n}) % 1024 )) conv=notrunc,fsync 2>/dev/null\n\
         dd if=/dev/urandom of=small/f$i bs=4096 count={n} conv=fsync 2>/dev/null\n\
         rm -f small/f$((i - 16))\n\
         dd if=/dev/urandom of=db bs=4096 count={n} seek=$(( (i * {n}) % 1024 )) oflag=direct conv=notrunc 2>/dev/null\n\
         i=$((i + 1))\n\
         sleep 0.25\n\
         done\n"
    )
}

/// Two loop devices (an old root with the sandbox, an empty larger target)
/// and what is needed to boot the sandbox.
#[derive(Debug)]
pub struct Rig {
    // Field order is drop order: the cgroup (its processes) first, then the
    // loop devices, then the files under the work directory.
    cgroup: Option<CgroupDir>,
    /// The old root's device.
    pub old: LoopGuard,
    /// The target.
    pub new: LoopGuard,
    work: WorkDir,
    host_ns: String,
}

/// Output of one boot.
#[derive(Debug, Clone)]
pub struct Run {
    /// The boot command's exit code (the scenario's; `None`: killed).
    pub code: Option<i32>,
    /// The scenario's stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Ended by a signal to us (Ctrl-C) or the time limit.
    pub interrupted: Option<String>,
}

impl Run {
    /// The text of section `=== name ===` (up to the next section).
    pub fn section(&self, name: &str) -> Option<&str> {
        let tag = format!("=== {name} ===\n");
        let start = self.stdout.find(&tag)? + tag.len();
        let rest = &self.stdout[start..];
        Some(&rest[..rest.find("\n=== ").map_or(rest.len(), |i| i + 1)])
    }
}

fn run_tool(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("running {:?}", cmd.get_program()), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::tool(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn sparse(path: &Path, bytes: u64) -> Result<()> {
    let f = fs::File::create(path).map_err(|e| Error::io("creating", e).device(path))?;
    f.set_len(bytes)
        .map_err(|e| Error::io("sizing", e).device(path))
}

impl Rig {
    /// Build the sandbox tree, write it into the old image with
    /// `mkfs.ext4 -d` (label `sandbox-root`), make an empty target image
    /// and attach both to loop devices.
    pub fn build(o: &RigOptions, progress: &mut dyn FnMut(&str)) -> Result<Rig> {
        let host_ns = fs::read_link("/proc/self/ns/mnt")
            .map_err(|e| Error::io("reading /proc/self/ns/mnt", e))?
            .to_string_lossy()
            .into_owned();
        let work = WorkDir::create(&o.parent, o.keep)?;
        let tree = work.path().join("tree");
        fs::create_dir(&tree).map_err(|e| Error::io("creating", e).device(&tree))?;
        let mut opts = SandboxOptions::for_migration(&o.reroot_exe);
        opts.scenario = Some(o.scenario.clone());
        // holder.service holds a deleted file only in its first life, like
        // a daemon still mapping a library that an upgrade replaced: the
        // restart quiesce does is what lets go of it (the sandbox's default
        // holds a new deleted file on every start, which no restart cures).
        for s in &mut opts.services {
            if s.name == "holder.service" {
                s.script = HOLDER_ONCE.to_owned();
            }
        }
        if o.churn_bytes_per_s > 0 {
            opts.services.push(Service::new(
                "churn.service",
                &churn_script(o.churn_bytes_per_s),
            ));
        }
        for t in &o.extra_tools {
            if let Some(from) = sandbox::host_tool(t) {
                opts.host_binaries.push(HostBinary {
                    from,
                    to: PathBuf::from("/usr/bin").join(t),
                });
            }
        }
        progress("building the sandbox root (busybox, services, reroot, e2fsprogs)");
        sandbox::build(&tree, &opts)?;
        let data = tree.join(DATA_DIR.trim_start_matches('/'));
        fs::create_dir_all(&data).map_err(|e| Error::io("creating", e).device(&data))?;
        fill_data(&data, o.data_bytes, 0x5eed)?;
        let old_img = work.path().join("old.img");
        let new_img = work.path().join("new.img");
        sparse(&old_img, o.old_bytes)?;
        sparse(&new_img, o.new_bytes)?;
        progress(&format!(
            "writing it into a {} ext4 image (mkfs.ext4 -d, nothing is mounted)",
            crate::plan::target::human_bytes(o.old_bytes)
        ));
        run_tool(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", "sandbox-root", "-d"])
                .arg(&tree)
                .arg(&old_img),
        )?;
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir(work.path().join("nsroot"))
            .map_err(|e| Error::io("creating", e).device(work.path()))?;
        let old = LoopGuard::attach(&old_img)?;
        let new = LoopGuard::attach(&new_img)?;
        progress(&format!(
            "old root: {} ({}), target: {} ({})",
            old.path().display(),
            crate::plan::target::human_bytes(o.old_bytes),
            new.path().display(),
            crate::plan::target::human_bytes(o.new_bytes)
        ));
        let cg_name = format!(
            "reroot-demo-{}-{}",
            std::process::id(),
            work.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let cgroup = CgroupDir::create(&cg_name);
        Ok(Rig {
            cgroup,
            old,
            new,
            work,
            host_ns,
        })
    }

    /// This process's mount namespace (`mnt:[N]`), which the sandbox must not be.
    pub fn host_ns(&self) -> &str {
        &self.host_ns
    }

    /// The work directory.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The sandbox's units get real cgroups (else they share ours).
    pub fn has_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Boot the sandbox with `env` (besides `REROOT_DEMO_OLD`/`_NEW`, the
    /// devices) and wait for the scenario, at most `limit`. Lines of its
    /// stderr go to `on_line` as they come. `stop` is polled: when it
    /// returns a reason (Ctrl-C), the sandbox is killed.
    pub fn boot(
        &self,
        env: &[(&str, String)],
        limit: Duration,
        on_line: &mut dyn FnMut(&str),
        stop: &mut dyn FnMut() -> Option<String>,
    ) -> Result<Run> {
        self.boot_with_devices(&[], env, limit, on_line, stop)
    }

    /// [`Rig::boot`] with more block devices in the sandbox's `/dev` (a
    /// fault-injecting target of the fault matrix, say).
    pub fn boot_with_devices(
        &self,
        devices: &[PathBuf],
        env: &[(&str, String)],
        limit: Duration,
        on_line: &mut dyn FnMut(&str),
        stop: &mut dyn FnMut() -> Option<String>,
    ) -> Result<Run> {
        let mut blockdevs = vec![self.old.path().to_path_buf(), self.new.path().to_path_buf()];
        blockdevs.extend(devices.iter().cloned());
        let b = Boot {
            device: self.old.path(),
            mount_dir: &self.work.path().join("nsroot"),
            blockdevs,
            cgroup: self.cgroup.as_ref(),
        };
        let mut cmd = sandbox::boot_command(&b)?;
        cmd.env(crate::exec::pivot::FORBID_NS_ENV, &self.host_ns)
            .env("REROOT_DEMO_OLD", self.old.path())
            .env("REROOT_DEMO_NEW", self.new.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C on our terminal reaches only us,
            // and we end the sandbox in order.
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("starting the sandbox (unshare)", e))?;
        let mut out = child.stdout.take();
        let err = child.stderr.take();
        let out_thread = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let (tx, rx) = crossbeam_channel::unbounded::<String>();
        let err_thread = std::thread::spawn(move || {
            if let Some(e) = err {
                for line in std::io::BufReader::new(e)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    let _ = tx.send(line);
                }
            }
        });
        let t0 = Instant::now();
        let mut stderr = String::new();
        let mut interrupted = None;
        let code = loop {
            while let Ok(l) = rx.try_recv() {
                on_line(&l);
                stderr.push_str(&l);
                stderr.push('\n');
            }
            if let Ok(Some(st)) = child.try_wait() {
                break st.code();
            }
            let why = stop().or_else(|| {
                (t0.elapsed() > limit).then(|| format!("time limit of {} s", limit.as_secs()))
            });
            if let Some(why) = why {
                interrupted = Some(why);
                // The unshare process is ours; with --kill-child its death
                // takes the namespace's PID 1, and so everything in it, along.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                on_line(&l);
                stderr.push_str(&l);
                stderr.push('\n');
            }
        };
        let _ = err_thread.join();
        while let Ok(l) = rx.try_recv() {
            on_line(&l);
            stderr.push_str(&l);
            stderr.push('\n');
        }
        let stdout = out_thread.join().unwrap_or_default();
        Ok(Run {
            code,
            stdout,
            stderr,
            interrupted,
        })
    }

    /// Tear down: kill what is left in the cgroup, detach both loop devices
    /// (by name, if still ours), remove the work directory (unless kept).
    /// Returns what was left behind on this machine (should be nothing).
    pub fn cleanup(mut self) -> Cleanup {
        self.cgroup = None;
        let names = [
            self.old.path().display().to_string(),
            self.new.path().display().to_string(),
        ];
        let detached = self.old.detach() & self.new.detach();
        let work = self.work.path().to_path_buf();
        let keep = self.work.keep;
        drop(self);
        let mut left = Vec::new();
        if !detached {
            left.push("a loop device did not detach".to_owned());
        }
        if let Ok(text) = fs::read_to_string("/proc/self/mountinfo") {
            if let Ok(ms) = mountinfo::parse(&text) {
                for m in ms {
                    if names.contains(&m.source) || m.mount_point.starts_with(&work) {
                        left.push(format!(
                            "{} mounted at {}",
                            m.source,
                            m.mount_point.display()
                        ));
                    }
                }
            }
        }
        if !keep && work.exists() {
            left.push(format!("{} was not removed", work.display()));
        }
        Cleanup {
            loop_devices: names.to_vec(),
            work_dir: work,
            kept: keep,
            left_behind: left,
        }
    }
}

/// What cleanup did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// The loop devices the demo attached (and detached).
    pub loop_devices: Vec<String>,
    /// The work directory.
    pub work_dir: PathBuf,
    /// It was kept (`--keep`).
    pub kept: bool,
    /// What is still there (should be empty).
    pub left_behind: Vec<String>,
}

/// Facts a scenario prints about the sandbox (`facts` in [`SCENARIO_LIB`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// The sandbox's mount namespace.
    pub ns: String,
    /// `/` is writable.
    pub root_writable: bool,
    /// Tree hash of [`DATA_DIR`].
    pub tree: String,
    /// `unit active|inactive`.
    pub units: Vec<(String, bool)>,
    /// Per unit, the device numbers (`major:minor`) its main process runs from.
    pub unit_exe_devs: Vec<(String, String)>,
    /// The mount table.
    #[serde(skip)]
    pub mounts: Vec<Mount>,
    /// Entries of `/sys/fs/ext4` (filesystems mounted anywhere).
    pub ext4: Vec<String>,
}

impl Facts {
    /// Parse a `facts` section.
    pub fn parse(text: &str) -> Facts {
        let mut f = Facts::default();
        let mut mi = String::new();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "ns" => f.ns = v.to_owned(),
                "rw" => f.root_writable = v == "yes",
                "tree" => f.tree = v.to_owned(),
                "unit" => {
                    let mut w = v.split_whitespace();
                    if let (Some(u), Some(s)) = (w.next(), w.next()) {
                        f.units.push((u.to_owned(), s == "active"));
                    }
                }
                "exe" => {
                    if let Some((u, d)) = v.split_once(' ') {
                        f.unit_exe_devs.push((u.to_owned(), d.to_owned()));
                    }
                }
                "mnt" => {
                    mi.push_str(v);
                    mi.push('\n');
                }
                "ext4" => f.ext4.push(v.to_owned()),
                _ => {}
            }
        }
        f.mounts = mountinfo::parse(&mi).unwrap_or_default();
        f
    }

    /// `major:minor` of the filesystem at `/`.
    pub fn root_dev(&self) -> Option<(u32, u32)> {
        self.mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == Path::new("/"))
            .map(|m| (m.major, m.minor))
    }
}

/// Shell functions for scenarios: `sec NAME` starts a section, `done_rc N`
/// powers the sandbox off with N, `facts` prints [`Facts`], `session`
/// re-runs the scenario from a copy on `/run` (see [`super::DEMO_SCENARIO`]).
pub const SCENARIO_LIB: &str = r#"set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
sec() { echo "=== $1 ==="; }
done_rc() { echo "$1" >/run/sandbox/poweroff; exit "$1"; }
facts() {
    echo "ns $(readlink /proc/self/ns/mnt)"
    if touch /.reroot-rw-test 2>/dev/null; then rm -f /.reroot-rw-test; echo "rw yes"; else echo "rw no"; fi
    echo "tree $(reroot demo --tree-hash /var/lib/demo 2>&1)"
    systemctl list-units | sed 's/^/unit /'
    while read -r u; do
        [ -n "$u" ] || continue
        p=$(systemctl show -p MainPID "$u" | sed 's/MainPID=//')
        [ -n "$p" ] && echo "exe $u $(stat -L -c '%d' "/proc/$p/exe" 2>/dev/null)"
    done </etc/sandbox/order
    sed 's/^/mnt /' /proc/self/mountinfo
    ls /sys/fs/ext4 2>/dev/null | sed 's/^/ext4 /'
}
# The operator's session runs from a copy of busybox and of this script on
# /run, a tmpfs that the pivot moves along: like an operator who logged out
# and in again right after the pivot, it keeps nothing of the old root busy,
# so finish can release it without waiting. (A real login shell runs from
# the old root; migrate then waits for you to log out and in: see README.
# REROOT_SESSION_ON_ROOT=1 keeps such a session, for the test of that.)
if [ "${1:-}" != session ] && [ -z "${REROOT_SESSION_ON_ROOT:-}" ]; then
    mkdir -p /run/demo
    cp /bin/busybox /run/demo/busybox
    cp /etc/sandbox/scenario /run/demo/session.sh
    cd /
    exec /run/demo/busybox sh /run/demo/session.sh session
fi
# Services are up (init starts the scenario after them); let them tick.
sleep 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_script_writes_every_kind_at_the_rate() {
        let s = churn_script(4 << 20);
        // 4 MiB/s = 16 writes of 256 KiB (64 blocks) a second.
        assert_eq!(s.matches("count=64 ").count(), 4, "{s}");
        assert!(s.contains("oflag=append conv=notrunc,fsync"));
        assert!(s.contains("oflag=direct conv=notrunc"));
        assert!(s.contains("rm -f small/"));
        assert!(churn_script(1).contains("count=1 "));
        let st = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .status()
            .unwrap();
        assert!(st.success(), "{s}");
    }

    #[test]
    fn sections_and_facts_parse() {
        let run = Run {
            code: Some(0),
            stdout:
                "=== before ===\nns mnt:[5]\nrw yes\ntree 00112233445566aa\nunit a.service active\n\
                     unit b.service inactive\nexe a.service 1792\n\
                     mnt 22 1 7:0 / / rw,relatime shared:1 - ext4 /dev/loop0 rw\next4 loop0\n\
                     === after ===\nrw no\n"
                    .into(),
            stderr: String::new(),
            interrupted: None,
        };
        let f = Facts::parse(run.section("before").unwrap());
        assert_eq!(f.ns, "mnt:[5]");
        assert!(f.root_writable);
        assert_eq!(f.tree, "00112233445566aa");
        assert_eq!(
            f.units,
            vec![("a.service".into(), true), ("b.service".into(), false)]
        );
        assert_eq!(f.unit_exe_devs, vec![("a.service".into(), "1792".into())]);
        assert_eq!(f.root_dev(), Some((7, 0)));
        assert_eq!(f.ext4, vec!["loop0"]);
        assert_eq!(run.section("after").unwrap(), "rw no\n");
        assert!(run.section("nope").is_none());
    }
}
