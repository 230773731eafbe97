//! A temporary, private mount for tools that only work on a mounted
//! filesystem (`xfs_growfs`, `btrfs filesystem resize`).
//!
//! The work runs on a helper thread that first unshares its mount namespace
//! and makes it private: the mount is invisible to the rest of the system,
//! tools it spawns inherit the namespace, and if reroot dies the kernel drops
//! the mount with the namespace. A new namespace starts with copies of every
//! mount, which would keep filesystems others unmount meanwhile alive, so all
//! mounts the work does not need are detached from it first. The mount is
//! still unmounted explicitly (also on error) so failures are reported.
//! Imports `error`, `probe::mountinfo`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::probe::{SysRoot, mountinfo};

fn nix_err(what: String, e: nix::Error) -> Error {
    Error::io(what, std::io::Error::from(e))
}

/// Removes the temporary directory, after unmounting if still mounted.
struct MountPoint {
    dir: PathBuf,
    mounted: bool,
}

impl MountPoint {
    fn unmount(&mut self) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        // A tool that just exited may still hold the fs for a moment.
        let mut last = None;
        for _ in 0..20 {
            match nix::mount::umount2(&self.dir, MntFlags::empty()) {
                Ok(()) => {
                    self.mounted = false;
                    return Ok(());
                }
                Err(nix::Error::EBUSY) => {
                    last = Some(nix::Error::EBUSY);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        let e = last.unwrap_or(nix::Error::EBUSY);
        Err(nix_err(format!("unmounting {}", self.dir.display()), e))
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        if self.mounted {
            // Last resort on an error path; the namespace going away would
            // drop it as well.
            let _ = nix::mount::umount2(&self.dir, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Mount `dev` (filesystem `fstype`, options `data`) on a fresh directory in a
/// private mount namespace, run `work` with the mount point, unmount, and
/// return `work`'s result. An unmount failure after a successful `work` is an
/// error too.
///
/// `keep` lists paths the work needs (the tool it runs); mounts on the way
/// to them, to the device, to `/proc`, `/etc`, `/usr` and the library
/// directories stay in the namespace, all others are detached from it.
pub fn with_private_mount<T: Send>(
    dev: &Path,
    fstype: &str,
    data: &str,
    keep: &[&Path],
    work: impl FnOnce(&Path) -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| mount_and_run(dev, fstype, data, keep, work))
            .join()
            .unwrap_or_else(|_| Err(Error::tool("the temporary mount thread panicked")))
    })
}

/// Paths every tool run needs besides its own.
const ALWAYS_KEEP: [&str; 6] = ["/proc/self", "/etc", "/usr", "/lib", "/lib64", "/bin"];

/// Mount points in this thread's namespace that lead to none of `keep`.
fn unneeded_mounts(keep: &[PathBuf]) -> Vec<PathBuf> {
    // thread-self: after unshare this thread's view differs from the process's.
    let Ok(mounts) = mountinfo::read(&SysRoot::live(), "thread-self") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = mounts
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| !keep.iter().any(|k| k.starts_with(mp)))
        .collect();
    // Deepest first, so a parent's detach does not hide its children's names.
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn mount_and_run<T>(
    dev: &Path,
    fstype: &str,
    data: &str,
    keep: &[&Path],
    work: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    // Only this thread (and what it spawns) enters the new namespace.
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
    let template = std::env::temp_dir().join("reroot-grow.XXXXXX");
    let dir = nix::unistd::mkdtemp(&template)
        .map_err(|e| nix_err(format!("creating {}", template.display()), e))?;
    let needed: Vec<PathBuf> = keep
        .iter()
        .map(|p| p.to_path_buf())
        .chain([dev.to_path_buf(), dir.clone()])
        .chain(ALWAYS_KEEP.iter().map(PathBuf::from))
        .collect();
    for mp in unneeded_mounts(&needed) {
        // Private propagation: this only changes our namespace. Errors
        // (already gone with a parent) do not matter.
        let _ = nix::mount::umount2(&mp, MntFlags::MNT_DETACH);
    }
    let mut mp = MountPoint {
        dir,
        mounted: false,
    };
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
    let data = (!data.is_empty()).then_some(data);
    nix::mount::mount(Some(dev), &mp.dir, Some(fstype), flags, data).map_err(|e| {
        nix_err(
            format!(
                "mounting {} ({fstype}) on {}",
                dev.display(),
                mp.dir.display()
            ),
            e,
        )
        .device(dev)
    })?;
    mp.mounted = true;
    let result = work(&mp.dir);
    let unmounted = mp.unmount();
    let value = result?;
    unmounted.map(|()| value)
}
