//! Dropping cached data before each run, so a buffered read measures the
//! device and not the page cache.
//!
//! Per device (the default): write back, then `BLKFLSBUF` for a block
//! device or `posix_fadvise(DONTNEED)` for a file; for a loop device, also
//! the backing file's pages (a loop without `--direct-io=on` caches there).
//! System-wide (`--drop-caches system`, root): `sync`, then
//! `echo 3 > /proc/sys/vm/drop_caches`, which slows every other process on
//! the machine for a moment. O_DIRECT methods do not need either.
//!
//! May import `probe` (facts, `SysRoot`) and `sys::blkdev`.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

use crate::probe::SysRoot;
use crate::probe::device::{DeviceFacts, DeviceKind};
use crate::sys::blkdev;

/// How cached data is dropped before each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheDrop {
    /// Only the devices under test (and a loop device's backing file).
    #[default]
    Device,
    /// The whole page cache (`/proc/sys/vm/drop_caches`), then as `Device`.
    System,
}

impl CacheDrop {
    /// `device` or `system`.
    pub fn name(self) -> &'static str {
        match self {
            CacheDrop::Device => "device",
            CacheDrop::System => "system",
        }
    }
}

fn fadvise_dontneed(f: &File) -> io::Result<()> {
    posix_fadvise(f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Write back and drop the cached pages of one regular file.
fn drop_file(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    f.sync_data()?;
    fadvise_dontneed(&f)
}

/// Write back and drop what the kernel caches for one device or image.
pub fn drop_device(dev: &DeviceFacts) -> io::Result<()> {
    match dev.kind {
        DeviceKind::Block => {
            let f = File::open(&dev.path)?;
            blkdev::flush(&f)?;
        }
        DeviceKind::File => drop_file(&dev.path)?,
    }
    if let Some(lb) = dev.loop_backing.as_ref().filter(|lb| !lb.deleted) {
        drop_file(&lb.file)?;
    }
    Ok(())
}

/// Drop caches for `devs` the way `how` says; the warnings say what could
/// not be dropped (the run goes on: its buffered numbers may then flatter).
pub fn drop_caches(devs: &[&DeviceFacts], how: CacheDrop, root: &SysRoot) -> Vec<String> {
    let mut warnings = Vec::new();
    if how == CacheDrop::System {
        nix::unistd::sync();
        let knob = root.proc("sys/vm/drop_caches");
        if let Err(e) = std::fs::write(&knob, "3\n") {
            warnings.push(format!(
                "cannot drop the system page cache ({}: {e}); dropping per device only",
                knob.display()
            ));
        }
    }
    for d in devs {
        if let Err(e) = drop_device(d) {
            warnings.push(format!(
                "{}: cannot drop its cached pages ({e}); buffered results may come from memory",
                d.path.display()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_a_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, vec![1u8; 65536]).unwrap();
        let ok = DeviceFacts::new(&p, DeviceKind::File, 65536);
        let gone = DeviceFacts::new(dir.path().join("gone"), DeviceKind::File, 0);
        let w = drop_caches(&[&ok, &gone], CacheDrop::Device, &SysRoot::live());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("gone"), "{w:?}");
    }

    #[test]
    fn a_missing_drop_caches_knob_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let w = drop_caches(&[], CacheDrop::System, &SysRoot::under(dir.path()));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("drop_caches"), "{w:?}");
    }
}
