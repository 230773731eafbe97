//! Parser for `/proc/PID/maps` (proc(5)): address range, permissions,
//! offset, device, inode and path of each mapping, with the kernel's
//! " (deleted)" suffix split off.
//!
//! Pure text in, data out, borrowing the path from the input so the process
//! scan allocates nothing for mappings it does not keep. Malformed lines are
//! errors (or skipped by [`parse`]), never panics.

use crate::error::{Error, Result};

/// The suffix the kernel appends to paths of unlinked files (maps, fd links).
pub const DELETED_SUFFIX: &str = " (deleted)";

/// The `rwxp`/`rwxs` permission column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Perms {
    /// `r`
    pub read: bool,
    /// `w`
    pub write: bool,
    /// `x`
    pub exec: bool,
    /// `s` (shared) rather than `p` (private, copy-on-write).
    pub shared: bool,
}

/// One line of maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry<'a> {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Permissions.
    pub perms: Perms,
    /// Offset into the file.
    pub offset: u64,
    /// Major number of the device of the mapped file (hex in the text).
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Inode of the mapped file; 0 for anonymous mappings.
    pub inode: u64,
    /// The path (without " (deleted)"), `[heap]`-style names, or empty.
    pub path: &'a str,
    /// The path carried the " (deleted)" suffix: the file was unlinked or
    /// replaced after it was mapped.
    pub deleted: bool,
}

impl MapEntry<'_> {
    /// `st_dev` of the mapped file, as `makedev(major, minor)`.
    pub fn dev(&self) -> u64 {
        nix::sys::stat::makedev(u64::from(self.major), u64::from(self.minor))
    }

    /// True for a mapping of a file (not anonymous, not `[heap]`, `[vdso]`, ...).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// True when writes through this mapping reach the file: `w` and `s`.
    pub fn writes_file(&self) -> bool {
        self.perms.write && self.perms.shared && self.is_file()
    }
}

fn bad(lineno: usize, what: &str) -> Error {
    Error::invalid(format!("maps line {lineno}: bad or missing {what}"))
}

fn hex<T: TryFrom<u64>>(s: Option<&str>, lineno: usize, what: &str) -> Result<T> {
    s.and_then(|s| u64::from_str_radix(s, 16).ok())
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| bad(lineno, what))
}

/// Split off the next space-separated field, skipping runs of spaces.
fn next_field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let s = rest.trim_start_matches(' ');
    if s.is_empty() {
        *rest = s;
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    let (field, tail) = s.split_at(end);
    *rest = tail;
    Some(field)
}

/// Parse one line (`lineno` is 1-based, for messages).
pub fn parse_line(line: &str, lineno: usize) -> Result<MapEntry<'_>> {
    let mut rest = line;
    let range = next_field(&mut rest).ok_or_else(|| bad(lineno, "address range"))?;
    let (lo, hi) = range
        .split_once('-')
        .ok_or_else(|| bad(lineno, "address range"))?;
    let start = hex(Some(lo), lineno, "start address")?;
    let end = hex(Some(hi), lineno, "end address")?;
    let p = next_field(&mut rest)
        .map(str::as_bytes)
        .filter(|p| p.len() == 4 && p.is_ascii())
        .ok_or_else(|| bad(lineno, "permissions"))?;
    // Indexing is fine: exactly four bytes, checked above.
    let perms = Perms {
        read: p[0] == b'r',
        write: p[1] == b'w',
        exec: p[2] == b'x',
        shared: p[3] == b's',
    };
    let offset = hex(next_field(&mut rest), lineno, "offset")?;
    let (ma, mi) = next_field(&mut rest)
        .and_then(|d| d.split_once(':'))
        .ok_or_else(|| bad(lineno, "device"))?;
    let major = hex(Some(ma), lineno, "major")?;
    let minor = hex(Some(mi), lineno, "minor")?;
    let inode = next_field(&mut rest)
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| bad(lineno, "inode"))?;
    // The path is everything after the padding; it may contain spaces.
    let path = rest.trim_start_matches(' ');
    let (path, deleted) = match path.strip_suffix(DELETED_SUFFIX) {
        Some(p) => (p, true),
        None => (path, false),
    };
    Ok(MapEntry {
        start,
        end,
        perms,
        offset,
        major,
        minor,
        inode,
        path,
        deleted,
    })
}

/// Parse a whole maps file, skipping malformed lines (the kernel does not
/// write them; a fixture or a future format might).
pub fn parse(text: &str) -> impl Iterator<Item = MapEntry<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(l, i + 1).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 fd:01 1311003                    /usr/bin/sleep
55d0c8a02000-55d0c8a06000 r-xp 00002000 fd:01 1311003                    /usr/bin/sleep
55d0ca0e3000-55d0ca104000 rw-p 00000000 00:00 0                          [heap]
7f2b4c000000-7f2b4c022000 r-xp 00000000 07:03 12                         /mnt/t/lib copy.so (deleted)
7f2b4d000000-7f2b4d001000 rw-s 00001000 103:10005 77                     /var/lib/db/data
7ffd1a5e1000-7ffd1a602000 rw-p 00000000 00:00 0                          [stack]
7f2b4e000000-7f2b4e001000 rw-p 00000000 00:00 0 
";

    #[test]
    fn parses_fields_paths_and_deleted() {
        let v: Vec<_> = parse(SAMPLE).collect();
        assert_eq!(v.len(), 7);
        assert_eq!(v[0].start, 0x55d0_c8a0_0000);
        assert_eq!(v[1].offset, 0x2000);
        assert_eq!((v[1].major, v[1].minor), (0xfd, 1));
        assert_eq!(v[1].path, "/usr/bin/sleep");
        assert!(v[1].perms.exec && !v[1].perms.write && v[1].is_file());
        assert!(!v[2].is_file());
        assert_eq!(v[2].path, "[heap]");
        assert_eq!(v[3].path, "/mnt/t/lib copy.so");
        assert!(v[3].deleted);
        assert_eq!(v[3].dev(), nix::sys::stat::makedev(7, 3));
        assert!(v[4].writes_file());
        assert_eq!((v[4].major, v[4].minor), (0x103, 0x10005));
        assert!(!v[1].writes_file());
        assert_eq!(v[6].path, "");
        assert_eq!(v[6].inode, 0);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            "",
            "x",
            "1-2",
            "1-2 rw",
            "1-2 r--p 0 fd:01",
            "1-2 r--p 0 fd01 5 /x",
            "1-2 r--p 0 fd:zz 5 /x",
            "12 r--p 0 fd:01 5 /x",
            "1-2 r--p 0 fd:01 -5 /x",
            "g-2 r--p 0 fd:01 5 /x",
            "1-2 r--p 0 fd:1ffffffff 5 /x",
            "1-2 r--p 0 fd:01 5\u{e9}",
        ] {
            assert!(parse_line(bad, 3).is_err(), "{bad:?} should fail");
        }
        assert_eq!(parse("garbage\n\n1-2 r--p 0 0:0 0\n").count(), 1);
        // Multi-byte text never splits inside a character.
        assert!(parse_line("1-2 r\u{e9}p 0 0:0 0", 1).is_err());
    }
}
