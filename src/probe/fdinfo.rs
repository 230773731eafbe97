//! Parser for `/proc/PID/fdinfo/FD` (proc(5)): file position, open flags
//! (octal, as the kernel prints them), mount id and inode.
//!
//! Pure text in, data out; malformed input is an error, never a panic (the
//! `fdinfo` fuzz target checks this). Lines the parser does not know
//! (eventfd counts, inotify watches, ...) are ignored.

use crate::error::{Error, Result};

/// `O_ACCMODE` and its values, as in `<asm-generic/fcntl.h>` (the same on
/// every Linux architecture).
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;

/// How a file was opened, from the `O_ACCMODE` bits of its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// `O_RDONLY`.
    Read,
    /// `O_WRONLY`.
    Write,
    /// `O_RDWR`.
    ReadWrite,
    /// Access mode 3: neither read nor write (ioctl-only opens of devices).
    None,
}

impl Access {
    /// The access mode encoded in open flags.
    pub fn from_flags(flags: u32) -> Self {
        match flags & O_ACCMODE {
            0 => Access::Read,
            O_WRONLY => Access::Write,
            O_RDWR => Access::ReadWrite,
            _ => Access::None,
        }
    }

    /// True for `O_WRONLY` and `O_RDWR`: such an open regular file makes
    /// `mount -o remount,ro` fail with EBUSY.
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// The fields of an fdinfo file that reroot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FdInfo {
    /// `pos:` the file offset.
    pub pos: u64,
    /// `flags:` the open flags (`O_*`), parsed from octal.
    pub flags: u32,
    /// `mnt_id:` the mount the file was opened through (Linux 3.15+).
    pub mnt_id: Option<u32>,
    /// `ino:` the inode number (Linux 5.14+).
    pub ino: Option<u64>,
}

impl FdInfo {
    /// The access mode from [`FdInfo::flags`].
    pub fn access(&self) -> Access {
        Access::from_flags(self.flags)
    }
}

/// Parse the text of one fdinfo file. `pos` and `flags` are required; a
/// known field with an unparsable value is an error.
pub fn parse(text: &str) -> Result<FdInfo> {
    let (mut pos, mut flags, mut mnt_id, mut ino) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let bad = || Error::invalid(format!("fdinfo: bad {key} value {value:?}"));
        match key {
            "pos" => pos = Some(value.parse().map_err(|_| bad())?),
            "flags" => flags = Some(u32::from_str_radix(value, 8).map_err(|_| bad())?),
            "mnt_id" => mnt_id = Some(value.parse().map_err(|_| bad())?),
            "ino" => ino = Some(value.parse().map_err(|_| bad())?),
            _ => {}
        }
    }
    Ok(FdInfo {
        pos: pos.ok_or_else(|| Error::invalid("fdinfo: no pos line"))?,
        flags: flags.ok_or_else(|| Error::invalid("fdinfo: no flags line"))?,
        mnt_id,
        ino,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_access_modes() {
        let i = parse("pos:\t4096\nflags:\t0102001\nmnt_id:\t29\nino:\t1234\n").unwrap();
        assert_eq!(i.pos, 4096);
        assert_eq!(i.flags, 0o102_001);
        assert_eq!(i.access(), Access::Write);
        assert!(i.access().writes());
        assert_eq!(i.mnt_id, Some(29));
        assert_eq!(i.ino, Some(1234));
        // Old kernels: no mnt_id, no ino.
        let i = parse("pos:\t0\nflags:\t02\n").unwrap();
        assert_eq!(i.access(), Access::ReadWrite);
        assert_eq!((i.mnt_id, i.ino), (None, None));
        let i = parse("pos:\t0\nflags:\t0100000\nmnt_id:\t1\neventfd-count: 5\n").unwrap();
        assert_eq!(i.access(), Access::Read);
        assert!(!i.access().writes());
        assert_eq!(Access::from_flags(3), Access::None);
        assert!(!Access::None.writes());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "pos:\t0\n",
            "flags:\t02\n",
            "pos:\tx\nflags:\t02\n",
            "pos:\t0\nflags:\t09\n",
            "pos:\t0\nflags:\t077777777777\n",
            "pos:\t0\nflags:\t02\nmnt_id:\t-1\n",
            "pos:\t0\nflags:\t02\nino:\tz\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse("junk\npos: 1\nflags: 0\nlock: 1: POSIX\n").is_ok());
    }
}
