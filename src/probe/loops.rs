//! Attached loop devices from sysfs (`/sys/block/loopN/loop/*`): backing
//! file, offset, size limit, autoclear, read-only, device number. A loop
//! device backed by a file on the root keeps that file open (for writing
//! unless read-only), so the remount to read-only fails while it exists.

use std::path::{Path, PathBuf};

use super::SysRoot;
use super::maps::DELETED_SUFFIX;
use crate::error::{Error, Result};

/// One attached loop device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoopDevice {
    /// Kernel name, `loop3`.
    pub name: String,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// The backing file, as the reading process sees it.
    pub backing_file: PathBuf,
    /// The backing file was unlinked.
    pub deleted: bool,
    /// Offset into the backing file, bytes.
    pub offset: u64,
    /// Size limit, bytes (0: the whole file).
    pub sizelimit: u64,
    /// Detached automatically when its last user closes it.
    pub autoclear: bool,
    /// Attached read-only (the backing file is open read-only).
    pub read_only: bool,
}

impl LoopDevice {
    /// `st_rdev` of the device node, to match mounts' `major:minor`.
    pub fn dev(&self) -> u64 {
        nix::sys::stat::makedev(u64::from(self.major), u64::from(self.minor))
    }

    /// `/dev/loopN`.
    pub fn node(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

/// Parse sysfs' `MAJ:MIN`.
fn parse_devno(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Read one loop device's attributes; `None` when it is not attached (no
/// `loop/` directory or no backing file) or vanished while being read.
pub fn read_one(sys: &SysRoot, name: &str) -> Option<LoopDevice> {
    let dir = sys.sys(Path::new("block").join(name));
    let raw = read_trimmed(&dir.join("loop/backing_file"))?;
    if raw.is_empty() {
        return None;
    }
    let (major, minor) = parse_devno(&read_trimmed(&dir.join("dev"))?)?;
    let num = |f: &str| {
        read_trimmed(&dir.join(f))
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (path, deleted) = match raw.strip_suffix(DELETED_SUFFIX) {
        Some(p) => (p.to_owned(), true),
        None => (raw, false),
    };
    Some(LoopDevice {
        name: name.to_owned(),
        major,
        minor,
        backing_file: PathBuf::from(path),
        deleted,
        offset: num("loop/offset"),
        sizelimit: num("loop/sizelimit"),
        autoclear: num("loop/autoclear") == 1,
        read_only: num("ro") == 1,
    })
}

/// Every attached loop device, sorted by name.
pub fn list(sys: &SysRoot) -> Result<Vec<LoopDevice>> {
    let block = sys.sys("block");
    let entries = match std::fs::read_dir(&block) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing block devices", e).device(&block)),
    };
    let mut v: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("loop"))
        .filter_map(|n| read_one(sys, &n))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::probe::fixture::put;

    #[test]
    fn lists_attached_loops_from_a_fixture_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        put(b, "sys/block/loop0/dev", "7:0\n");
        put(b, "sys/block/loop0/ro", "0\n");
        put(
            b,
            "sys/block/loop0/loop/backing_file",
            "/srv/img file.ext4\n",
        );
        put(b, "sys/block/loop0/loop/offset", "1048576\n");
        put(b, "sys/block/loop0/loop/sizelimit", "0\n");
        put(b, "sys/block/loop0/loop/autoclear", "1\n");
        put(b, "sys/block/loop1/dev", "7:1\n"); // detached: no loop/ dir
        put(b, "sys/block/loop12/dev", "7:12\n");
        put(b, "sys/block/loop12/ro", "1\n");
        put(
            b,
            "sys/block/loop12/loop/backing_file",
            "/var/x.sqfs (deleted)\n",
        );
        put(b, "sys/block/loop13/dev", "garbage\n");
        put(b, "sys/block/loop13/loop/backing_file", "/y\n");
        put(b, "sys/block/vda/dev", "254:0\n");
        let v = list(&SysRoot::under(b)).unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].name, "loop0");
        assert_eq!(v[0].backing_file, PathBuf::from("/srv/img file.ext4"));
        assert_eq!(v[0].offset, 1 << 20);
        assert!(v[0].autoclear && !v[0].read_only && !v[0].deleted);
        assert_eq!(v[0].dev(), nix::sys::stat::makedev(7, 0));
        assert_eq!(v[0].node(), PathBuf::from("/dev/loop0"));
        assert_eq!(v[1].name, "loop12");
        assert!(v[1].read_only && v[1].deleted);
        assert_eq!(v[1].backing_file, PathBuf::from("/var/x.sqfs"));
        assert!(
            list(&SysRoot::under(&b.join("nowhere")))
                .unwrap()
                .is_empty()
        );
    }
}
