//! Mount-table system calls, named as in the kernel: `mount(2)` with
//! `MS_BIND`, `MS_MOVE`, `MS_REMOUNT` and the propagation flags
//! (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`, `MS_REC`),
//! `umount2(2)` and `pivot_root(2)`.
//!
//! Thin safe wrappers over nix (no `unsafe` here); every failure becomes an
//! [`Error`] naming the call, the paths and the errno, with `EBUSY` mapped to
//! [`ErrorKind::Busy`]. Callers decide *what* to change; these only do it.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, ErrorKind, Result};

/// One of the four propagation types of mount_namespaces(7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PropagationType {
    /// `MS_SHARED`: events propagate to and from peers.
    Shared,
    /// `MS_SLAVE`: events propagate from the master only.
    Slave,
    /// `MS_PRIVATE`: no propagation.
    Private,
    /// `MS_UNBINDABLE`: private and cannot be bind-mounted.
    Unbindable,
}

impl PropagationType {
    /// The `mount --make-*` word (`shared`, `slave`, `private`, `unbindable`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Slave => "slave",
            Self::Private => "private",
            Self::Unbindable => "unbindable",
        }
    }

    /// Parse a `mount --make-*` word (as returned by
    /// [`Propagation::make_flag`](crate::probe::mountinfo::Propagation::make_flag)).
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "shared" => Some(Self::Shared),
            "slave" => Some(Self::Slave),
            "private" => Some(Self::Private),
            "unbindable" => Some(Self::Unbindable),
            _ => None,
        }
    }

    fn flag(self) -> MsFlags {
        match self {
            Self::Shared => MsFlags::MS_SHARED,
            Self::Slave => MsFlags::MS_SLAVE,
            Self::Private => MsFlags::MS_PRIVATE,
            Self::Unbindable => MsFlags::MS_UNBINDABLE,
        }
    }
}

/// Per-mount flags that a bind remount can set (`MS_RDONLY`, `MS_NOSUID`, ...),
/// from mountinfo's per-mount option words.
pub fn flags_from_options(options: &[String]) -> MsFlags {
    let mut f = MsFlags::empty();
    for o in options {
        f |= match o.as_str() {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            _ => MsFlags::empty(),
        };
    }
    f
}

fn fail(call: &str, paths: &[&Path], errno: Errno) -> Error {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let msg = format!("{call}({}): {}", names.join(", "), errno.desc());
    let err = if errno == Errno::EBUSY {
        Error::new(ErrorKind::Busy(msg))
    } else {
        Error::new(ErrorKind::Io(msg))
    };
    err.with_source(std::io::Error::from(errno))
}

/// `mount(source, target, fstype, flags, data)`: mount a filesystem.
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    nix::mount::mount(Some(source), target, Some(fstype), flags, data)
        .map_err(|e| fail("mount", &[source, target], e))
}

/// `mount(source, target, NULL, MS_BIND [| MS_REC])`: a bind mount.
pub fn bind(source: &Path, target: &Path, recursive: bool) -> Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    nix::mount::mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .map_err(|e| fail("mount(MS_BIND)", &[source, target], e))
}

/// `mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags)`: change the
/// per-mount flags of a bind mount (read-only, nosuid, ...).
pub fn remount_bind(target: &Path, flags: MsFlags) -> Result<()> {
    nix::mount::mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
        None::<&str>,
    )
    .map_err(|e| fail("mount(MS_REMOUNT|MS_BIND)", &[target], e))
}

/// `mount(from, to, NULL, MS_MOVE)`: move a mount (with its submounts).
pub fn ms_move(from: &Path, to: &Path) -> Result<()> {
    nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| fail("mount(MS_MOVE)", &[from, to], e))
}

/// `mount(NULL, target, NULL, MS_<type> [| MS_REC])`: change propagation.
pub fn set_propagation(target: &Path, kind: PropagationType, recursive: bool) -> Result<()> {
    let mut flags = kind.flag();
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(|e| {
        fail(
            &format!("mount(MS_{})", kind.word().to_uppercase()),
            &[target],
            e,
        )
    })
}

/// `umount2(target, 0)`: unmount, failing with [`ErrorKind::Busy`] when in use.
pub fn umount(target: &Path) -> Result<()> {
    nix::mount::umount2(target, MntFlags::empty()).map_err(|e| fail("umount2", &[target], e))
}

/// `umount2(target, MNT_DETACH)`: lazy unmount. Only on explicit request: the
/// filesystem stays alive while anything uses it, which hides holders.
pub fn umount_detach(target: &Path) -> Result<()> {
    nix::mount::umount2(target, MntFlags::MNT_DETACH)
        .map_err(|e| fail("umount2(MNT_DETACH)", &[target], e))
}

/// `pivot_root(new_root, put_old)`: make `new_root` the root mount of this
/// namespace and attach the old root at `put_old` (which must be at or under
/// `new_root`). Fails with `EINVAL` when the parent of `new_root`, the mount
/// holding `put_old` or the parent of the current root is shared.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> Result<()> {
    nix::unistd::pivot_root(new_root, put_old)
        .map_err(|e| fail("pivot_root", &[new_root, put_old], e))
}

/// `chroot(path)`.
pub fn chroot(path: &Path) -> Result<()> {
    nix::unistd::chroot(path).map_err(|e| fail("chroot", &[path], e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for k in [
            PropagationType::Shared,
            PropagationType::Slave,
            PropagationType::Private,
            PropagationType::Unbindable,
        ] {
            assert_eq!(PropagationType::from_word(k.word()), Some(k));
        }
        assert_eq!(PropagationType::from_word("rshared"), None);
    }

    #[test]
    fn options_map_to_flags() {
        let o: Vec<String> = ["ro", "nosuid", "relatime", "x-foo"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = flags_from_options(&o);
        assert!(f.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_RELATIME));
        assert!(!f.contains(MsFlags::MS_NODEV));
    }

    #[test]
    fn ebusy_is_busy() {
        let e = fail("umount2", &[Path::new("/x")], Errno::EBUSY);
        assert!(matches!(e.kind(), ErrorKind::Busy(_)));
        assert!(e.to_string().contains("umount2(/x)"));
        let e = fail(
            "pivot_root",
            &[Path::new("/a"), Path::new("/b")],
            Errno::EINVAL,
        );
        assert!(matches!(e.kind(), ErrorKind::Io(_)));
    }
}
