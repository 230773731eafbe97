//! `/proc/swaps` (proc(5)): active swap areas, their path (octal escapes
//! decoded, " (deleted)" split off), type, size, use and priority.
//!
//! [`parse`] is pure; [`read`] reads the table through a [`SysRoot`].

use std::path::PathBuf;

use super::SysRoot;
use super::maps::DELETED_SUFFIX;
use super::mountinfo::unescape;
use crate::error::{Error, Result};

/// One active swap area.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Swap {
    /// The swap file or device, as the reading process sees it.
    pub path: PathBuf,
    /// The file was unlinked while swapped on.
    pub deleted: bool,
    /// `file` or `partition`.
    pub kind: String,
    /// Size in KiB.
    pub size_kib: u64,
    /// Used KiB.
    pub used_kib: u64,
    /// Priority (negative when the kernel chose it).
    pub priority: i32,
}

impl Swap {
    /// True for a swap file (as opposed to a partition or device).
    pub fn is_file(&self) -> bool {
        self.kind == "file"
    }
}

/// Parse one data line; `None` for the header and malformed lines.
pub fn parse_line(line: &str) -> Option<Swap> {
    // The kernel writes `%s%*s%s\t%llu\t%llu\t%d`: the path with " \t\n\\"
    // octal-escaped (`seq_file_path`), padding spaces, then tab-separated
    // columns. Fields split on spaces and tabs only: other whitespace
    // (`\v`, U+00A0, ...) is part of the path. The escaping covers the
    // " (deleted)" that `d_path` appends to an unlinked file, so it shows
    // as `\040(deleted)`; a raw " (deleted)" is accepted too.
    let (body, raw_deleted) = match line.split_once(DELETED_SUFFIX) {
        Some((path, tail)) => (format!("{path}{tail}"), true),
        None => (line.to_owned(), false),
    };
    let mut f = body.split([' ', '\t']).filter(|s| !s.is_empty());
    let path = unescape(f.next()?);
    let kind = f.next()?;
    let size_kib = f.next()?.parse().ok()?;
    let used_kib = f.next()?.parse().ok()?;
    let priority = f.next()?.parse().ok()?;
    let (path, deleted) = match path.strip_suffix(DELETED_SUFFIX) {
        Some(p) => (p.to_owned(), true),
        None => (path, raw_deleted),
    };
    Some(Swap {
        path: PathBuf::from(path),
        deleted,
        kind: kind.to_owned(),
        size_kib,
        used_kib,
        priority,
    })
}

/// Parse the whole table, skipping the header and malformed lines.
pub fn parse(text: &str) -> Vec<Swap> {
    text.lines()
        .filter(|l| !l.starts_with("Filename"))
        .filter_map(parse_line)
        .collect()
}

/// Read `/proc/swaps`. A missing file (a kernel without swap) is no swap.
pub fn read(sys: &SysRoot) -> Result<Vec<Swap>> {
    let path = sys.proc("swaps");
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(parse(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("reading the swap table", e).device(&path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/dm-1                               partition\t1003516\t\t0\t\t-2
/mnt/t/swap\\040file                      file\t\t16380\t\t12\t\t5
/var/old.swap (deleted)                 file\t\t1024\t\t0\t\t-3
";

    #[test]
    fn parses_paths_kinds_and_priorities() {
        let v = parse(SAMPLE);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].path, PathBuf::from("/dev/dm-1"));
        assert!(!v[0].is_file());
        assert_eq!(v[0].priority, -2);
        assert_eq!(v[1].path, PathBuf::from("/mnt/t/swap file"));
        assert!(v[1].is_file() && !v[1].deleted);
        assert_eq!(
            (v[1].size_kib, v[1].used_kib, v[1].priority),
            (16380, 12, 5)
        );
        assert_eq!(v[2].path, PathBuf::from("/var/old.swap"));
        assert!(v[2].deleted);
        assert_eq!(v[2].priority, -3);
    }

    #[test]
    fn malformed_lines_are_skipped_not_panics() {
        for bad in [
            "",
            "/x",
            "/x file",
            "/x file 1 2",
            "/x file a 2 3",
            "/x file 1 2 z",
            "/x file 1 2 99999999999",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
        assert!(parse("Filename Type\n (deleted)\n/x (deleted)\n").is_empty());
        // A path with whitespace other than space and tab (the kernel does
        // not escape it) stays one field.
        let s = parse_line("/swap\u{a0}file\x0bx file\t8\t0\t-2").unwrap();
        assert_eq!(s.path, PathBuf::from("/swap\u{a0}file\x0bx"));
        assert_eq!((s.kind.as_str(), s.size_kib, s.priority), ("file", 8, -2));
        assert_eq!(parse("/y file 1 2 3\n").len(), 1);
    }

    #[test]
    fn deleted_as_the_kernel_escapes_it() {
        // `seq_file_path` escapes the space `d_path` puts before "(deleted)".
        let s = parse_line("/var/old.swap\\040(deleted)       file\t\t1024\t\t0\t\t-3").unwrap();
        assert_eq!(s.path, PathBuf::from("/var/old.swap"));
        assert!(s.deleted);
        let s = parse_line("/mnt/swap\\040file file 8 0 -2").unwrap();
        assert_eq!(s.path, PathBuf::from("/mnt/swap file"));
        assert!(!s.deleted);
    }

    #[test]
    fn read_missing_table_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(&SysRoot::under(d.path())).unwrap().is_empty());
    }
}
