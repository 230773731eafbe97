//! The names udev and device-mapper give a block device: symlinks under
//! `/dev/disk/by-*`, `/dev/mapper` and LVM's `/dev/VG/` pointing at it.
//! Those derived from the filesystem on it (`by-uuid`, `by-label`) are kept
//! apart from those that name the device itself (`by-id`, `by-path`,
//! `by-partuuid`, `by-partlabel`, mapper and LVM names), because a block
//! copy takes the former along and leaves the latter behind.
//!
//! Reads `/dev` through [`SysRoot`]; returned paths are in live form
//! (`/dev/...`) whatever the fixture root. Imports `probe::fstab` (for
//! udev's name escapes).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::SysRoot;
use super::device::DevNo;
use super::fs_superblock;
use super::fstab::decode_udev_escapes;
use crate::error::{Error, Result};

/// The names a device answers to, gathered by [`device_names`]: what
/// `plan::identity` compares fstab and `root=` against.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceNames {
    /// Kernel node (`/dev/sda1`, `/dev/dm-0`).
    pub path: PathBuf,
    /// Device number.
    pub devno: Option<DevNo>,
    /// Filesystem UUID (lowercase), when it holds a filesystem.
    pub fs_uuid: Option<String>,
    /// Filesystem label, when set.
    pub fs_label: Option<String>,
    /// Partition UUID (lowercase), when it is a partition.
    pub partuuid: Option<String>,
    /// GPT partition name.
    pub partlabel: Option<String>,
    /// Other `/dev` paths naming the device itself (by-id, by-path, mapper, LVM).
    pub device_names: Vec<PathBuf>,
}

/// The `/dev` names of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DevLinks {
    /// `by-uuid` names (filesystem UUIDs, lowercase).
    pub fs_uuids: Vec<String>,
    /// `by-label` names (decoded).
    pub fs_labels: Vec<String>,
    /// The `by-partuuid` name (lowercase).
    pub partuuid: Option<String>,
    /// The `by-partlabel` name (decoded).
    pub partlabel: Option<String>,
    /// Every symlink naming the device itself (`by-id`, `by-path`,
    /// `by-partuuid`, `by-partlabel`, `by-diskseq`, mapper, LVM), in `/dev/...` form.
    pub device_names: Vec<PathBuf>,
}

/// Resolve `..` and `.` lexically (symlink targets are relative to the link's
/// directory; the fixture tree's nodes need not exist).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Where the symlink `link` points, resolved.
fn target_of(link: &Path) -> Option<PathBuf> {
    let t = std::fs::read_link(link).ok()?;
    let parent = link.parent()?;
    Some(normalize(&parent.join(t)))
}

/// Symlinks in `dir` that resolve to `dev` (a path under `root.dev_dir`).
fn links_in(dir: &Path, dev: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter(|e| target_of(&e.path()).as_deref() == Some(dev))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    found.sort();
    found
}

/// The names of `device` (a `/dev/...` path, e.g. `/dev/sda1` or
/// `/dev/dm-0`; give the resolved kernel node, not a symlink).
pub fn links_to(root: &SysRoot, device: &Path) -> DevLinks {
    let rel = device.strip_prefix("/dev").unwrap_or(device);
    let dev = normalize(&root.dev_dir.join(rel));
    let live = |p: &Path| -> PathBuf {
        Path::new("/dev").join(p.strip_prefix(&root.dev_dir).unwrap_or(p))
    };
    let mut out = DevLinks::default();
    let disk = root.dev_dir.join("disk");
    if let Ok(dirs) = std::fs::read_dir(&disk) {
        let mut dirs: Vec<_> = dirs.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            let kind = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for (name, path) in links_in(&d, &dev) {
                let name = decode_udev_escapes(&name);
                match kind.as_str() {
                    "by-uuid" => out.fs_uuids.push(name.to_ascii_lowercase()),
                    "by-label" => out.fs_labels.push(name),
                    _ => {
                        if kind == "by-partuuid" {
                            out.partuuid = Some(name.to_ascii_lowercase());
                        } else if kind == "by-partlabel" {
                            out.partlabel = Some(name);
                        }
                        out.device_names.push(live(&path));
                    }
                }
            }
        }
    }
    // device-mapper names, and LVM's /dev/VG/LV (directories of symlinks to ../dm-N).
    let Ok(top) = std::fs::read_dir(&root.dev_dir) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = top
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "disk"))
        .collect();
    dirs.sort();
    for d in dirs {
        for (_, path) in links_in(&d, &dev) {
            out.device_names.push(live(&path));
        }
    }
    out
}

/// Every name of the live device `dev` (a node or a symlink to one):
/// kernel node, device number, filesystem UUID and label (read from its
/// superblock), partition UUID and name, and the `/dev` links naming it.
pub fn device_names(root: &SysRoot, dev: &Path) -> Result<DeviceNames> {
    let node = std::fs::canonicalize(dev)
        .map_err(|e| Error::io(format!("resolving {}", dev.display()), e).device(dev))?;
    let meta = std::fs::metadata(&node)
        .map_err(|e| Error::io(format!("examining {}", node.display()), e).device(dev))?;
    let devno = meta
        .file_type()
        .is_block_device()
        .then(|| DevNo::from_raw(meta.rdev()));
    let fs = std::fs::File::open(&node)
        .ok()
        .and_then(|f| fs_superblock::read(&f).ok().flatten());
    let links = links_to(root, &node);
    // Live form (/dev/...), whatever the fixture root, to compare with fstab.
    let path = match node.strip_prefix(&root.dev_dir) {
        Ok(rel) => Path::new("/dev").join(rel),
        Err(_) => node,
    };
    Ok(DeviceNames {
        path,
        devno,
        fs_uuid: fs.as_ref().map(|s| s.uuid.clone()),
        fs_label: fs.map(|s| s.label).filter(|l| !l.is_empty()),
        partuuid: links.partuuid,
        partlabel: links.partlabel,
        device_names: links.device_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn finds_and_classifies_links() {
        let d = tempfile::tempdir().unwrap();
        let root = SysRoot::under(d.path());
        let dev = d.path().join("dev");
        for sub in [
            "disk/by-uuid",
            "disk/by-label",
            "disk/by-partuuid",
            "disk/by-id",
            "mapper",
            "vg0",
            "pts",
        ] {
            std::fs::create_dir_all(dev.join(sub)).unwrap();
        }
        std::fs::write(dev.join("sda1"), "").unwrap();
        symlink("../../sda1", dev.join("disk/by-uuid/2E1F-AA")).unwrap();
        symlink("../../sda1", dev.join("disk/by-label/old\\x20root")).unwrap();
        symlink("../../sda1", dev.join("disk/by-partuuid/6c2b0a8f-01")).unwrap();
        symlink("../../sda1", dev.join("disk/by-id/ata-DISK-part1")).unwrap();
        symlink("../../sda2", dev.join("disk/by-id/ata-DISK-part2")).unwrap();
        symlink("../dm-0", dev.join("mapper/vg0-root")).unwrap();
        symlink("../dm-0", dev.join("vg0/root")).unwrap();

        let l = links_to(&root, Path::new("/dev/sda1"));
        assert_eq!(l.fs_uuids, ["2e1f-aa"]);
        assert_eq!(l.fs_labels, ["old root"]);
        assert_eq!(l.partuuid.as_deref(), Some("6c2b0a8f-01"));
        assert_eq!(
            l.device_names,
            [
                PathBuf::from("/dev/disk/by-id/ata-DISK-part1"),
                PathBuf::from("/dev/disk/by-partuuid/6c2b0a8f-01")
            ]
        );
        let dm = links_to(&root, Path::new("/dev/dm-0"));
        assert_eq!(
            dm.device_names,
            [
                PathBuf::from("/dev/mapper/vg0-root"),
                PathBuf::from("/dev/vg0/root")
            ]
        );
        assert_eq!(links_to(&root, Path::new("/dev/sdz")), DevLinks::default());
        assert_eq!(
            links_to(
                &SysRoot::under(&d.path().join("none")),
                Path::new("/dev/sda1")
            ),
            DevLinks::default()
        );
    }

    #[test]
    fn device_names_of_an_image_file() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("x.img");
        let mut bytes = vec![0u8; 4096];
        bytes[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        bytes[1024 + 0x68] = 0xab;
        bytes[1024 + 0x78..1024 + 0x7c].copy_from_slice(b"root");
        std::fs::write(&img, &bytes).unwrap();
        std::os::unix::fs::symlink(&img, d.path().join("link")).unwrap();
        let n = device_names(&SysRoot::under(d.path()), &d.path().join("link")).unwrap();
        assert_eq!(n.path, std::fs::canonicalize(&img).unwrap());
        assert_eq!(n.devno, None);
        assert_eq!(
            n.fs_uuid.as_deref(),
            Some("ab000000-0000-0000-0000-000000000000")
        );
        assert_eq!(n.fs_label.as_deref(), Some("root"));
        assert!(device_names(&SysRoot::live(), Path::new("/nonexistent/x")).is_err());
    }
}
