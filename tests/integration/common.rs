//! Shared test infrastructure: root detection, scratch directories, sparse
//! images, RAII guards for loop devices and mounts, filesystem creation,
//! deterministic file trees and tree hashes (contents, modes, owners,
//! xattrs, links).
//!
//! Guards detach or unmount exactly what they attached or mounted, by name.

#![allow(dead_code)] // each test module uses a different subset

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The one way an integration test skips: print why, and under
/// `REROOT_TEST_STRICT=1` (set by `.ci/run`) fail the test with that reason
/// instead. The twin of `reroot::test_skip::skip` (the library's unit tests
/// use that one; this binary cannot see `cfg(test)` items): keep the two
/// identical in behaviour. `REROOT_TEST_ALLOW_SKIP` (test names, comma-
/// separated) lets a capability the CI kernel lacks skip even when strict;
/// every skip is appended to `REROOT_TEST_SKIP_LOG` when it is set.
pub fn skip(reason: &str) {
    use std::io::Write;
    let current = std::thread::current();
    let test = current.name().unwrap_or("?");
    let allowed = std::env::var("REROOT_TEST_ALLOW_SKIP").is_ok_and(|list| {
        list.split(',')
            .any(|t| !t.is_empty() && (test == t || test.ends_with(&format!("::{t}"))))
    });
    if std::env::var_os("REROOT_TEST_STRICT").is_some_and(|v| v == "1") && !allowed {
        panic!("{test} cannot run here and REROOT_TEST_STRICT=1 forbids skipping: {reason}");
    }
    if let Some(log) = std::env::var_os("REROOT_TEST_SKIP_LOG") {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{test}: {reason}");
        }
    }
    eprintln!("SKIP {test}: {reason}");
}

/// Skip the calling test (return early) unless running as root; under
/// `REROOT_TEST_STRICT=1` fail it instead (see [`skip`]).
#[allow(unused_macros)]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            $crate::common::skip(
                "needs root (loop devices, mounts); run `sudo cargo test` or use CI",
            );
            return;
        }
    };
}

/// Skip the calling test unless `tool` is on PATH; under
/// `REROOT_TEST_STRICT=1` fail it instead (see [`skip`]).
#[allow(unused_macros)]
macro_rules! require_tool {
    ($tool:expr) => {
        if !$crate::common::have_tool($tool) {
            $crate::common::skip(&format!(
                "`{}` is not installed (.ci/run installs it)",
                $tool
            ));
            return;
        }
    };
}

/// True when `tool` is found on PATH.
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// A command running the `reroot` binary under test.
pub fn reroot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reroot"))
}

/// A scratch directory for images and mount points, removed on drop. Lives
/// under /var/tmp (a real disk, not tmpfs, so O_DIRECT works on its files),
/// in a directory per user, so a run as root does not lock others out.
pub fn scratch() -> tempfile::TempDir {
    let base = PathBuf::from(format!("/var/tmp/reroot-tests-{}", nix::unistd::geteuid()));
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    tempfile::Builder::new()
        .prefix("t-")
        .tempdir_in(&base)
        .expect("creating a scratch dir")
}

/// Create a sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) -> PathBuf {
    let f = fs::File::create(path).expect("creating a sparse file");
    f.set_len(size).expect("sizing a sparse file");
    path.to_path_buf()
}

fn describe(cmd: &Command) -> String {
    let args: Vec<_> = cmd.get_args().map(OsStr::to_string_lossy).collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

/// Run a command, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)));
    assert!(
        out.status.success(),
        "{} failed with {}\nstdout:\n{}\nstderr:\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a shell snippet with `sh -c`, panicking on failure; returns stdout.
pub fn sh(script: &str) -> String {
    let out = run_ok(Command::new("sh").arg("-c").arg(script));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device attached to a file; detached (by name) on drop.
#[derive(Debug)]
pub struct LoopDev {
    path: PathBuf,
}

impl LoopDev {
    /// `losetup --find --show [extra...] file`.
    pub fn attach(file: &Path, extra: &[&str]) -> Self {
        let out = run_ok(
            Command::new("losetup")
                .arg("--find")
                .arg("--show")
                .args(extra)
                .arg(file),
        );
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // A string prefix: `Path::starts_with` compares whole components, so
        // "/dev/loop3" does not start with the path "/dev/loop".
        assert!(
            printed.starts_with("/dev/loop"),
            "losetup printed {printed:?}"
        );
        Self {
            path: PathBuf::from(printed),
        }
    }

    /// The device node, e.g. `/dev/loop3`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// A mounted filesystem; unmounted (by mount point) on drop.
#[derive(Debug)]
pub struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    /// `mount [-o opts] dev dir`, creating `dir`.
    pub fn new(dev: &Path, dir: &Path, opts: Option<&str>) -> Self {
        fs::create_dir_all(dir).expect("creating a mount point");
        let mut cmd = Command::new("mount");
        if let Some(o) = opts {
            cmd.arg("-o").arg(o);
        }
        run_ok(cmd.arg(dev).arg(dir));
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A scan by a concurrent test (or a closing io_uring ring) can keep
        // the mount busy for a moment: retry, then detach it lazily rather
        // than leave it (and its loop device) behind.
        for _ in 0..50 {
            match Command::new("umount").arg(&self.dir).output() {
                Ok(o) if o.status.success() => return,
                Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("busy") => {
                    eprintln!(
                        "umount {}: {}",
                        self.dir.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    );
                    return;
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        eprintln!(
            "umount {}: still busy after 5 s; detaching lazily",
            self.dir.display()
        );
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// `mkfs.<fstype> [extra...] target` quietly and without prompts.
pub fn mkfs(fstype: &str, target: &Path, extra: &[&str]) {
    let mut cmd = Command::new(format!("mkfs.{fstype}"));
    match fstype {
        "ext2" | "ext3" | "ext4" => cmd.args(["-F", "-q"]),
        "xfs" | "btrfs" => cmd.args(["-f", "-q"]),
        _ => &mut cmd,
    };
    run_ok(cmd.args(extra).arg(target));
}

/// True when `e2fsck -fn` finds nothing wrong.
pub fn e2fsck_clean(dev: &Path) -> bool {
    Command::new("e2fsck")
        .arg("-fn")
        .arg(dev)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A small deterministic PRNG (xorshift64*), so trees are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Populate `dir` with about `bytes` of files: nested directories, files of
/// varied sizes (some sparse), symlinks, hard links, xattrs, odd modes and
/// owners; then delete about a third of the files so freed blocks sit
/// between used ones. Deterministic for a given seed.
pub fn fill_tree(dir: &Path, seed: u64, bytes: u64) {
    let mut rng = Rng::new(seed);
    let mut written = 0u64;
    let mut files = Vec::new();
    let mut i = 0u64;
    while written < bytes {
        let sub = dir.join(format!("d{}/e{}", rng.below(8), rng.below(4)));
        fs::create_dir_all(&sub).expect("mkdir");
        let size = match rng.below(10) {
            0..=5 => rng.below(16 << 10),
            6..=8 => rng.below(1 << 20),
            _ => rng.below(8 << 20),
        };
        let path = sub.join(format!("f{i}"));
        let mut data = vec![0u8; usize::try_from(size).expect("small")];
        rng.fill(&mut data);
        fs::write(&path, &data).expect("write file");
        if rng.below(7) == 0 {
            // A sparse tail: a hole, then one more block of data.
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            let end = size + (1 << 20);
            std::os::unix::fs::FileExt::write_at(&f, b"tail", end).expect("write tail");
        }
        let mode =
            [0o644, 0o600, 0o755, 0o4755, 0o640][usize::try_from(rng.below(5)).expect("small")];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        if rng.below(5) == 0 {
            let uid = u32::try_from(rng.below(3000)).expect("small");
            let _ = std::os::unix::fs::chown(&path, Some(uid), Some(uid + 1));
        }
        if rng.below(6) == 0 {
            let _ = xattr::set(&path, "user.reroot", format!("v{i}").as_bytes());
        }
        files.push(path);
        written += size;
        i += 1;
    }
    for (n, f) in files.iter().enumerate() {
        match n % 9 {
            0 | 4 | 7 => {
                let _ = fs::remove_file(f);
            }
            1 => {
                let _ = std::os::unix::fs::symlink(f, f.with_extension("lnk"));
            }
            2 => {
                let _ = fs::hard_link(f, f.with_extension("hard"));
            }
            _ => {}
        }
    }
    fs::write(dir.join("README.txt"), b"reroot test tree\n").expect("write");
}

/// A manifest of the tree below `dir` (sorted): per entry its relative path,
/// type, mode, owner, size, mtime, symlink target, hard-link group, xattrs
/// and the xxh3 of its contents. Equal manifests mean equal trees.
pub fn tree_manifest(dir: &Path) -> String {
    let mut lines = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(dir, dir, &mut lines, &mut inodes);
    lines.into_values().collect::<Vec<_>>().join("\n")
}

/// The xxh3 of [`tree_manifest`], as hex.
pub fn tree_hash(dir: &Path) -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(tree_manifest(dir).as_bytes())
    )
}

fn walk(
    top: &Path,
    dir: &Path,
    lines: &mut BTreeMap<PathBuf, String>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).expect("lstat");
        let rel = p.strip_prefix(top).expect("under top").to_path_buf();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "d"
        } else if ft.is_symlink() {
            "l"
        } else if ft.is_file() {
            "f"
        } else {
            "o"
        };
        let mut line = format!(
            "{kind} {:o} {}:{} {} {}.{} {}",
            m.mode(),
            m.uid(),
            m.gid(),
            if ft.is_dir() { 0 } else { m.size() },
            m.mtime(),
            m.mtime_nsec(),
            rel.display()
        );
        if ft.is_symlink() {
            line.push_str(&format!(
                " -> {}",
                fs::read_link(&p).expect("readlink").display()
            ));
        }
        if ft.is_file() {
            if m.nlink() > 1 {
                let first = inodes
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| rel.display().to_string());
                line.push_str(&format!(" link={first}"));
            }
            let data = fs::read(&p).expect("read file");
            line.push_str(&format!(" xxh3={:016x}", xxhash_rust::xxh3::xxh3_64(&data)));
        }
        if !ft.is_symlink() {
            let mut names: Vec<_> = xattr::list(&p).map(|l| l.collect()).unwrap_or_default();
            names.sort();
            for n in names {
                let v = xattr::get(&p, &n).ok().flatten().unwrap_or_default();
                line.push_str(&format!(
                    " xattr:{}={:016x}",
                    n.to_string_lossy(),
                    xxhash_rust::xxh3::xxh3_64(&v)
                ));
            }
        }
        lines.insert(rel, line);
        if ft.is_dir() {
            walk(top, &p, lines, inodes);
        }
    }
}

#[test]
fn rng_is_deterministic() {
    let (mut a, mut b) = (Rng::new(7), Rng::new(7));
    assert_eq!(a.next_u64(), b.next_u64());
    assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
}

#[test]
fn tree_hash_sees_content_mode_and_xattr_changes() {
    let d = tempfile::tempdir().unwrap();
    fill_tree(d.path(), 1, 200_000);
    let h0 = tree_hash(d.path());
    assert_eq!(h0, tree_hash(d.path()));
    let f = d.path().join("README.txt");
    fs::write(&f, b"reroot test tree!\n").unwrap();
    let h1 = tree_hash(d.path());
    assert_ne!(h0, h1);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let h2 = tree_hash(d.path());
    assert_ne!(h1, h2);
    match xattr::set(&f, "user.t", b"1") {
        Ok(()) => assert_ne!(h2, tree_hash(d.path())),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            skip(&format!("{} has no user xattrs: {e}", d.path().display()));
        }
        Err(e) => panic!("setting user.t on {}: {e}", f.display()),
    }
}
