//! Copying one inode's attributes from the source tree to the target tree:
//! owner and group (numeric), mode (with setuid, setgid, sticky), every
//! extended attribute (user, trusted, security including file
//! capabilities, POSIX ACLs as `system.posix_acl_*`), inode flags, and
//! nanosecond atime and mtime. What the target cannot hold becomes a
//! [`Loss`]; anything else that fails is an error.
//!
//! Order matters and is the caller's: contents first, then owner (which
//! clears setuid bits and capabilities), mode, xattrs, times; immutable and
//! append-only flags last of all. Imports `sys::inode_flags`, `plan::transform`.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use xattr::FileExt;

use crate::error::{Error, Result};
use crate::plan::transform::{FS_COPY_FLAGS, FS_LAST_FLAGS, flag_letters};
use crate::sys::inode_flags;

/// Something the target filesystem could not represent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Loss {
    /// Path relative to the tree's root (`/` is the root itself).
    pub path: PathBuf,
    /// What was not kept.
    pub what: String,
}

/// Losses found by concurrent workers.
#[derive(Debug, Default)]
pub struct Losses(Mutex<Vec<Loss>>);

impl Losses {
    /// Record one.
    pub fn add(&self, path: &Path, what: String) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.push(Loss {
            path: shown(path),
            what,
        });
    }

    /// All of them, sorted by path.
    pub fn into_sorted(self) -> Vec<Loss> {
        let mut v = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }
}

/// A relative path as shown in reports: `/` for the root, else `/rel`.
pub fn shown(rel: &Path) -> PathBuf {
    Path::new("/").join(rel)
}

/// An I/O error on `path` while doing `what`.
pub fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    let full = e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT);
    let err = Error::io(format!("{what} {}", path.display()), e);
    if full {
        err.hint("the target filesystem is full: use a larger target (the estimate before mkfs was too low)")
    } else {
        err
    }
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

/// Errors that mean "this filesystem cannot store that", not "something broke".
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EOPNOTSUPP
                | libc::ENOSPC
                | libc::E2BIG
                | libc::ERANGE
                | libc::ENOTTY
                | libc::EINVAL
        )
    )
}

/// Open a source file for reading without touching its atime (`O_NOATIME`
/// needs ownership or CAP_FOWNER; without it, open normally).
pub fn open_src(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOATIME | libc::O_NONBLOCK);
    match o.open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path),
        r => r,
    }
}

/// The copyable inode flags of an open regular file or directory (0 where
/// the filesystem has none).
pub fn src_flags(file: &File) -> u32 {
    inode_flags::get(file).map_or(0, |f| f & FS_COPY_FLAGS)
}

/// Inode flags of a regular file or directory by path (0 for other kinds).
pub fn flags_of(path: &Path, md: &Metadata) -> u32 {
    if !(md.is_file() || md.is_dir()) {
        return 0;
    }
    open_src(path).map(|f| src_flags(&f)).unwrap_or(0)
}

/// Set the copyable flags `want & mask` on `file`, keeping the filesystem's
/// own flags, read them back and record a loss for any that did not stick.
pub fn apply_flags(file: &File, want: u32, mask: u32, rel: &Path, losses: &Losses) -> Result<()> {
    let want = want & mask;
    let cur = match inode_flags::get(file) {
        Ok(c) => c,
        Err(e) if unsupported(&e) => {
            if want != 0 {
                losses.add(rel, format!("inode flags {}: {e}", flag_letters(want)));
            }
            return Ok(());
        }
        Err(e) => return Err(io_err("reading the inode flags of", rel, e)),
    };
    let new = (cur & !mask) | want;
    if new == cur {
        return Ok(());
    }
    match inode_flags::set(file, new) {
        Ok(()) => {}
        Err(e) if unsupported(&e) => {
            losses.add(rel, format!("inode flags {}: {e}", flag_letters(want)));
            return Ok(());
        }
        Err(e) => return Err(io_err("setting the inode flags of", rel, e)),
    }
    let got = inode_flags::get(file).map_err(|e| io_err("reading the inode flags of", rel, e))?;
    let missing = want & !got;
    if missing != 0 {
        losses.add(
            rel,
            format!(
                "inode flags {} (the target type does not keep them)",
                flag_letters(missing)
            ),
        );
    }
    Ok(())
}

/// The flags to set while creating (everything but immutable and append-only).
pub const EARLY: u32 = FS_COPY_FLAGS & !FS_LAST_FLAGS;

/// Open a target regular file or directory to change its flags.
pub fn open_for_flags(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// A source's extended attributes, by name.
pub type Xattrs = Vec<(std::ffi::OsString, Vec<u8>)>;

fn read_xattrs_with(
    names: io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> io::Result<Option<Vec<u8>>>,
) -> io::Result<Xattrs> {
    let names = match names {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for n in names {
        if is_alias(&n) {
            continue;
        }
        if let Some(v) = get(&n)? {
            out.push((n, v));
        }
    }
    out.sort();
    Ok(out)
}

/// XFS shows its POSIX ACLs a second time, as `trusted.SGI_ACL_FILE` and
/// `trusted.SGI_ACL_DEFAULT` (its on-disk names): they are the
/// `system.posix_acl_*` attributes again, copied and compared as those.
fn is_alias(name: &OsStr) -> bool {
    name == "trusted.SGI_ACL_FILE" || name == "trusted.SGI_ACL_DEFAULT"
}

/// Every extended attribute of `path` (never following a symlink), sorted.
pub fn read_xattrs(path: &Path) -> io::Result<Xattrs> {
    read_xattrs_with(xattr::list(path), |n| xattr::get(path, n))
}

/// Every extended attribute of an open file, sorted.
pub fn read_xattrs_fd(file: &File) -> io::Result<Xattrs> {
    read_xattrs_with(file.list_xattr(), |n| file.get_xattr(n))
}

fn store_xattrs(
    attrs: &Xattrs,
    rel: &Path,
    losses: &Losses,
    set: impl Fn(&OsStr, &[u8]) -> io::Result<()>,
) -> Result<()> {
    for (n, v) in attrs {
        match set(n, v) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => losses.add(
                rel,
                format!("xattr {} ({} bytes): {e}", n.to_string_lossy(), v.len()),
            ),
            Err(e) => {
                return Err(io_err(
                    &format!("setting xattr {} on", n.to_string_lossy()),
                    rel,
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Store `attrs` on `path` (never following a symlink).
pub fn write_xattrs(path: &Path, attrs: &Xattrs, rel: &Path, losses: &Losses) -> Result<()> {
    store_xattrs(attrs, rel, losses, |n, v| xattr::set(path, n, v))
}

/// Store `attrs` on an open file.
pub fn write_xattrs_fd(file: &File, attrs: &Xattrs, rel: &Path, losses: &Losses) -> Result<()> {
    store_xattrs(attrs, rel, losses, |n, v| file.set_xattr(n, v))
}

/// Remove extended attributes of `path` that `keep` does not name (delta
/// passes: an attribute removed on the source since the first pass).
pub fn drop_other_xattrs(path: &Path, keep: &Xattrs, rel: &Path) -> Result<()> {
    let have = read_xattrs(path).map_err(|e| io_err("listing xattrs of", rel, e))?;
    for (n, _) in have {
        if !keep.iter().any(|(k, _)| *k == n) {
            xattr::remove(path, &n).map_err(|e| io_err("removing an xattr of", rel, e))?;
        }
    }
    Ok(())
}

fn times(md: &Metadata) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(md.atime(), md.atime_nsec()),
        TimeSpec::new(md.mtime(), md.mtime_nsec()),
    )
}

/// Owner and group by number, on an open file.
pub fn chown_fd(file: &File, md: &Metadata, rel: &Path) -> Result<()> {
    nix::unistd::fchown(
        file,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
    )
    .map_err(|e| io_err("changing the owner of", rel, nix_io(e)))
}

/// Owner and group by number, by path (never following a symlink).
pub fn chown_path(path: &Path, md: &Metadata, rel: &Path) -> Result<()> {
    nix::unistd::fchownat(
        AT_FDCWD,
        path,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err("changing the owner of", rel, nix_io(e)))
}

/// Mode bits including setuid, setgid and sticky, on an open file.
pub fn chmod_fd(file: &File, md: &Metadata, rel: &Path) -> Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(|e| io_err("changing the mode of", rel, e))
}

/// Mode bits by path (not for symlinks: their mode is always 0777).
pub fn chmod_path(path: &Path, md: &Metadata, rel: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(|e| io_err("changing the mode of", rel, e))
}

/// atime and mtime to the nanosecond, on an open file.
pub fn times_fd(file: &File, md: &Metadata, rel: &Path) -> Result<()> {
    let (a, m) = times(md);
    nix::sys::stat::futimens(file, &a, &m)
        .map_err(|e| io_err("setting the times of", rel, nix_io(e)))
}

/// atime and mtime to the nanosecond, by path (never following a symlink).
pub fn times_path(path: &Path, md: &Metadata, rel: &Path) -> Result<()> {
    let (a, m) = times(md);
    nix::sys::stat::utimensat(AT_FDCWD, path, &a, &m, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| io_err("setting the times of", rel, nix_io(e)))
}

/// Clear immutable and append-only on a target regular file or directory so
/// a delta pass may change it (they are set again at the end).
pub fn unprotect(path: &Path, md: &Metadata) -> Result<()> {
    if !(md.is_file() || md.is_dir()) {
        return Ok(());
    }
    let Ok(f) = open_for_flags(path) else {
        return Ok(());
    };
    match inode_flags::get(&f) {
        Ok(cur) if cur & FS_LAST_FLAGS != 0 => inode_flags::set(&f, cur & !FS_LAST_FLAGS)
            .map_err(|e| io_err("clearing immutable/append-only on", path, e)),
        _ => Ok(()),
    }
}
