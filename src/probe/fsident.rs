//! Which filesystem a device holds, and its UUID and label, from the
//! superblock magic (what `blkid` reports), for ext2/3/4, XFS and btrfs.
//! `pivot` needs the type to mount the new root; `finish` compares
//! identities and checks the re-identification of the old root.
//!
//! [`identify`] is pure (bytes in); [`read`] reads the first 68 KiB of a
//! device. Unknown content is `None`, never a panic.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// How many bytes [`identify`] looks at (the btrfs superblock ends there).
pub const PROBE_LEN: usize = 0x10000 + 0x1000;

/// A filesystem's type and identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsIdent {
    /// Type as `mount -t` takes it (`ext4` for all of ext2/3/4: the ext4
    /// driver mounts them all).
    pub fstype: String,
    /// UUID, lower-case with dashes.
    pub uuid: String,
    /// Volume label (empty when none).
    pub label: String,
}

fn uuid_str(b: &[u8]) -> String {
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    let h = h.concat();
    if h.len() != 32 {
        return h;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Identify the filesystem whose first bytes are `data`.
pub fn identify(data: &[u8]) -> Option<FsIdent> {
    let at = |off: usize, len: usize| data.get(off..off.checked_add(len)?);
    // ext2/3/4: superblock at 1024, s_magic 0xEF53 at +0x38.
    if at(1024 + 0x38, 2) == Some([0x53, 0xEF].as_slice()) {
        return Some(FsIdent {
            fstype: "ext4".into(),
            uuid: uuid_str(at(1024 + 0x68, 16)?),
            label: cstr(at(1024 + 0x78, 16)?),
        });
    }
    // XFS: "XFSB" at 0, sb_uuid at 32, sb_fname[12] at 108.
    if at(0, 4) == Some(b"XFSB".as_slice()) {
        return Some(FsIdent {
            fstype: "xfs".into(),
            uuid: uuid_str(at(32, 16)?),
            label: cstr(at(108, 12)?),
        });
    }
    // btrfs: superblock at 64 KiB, magic "_BHRfS_M" at +0x40, fsid at +0x20,
    // label[256] at +0x12b.
    if at(0x10000 + 0x40, 8) == Some(b"_BHRfS_M".as_slice()) {
        return Some(FsIdent {
            fstype: "btrfs".into(),
            uuid: uuid_str(at(0x10000 + 0x20, 16)?),
            label: cstr(at(0x10000 + 0x12b, 256)?),
        });
    }
    None
}

/// Read the start of `dev` and identify it.
pub fn read(dev: &Path) -> Result<Option<FsIdent>> {
    let mut f = std::fs::File::open(dev).map_err(|e| Error::io("opening", e).device(dev))?;
    let mut buf = Vec::with_capacity(PROBE_LEN);
    (&mut f)
        .take(PROBE_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading the superblock", e).device(dev))?;
    Ok(identify(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_xfs_btrfs_and_garbage() {
        let mut b = vec![0u8; PROBE_LEN];
        assert_eq!(identify(&b), None);
        assert_eq!(identify(&b[..100]), None);
        b[1024 + 0x38] = 0x53;
        b[1024 + 0x39] = 0xEF;
        for (i, x) in b[1024 + 0x68..1024 + 0x78].iter_mut().enumerate() {
            *x = u8::try_from(i).unwrap();
        }
        b[1024 + 0x78..1024 + 0x7e].copy_from_slice(b"oldfs\0");
        let id = identify(&b).unwrap();
        assert_eq!(id.fstype, "ext4");
        assert_eq!(id.uuid, "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(id.label, "oldfs");

        let mut x = vec![0u8; 512];
        x[..4].copy_from_slice(b"XFSB");
        x[108..112].copy_from_slice(b"root");
        let id = identify(&x).unwrap();
        assert_eq!((id.fstype.as_str(), id.label.as_str()), ("xfs", "root"));

        let mut t = vec![0u8; PROBE_LEN];
        t[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert_eq!(identify(&t).unwrap().fstype, "btrfs");
        assert_eq!(identify(&t[..0x10040]), None);
    }
}
