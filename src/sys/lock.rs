//! Whole-file advisory write locks on image files: open file description
//! locks (`fcntl(F_OFD_SETLK)`, `F_OFD_GETLK`; see fcntl(2) "Open file
//! description locks"). `O_EXCL` means nothing for a regular file, so this
//! is what keeps two writers (two `reroot copy` runs, or qemu, which takes
//! the same kind of lock on its images) off one image. The lock lives as long
//! as the open file description, so it goes away with the last descriptor.

use std::fs::File;
use std::io;

use nix::fcntl::{FcntlArg, fcntl};

/// A `struct flock` for the whole file (`l_start` 0, `l_len` 0 = to EOF).
fn whole_file(l_type: libc::c_int) -> libc::flock {
    // SAFETY: `struct flock` is plain old data (integers, and on some
    // architectures padding); all-zero is a valid value of every field.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    // OK to truncate: F_WRLCK / F_UNLCK are small constants (0..=2).
    #[allow(clippy::cast_possible_truncation)]
    {
        fl.l_type = l_type as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
    }
    fl
}

/// Take a write lock on the whole of `file` (open for writing) without
/// waiting. `Ok(false)`: another open file description holds a conflicting
/// lock (`EAGAIN`/`EACCES`).
pub fn try_lock_write(file: &File) -> io::Result<bool> {
    let fl = whole_file(libc::F_WRLCK);
    match fcntl(file, FcntlArg::F_OFD_SETLK(&fl)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// True when another open file description holds a lock that would
/// conflict with a whole-file write lock (any read or write lock). `file`
/// may be open read-only.
pub fn write_locked_by_other(file: &File) -> io::Result<bool> {
    let mut fl = whole_file(libc::F_WRLCK);
    fcntl(file, FcntlArg::F_OFD_GETLK(&mut fl))?;
    Ok(libc::c_int::from(fl.l_type) != libc::F_UNLCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_told_and_first_close_releases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, b"x").unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap()
        };
        let (a, b) = (open(), open());
        assert!(!write_locked_by_other(&b).unwrap());
        assert!(try_lock_write(&a).unwrap());
        // Same process, other open file description: still a conflict (OFD
        // locks are per description, unlike POSIX record locks).
        assert!(!try_lock_write(&b).unwrap());
        assert!(write_locked_by_other(&std::fs::File::open(&p).unwrap()).unwrap());
        drop(a);
        assert!(!write_locked_by_other(&b).unwrap());
        assert!(try_lock_write(&b).unwrap());
    }
}
