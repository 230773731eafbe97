//! A temporary, private mount for tools that only work on a mounted
//! filesystem (`xfs_growfs`, `btrfs filesystem resize`).
//!
//! The work runs on a helper thread that first unshares its mount namespace
//! and makes it private: the mount is invisible to the rest of the system,
//! tools it spawns inherit the namespace, and if reroot dies the kernel drops
//! the mount with the namespace. It is still unmounted explicitly (also on
//! error) so unmount failures are reported. Imports `error` only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};

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
pub fn with_private_mount<T: Send>(
    dev: &Path,
    fstype: &str,
    data: &str,
    work: impl FnOnce(&Path) -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| mount_and_run(dev, fstype, data, work))
            .join()
            .unwrap_or_else(|_| Err(Error::tool("the temporary mount thread panicked")))
    })
}

fn mount_and_run<T>(
    dev: &Path,
    fstype: &str,
    data: &str,
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
