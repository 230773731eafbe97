//! Group descriptors (`struct ext4_group_desc`, 32 or `s_desc_size` bytes):
//! the fields the map needs, and their checksums (`metadata_csum` CRC-32C
//! or `gdt_csum` CRC-16, as e2fsprogs' `ext2fs_group_desc_csum`).
//!
//! Pure: parses bytes already read; `map` does the I/O.

use super::crc::{crc16, crc32c};
use super::layout::{Checksums, Layout};
use super::le::Le;

// Field offsets inside `struct ext4_group_desc`.
pub(crate) const BG_BLOCK_BITMAP_LO: usize = 0x00;
pub(crate) const BG_INODE_BITMAP_LO: usize = 0x04;
pub(crate) const BG_INODE_TABLE_LO: usize = 0x08;
pub(crate) const BG_FLAGS: usize = 0x12;
pub(crate) const BG_BLOCK_BITMAP_CSUM_LO: usize = 0x18;
pub(crate) const BG_ITABLE_UNUSED_LO: usize = 0x1C;
pub(crate) const BG_CHECKSUM: usize = 0x1E;
pub(crate) const BG_BLOCK_BITMAP_HI: usize = 0x20;
pub(crate) const BG_INODE_BITMAP_HI: usize = 0x24;
pub(crate) const BG_INODE_TABLE_HI: usize = 0x28;
pub(crate) const BG_ITABLE_UNUSED_HI: usize = 0x32;
pub(crate) const BG_BLOCK_BITMAP_CSUM_HI: usize = 0x38;
/// `EXT4_BG_BLOCK_BITMAP_CSUM_HI_LOCATION`: descriptors at least this long
/// carry the high half of the bitmap checksum.
const BG_BLOCK_BITMAP_CSUM_HI_END: usize = 0x3A;

/// `EXT2_BG_INODE_UNINIT`: the inode bitmap was never written (no inode used).
pub(crate) const EXT2_BG_INODE_UNINIT: u16 = 0x0001;
/// `EXT2_BG_BLOCK_UNINIT`: the block bitmap was never written.
pub(crate) const EXT2_BG_BLOCK_UNINIT: u16 = 0x0002;
/// `EXT4_BG_INODE_ZEROED`: the inode table past the used inodes was zeroed
/// (by mke2fs, or by the kernel's lazyinit thread).
pub(crate) const EXT4_BG_INODE_ZEROED: u16 = 0x0004;

/// The fields of one group descriptor the map uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupDesc {
    pub bg_block_bitmap: u64,
    pub bg_inode_bitmap: u64,
    pub bg_inode_table: u64,
    pub bg_flags: u16,
    /// `bg_itable_unused_lo | hi << 16`: inodes at the end of the table
    /// never used since they were last initialised (meaningful only with
    /// descriptor checksums).
    pub bg_itable_unused: u32,
    /// `bg_block_bitmap_csum_lo | hi << 16` (the low half alone for short descriptors).
    pub bg_block_bitmap_csum: u32,
    /// Whether `bg_checksum` matched (true when there is no checksum).
    pub csum_ok: bool,
}

impl GroupDesc {
    /// Parse descriptor `group` from its `desc_size` bytes.
    pub(crate) fn parse(layout: &Layout, group: u64, raw: &[u8]) -> Self {
        let le = Le(raw);
        let wide = layout.desc_size >= 64;
        let mut csum = u32::from(le.u16(BG_BLOCK_BITMAP_CSUM_LO));
        if layout.desc_size >= BG_BLOCK_BITMAP_CSUM_HI_END {
            csum |= u32::from(le.u16(BG_BLOCK_BITMAP_CSUM_HI)) << 16;
        }
        Self {
            bg_block_bitmap: le.lo_hi(BG_BLOCK_BITMAP_LO, BG_BLOCK_BITMAP_HI, wide),
            bg_inode_bitmap: le.lo_hi(BG_INODE_BITMAP_LO, BG_INODE_BITMAP_HI, wide),
            bg_inode_table: le.lo_hi(BG_INODE_TABLE_LO, BG_INODE_TABLE_HI, wide),
            bg_flags: le.u16(BG_FLAGS),
            bg_itable_unused: u32::from(le.u16(BG_ITABLE_UNUSED_LO))
                | if wide {
                    u32::from(le.u16(BG_ITABLE_UNUSED_HI)) << 16
                } else {
                    0
                },
            bg_block_bitmap_csum: csum,
            csum_ok: desc_csum(layout, group, raw).is_none_or(|c| c == le.u16(BG_CHECKSUM)),
        }
    }

    /// `BLOCK_UNINIT` is set (meaningful only with descriptor checksums).
    pub(crate) fn block_uninit(&self) -> bool {
        self.bg_flags & EXT2_BG_BLOCK_UNINIT != 0
    }

    /// `INODE_UNINIT` is set (meaningful only with descriptor checksums).
    pub(crate) fn inode_uninit(&self) -> bool {
        self.bg_flags & EXT2_BG_INODE_UNINIT != 0
    }

    /// `INODE_ZEROED` is set (meaningful only with descriptor checksums).
    pub(crate) fn inode_zeroed(&self) -> bool {
        self.bg_flags & EXT4_BG_INODE_ZEROED != 0
    }
}

/// `ext2fs_group_desc_csum`: the checksum descriptor `group` should carry,
/// or `None` when the filesystem has none.
pub(crate) fn desc_csum(layout: &Layout, group: u64, raw: &[u8]) -> Option<u16> {
    // Group numbers are < 2^32 (checked in Layout::new); truncation is the format.
    #[allow(clippy::cast_possible_truncation)]
    let group_le = (group as u32).to_le_bytes();
    let before = raw.get(..BG_CHECKSUM).unwrap_or_default();
    let after = raw.get(BG_CHECKSUM.saturating_add(2)..).unwrap_or_default();
    match layout.checksums {
        Checksums::None => None,
        Checksums::MetadataCsum => {
            let c = crc32c(layout.csum_seed, &group_le);
            let c = crc32c(c, before);
            let c = crc32c(c, &[0, 0]);
            let c = crc32c(c, after);
            #[allow(clippy::cast_possible_truncation)] // the format keeps the low 16 bits
            Some(c as u16)
        }
        Checksums::GdtCsum => {
            let c = crc16(!0, &layout.sb.s_uuid);
            let c = crc16(c, &group_le);
            let c = crc16(c, before);
            Some(crc16(c, after))
        }
    }
}

/// `ext2fs_block_bitmap_csum_verify`: does `bitmap` (the group's
/// `clusters_per_group / 8` bytes) match the descriptor's checksum?
pub(crate) fn block_bitmap_csum_ok(layout: &Layout, d: &GroupDesc, bitmap: &[u8]) -> bool {
    if layout.checksums != Checksums::MetadataCsum {
        return true;
    }
    let mut c = crc32c(layout.csum_seed, bitmap);
    if layout.desc_size < BG_BLOCK_BITMAP_CSUM_HI_END {
        c &= 0xFFFF;
    }
    c == d.bg_block_bitmap_csum
}
