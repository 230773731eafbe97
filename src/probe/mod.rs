//! Readers of the live system: `/proc`, `/sys` and `/dev`, always through a
//! [`SysRoot`] so tests point them at fixture trees.
//!
//! Probes only read. They may import `units`, `error`, `ext` and `sys` (for
//! ioctls that only query), never `plan` or `exec`.

pub mod boot;
pub mod btrfs;
pub mod cgroup;
pub mod cmdline;
pub mod device;
pub mod devlinks;
pub mod fdinfo;
pub mod fs_superblock;
pub mod fstab;
pub mod init;
pub mod loadavg;
pub mod loops;
pub mod maps;
pub mod mountinfo;
pub mod process;
pub mod queue;
pub mod rootfs;
pub mod signature;
pub mod swaps;
pub mod tracefs;
pub mod unix;

use std::path::{Path, PathBuf};

/// Where the kernel's pseudo filesystems are. [`SysRoot::live`] is the real
/// system; tests build fixture trees and point a `SysRoot` at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot {
    /// procfs, normally `/proc`.
    pub proc_dir: PathBuf,
    /// sysfs, normally `/sys`.
    pub sys_dir: PathBuf,
    /// devtmpfs, normally `/dev`.
    pub dev_dir: PathBuf,
}

impl SysRoot {
    /// The running system.
    pub fn live() -> Self {
        Self::under(Path::new("/"))
    }

    /// `proc`, `sys` and `dev` under `base` (a fixture tree).
    pub fn under(base: &Path) -> Self {
        Self {
            proc_dir: base.join("proc"),
            sys_dir: base.join("sys"),
            dev_dir: base.join("dev"),
        }
    }

    /// `/proc/<rel>`.
    pub fn proc(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.proc_dir.join(rel)
    }

    /// `/sys/<rel>`.
    pub fn sys(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sys_dir.join(rel)
    }
}

impl Default for SysRoot {
    fn default() -> Self {
        Self::live()
    }
}

/// Writers of fixture `/proc` and `/sys` trees for the probes' unit tests.
#[cfg(test)]
pub(crate) mod fixture {
    use std::fs;
    use std::path::Path;

    /// Write `text` to `base/rel`, creating its directories.
    pub fn put(base: &Path, rel: &str, text: &str) {
        let p = base.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// Make `base/rel` a symlink to `target`, creating its directories.
    pub fn link(base: &Path, rel: &str, target: impl AsRef<Path>) {
        let p = base.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
}
