//! The block devices of a mounted btrfs filesystem. btrfs gives its mounts
//! an anonymous device number (`0:N`) in mountinfo and `st_dev`, so the real
//! devices come from sysfs: `/sys/fs/btrfs/<fsid>/devices/` holds one
//! symlink per member device, named after its block device, whose
//! `/sys/class/block/NAME/dev` is the `major:minor`.

use std::fs;
use std::path::Path;

use super::SysRoot;
use crate::error::{Error, Result};

/// One member device of a btrfs filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Kernel name of the block device (`loop3`, `dm-0`, `sda2`).
    pub name: String,
    /// Its device number.
    pub devno: (u32, u32),
}

/// A mounted btrfs filesystem, as sysfs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    /// `fsid` (the directory name under `/sys/fs/btrfs`).
    pub fsid: String,
    /// Every member device, sorted by name.
    pub members: Vec<Member>,
}

/// Parse `/sys/class/block/NAME/dev` (`"7:3\n"`).
fn parse_devno(text: &str) -> Option<(u32, u32)> {
    let (maj, min) = text.trim().split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// The kernel name of the block device at `source` (a mountinfo source such
/// as `/dev/mapper/vg-root`): the name of the node it resolves to.
pub fn kernel_name(source: &str) -> Option<String> {
    let p = fs::canonicalize(source).unwrap_or_else(|_| Path::new(source).to_path_buf());
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The mounted btrfs filesystem that has the block device `name` among its
/// members, or None when no mounted btrfs has it (or sysfs has no btrfs).
pub fn filesystem_with(sys: &SysRoot, name: &str) -> Result<Option<Filesystem>> {
    let base = sys.sys("fs/btrfs");
    let Ok(dirs) = fs::read_dir(&base) else {
        return Ok(None);
    };
    for d in dirs.flatten() {
        let devices = d.path().join("devices");
        let Ok(entries) = fs::read_dir(&devices) else {
            // `features` and anything else without members.
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !names.iter().any(|n| n == name) {
            continue;
        }
        names.sort();
        let mut members = Vec::with_capacity(names.len());
        for n in names {
            let path = sys.sys(format!("class/block/{n}/dev"));
            let text = fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e).device(&path))?;
            let devno = parse_devno(&text).ok_or_else(|| {
                Error::corrupt(format!("{}: not major:minor: {text:?}", path.display()))
            })?;
            members.push(Member { name: n, devno });
        }
        return Ok(Some(Filesystem {
            fsid: d.file_name().to_string_lossy().into_owned(),
            members,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::put;

    fn tree(members: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "sys/fs/btrfs/features/raid1c34", "0\n");
        put(
            d.path(),
            "sys/fs/btrfs/11111111-2222-3333-4444-555555555555/label",
            "other\n",
        );
        std::fs::create_dir_all(
            d.path()
                .join("sys/fs/btrfs/11111111-2222-3333-4444-555555555555/devices"),
        )
        .unwrap();
        let fsid = "sys/fs/btrfs/a1b2c3d4-0000-1111-2222-333344445555";
        for (name, dev) in members {
            put(d.path(), &format!("{fsid}/devices/{name}/size"), "1\n");
            put(d.path(), &format!("sys/class/block/{name}/dev"), dev);
        }
        d
    }

    #[test]
    fn members_come_from_sysfs_by_kernel_name() {
        let d = tree(&[("loop7", "7:7\n"), ("loop2", "7:2\n")]);
        let sys = SysRoot::under(d.path());
        let fs = filesystem_with(&sys, "loop7").unwrap().unwrap();
        assert_eq!(fs.fsid, "a1b2c3d4-0000-1111-2222-333344445555");
        assert_eq!(
            fs.members,
            vec![
                Member {
                    name: "loop2".into(),
                    devno: (7, 2)
                },
                Member {
                    name: "loop7".into(),
                    devno: (7, 7)
                }
            ]
        );
        assert_eq!(filesystem_with(&sys, "loop3").unwrap(), None);
    }

    #[test]
    fn no_btrfs_in_sysfs_is_none_and_a_bad_dev_file_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            filesystem_with(&SysRoot::under(d.path()), "sda").unwrap(),
            None
        );
        let d = tree(&[("vdb", "garbage\n")]);
        let e = filesystem_with(&SysRoot::under(d.path()), "vdb").unwrap_err();
        assert!(e.to_string().contains("not major:minor"), "{e}");
    }

    #[test]
    fn kernel_name_falls_back_to_the_last_component() {
        assert_eq!(
            kernel_name("/dev/no-such-device-here").as_deref(),
            Some("no-such-device-here")
        );
    }
}
