//! The private mount namespace a transform works in: the source mounted
//! read-only (or, when it is already mounted, its mount bound read-only),
//! the new filesystem mounted read-write, both `noatime` so reading never
//! moves an atime, all on fresh directories nobody else sees. As in
//! `exec::temp_mount`, the work runs on a thread that unshared its mount
//! namespace (threads and tools it starts inherit it), mounts it does not
//! need are detached so it keeps no other filesystem alive, and if reroot
//! dies the kernel drops every mount with the namespace.
//!
//! Imports `error`, `probe::{mountinfo, fs_superblock}`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::probe::{SysRoot, mountinfo};

fn nix_err(what: String, e: nix::Error) -> Error {
    Error::io(what, std::io::Error::from(e))
}

/// The mounts made in the namespace; unmounted (and their directories
/// removed) by [`Mounts::finish`], or on drop as a last resort.
#[derive(Debug, Default)]
pub struct Mounts {
    points: Vec<PathBuf>,
}

const FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME);

impl Mounts {
    /// A fresh mount point. The root may be read-only (the delta pass of a
    /// migration runs after quiesce), so /run (a tmpfs) comes first.
    fn new_dir(&self, what: &str) -> Result<PathBuf> {
        let mut last = None;
        for base in [
            PathBuf::from("/run"),
            std::env::temp_dir(),
            PathBuf::from("/dev/shm"),
        ] {
            let template = base.join(format!("reroot-{what}.XXXXXX"));
            match nix::unistd::mkdtemp(&template) {
                Ok(d) => return Ok(d),
                Err(e) => last = Some((template, e)),
            }
        }
        let (t, e) = last.unwrap_or((PathBuf::from("/run"), nix::Error::ENOENT));
        Err(nix_err(
            format!("creating {} (and in /tmp, /dev/shm)", t.display()),
            e,
        ))
    }

    /// Mount the filesystem on `dev` (type `fstype`) read-only, or, when
    /// this namespace already has it mounted (a live root), bind its mount
    /// read-only (a second read-only mount of a read-write filesystem is
    /// refused by the kernel). A directory is bound read-only.
    pub fn source(&mut self, src: &Path, fstype: Option<&str>) -> Result<PathBuf> {
        let md = std::fs::metadata(src)
            .map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
        let dir = self.new_dir("src")?;
        let bind_from = if md.is_dir() {
            Some(src.to_path_buf())
        } else if md.file_type().is_block_device() {
            mounted_at(md.rdev())
        } else {
            return Err(Error::invalid(format!(
                "{} is neither a block device nor a directory",
                src.display()
            )));
        };
        match bind_from {
            Some(from) => {
                nix::mount::mount(
                    Some(&from),
                    &dir,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| {
                    nix_err(
                        format!("binding {} on {}", from.display(), dir.display()),
                        e,
                    )
                })?;
                self.points.push(dir.clone());
                nix::mount::mount(
                    None::<&str>,
                    &dir,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | FLAGS,
                    None::<&str>,
                )
                .map_err(|e| nix_err(format!("making {} read-only", dir.display()), e))?;
            }
            None => {
                let fstype = fstype.ok_or_else(|| {
                    Error::incompatible("no ext2/3/4, xfs or btrfs filesystem found").device(src)
                })?;
                nix::mount::mount(
                    Some(src),
                    &dir,
                    Some(fstype),
                    MsFlags::MS_RDONLY | FLAGS,
                    None::<&str>,
                )
                .map_err(|e| {
                    nix_err(
                        format!("mounting {} ({fstype}) read-only", src.display()),
                        e,
                    )
                    .device(src)
                })?;
                self.points.push(dir.clone());
            }
        }
        Ok(dir)
    }

    /// Mount the new filesystem on `dev` read-write.
    pub fn target(&mut self, dev: &Path, fstype: &str, data: &str) -> Result<PathBuf> {
        let dir = self.new_dir("dst")?;
        let data = (!data.is_empty()).then_some(data);
        nix::mount::mount(Some(dev), &dir, Some(fstype), FLAGS, data).map_err(|e| {
            nix_err(format!("mounting {} ({fstype})", dev.display()), e).device(dev)
        })?;
        self.points.push(dir.clone());
        Ok(dir)
    }

    /// Unmount one of our mounts and remove its directory.
    pub fn unmount(&mut self, dir: &Path) -> Result<()> {
        let mut last = nix::Error::EBUSY;
        for _ in 0..20 {
            match nix::mount::umount2(dir, MntFlags::empty()) {
                Ok(()) => {
                    self.points.retain(|p| p != dir);
                    let _ = std::fs::remove_dir(dir);
                    return Ok(());
                }
                Err(nix::Error::EBUSY) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(nix_err(format!("unmounting {}", dir.display()), last))
    }

    /// Unmount everything, newest first, reporting the first failure.
    pub fn finish(mut self) -> Result<()> {
        let mut first = Ok(());
        while let Some(p) = self.points.last().cloned() {
            if let Err(e) = self.unmount(&p) {
                self.points.pop();
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Detach every mount of this namespace that none of our mount points,
    /// the tools (`/usr`, `/lib`, ...), `/dev`, `/proc` or `/sys` need.
    fn detach_unneeded(&self, extra: &[PathBuf]) {
        const KEEP: [&str; 9] = [
            "/proc/self",
            "/sys",
            "/dev",
            "/etc",
            "/usr",
            "/lib",
            "/lib64",
            "/bin",
            "/sbin",
        ];
        let keep: Vec<PathBuf> = KEEP
            .iter()
            .map(PathBuf::from)
            .chain(self.points.iter().cloned())
            .chain(extra.iter().cloned())
            .collect();
        let Ok(mounts) = mountinfo::read(&SysRoot::live(), "thread-self") else {
            return;
        };
        let mut gone: Vec<PathBuf> = mounts
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|mp| !keep.iter().any(|k| k.starts_with(mp) || mp.starts_with(k)))
            .collect();
        gone.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        gone.dedup();
        for mp in gone {
            // Private propagation: only our namespace changes.
            let _ = nix::mount::umount2(&mp, MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for p in self.points.iter().rev() {
            let _ = nix::mount::umount2(p, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// Where this namespace has the filesystem of device `rdev` mounted at its
/// root (a bind of a subdirectory would show only part of it).
fn mounted_at(rdev: u64) -> Option<PathBuf> {
    let mounts = mountinfo::read(&SysRoot::live(), "thread-self").ok()?;
    mounts
        .into_iter()
        .find(|m| m.dev() == rdev && m.root == Path::new("/"))
        .map(|m| m.mount_point)
}

/// True when device `dev` is mounted anywhere in this mount namespace.
pub fn is_mounted(dev: &Path) -> bool {
    let Ok(md) = std::fs::metadata(dev) else {
        return false;
    };
    md.file_type().is_block_device() && {
        let rdev = md.rdev();
        mountinfo::read(&SysRoot::live(), "self")
            .map(|ms| ms.iter().any(|m| m.dev() == rdev))
            .unwrap_or(false)
    }
}

/// Run `work` in a private mount namespace on its own thread; every mount
/// it made is unmounted afterwards (an unmount failure is an error too).
pub fn in_private_namespace<T: Send>(
    work: impl FnOnce(&mut Mounts) -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| nix_err("unsharing the mount namespace".into(), e))?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| nix_err("making the private namespace's mounts private".into(), e))?;
            let mut mounts = Mounts::default();
            let result = work(&mut mounts);
            let unmounted = mounts.finish();
            let v = result?;
            unmounted.map(|()| v)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::tool("the transform thread panicked")))
    })
}

impl Mounts {
    /// Once the source is mounted: detach everything else this namespace
    /// inherited (so it keeps no other filesystem busy), keeping `extra`.
    pub fn seal(&self, extra: &[&Path]) {
        let extra: Vec<PathBuf> = extra.iter().map(|p| p.to_path_buf()).collect();
        self.detach_unneeded(&extra);
    }
}
