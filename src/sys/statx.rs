//! `statx(2)` with `AT_STATX_DONT_SYNC`: type, inode, link count and device
//! of a path, from cached attributes. The process scan stats every
//! `/proc/PID/fd/N`; a plain `stat` of a file on an unreachable NFS server
//! would hang there, this returns what the client already knows.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The attributes the process scan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_dev` as `makedev(stx_dev_major, stx_dev_minor)`.
    pub dev: u64,
    /// `stx_ino`.
    pub ino: u64,
    /// `stx_nlink`: 0 for an unlinked (deleted) file.
    pub nlink: u32,
    /// `stx_mode` (type and permission bits).
    pub mode: u32,
}

/// `statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, STATX_TYPE|STATX_INO|STATX_NLINK)`,
/// following symlinks (so `/proc/PID/fd/N` gives the open file).
pub fn statx_cached(path: &Path) -> io::Result<Stat> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string that outlives the call; `buf`
    // is a live, writable statx the kernel fills; the flags and mask are
    // valid constants.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE | libc::STATX_INO | libc::STATX_NLINK,
            &mut buf,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Stat {
        dev: nix::sys::stat::makedev(u64::from(buf.stx_dev_major), u64::from(buf.stx_dev_minor)),
        ino: buf.stx_ino,
        nlink: buf.stx_nlink,
        mode: u32::from(buf.stx_mode),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn matches_std_metadata() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let s = statx_cached(f.path()).unwrap();
        let m = std::fs::metadata(f.path()).unwrap();
        assert_eq!(
            (s.dev, s.ino, u64::from(s.nlink), s.mode),
            (m.dev(), m.ino(), m.nlink(), m.mode())
        );
        assert!(statx_cached(Path::new("/nonexistent/x")).is_err());
        assert!(statx_cached(Path::new("a\0b")).is_err());
    }
}
