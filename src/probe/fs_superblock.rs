//! The superblock facts `grow` and `--new-uuid` decide on, for ext2/3/4, xfs
//! and btrfs: identity (UUID, label), block size, size, and the ext feature
//! and state bits tune2fs and resize2fs care about. (`probe::signature` finds
//! any signature on a device; this reads deeper into the three we change.)
//!
//! Reads through [`ReadAt`] only (tests feed byte images), imports `ext` and
//! `error`. Fields are named after the kernel's (`s_feature_incompat`,
//! `sb_dblocks`); a full ext parse is `ext`'s job, and the ext2/3/4 kind
//! comes from `ext::detect`. The ext fields read here (`s_lastcheck`,
//! `s_mtime`, feature bits) are those `ext`'s public API does not expose.

use std::fmt;

use crate::error::{Error, Result};
use crate::ext::ReadAt;

/// A filesystem type reroot can grow and re-identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// ext2 (no journal).
    Ext2,
    /// ext3 (journal, no ext4-only features).
    Ext3,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
}

impl FsKind {
    /// True for ext2/3/4.
    pub fn is_ext(self) -> bool {
        matches!(self, FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4)
    }

    /// The name `mount -t` and blkid use.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// ext superblock fields `grow` and `identity` decide on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExtDetails {
    /// `s_blocks_count` (lo, plus hi with the 64bit feature).
    pub blocks_count: u64,
    /// `s_feature_compat`.
    pub feature_compat: u32,
    /// `s_feature_incompat`.
    pub feature_incompat: u32,
    /// `s_feature_ro_compat`.
    pub feature_ro_compat: u32,
    /// `s_state` (bit 0 valid, bit 1 errors).
    pub state: u16,
    /// `s_mtime` with `s_mtime_hi`: last mount.
    pub mtime: u64,
    /// `s_lastcheck` with `s_lastcheck_hi`: last full e2fsck.
    pub lastcheck: u64,
}

/// `EXT3_FEATURE_COMPAT_HAS_JOURNAL`.
pub const EXT_COMPAT_HAS_JOURNAL: u32 = 0x0004;
/// `EXT4_FEATURE_COMPAT_STABLE_INODES`: inode numbers are baked into
/// encryption keys; the UUID may not change.
pub const EXT_COMPAT_STABLE_INODES: u32 = 0x0800;
/// `EXT3_FEATURE_INCOMPAT_RECOVER` (needs_recovery).
pub const EXT_INCOMPAT_RECOVER: u32 = 0x0004;
/// `EXT3_FEATURE_INCOMPAT_JOURNAL_DEV`: an external journal, not a filesystem.
pub const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
/// `EXT4_FEATURE_INCOMPAT_64BIT`.
pub const EXT_INCOMPAT_64BIT: u32 = 0x0080;
/// `EXT4_FEATURE_INCOMPAT_EA_INODE`.
pub const EXT_INCOMPAT_EA_INODE: u32 = 0x0400;
/// `EXT4_FEATURE_INCOMPAT_CSUM_SEED` (metadata_csum_seed).
pub const EXT_INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// `EXT4_FEATURE_RO_COMPAT_METADATA_CSUM`.
pub const EXT_RO_COMPAT_METADATA_CSUM: u32 = 0x0400;

/// ext2 knows these incompat bits (filetype, recover, meta_bg); anything else
/// makes it ext4, as blkid decides.
const EXT3_INCOMPAT_SUPPORTED: u32 = 0x0002 | EXT_INCOMPAT_RECOVER | 0x0010;
/// sparse_super, large_file, btree_dir.
const EXT3_RO_COMPAT_SUPPORTED: u32 = 0x0001 | 0x0002 | 0x0004;

impl ExtDetails {
    /// metadata_csum is on.
    pub fn metadata_csum(&self) -> bool {
        self.feature_ro_compat & EXT_RO_COMPAT_METADATA_CSUM != 0
    }

    /// metadata_csum_seed is on (the checksum seed no longer follows the UUID).
    pub fn csum_seed(&self) -> bool {
        self.feature_incompat & EXT_INCOMPAT_CSUM_SEED != 0
    }

    /// stable_inodes is on.
    pub fn stable_inodes(&self) -> bool {
        self.feature_compat & EXT_COMPAT_STABLE_INODES != 0
    }

    /// The journal needs replaying (the copy was taken from a mounted fs).
    pub fn needs_recovery(&self) -> bool {
        self.feature_incompat & EXT_INCOMPAT_RECOVER != 0
    }

    /// Changing the UUID rewrites every metadata checksum (tune2fs then wants
    /// a freshly checked, unmounted filesystem).
    pub fn uuid_change_rewrites_checksums(&self) -> bool {
        !self.csum_seed()
            && (self.metadata_csum() || self.feature_incompat & EXT_INCOMPAT_EA_INODE != 0)
    }

    /// What tune2fs's `check_fsck_needed` accepts: valid, no errors, checked
    /// after the last mount.
    pub fn freshly_checked(&self) -> bool {
        self.state & 1 != 0 && self.state & 2 == 0 && self.lastcheck >= self.mtime
    }
}

/// btrfs superblock fields `grow` needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BtrfsDetails {
    /// `num_devices`: reroot handles single-device filesystems only.
    pub num_devices: u64,
    /// `dev_item.devid` of this device (the `devid:` of `btrfs filesystem resize`).
    pub devid: u64,
    /// `dev_item.total_bytes`: the part of this device the filesystem uses.
    pub dev_total_bytes: u64,
}

/// A filesystem found on a device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FsInfo {
    /// Which filesystem.
    pub kind: FsKind,
    /// UUID as 8-4-4-4-12 lowercase hex (ext `s_uuid`, xfs `sb_uuid`, btrfs `fsid`).
    pub uuid: String,
    /// Label (may be empty).
    pub label: String,
    /// Block size in bytes (btrfs: sector size).
    pub block_size: u32,
    /// Size of the filesystem in bytes (btrfs: the bytes it uses on this device).
    pub fs_bytes: u64,
    /// ext details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<ExtDetails>,
    /// btrfs details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btrfs: Option<BtrfsDetails>,
}

const EXT_SB_OFFSET: u64 = 1024;
const EXT_MAGIC: u16 = 0xEF53;
const XFS_MAGIC: &[u8; 4] = b"XFSB";
const BTRFS_SB_OFFSET: u64 = 0x1_0000;
const BTRFS_MAGIC: &[u8; 8] = b"_BHRfS_M";

/// Read the superblock at `offset`; `None` when the device is too short.
fn read_block(dev: &(impl ReadAt + ?Sized), offset: u64, len: usize) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; len];
    match dev.read_exact_at(&mut buf, offset) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io("reading a superblock", e).offset(offset)),
    }
}

// Fixed-offset readers; every offset used below is a constant well inside
// the buffers read above, so the slices cannot fail. `get` keeps it panic-free.
fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}
fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}
fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}
fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}
fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// 16 bytes as 8-4-4-4-12 lowercase hex.
pub fn format_uuid(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().take(16).enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// A NUL-terminated label field.
fn label(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Identify the filesystem on `dev`. `Ok(None)` when no known signature is
/// there; an error when a signature is present but its fields are impossible.
pub fn read(dev: &(impl ReadAt + ?Sized)) -> Result<Option<FsInfo>> {
    if let Some(sb) = read_block(dev, EXT_SB_OFFSET, 1024)? {
        if le16(&sb, 0x38) == EXT_MAGIC {
            let mut info = ext(&sb)?;
            // One ext2/3/4 rule for all of reroot: the ext parser's.
            if let Some(d) = crate::ext::detect(dev)? {
                info.kind = match d.kind {
                    crate::ext::ExtKind::Ext2 => FsKind::Ext2,
                    crate::ext::ExtKind::Ext3 => FsKind::Ext3,
                    crate::ext::ExtKind::Ext4 => FsKind::Ext4,
                };
            }
            return Ok(Some(info));
        }
    }
    if let Some(sb) = read_block(dev, 0, 512)? {
        if sb.get(..4) == Some(XFS_MAGIC.as_slice()) {
            return xfs(&sb).map(Some);
        }
    }
    if let Some(sb) = read_block(dev, BTRFS_SB_OFFSET, 4096)? {
        if sb.get(0x40..0x48) == Some(BTRFS_MAGIC.as_slice()) {
            return btrfs(&sb).map(Some);
        }
    }
    Ok(None)
}

fn ext(sb: &[u8]) -> Result<FsInfo> {
    let log = le32(sb, 0x18);
    if log > 6 {
        return Err(
            Error::corrupt(format!("ext s_log_block_size {log} is out of range"))
                .offset(1024 + 0x18),
        );
    }
    let block_size = 1024u32 << log;
    let (compat, incompat, ro) = (le32(sb, 0x5C), le32(sb, 0x60), le32(sb, 0x64));
    if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        return Err(Error::incompatible(
            "this is an external ext3/4 journal device, not a filesystem",
        ));
    }
    let hi = if incompat & EXT_INCOMPAT_64BIT != 0 {
        u64::from(le32(sb, 0x150))
    } else {
        0
    };
    let blocks_count = (hi << 32) | u64::from(le32(sb, 0x04));
    let fs_bytes = blocks_count
        .checked_mul(u64::from(block_size))
        .ok_or_else(|| Error::corrupt("ext s_blocks_count overflows").offset(1024 + 0x04))?;
    let kind = if incompat & !EXT3_INCOMPAT_SUPPORTED != 0 || ro & !EXT3_RO_COMPAT_SUPPORTED != 0 {
        FsKind::Ext4
    } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    let stamp = |lo: usize, hi: usize| u64::from(le32(sb, lo)) | (u64::from(byte(sb, hi)) << 32);
    Ok(FsInfo {
        kind,
        uuid: format_uuid(&sb[0x68..0x78]),
        label: label(&sb[0x78..0x88]),
        block_size,
        fs_bytes,
        ext: Some(ExtDetails {
            blocks_count,
            feature_compat: compat,
            feature_incompat: incompat,
            feature_ro_compat: ro,
            state: le16(sb, 0x3A),
            mtime: stamp(0x2C, 0x275),
            lastcheck: stamp(0x40, 0x277),
        }),
        btrfs: None,
    })
}

fn xfs(sb: &[u8]) -> Result<FsInfo> {
    let block_size = be32(sb, 4);
    if !(512..=65536).contains(&block_size) || !block_size.is_power_of_two() {
        return Err(Error::corrupt(format!("xfs sb_blocksize {block_size} is invalid")).offset(4));
    }
    let fs_bytes = be64(sb, 8)
        .checked_mul(u64::from(block_size))
        .ok_or_else(|| Error::corrupt("xfs sb_dblocks overflows").offset(8))?;
    Ok(FsInfo {
        kind: FsKind::Xfs,
        uuid: format_uuid(&sb[32..48]),
        label: label(&sb[108..120]),
        block_size,
        fs_bytes,
        ext: None,
        btrfs: None,
    })
}

fn btrfs(sb: &[u8]) -> Result<FsInfo> {
    let sectorsize = le32(sb, 0x90);
    if !(512..=65536).contains(&sectorsize) || !sectorsize.is_power_of_two() {
        return Err(
            Error::corrupt(format!("btrfs sectorsize {sectorsize} is invalid"))
                .offset(BTRFS_SB_OFFSET + 0x90),
        );
    }
    // dev_item starts at 0xc9: devid u64, total_bytes u64, ...
    let details = BtrfsDetails {
        num_devices: le64(sb, 0x88),
        devid: le64(sb, 0xc9),
        dev_total_bytes: le64(sb, 0xd1),
    };
    Ok(FsInfo {
        kind: FsKind::Btrfs,
        uuid: format_uuid(&sb[0x20..0x30]),
        label: label(&sb[0x12b..0x22b]),
        block_size: sectorsize,
        fs_bytes: details.dev_total_bytes,
        ext: None,
        btrfs: Some(details),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: [u8; 16] = [
        0x2e, 0x1f, 0xdd, 0x67, 0xa1, 0x3d, 0x45, 0xaf, 0xb9, 0x16, 0x94, 0xda, 0x3d, 0xaa, 0x38,
        0xb6,
    ];
    const UUID_TEXT: &str = "2e1fdd67-a13d-45af-b916-94da3daa38b6";

    fn ext_image(log: u32, blocks: u32, compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        let sb = &mut img[1024..2048];
        sb[0x04..0x08].copy_from_slice(&blocks.to_le_bytes());
        sb[0x18..0x1C].copy_from_slice(&log.to_le_bytes());
        sb[0x2C..0x30].copy_from_slice(&100u32.to_le_bytes());
        sb[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        sb[0x3A..0x3C].copy_from_slice(&1u16.to_le_bytes());
        sb[0x40..0x44].copy_from_slice(&100u32.to_le_bytes());
        sb[0x5C..0x60].copy_from_slice(&compat.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        sb[0x64..0x68].copy_from_slice(&ro.to_le_bytes());
        sb[0x68..0x78].copy_from_slice(&UUID);
        sb[0x78..0x7d].copy_from_slice(b"root\0");
        img
    }

    #[test]
    fn ext4_with_metadata_csum() {
        let img = ext_image(2, 65536, EXT_COMPAT_HAS_JOURNAL, 0x40 | 0x2, 0x400);
        let s = read(&img).unwrap().unwrap();
        assert_eq!(s.kind, FsKind::Ext4);
        assert_eq!(s.uuid, UUID_TEXT);
        assert_eq!(s.label, "root");
        assert_eq!(s.block_size, 4096);
        assert_eq!(s.fs_bytes, 65536 * 4096);
        let e = s.ext.unwrap();
        assert!(e.metadata_csum() && !e.csum_seed() && e.uuid_change_rewrites_checksums());
        assert!(e.freshly_checked());
    }

    #[test]
    fn ext2_ext3_and_64bit_block_count() {
        let s = read(&ext_image(0, 8192, 0, 0x2, 0x1)).unwrap().unwrap();
        assert_eq!(s.kind, FsKind::Ext2);
        let s = read(&ext_image(0, 8192, EXT_COMPAT_HAS_JOURNAL, 0x2, 0x1))
            .unwrap()
            .unwrap();
        assert_eq!(s.kind, FsKind::Ext3);
        let mut img = ext_image(2, 1, 0, EXT_INCOMPAT_64BIT, 0);
        img[1024 + 0x150..1024 + 0x154].copy_from_slice(&1u32.to_le_bytes());
        let s = read(&img).unwrap().unwrap();
        assert_eq!(s.ext.unwrap().blocks_count, (1 << 32) + 1);
        assert_eq!(s.kind, FsKind::Ext4);
    }

    #[test]
    fn ext_state_decides_freshly_checked() {
        let mut img = ext_image(2, 10, 0, 0, EXT_RO_COMPAT_METADATA_CSUM);
        img[1024 + 0x2C..1024 + 0x30].copy_from_slice(&200u32.to_le_bytes()); // mounted after check
        assert!(!read(&img).unwrap().unwrap().ext.unwrap().freshly_checked());
        let mut img = ext_image(2, 10, 0, 0, 0);
        img[1024 + 0x3A] = 3; // errors
        assert!(!read(&img).unwrap().unwrap().ext.unwrap().freshly_checked());
        let img = ext_image(
            2,
            10,
            0,
            EXT_INCOMPAT_CSUM_SEED,
            EXT_RO_COMPAT_METADATA_CSUM,
        );
        assert!(
            !read(&img)
                .unwrap()
                .unwrap()
                .ext
                .unwrap()
                .uuid_change_rewrites_checksums()
        );
    }

    #[test]
    fn ext_rejects_impossible_fields_and_journal_devices() {
        let e = read(&ext_image(9, 10, 0, 0, 0)).unwrap_err();
        assert!(matches!(e.kind(), crate::ErrorKind::Corrupt(_)), "{e}");
        let e = read(&ext_image(2, 10, 0, EXT_INCOMPAT_JOURNAL_DEV, 0)).unwrap_err();
        assert!(matches!(e.kind(), crate::ErrorKind::Incompatible(_)), "{e}");
    }

    #[test]
    fn xfs_superblock() {
        let mut img = vec![0u8; 4096];
        img[..4].copy_from_slice(XFS_MAGIC);
        img[4..8].copy_from_slice(&4096u32.to_be_bytes());
        img[8..16].copy_from_slice(&1000u64.to_be_bytes());
        img[32..48].copy_from_slice(&UUID);
        img[108..112].copy_from_slice(b"data");
        let s = read(&img).unwrap().unwrap();
        assert_eq!(
            (s.kind, s.uuid.as_str(), s.label.as_str(), s.fs_bytes),
            (FsKind::Xfs, UUID_TEXT, "data", 4_096_000)
        );
        img[4..8].copy_from_slice(&3000u32.to_be_bytes());
        assert!(read(&img).is_err());
    }

    #[test]
    fn btrfs_superblock() {
        let mut img = vec![0u8; 0x1_0000 + 4096];
        let sb = &mut img[0x1_0000..];
        sb[0x20..0x30].copy_from_slice(&UUID);
        sb[0x40..0x48].copy_from_slice(BTRFS_MAGIC);
        sb[0x88..0x90].copy_from_slice(&1u64.to_le_bytes());
        sb[0x90..0x94].copy_from_slice(&4096u32.to_le_bytes());
        sb[0xc9..0xd1].copy_from_slice(&1u64.to_le_bytes());
        sb[0xd1..0xd9].copy_from_slice(&(256u64 << 20).to_le_bytes());
        sb[0x12b..0x12f].copy_from_slice(b"home");
        let s = read(&img).unwrap().unwrap();
        assert_eq!(s.kind, FsKind::Btrfs);
        assert_eq!((s.uuid.as_str(), s.label.as_str()), (UUID_TEXT, "home"));
        assert_eq!(s.fs_bytes, 256 << 20);
        assert_eq!(s.btrfs.unwrap().devid, 1);
    }

    #[test]
    fn nothing_known_or_too_short() {
        assert_eq!(read(&vec![0u8; 200_000]).unwrap(), None);
        assert_eq!(read(&vec![0u8; 100]).unwrap(), None);
        assert_eq!(read(&Vec::new()).unwrap(), None);
    }
}
