//! Everything that uses the filesystem mounted at a given root: its other
//! mounts (binds), the mount tree below it, loop devices backed by files on
//! it and what is mounted from them, swap files on it, overlay mounts with
//! layers on it, network and FUSE mounts below it, and the [`process`] scan.
//! `reroot check` turns these [`RootFacts`] into findings (`plan::preflight`).
//!
//! Files are matched by `st_dev` (statx without syncing, so a dead NFS server
//! does not hang the check); a path that cannot be stat'ed (a deleted swap or
//! backing file) is matched by the mount its path lies on.

use std::path::{Path, PathBuf};

use super::SysRoot;
use super::loops::{self, LoopDevice};
use super::mountinfo::{self, Mount};
use super::process::{self, Filter, Scan};
use super::swaps::{self, Swap};
use crate::error::{Error, Result};
use crate::sys::statx::statx_cached;

/// A loop device backed by a file on the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoopUse {
    /// The loop device.
    pub device: LoopDevice,
    /// What is mounted from it (in reroot's mount namespace).
    pub mounts: Vec<Mount>,
}

/// An overlay mount with a layer on the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OverlayUse {
    /// The overlay mount.
    pub mount: Mount,
    /// `upperdir` or `workdir` is on the filesystem: the overlay writes to it.
    pub writes: bool,
    /// The layer directories on the filesystem.
    pub layers: Vec<PathBuf>,
}

/// What uses the filesystem at a root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootFacts {
    /// The mount at the root.
    pub root: Mount,
    /// Other mounts of the same filesystem (bind mounts), in reroot's namespace.
    pub binds: Vec<Mount>,
    /// Mounts below the root, in mount order (parents before children).
    pub sub_mounts: Vec<Mount>,
    /// Loop devices backed by files on it.
    pub loops: Vec<LoopUse>,
    /// Swap files on it.
    pub swaps: Vec<Swap>,
    /// Overlay mounts with a layer on it.
    pub overlays: Vec<OverlayUse>,
    /// Network and FUSE mounts below the root.
    pub network: Vec<Mount>,
    /// The processes that use it.
    pub scan: Scan,
}

impl RootFacts {
    /// `st_dev` of the filesystem.
    pub fn dev(&self) -> u64 {
        self.root.dev()
    }
}

/// True for filesystems that live elsewhere (a server, a FUSE daemon).
pub fn is_network_fstype(fstype: &str) -> bool {
    matches!(
        fstype,
        "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs" | "ceph" | "9p" | "afs" | "glusterfs" | "fuse"
    ) || fstype.starts_with("fuse.")
}

/// The mount whose mount point is exactly `root` (the last one: overmounts win).
pub fn root_mount<'a>(mounts: &'a [Mount], root: &Path) -> Result<&'a Mount> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == root)
        .ok_or_else(|| {
            Error::invalid(format!("{} is not a mount point", root.display()))
                .hint("give the mount point of the filesystem to migrate, e.g. --root /")
        })
}

/// Whether `path` (as reroot sees it) is on one of `filter`'s devices: by
/// statx, or when that fails (deleted files), by the mount its path lies on.
fn on_fs(path: &Path, mounts: &[Mount], filter: &Filter) -> bool {
    match statx_cached(path) {
        Ok(st) => filter.matches(st.dev),
        Err(_) => mountinfo::mount_of(mounts, path).is_some_and(|m| filter.matches(m.dev())),
    }
}

/// [`on_fs`] for the backing file of a loop device or a swap file, which
/// the kernel names as seen from the namespace that set it up: one that
/// is not deleted but does not exist here belongs to another mount
/// namespace (the machine's, seen from a container or a sandbox) and is
/// not on this filesystem.
fn backing_on_fs(path: &Path, deleted: bool, mounts: &[Mount], filter: &Filter) -> bool {
    if deleted {
        return on_fs(path, mounts, filter);
    }
    statx_cached(path).is_ok_and(|st| filter.matches(st.dev))
}

/// Whether loop device `l` is backed by a file on the filesystem: the
/// kernel's own record of the backing file (`LOOP_GET_STATUS64`: its
/// `st_dev`) when the device node can be opened here, which holds in every
/// mount namespace and for deleted files; else [`backing_on_fs`] by path,
/// except that a deleted file seen only by path is not claimed. Claiming it
/// would have quiesce detach a loop device of another namespace (the
/// machine's, seen from a sandbox) whose deleted file merely has a path
/// that also exists here; a real one left out makes the remount fail with
/// EBUSY, whose re-scan names it.
fn loop_on_fs(sys: &SysRoot, l: &loops::LoopDevice, mounts: &[Mount], filter: &Filter) -> bool {
    let node = sys.dev_dir.join(&l.name);
    if let Ok(f) = std::fs::File::open(&node) {
        if let Ok((dev, _ino)) = crate::sys::blkdev::loop_backing(&f) {
            return filter.matches(dev);
        }
    }
    !l.deleted && backing_on_fs(&l.backing_file, false, mounts, filter)
}

/// The layer directories of an overlay mount: (`lowerdir` entries, `upperdir`
/// and `workdir`). Colons inside a lowerdir entry are escaped as `\:`.
pub fn overlay_layers(m: &Mount) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut lower, mut upper) = (Vec::new(), Vec::new());
    for opt in &m.super_options {
        if let Some(v) = opt.strip_prefix("lowerdir=") {
            let mut cur = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => cur.extend(chars.next()),
                    ':' => lower.push(PathBuf::from(std::mem::take(&mut cur))),
                    c => cur.push(c),
                }
            }
            lower.push(PathBuf::from(cur));
        } else if let Some(v) = opt
            .strip_prefix("upperdir=")
            .or_else(|| opt.strip_prefix("workdir="))
        {
            upper.push(PathBuf::from(v));
        }
    }
    lower.retain(|p| !p.as_os_str().is_empty());
    (lower, upper)
}

/// Gather the facts about the filesystem mounted at `root` (an absolute path
/// as reroot sees it; it is canonicalized). `skip_pids` are left out of the
/// process scan (reroot itself is always left out).
pub fn gather(sys: &SysRoot, root: &Path, skip_pids: &[u32]) -> Result<RootFacts> {
    let root =
        std::fs::canonicalize(root).map_err(|e| Error::io("resolving the root", e).device(root))?;
    let mounts = mountinfo::read(sys, "self")?;
    let root_m = root_mount(&mounts, &root)?.clone();
    let dev = root_m.dev();
    let mut filter = Filter::devices([dev]).skip_self();
    filter.skip_pids.extend(skip_pids);

    let binds = mounts
        .iter()
        .filter(|m| m.dev() == dev && m.mount_id != root_m.mount_id)
        .cloned()
        .collect();
    let sub_mounts: Vec<Mount> = mounts
        .iter()
        .filter(|m| m.mount_point != root && m.mount_point.starts_with(&root))
        .cloned()
        .collect();

    let loops = loops::list(sys)?
        .into_iter()
        .filter(|l| loop_on_fs(sys, l, &mounts, &filter))
        .map(|l| LoopUse {
            mounts: mounts
                .iter()
                .filter(|m| m.dev() == l.dev())
                .cloned()
                .collect(),
            device: l,
        })
        .collect();
    let swaps = swaps::read(sys)?
        .into_iter()
        .filter(|s| s.is_file() && backing_on_fs(&s.path, s.deleted, &mounts, &filter))
        .collect();
    let overlays = mounts
        .iter()
        .filter(|m| m.fstype == "overlay")
        .filter_map(|m| {
            let (lower, upper) = overlay_layers(m);
            let writes = upper.iter().any(|p| on_fs(p, &mounts, &filter));
            let layers: Vec<PathBuf> = lower
                .into_iter()
                .chain(upper)
                .filter(|p| on_fs(p, &mounts, &filter))
                .collect();
            (!layers.is_empty()).then(|| OverlayUse {
                mount: m.clone(),
                writes,
                layers,
            })
        })
        .collect();
    let network = sub_mounts
        .iter()
        .filter(|m| is_network_fstype(&m.fstype))
        .cloned()
        .collect();
    let scan = process::scan(sys, &filter)?;
    Ok(RootFacts {
        root: root_m,
        binds,
        sub_mounts,
        loops,
        swaps,
        overlays,
        network,
        scan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(line: &str) -> Mount {
        mountinfo::parse_line(line, 1).unwrap()
    }

    #[test]
    fn overlay_layers_split_and_unescape() {
        let m = mount(
            "5 1 0:50 / /c rw - overlay overlay rw,lowerdir=/l1:/l\\:2:/l3,upperdir=/u,workdir=/w",
        );
        let (lower, upper) = overlay_layers(&m);
        assert_eq!(
            lower,
            vec![PathBuf::from("/l1"), "/l:2".into(), "/l3".into()]
        );
        assert_eq!(upper, vec![PathBuf::from("/u"), "/w".into()]);
        let (lower, upper) = overlay_layers(&mount("5 1 0:50 / /c rw - overlay overlay rw"));
        assert!(lower.is_empty() && upper.is_empty());
    }

    #[test]
    fn root_mount_and_network_types() {
        let ms = vec![
            mount("1 0 8:1 / / rw - ext4 /dev/sda1 rw"),
            mount("2 1 8:2 / /srv rw - ext4 /dev/sda2 rw"),
            mount("3 2 8:3 / /srv rw - ext4 /dev/sda3 rw"),
        ];
        assert_eq!(root_mount(&ms, Path::new("/")).unwrap().mount_id, 1);
        assert_eq!(root_mount(&ms, Path::new("/srv")).unwrap().mount_id, 3);
        let e = root_mount(&ms, Path::new("/etc")).unwrap_err();
        assert!(e.to_string().contains("not a mount point"), "{e}");
        assert!(is_network_fstype("nfs4") && is_network_fstype("fuse.sshfs"));
        assert!(!is_network_fstype("ext4") && !is_network_fstype("fusectl"));
    }

    /// Regression (found by `reroot demo` beside other tests): a loop device
    /// of the machine whose backing file was deleted has a path that, seen
    /// from a sandbox, lies under the sandbox's `/`; judged by that path,
    /// quiesce detached another test's loop device. The kernel's record of
    /// the backing file's device decides instead.
    #[test]
    fn a_deleted_loop_backing_file_of_another_fs_is_not_claimed() {
        if !nix::unistd::geteuid().is_root() {
            return crate::test_skip::skip("needs root to attach a loop device");
        }
        let d = tempfile::Builder::new()
            .prefix("reroot-loop-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let img = d.path().join("gone.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .expect("running losetup");
        assert!(out.status.success(), "losetup: {out:?}");
        let node = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let name = node.trim_start_matches("/dev/").to_owned();
        struct Detach(String);
        impl Drop for Detach {
            fn drop(&mut self) {
                let _ = std::process::Command::new("losetup")
                    .args(["-d", &self.0])
                    .status();
            }
        }
        let _guard = Detach(node.clone());
        std::fs::remove_file(&img).unwrap();
        let l = loops::read_one(&SysRoot::live(), &name).expect("the loop device in sysfs");
        assert!(l.deleted, "{l:?}");
        // A sandbox whose `/` is device 7:99: the deleted path lies under it.
        let sandbox = vec![mount("1 0 7:99 / / rw - ext4 /dev/loop99 rw")];
        let other = Filter::devices([nix::sys::stat::makedev(7, 99)]);
        assert!(
            on_fs(&l.backing_file, &sandbox, &other),
            "the path alone claims it"
        );
        assert!(!loop_on_fs(&SysRoot::live(), &l, &sandbox, &other));
        // The filesystem it really lay on claims it.
        let real = statx_cached(d.path()).unwrap().dev;
        assert!(loop_on_fs(
            &SysRoot::live(),
            &l,
            &sandbox,
            &Filter::devices([real])
        ));
    }

    /// Regression (found by `reroot demo`): inside a sandbox, the machine's
    /// loop devices show backing files that do not exist in the sandbox;
    /// the fallback by mount point took them as files on the sandbox's `/`,
    /// and quiesce set out to detach the machine's loop devices.
    #[test]
    fn a_backing_file_that_is_not_here_is_not_on_the_fs() {
        let d = tempfile::tempdir().unwrap();
        let mounts = mountinfo::read(&SysRoot::live(), "self").unwrap();
        let here = mountinfo::mount_of(&mounts, d.path()).unwrap().clone();
        let filter = Filter::devices([here.dev()]);
        let missing = d.path().join("elsewhere.img");
        assert!(!backing_on_fs(&missing, false, &mounts, &filter));
        // Deleted: judged by the mount it lay on, as before.
        assert!(backing_on_fs(&missing, true, &mounts, &filter));
        let present = d.path().join("here.img");
        std::fs::write(&present, b"x").unwrap();
        assert!(backing_on_fs(&present, false, &mounts, &filter));
    }

    /// The live system, rooted at wherever the temp dir lives: the gather
    /// must work and find this process's open file... except that reroot
    /// leaves itself out, so it must not appear.
    #[test]
    fn gather_live_leaves_reroot_out() {
        let d = tempfile::tempdir().unwrap();
        let mounts = mountinfo::read(&SysRoot::live(), "self").unwrap();
        let m = mountinfo::mount_of(&mounts, d.path())
            .unwrap()
            .mount_point
            .clone();
        let held = d.path().join("w");
        let _f = std::fs::File::create(&held).unwrap();
        let facts = gather(&SysRoot::live(), &m, &[]).unwrap();
        assert_eq!(facts.root.mount_point, m);
        assert!(
            facts
                .scan
                .processes
                .iter()
                .all(|p| p.pid != std::process::id())
        );
        assert!(gather(&SysRoot::live(), &d.path().join("nope"), &[]).is_err());
    }
}
