//! `reroot grow` on loop devices: a filesystem copied onto a larger device
//! grows to fill it (or `--size`), stays clean (e2fsck / xfs_repair / btrfs
//! check) and keeps its tree; a damaged copy stops before resize2fs; sizes
//! that would shrink are refused; a mounted device is refused.
//!
//! The copy is made with `reroot copy`. [`Pair`] is shared with the identity tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, LoopDev, Mounted, run_ok, sparse_file};

const MIB: u64 = 1 << 20;

/// A source filesystem with a tree on it, and a larger target holding a
/// block copy of it.
pub struct Pair {
    // Fields drop in order: loop devices before their scratch directory.
    pub source: LoopDev,
    pub target: LoopDev,
    pub tree: String,
    pub dir: tempfile::TempDir,
}

impl Pair {
    /// mkfs `fstype` on `src_mib`, fill it, copy it onto a `dst_mib` device.
    pub fn new(fstype: &str, src_mib: u64, dst_mib: u64, mkfs_extra: &[&str]) -> Self {
        Self::with_copy(fstype, src_mib, dst_mib, mkfs_extra, &[]).0
    }

    /// Like [`Pair::new`], passing `copy_extra` to `reroot copy --json`;
    /// also returns the copy's JSON report.
    pub fn with_copy(
        fstype: &str,
        src_mib: u64,
        dst_mib: u64,
        mkfs_extra: &[&str],
        copy_extra: &[&str],
    ) -> (Self, serde_json::Value) {
        Self::build(fstype, src_mib, dst_mib, mkfs_extra, copy_extra, |_| {})
    }

    /// Like [`Pair::with_copy`], calling `prepare` on the unmounted source
    /// device before the copy.
    pub fn build(
        fstype: &str,
        src_mib: u64,
        dst_mib: u64,
        mkfs_extra: &[&str],
        copy_extra: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> (Self, serde_json::Value) {
        let dir = common::scratch();
        let src_img = sparse_file(&dir.path().join("src.img"), src_mib * MIB);
        let dst_img = sparse_file(&dir.path().join("dst.img"), dst_mib * MIB);
        let source = LoopDev::attach(&src_img, &[]);
        let target = LoopDev::attach(&dst_img, &[]);
        common::mkfs(fstype, source.path(), mkfs_extra);
        let tree = {
            let m = Mounted::new(source.path(), &dir.path().join("src"), None);
            common::fill_tree(m.dir(), 0x6e0f, 48 * MIB);
            common::tree_hash(m.dir())
        };
        prepare(source.path());
        // Another test's new mount namespace may still hold a copy of the
        // mount we just undid; the copy would rightly refuse a mounted source.
        wait_released(source.path());
        let out = common::reroot()
            .args(["copy", "--json"])
            .arg(source.path())
            .arg(target.path())
            .args(copy_extra)
            .output()
            .expect("running reroot copy");
        let report = assert_ok(&out);
        wait_released(target.path());
        let pair = Self {
            source,
            target,
            tree,
            dir,
        };
        (pair, report)
    }

    /// A path in the scratch directory.
    pub fn mnt(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The tree on the target, mounted with `opts` (ro; nouuid for xfs twins).
    pub fn target_tree(&self, opts: &str) -> String {
        let m = Mounted::new(self.target.path(), &self.mnt("dst"), Some(opts));
        common::tree_hash(m.dir())
    }
}

fn grow(dev: &Path, extra: &[&str]) -> Output {
    common::reroot()
        .args(["grow", "--json"])
        .arg(dev)
        .args(extra)
        .output()
        .expect("running reroot grow")
}

/// Wait until nothing holds `dev` exclusively: the copy engine's io_uring
/// ring releases its registered target from a kernel worker after `reroot
/// copy` exits (a mount in that window fails with EBUSY), and a mount
/// namespace created meanwhile keeps an unmounted filesystem alive.
pub fn wait_released(dev: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let open = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(dev);
        match open {
            Ok(_) => return,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("{} still busy after the copy: {e}", dev.display())
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn assert_ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "reroot failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json(out)
}

/// `dumpe2fs -h` field `name` as a number.
pub fn dumpe2fs_text(dev: &Path, name: &str) -> String {
    let out = run_ok(Command::new("dumpe2fs").arg("-h").arg(dev));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("dumpe2fs shows no {name:?}:\n{text}"))
        .trim()
        .to_owned()
}

fn dumpe2fs_field(dev: &Path, name: &str) -> u64 {
    dumpe2fs_text(dev, name).parse().expect("a number")
}

/// Size of the ext filesystem on `dev` per dumpe2fs (the oracle).
fn ext_bytes(dev: &Path) -> u64 {
    dumpe2fs_field(dev, "Block count") * dumpe2fs_field(dev, "Block size")
}

/// True when `dev` shows up in this process's mount table.
pub fn is_mounted(dev: &Path) -> bool {
    let out = Command::new("findmnt")
        .arg("--source")
        .arg(dev)
        .output()
        .expect("findmnt");
    out.status.success()
}

#[test]
fn ext4_copy_grows_to_the_device() {
    require_root!();
    let p = Pair::new("ext4", 256, 512, &[]);
    assert_eq!(ext_bytes(p.target.path()), 256 * MIB);
    let report = assert_ok(&grow(p.target.path(), &[]));
    assert_eq!(report["fstype"], "ext4");
    assert_eq!(report["old_bytes"], 256 * MIB);
    assert_eq!(report["new_bytes"], 512 * MIB);
    assert_eq!(report["fsck"]["verdict"], "clean");
    assert_eq!(ext_bytes(p.target.path()), 512 * MIB);
    assert!(
        common::e2fsck_clean(p.target.path()),
        "e2fsck -fn after grow"
    );
    assert_eq!(p.target_tree("ro"), p.tree);
    // Growing again has nothing to do, and says so.
    let again = assert_ok(&grow(p.target.path(), &[]));
    assert_eq!(again["decision"]["action"], "already-that-size");
    assert_eq!(ext_bytes(p.target.path()), 512 * MIB);
}

#[test]
fn ext4_grows_to_a_given_size_and_refuses_to_shrink() {
    require_root!();
    let p = Pair::new("ext4", 256, 512, &[]);
    let out = grow(p.target.path(), &["--size", "128M"]);
    assert_eq!(out.status.code(), Some(3), "too small is refused");
    let err = json(&out);
    assert_eq!(err["error"]["kind"], "refused");
    assert!(
        err["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("file-level copy"),
        "{err}"
    );
    let out = grow(p.target.path(), &["--size", "1G"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "larger than the device is refused"
    );
    assert_eq!(
        ext_bytes(p.target.path()),
        256 * MIB,
        "refusals change nothing"
    );

    let report = assert_ok(&grow(p.target.path(), &["--size", "384M"]));
    assert_eq!(report["new_bytes"], 384 * MIB);
    assert_eq!(ext_bytes(p.target.path()), 384 * MIB);
    assert!(common::e2fsck_clean(p.target.path()));
    // Now 256M is smaller than the filesystem.
    let out = grow(p.target.path(), &["--size", "256M"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(p.target_tree("ro"), p.tree);
}

#[test]
fn ext4_grow_that_relocates_blocks_shows_its_passes() {
    // A different geometry: 1 KiB blocks, no flex_bg, no resize_inode, so
    // resize2fs must relocate blocks (its progress passes show).
    require_root!();
    let p = Pair::new(
        "ext4",
        256,
        512,
        &["-b", "1024", "-O", "^resize_inode,^flex_bg"],
    );
    let out = common::reroot()
        .arg("grow")
        .arg(p.target.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resize2fs pass"),
        "progress passes shown:\n{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("grew"));
    assert_eq!(ext_bytes(p.target.path()), 512 * MIB);
    assert!(common::e2fsck_clean(p.target.path()));
    assert_eq!(p.target_tree("ro"), p.tree);
}

#[test]
fn damaged_copy_stops_before_resize2fs() {
    require_root!();
    let p = Pair::new("ext4", 256, 512, &[]);
    // Clear the root directory's inode: e2fsck -p may not fix that unattended.
    run_ok(
        Command::new("debugfs")
            .args(["-w", "-R", "clri <2>"])
            .arg(p.target.path()),
    );
    let out = grow(p.target.path(), &[]);
    assert_eq!(out.status.code(), Some(6), "corrupt filesystem: exit 6");
    let err = json(&out);
    assert_eq!(err["error"]["kind"], "filesystem");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("e2fsck"), "{msg}");
    assert!(msg.contains("Root inode is not a directory"), "{msg}");
    assert!(
        err["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("resize2fs did not run"),
        "{err}"
    );
    assert_eq!(ext_bytes(p.target.path()), 256 * MIB, "resize2fs never ran");
}

#[test]
fn mounted_device_is_refused() {
    require_root!();
    let p = Pair::new("ext4", 256, 512, &[]);
    let m = Mounted::new(p.target.path(), &p.mnt("busy"), Some("ro"));
    let out = grow(p.target.path(), &[]);
    assert_eq!(out.status.code(), Some(8), "busy: exit 8");
    let err = json(&out);
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&m.dir().display().to_string()), "{msg}");
    drop(m);
    assert_eq!(ext_bytes(p.target.path()), 256 * MIB);
}

#[test]
fn xfs_copy_grows_while_the_source_is_mounted() {
    require_root!();
    require_tool!("mkfs.xfs");
    require_tool!("xfs_growfs");
    // mkfs.xfs wants at least 300 MiB.
    let p = Pair::new("xfs", 320, 640, &[]);
    // The source stays mounted: the copy has the same UUID (grow mounts it nouuid).
    let src = Mounted::new(p.source.path(), &p.mnt("src"), Some("ro"));
    let report = assert_ok(&grow(p.target.path(), &[]));
    assert_eq!(report["fstype"], "xfs");
    assert_eq!(report["new_bytes"], 640 * MIB);
    assert!(!is_mounted(p.target.path()), "the temporary mount is gone");
    let out = run_ok(
        Command::new("xfs_db")
            .args(["-r", "-c", "sb 0", "-c", "p dblocks blocksize"])
            .arg(p.target.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |n: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{n} = ")))
            .unwrap_or_else(|| panic!("no {n} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(field("dblocks") * field("blocksize"), 640 * MIB);
    run_ok(Command::new("xfs_repair").arg("-n").arg(p.target.path()));
    assert_eq!(p.target_tree("ro,nouuid"), p.tree);
    drop(src);
}

#[test]
fn btrfs_copy_grows() {
    require_root!();
    require_tool!("mkfs.btrfs");
    require_tool!("btrfs");
    let p = Pair::new("btrfs", 256, 512, &[]);
    let report = assert_ok(&grow(p.target.path(), &[]));
    assert_eq!(report["fstype"], "btrfs");
    assert_eq!(report["new_bytes"], 512 * MIB);
    assert!(!is_mounted(p.target.path()), "the temporary mount is gone");
    let out = run_ok(
        Command::new("btrfs")
            .args(["inspect-internal", "dump-super"])
            .arg(p.target.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let dev_total = text
        .lines()
        .find_map(|l| l.strip_prefix("dev_item.total_bytes"))
        .expect("dev_item.total_bytes")
        .trim()
        .parse::<u64>()
        .unwrap();
    assert_eq!(dev_total, 512 * MIB);
    run_ok(
        Command::new("btrfs")
            .args(["check", "--readonly"])
            .arg(p.target.path()),
    );
    assert_eq!(p.target_tree("ro"), p.tree);
}

#[test]
fn not_a_filesystem_is_refused() {
    require_root!();
    let dir = common::scratch();
    let img = sparse_file(&dir.path().join("blank.img"), 64 * MIB);
    let dev = LoopDev::attach(&img, &[]);
    let out = grow(dev.path(), &[]);
    assert_eq!(out.status.code(), Some(6));
    let err = json(&out);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no ext2/3/4, xfs or btrfs"),
        "{err}"
    );
}

#[test]
fn private_mount_is_invisible_and_pins_no_other_mount() {
    require_root!();
    use reroot::exec::temp_mount::with_private_mount;
    let dir = common::scratch();
    let mk = |name: &str| {
        let d = LoopDev::attach(&sparse_file(&dir.path().join(name), 32 * MIB), &[]);
        common::mkfs("ext4", d.path(), &[]);
        d
    };
    let (dev, other_dev) = (mk("dev.img"), mk("other.img"));
    let other = Mounted::new(other_dev.path(), &dir.path().join("other"), None);
    let other_mp = other.dir().display().to_string();
    let (ours, host, mnt) = with_private_mount(dev.path(), "ext4", "", &[], |mnt| {
        let ours = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        Ok((ours, host, mnt.display().to_string()))
    })
    .expect("private mount");
    assert!(
        ours.contains(&format!(" {mnt} ")),
        "mounted in its namespace"
    );
    assert!(
        !host.contains(&format!(" {mnt} ")),
        "invisible to the process's namespace"
    );
    assert!(
        !ours.contains(&other_mp),
        "unrelated mounts are detached: {ours}"
    );
    assert!(ours.contains(" /proc "), "/proc stays for the tools");
    assert!(
        !Path::new(&mnt).exists(),
        "the temporary directory is removed"
    );
    assert!(!is_mounted(dev.path()));
    drop(other);
    wait_released(other_dev.path());
    wait_released(dev.path());
}
