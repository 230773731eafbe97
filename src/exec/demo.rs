//! `reroot demo`: a whole migration in a sandbox. A small "server" root
//! ([`crate::exec::sandbox`]: busybox, services that hold the root busy, a
//! data tree) is written into an ext4 image with `mkfs.ext4 -d` (no mount),
//! attached to a loop device, and booted as PID 1 of private mount, PID
//! and network namespaces; inside it `reroot migrate` moves it onto a second,
//! larger loop device. Then the result is checked (new root mounted, old one
//! released and re-identified, services back and running from the new root,
//! the data tree identical) and everything is cleaned up, also on failure
//! or Ctrl-C.
//!
//! Safety: the only changes made outside the namespace are two sparse files
//! under a fresh directory in `/var/tmp` and the two loop devices attached
//! to them ([`LoopGuard`], detached by name, checked by backing file). The
//! boot script refuses to run unless its mount namespace differs from this
//! process's and from PID 1's, before it mounts anything, and
//! [`FORBID_NS_ENV`](crate::exec::pivot::FORBID_NS_ENV) makes `migrate` and
//! `pivot` refuse to run in this process's namespace as well.
//!
//! [`Rig`] (build, boot with a scenario script, read its `=== section ===`
//! output) is what the demo and the integration tests share.
//!
//! May import `error`, `probe`, `plan` and `exec::{sandbox, pivot, identity}`.

use std::fs;
use std::io::{BufRead as _, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::exec::sandbox::{self, Boot, CgroupDir, HostBinary, SandboxOptions};
use crate::probe::mountinfo::{self, Mount};

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

fn loop_name(node: &Path) -> String {
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

/// A small deterministic random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Fill `dir` with about `bytes` of data: nested directories, files of
/// varied sizes and modes, symlinks and a hard link. Deterministic.
pub fn fill_data(dir: &Path, bytes: u64, seed: u64) -> Result<()> {
    let mut rng = Rng(seed | 1);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < bytes {
        let sub = dir.join(format!("d{}/e{}", rng.below(6), rng.below(3)));
        fs::create_dir_all(&sub).map_err(|e| Error::io("creating", e).device(&sub))?;
        let size = match rng.below(10) {
            0..=6 => rng.below(32 << 10),
            _ => rng.below(2 << 20),
        };
        let mut data = vec![0u8; usize::try_from(size).unwrap_or(0)];
        for chunk in data.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let p = sub.join(format!("f{i}"));
        fs::write(&p, &data).map_err(|e| Error::io("writing", e).device(&p))?;
        let mode = [0o644, 0o600, 0o755, 0o640][usize::try_from(rng.below(4)).unwrap_or(0)];
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", e).device(&p))?;
        if i % 7 == 3 {
            let _ = std::os::unix::fs::symlink(format!("f{i}"), sub.join(format!("l{i}")));
        }
        if i == 0 {
            let _ = fs::hard_link(&p, dir.join("hardlink"));
        }
        written = written.saturating_add(size);
        i = i.saturating_add(1);
    }
    fs::write(
        dir.join("README"),
        "reroot demo data: its tree hash must survive the move\n",
    )
    .map_err(|e| Error::io("writing", e).device(dir))
}

fn walk(
    top: &Path,
    dir: &Path,
    lines: &mut Vec<String>,
    inodes: &mut Vec<((u64, u64), String)>,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io("reading", e).device(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).map_err(|e| Error::io("lstat", e).device(&p))?;
        let rel = p.strip_prefix(top).unwrap_or(&p).display().to_string();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "d".to_owned()
        } else if ft.is_symlink() {
            format!(
                "l {}",
                fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            )
        } else if ft.is_file() {
            let key = (m.dev(), m.ino());
            if let Some((_, first)) = inodes.iter().find(|(k, _)| *k == key) {
                format!("h {first}")
            } else {
                inodes.push((key, rel.clone()));
                let data = fs::read(&p).map_err(|e| Error::io("reading", e).device(&p))?;
                format!("f {:016x}", xxhash_rust::xxh3::xxh3_64(&data))
            }
        } else {
            "o".to_owned()
        };
        lines.push(format!(
            "{rel} {:o} {}:{} {} {}.{} {what}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ));
        if ft.is_dir() {
            walk(top, &p, lines, inodes)?;
        }
    }
    Ok(())
}

/// A hash of the tree under `dir`: every entry's path, mode, owner, size,
/// mtime, link target, hard-link group and the xxh3 of its contents.
pub fn tree_hash(dir: &Path) -> Result<String> {
    let mut lines = Vec::new();
    walk(dir, dir, &mut lines, &mut Vec::new())?;
    Ok(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(lines.join("\n").as_bytes())
    ))
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
        let mut opts = SandboxOptions {
            scenario: Some(o.scenario.clone()),
            ..SandboxOptions::default()
        };
        // holder.service holds a deleted file only in its first life, like
        // a daemon still mapping a library that an upgrade replaced: the
        // restart quiesce does is what lets go of it (the sandbox's default
        // holds a new deleted file on every start, which no restart cures).
        for s in &mut opts.services {
            if s.name == "holder.service" {
                s.script = HOLDER_ONCE.to_owned();
            }
        }
        opts.host_binaries.push(HostBinary {
            from: o.reroot_exe.clone(),
            to: "/usr/sbin/reroot".into(),
        });
        for t in ["e2fsck", "resize2fs", "tune2fs"] {
            if let Some(from) = sandbox::host_tool(t) {
                opts.host_binaries.push(HostBinary {
                    from,
                    to: PathBuf::from("/sbin").join(t),
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
        let b = Boot {
            device: self.old.path(),
            mount_dir: &self.work.path().join("nsroot"),
            blockdevs: vec![self.old.path().to_path_buf(), self.new.path().to_path_buf()],
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
/// re-runs the scenario from a copy on `/run` (see [`DEMO_SCENARIO`]).
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
# the old root; migrate then waits for you to log out and in: see README.)
if [ "${1:-}" != session ]; then
    mkdir -p /run/demo
    cp /bin/busybox /run/demo/busybox
    cp /etc/sandbox/scenario /run/demo/session.sh
    cd /
    exec /run/demo/busybox sh /run/demo/session.sh session
fi
# Services are up (init starts the scenario after them); let them tick.
sleep 1
"#;

/// The demo's scenario: facts, `reroot migrate --grow --yes --json`, facts.
pub const DEMO_SCENARIO: &str = r#"
sec before; facts
sec migrate
reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --grow --yes --json $REROOT_DEMO_FLAGS >/run/demo/report.json
echo "rc $?"
sec report; cat /run/demo/report.json
sec after; facts
sec end
done_rc 0
"#;

/// Ctrl-C, `SIGTERM` and `SIGHUP`, caught for as long as this lives: they
/// are blocked in this thread (and the threads it starts) and read from a
/// signalfd, so the demo can end the sandbox and clean up in order. Child
/// processes start with an empty signal mask (std resets it).
#[derive(Debug)]
pub struct Interrupts {
    mask: nix::sys::signal::SigSet,
    fd: Option<nix::sys::signalfd::SignalFd>,
}

impl Interrupts {
    /// Start catching.
    pub fn catch() -> Self {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut mask = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            mask.add(s);
        }
        let fd = mask.thread_block().ok().and_then(|()| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
        });
        Self { mask, fd }
    }

    /// The signal that came, if one did.
    pub fn poll(&self) -> Option<String> {
        let info = self.fd.as_ref()?.read_signal().ok()??;
        let name = i32::try_from(info.ssi_signo)
            .ok()
            .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
            .map_or_else(|| info.ssi_signo.to_string(), |s| s.as_str().to_owned());
        Some(format!("interrupted by {name}"))
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.fd = None;
        let _ = self.mask.thread_unblock();
    }
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The rig.
    pub rig: RigOptions,
    /// Extra flags for `reroot migrate` inside (tests: `--inject-failure`).
    pub migrate_flags: String,
    /// Time limit for the sandbox.
    pub limit: Duration,
}

impl DemoOptions {
    /// The defaults: a 256 MiB old root with 24 MiB of data onto a 384 MiB
    /// target, `reroot_exe` in the sandbox, 4 minutes at most.
    pub fn new(reroot_exe: PathBuf) -> Self {
        Self {
            rig: RigOptions {
                parent: "/var/tmp".into(),
                keep: false,
                reroot_exe,
                old_bytes: 256 << 20,
                new_bytes: 384 << 20,
                data_bytes: 24 << 20,
                scenario: format!("{SCENARIO_LIB}{DEMO_SCENARIO}"),
            },
            migrate_flags: String::new(),
            limit: Duration::from_secs(240),
        }
    }
}

/// One check of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// It holds.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// The demo's report (`reroot demo --json`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Every check passed and cleanup left nothing behind.
    pub ok: bool,
    /// The old root's device (a loop device).
    pub old_device: String,
    /// The target (a loop device).
    pub new_device: String,
    /// `reroot migrate`'s exit code inside the sandbox.
    pub migrate_exit: Option<i32>,
    /// `reroot migrate --json`'s report.
    pub migrate: Option<serde_json::Value>,
    /// The sandbox's output when something went wrong (for a bug report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_output: Option<String>,
    /// The checks.
    pub checks: Vec<Check>,
    /// The sandbox before and after.
    pub before: Facts,
    /// After.
    pub after: Facts,
    /// Why the sandbox was stopped early, if it was.
    pub interrupted: Option<String>,
    /// Cleanup.
    pub cleanup: Cleanup,
    /// Wall time.
    pub seconds: f64,
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}

fn dev_string(d: (u32, u32)) -> String {
    format!("{}:{}", d.0, d.1)
}

/// Checks of a demo run: the migration succeeded, `/` is the new device and
/// writable, the old one is released and re-identified, every service runs
/// (from the new root), the data is identical, and it all happened in a
/// namespace that is not ours.
fn checks(
    rig: &Rig,
    run: &Run,
    before: &Facts,
    after: &Facts,
    rc: Option<i32>,
    rep: Option<&serde_json::Value>,
) -> Vec<Check> {
    let old = rig.old.devno();
    let new = rig.new.devno();
    let mut c = vec![check(
        "sandbox in a mount namespace of its own",
        !before.ns.is_empty() && before.ns != rig.host_ns,
        format!("sandbox {}, here {}", before.ns, rig.host_ns),
    )];
    c.push(check(
        "the sandbox booted from the old root",
        before.root_dev() == Some(old),
        format!(
            "/ was {}, the old device is {}",
            before.root_dev().map_or_else(|| "?".to_owned(), dev_string),
            dev_string(old)
        ),
    ));
    let outcome = rep
        .and_then(|r| r["outcome"].as_str())
        .unwrap_or("none")
        .to_owned();
    c.push(check(
        "reroot migrate succeeded",
        rc == Some(0) && outcome == "done",
        format!("exit {rc:?}, outcome {outcome}"),
    ));
    c.push(check(
        "the new root is mounted at / read-write",
        after.root_dev() == Some(new) && after.root_writable,
        format!(
            "/ is {} (new device {}), writable: {}",
            after.root_dev().map_or_else(|| "?".to_owned(), dev_string),
            dev_string(new),
            after.root_writable
        ),
    ));
    let old_mounted: Vec<String> = after
        .mounts
        .iter()
        .filter(|m| (m.major, m.minor) == old)
        .map(|m| m.mount_point.display().to_string())
        .collect();
    let old_name = loop_name(rig.old.path());
    let in_sysfs = after.ext4.contains(&old_name);
    c.push(check(
        "the old root is unmounted and released",
        old_mounted.is_empty() && !in_sysfs && !after.mounts.is_empty(),
        format!(
            "mounted at {old_mounted:?}; /sys/fs/ext4/{old_name} {}",
            if in_sysfs { "exists" } else { "is gone" }
        ),
    ));
    let old_id = crate::exec::identity::identity_of(rig.old.path());
    let new_id = crate::exec::identity::identity_of(rig.new.path());
    match (old_id, new_id) {
        (Ok(o), Ok(n)) => c.push(check(
            "the old root has a new UUID and the label oldroot; the new one kept the identity",
            o.label == "oldroot" && o.uuid != n.uuid && n.label == "sandbox-root",
            format!("old {} {:?}, new {} {:?}", o.uuid, o.label, n.uuid, n.label),
        )),
        (o, n) => c.push(check(
            "the old root has a new UUID and the label oldroot; the new one kept the identity",
            false,
            format!("cannot read identities: {:?} {:?}", o.err(), n.err()),
        )),
    }
    let inactive: Vec<&str> = after
        .units
        .iter()
        .filter(|(_, a)| !a)
        .map(|(u, _)| u.as_str())
        .collect();
    c.push(check(
        "every service runs again",
        !after.units.is_empty() && inactive.is_empty() && after.units.len() == before.units.len(),
        format!("{} units, inactive: {inactive:?}", after.units.len()),
    ));
    let new_dev_num = libc::makedev(new.0, new.1).to_string();
    let stale: Vec<&str> = after
        .unit_exe_devs
        .iter()
        .filter(|(_, d)| *d != new_dev_num)
        .map(|(u, _)| u.as_str())
        .collect();
    c.push(check(
        "every service runs from the new root",
        !after.unit_exe_devs.is_empty() && stale.is_empty(),
        format!("not from the new root: {stale:?}"),
    ));
    c.push(check(
        "the data is identical (tree hash)",
        !before.tree.is_empty() && before.tree == after.tree && before.tree.len() == 16,
        format!("before {}, after {}", before.tree, after.tree),
    ));
    let window = rep.and_then(|r| r["read_only_window_seconds"].as_f64());
    c.push(check(
        "the read-only window was measured",
        window.is_some(),
        window.map_or_else(|| "none".to_owned(), |w| format!("{w:.1} s")),
    ));
    if run.code != Some(0) {
        c.push(check(
            "the sandbox ended normally",
            false,
            format!("exit {:?}", run.code),
        ));
    }
    c
}

/// Run the demo. `progress` gets every line to show; `stop` is polled
/// (Ctrl-C). Errors only when it cannot start; a failed check is in the
/// report (`ok: false`).
pub fn run(
    o: &DemoOptions,
    progress: &mut dyn FnMut(&str),
    stop: &mut dyn FnMut() -> Option<String>,
) -> Result<DemoReport> {
    requirements()?;
    let t0 = Instant::now();
    let rig = Rig::build(&o.rig, progress)?;
    progress(&format!(
        "booting the sandbox: PID 1 of private mount + PID + network namespaces (this shell's is {})",
        rig.host_ns()
    ));
    progress("inside: reroot migrate OLD NEW --grow --yes (progress below)");
    let run = rig.boot(
        &[("REROOT_DEMO_FLAGS", o.migrate_flags.clone())],
        o.limit,
        &mut |l| progress(&format!("  | {l}")),
        stop,
    );
    let old_device = rig.old.path().display().to_string();
    let new_device = rig.new.path().display().to_string();
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            let cleanup = rig.cleanup();
            return Err(e.hint(format!("cleanup left behind: {:?}", cleanup.left_behind)));
        }
    };
    let before = run.section("before").map(Facts::parse).unwrap_or_default();
    let after = run.section("after").map(Facts::parse).unwrap_or_default();
    let rc = run
        .section("migrate")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("rc ")))
        .and_then(|s| s.trim().parse().ok());
    let migrate: Option<serde_json::Value> = run
        .section("report")
        .and_then(|s| serde_json::from_str(s).ok());
    let checks = if run.interrupted.is_some() {
        Vec::new()
    } else {
        checks(&rig, &run, &before, &after, rc, migrate.as_ref())
    };
    progress("cleaning up: the sandbox is gone; detaching the loop devices");
    let interrupted = run.interrupted.clone();
    let cleanup = rig.cleanup();
    let ok = interrupted.is_none()
        && !checks.is_empty()
        && checks.iter().all(|c| c.ok)
        && cleanup.left_behind.is_empty();
    if interrupted.is_none() && checks.is_empty() {
        return Err(
            Error::new(ErrorKind::Io("the sandbox produced no result".into())).stage(Stage::Demo),
        );
    }
    let sandbox_output = (!ok).then(|| format!("{}\n--- stderr ---\n{}", run.stdout, run.stderr));
    Ok(DemoReport {
        ok,
        sandbox_output,
        old_device,
        new_device,
        migrate_exit: rc,
        migrate,
        checks,
        before,
        after,
        interrupted,
        cleanup,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_tree_hash_are_deterministic_and_sensitive() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        fill_data(a.path(), 256 << 10, 7).unwrap();
        fill_data(b.path(), 256 << 10, 7).unwrap();
        let h1 = tree_hash(a.path()).unwrap();
        assert_eq!(h1.len(), 16);
        assert_eq!(tree_hash(a.path()).unwrap(), h1);
        assert!(a.path().join("hardlink").exists());
        fs::write(a.path().join("README"), "changed").unwrap();
        assert_ne!(tree_hash(a.path()).unwrap(), h1);
        // Same seed, same contents (mtimes differ, so compare the files).
        assert_eq!(
            fs::read(a.path().join("hardlink")).unwrap(),
            fs::read(b.path().join("hardlink")).unwrap()
        );
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

    #[test]
    fn scenario_scripts_parse() {
        let script = format!("{SCENARIO_LIB}{DEMO_SCENARIO}");
        let st = Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(st.success());
    }
}
