//! Parser for `/proc/PID/mountinfo` (proc(5)): one [`Mount`] per line, with
//! octal escapes decoded and the propagation tags (`shared:N`, `master:N`,
//! `propagate_from:N`, `unbindable`) split out.
//!
//! Pure text in, data out. Malformed lines are errors naming the line, never
//! panics (the `mountinfo` fuzz target checks this).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Propagation of a mount, from the optional fields of its mountinfo line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Propagation {
    /// `shared:N`: peer group N.
    pub shared: Option<u32>,
    /// `master:N`: receives from peer group N (a slave).
    pub master: Option<u32>,
    /// `propagate_from:N`: nearest dominant peer group visible here.
    pub propagate_from: Option<u32>,
    /// `unbindable`.
    pub unbindable: bool,
}

impl Propagation {
    /// True when neither shared, slave nor unbindable.
    pub fn is_private(&self) -> bool {
        self.shared.is_none() && self.master.is_none() && !self.unbindable
    }

    /// The `mount --make-*` word that restores this propagation.
    pub fn make_flag(&self) -> &'static str {
        match (
            self.shared.is_some(),
            self.master.is_some(),
            self.unbindable,
        ) {
            (_, _, true) => "unbindable",
            (true, _, _) => "shared",
            (false, true, _) => "slave",
            _ => "private",
        }
    }
}

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    /// Unique mount id.
    pub mount_id: u32,
    /// Id of the parent mount (itself for the namespace root).
    pub parent_id: u32,
    /// Device number of the filesystem (`st_dev` of files on it).
    pub major: u32,
    /// Minor part of the device number.
    pub minor: u32,
    /// Path inside the filesystem that forms the root of this mount (bind mounts).
    pub root: PathBuf,
    /// Mount point, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `ro`, `nosuid`, ...).
    pub mount_options: Vec<String>,
    /// Propagation tags.
    pub propagation: Propagation,
    /// Filesystem type (`ext4`, `tmpfs`, `fuse.sshfs`, ...).
    pub fstype: String,
    /// Mount source (`/dev/sda1`, `none`, a server path).
    pub source: String,
    /// Per-superblock options.
    pub super_options: Vec<String>,
}

impl Mount {
    /// True when nothing can be written through this mount: per-mount
    /// `ro`, or the filesystem itself read-only (superblock `ro`, as every
    /// bind mount of a root remounted read-only is, whatever its own flag).
    pub fn is_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro") || self.super_options.iter().any(|o| o == "ro")
    }

    /// `makedev(major, minor)` as the kernel encodes it in `st_dev`.
    pub fn dev(&self) -> u64 {
        let (ma, mi) = (u64::from(self.major), u64::from(self.minor));
        ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12)
    }

    /// True when this mount sits at `path` or below it.
    pub fn is_under(&self, path: &Path) -> bool {
        self.mount_point.starts_with(path)
    }
}

/// Decode mountinfo's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash). Anything else is kept as it is.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn num<T: std::str::FromStr>(field: Option<&str>, what: &str, lineno: usize) -> Result<T> {
    field
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| Error::invalid(format!("mountinfo line {lineno}: bad or missing {what}")))
}

/// Parse one line (`lineno` is 1-based, for messages).
pub fn parse_line(line: &str, lineno: usize) -> Result<Mount> {
    let mut it = line.split(' ');
    let mount_id = num(it.next(), "mount id", lineno)?;
    let parent_id = num(it.next(), "parent id", lineno)?;
    let devno = it
        .next()
        .ok_or_else(|| Error::invalid(format!("mountinfo line {lineno}: missing major:minor")))?;
    let (ma, mi) = devno.split_once(':').ok_or_else(|| {
        Error::invalid(format!(
            "mountinfo line {lineno}: bad major:minor {devno:?}"
        ))
    })?;
    let major = num(Some(ma), "major", lineno)?;
    let minor = num(Some(mi), "minor", lineno)?;
    let mut field = |what: &str| {
        it.next()
            .map(unescape)
            .ok_or_else(|| Error::invalid(format!("mountinfo line {lineno}: missing {what}")))
    };
    let root = PathBuf::from(field("root")?);
    let mount_point = PathBuf::from(field("mount point")?);
    let mount_options = field("mount options")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut propagation = Propagation::default();
    loop {
        let tag = it.next().ok_or_else(|| {
            Error::invalid(format!("mountinfo line {lineno}: missing '-' separator"))
        })?;
        if tag == "-" {
            break;
        }
        let tagged = |p: &str| tag.strip_prefix(p).and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = tagged("shared:") {
            propagation.shared = Some(n);
        } else if let Some(n) = tagged("master:") {
            propagation.master = Some(n);
        } else if let Some(n) = tagged("propagate_from:") {
            propagation.propagate_from = Some(n);
        } else if tag == "unbindable" {
            propagation.unbindable = true;
        }
        // Unknown optional fields are ignored, as proc(5) asks.
    }
    let fstype = it
        .next()
        .map(unescape)
        .ok_or_else(|| Error::invalid(format!("mountinfo line {lineno}: missing fstype")))?;
    let source = it
        .next()
        .map(unescape)
        .ok_or_else(|| Error::invalid(format!("mountinfo line {lineno}: missing source")))?;
    let super_options = it.next().map(unescape).unwrap_or_default();
    Ok(Mount {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        mount_options,
        propagation,
        fstype,
        source,
        super_options: super_options
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Parse a whole mountinfo file. Empty lines are skipped; a malformed line is
/// an error naming its number.
pub fn parse(text: &str) -> Result<Vec<Mount>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect()
}

/// Read and parse `/proc/<pid>/mountinfo` (`pid` may be `"self"`).
pub fn read(root: &super::SysRoot, pid: &str) -> Result<Vec<Mount>> {
    let path = root.proc(format!("{pid}/mountinfo"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io("reading mountinfo", e).device(&path))?;
    parse(&text).map_err(|e| e.device(&path))
}

/// The mount whose mount point is the longest prefix of `path`: the mount that
/// `path` lives on (without following symlinks). With overmounts, the last
/// such line wins, as in the kernel's view.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime shared:5 - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
36 27 8:1 /srv /mnt/with\\040space ro,noatime master:3 propagate_from:2 - ext3 /dev/sda1 rw,errors=continue
40 27 0:45 / /weird rw unbindable - fuse.sshfs user@host:/a\\134b rw
";

    #[test]
    fn parses_fields_escapes_and_propagation() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].propagation.shared, Some(5));
        assert_eq!(m[1].mount_point, Path::new("/"));
        assert_eq!((m[1].major, m[1].minor), (254, 0));
        assert_eq!(m[2].mount_point, Path::new("/mnt/with space"));
        assert_eq!(m[2].root, Path::new("/srv"));
        assert!(m[2].is_read_only());
        assert_eq!(m[2].propagation.master, Some(3));
        assert_eq!(m[2].propagation.propagate_from, Some(2));
        assert_eq!(m[2].propagation.make_flag(), "slave");
        assert_eq!(m[2].super_options, vec!["rw", "errors=continue"]);
        // A bind of a filesystem remounted read-only keeps its own `rw`
        // flag, but nothing can be written through it.
        let b = parse_line(
            "9 1 8:1 /srv /b rw,relatime - ext4 /dev/sda1 ro,errors=continue",
            1,
        )
        .unwrap();
        assert!(b.is_read_only());
        assert!(m[3].propagation.unbindable);
        assert_eq!(m[3].source, "user@host:/a\\b");
        assert_eq!(m[3].fstype, "fuse.sshfs");
        assert!(!m[3].propagation.is_private());
    }

    #[test]
    fn dev_matches_makedev() {
        let m = parse_line("1 1 259:65537 / / rw - ext4 /dev/x rw", 1).unwrap();
        assert_eq!(m.dev(), nix::sys::stat::makedev(259, 65537));
    }

    #[test]
    fn mount_of_picks_longest_prefix() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(mount_of(&m, Path::new("/proc/self")).unwrap().mount_id, 22);
        assert_eq!(mount_of(&m, Path::new("/etc/passwd")).unwrap().mount_id, 27);
        assert_eq!(mount_of(&m, Path::new("/procfoo")).unwrap().mount_id, 27);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            "",
            "x",
            "1 2",
            "1 2 3",
            "1 2 3:4 / /",
            "1 2 3:4 / / rw shared:1",
            "1 2 3:4 / / rw -",
            "1 2 3:4 / / rw - ext4",
            "a 2 3:4 / / rw - ext4 src opts",
            "1 2 x:4 / / rw - ext4 src opts",
        ] {
            assert!(parse_line(bad, 7).is_err(), "{bad:?} should fail");
        }
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\777"), "\\777");
        assert_eq!(unescape("\\011x"), "\tx");
    }
}
