//! Proving that nothing uses a device before a tool rewrites it: an
//! exclusive open (`O_EXCL` on a block device fails with `EBUSY` while it is
//! mounted or held by md, LVM or another exclusive opener). When it is
//! mounted, the error names the mount point.
//!
//! Imports `error`, `probe::mountinfo`, `sys::lock`.

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::probe::{SysRoot, mountinfo};

/// How long a device may stay claimed by a closing io_uring ring.
const RELEASE_GRACE: Duration = Duration::from_secs(3);

/// Open `dev` read-only and exclusively. The caller should drop the file
/// before running a tool on the device (e2fsck opens it exclusively too).
pub fn open_unused(dev: &Path) -> Result<File> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(dev)
    };
    let mut file = open();
    // An io_uring ring that had the device registered (the copy engine's)
    // releases it from a kernel worker shortly after the ring is closed, so
    // a claim right after a copy can see EBUSY for a moment. Mounts are final.
    let deadline = Instant::now() + RELEASE_GRACE;
    while matches!(&file, Err(e) if e.raw_os_error() == Some(libc::EBUSY))
        && mounted_at(dev).is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        file = open();
    }
    match file {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let msg = match mounted_at(dev) {
                Some(mp) => format!("it is mounted on {mp}"),
                None => "it is in use (held by md, LVM, device-mapper or another program)".into(),
            };
            Err(Error::new(ErrorKind::Busy(msg))
                .device(dev)
                .hint("grow and --new-uuid work on the unmounted copy; unmount it (or stop what holds it) first"))
        }
        Err(e) => Err(Error::io(format!("opening {}", dev.display()), e).device(dev)),
    }
}

/// Wait (at most the release grace) until `dev`, a block device we just
/// closed after holding it exclusively (or an image file we held locked),
/// can be claimed again. Used by `copy` before it returns.
pub fn wait_released(dev: &Path) {
    if !is_block_device(dev).unwrap_or(false) {
        // An image file: its write lock goes with the ring's last reference.
        let Ok(f) = File::open(dev) else { return };
        let deadline = Instant::now() + RELEASE_GRACE;
        while crate::sys::lock::write_locked_by_other(&f).unwrap_or(false)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        return;
    }
    let deadline = Instant::now() + RELEASE_GRACE;
    loop {
        let busy = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(dev)
            .is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY));
        if !busy || mounted_at(dev).is_some() || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when `dev` is a block device (not an image file).
pub fn is_block_device(dev: &Path) -> Result<bool> {
    let m = std::fs::metadata(dev)
        .map_err(|e| Error::io(format!("examining {}", dev.display()), e).device(dev))?;
    Ok(m.file_type().is_block_device())
}

/// Where `dev` is mounted in this process's namespace, if anywhere.
pub fn mounted_at(dev: &Path) -> Option<String> {
    let rdev = std::fs::metadata(dev).ok()?.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let mounts = mountinfo::read(&SysRoot::live(), "self").ok()?;
    mounts
        .iter()
        .find(|m| m.major == major && m.minor == minor)
        .map(|m| m.mount_point.display().to_string())
}
