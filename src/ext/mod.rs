//! ext2/3/4 on-disk parsing: superblock, group descriptors and block bitmaps,
//! turned into the [`ExtentList`] of bytes the filesystem uses.
//!
//! Imports only `units` and `error`; reads through [`ReadAt`]. Never touches
//! `sys`. Every on-disk field is read at an explicit little-endian offset with
//! checked arithmetic; corrupt input is an error, never a panic.
//!
//! Files: `superblock` (fields, features), `layout` (validated geometry and
//! e2fsprogs' placement rules), `desc` (group descriptors, their checksums),
//! `bitmap` (bit runs), `crc` (CRC-32C, CRC-16), `le` (field access),
//! `itable` (inode-table tails and what the fs assumes about them), `map`
//! (the I/O and assembly).

#![warn(clippy::arithmetic_side_effects)]

mod bitmap;
mod crc;
mod desc;
mod itable;
mod layout;
mod le;
mod map;
mod read_at;
mod superblock;

pub use layout::Checksums;
pub use read_at::ReadAt;
pub use superblock::ExtKind;

use crate::error::{Error, Result};
use crate::units::ExtentList;
use superblock::{EXT4_SUPER_MAGIC, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, Superblock};

/// How strict the map is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Accept bitmaps and descriptors whose checksums fail.
    pub ignore_csum: bool,
    /// Accept a filesystem whose journal needs recovery (mounted read-write):
    /// the map is then a best-effort snapshot, not a consistent one.
    pub live: bool,
}

/// Geometry and identity of an ext filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    /// ext2, ext3 or ext4 (blkid's rule: journal, then ext4-only features).
    pub kind: ExtKind,
    /// Block size in bytes.
    pub block_size: u32,
    /// Allocation unit in bytes: the block size, or the bigalloc cluster size.
    pub cluster_size: u32,
    /// Blocks in the filesystem (`s_blocks_count`).
    pub blocks_count: u64,
    /// Filesystem size in bytes (`blocks_count * block_size`).
    pub fs_bytes: u64,
    /// First block of group 0 (`s_first_data_block`: 1 with 1 KiB blocks, else 0).
    pub first_data_block: u64,
    /// `s_blocks_per_group`.
    pub blocks_per_group: u32,
    /// `s_clusters_per_group` (bits per block bitmap).
    pub clusters_per_group: u32,
    /// Number of block groups.
    pub groups_count: u32,
    /// Groups flagged `BLOCK_UNINIT` (no bitmap on disk; metadata computed).
    pub block_uninit_groups: u32,
    /// `s_inodes_count`.
    pub inodes_count: u32,
    /// `s_inodes_per_group`.
    pub inodes_per_group: u32,
    /// Inode size in bytes.
    pub inode_size: u32,
    /// Free blocks according to the superblock (may lag while mounted).
    pub free_blocks_count: u64,
    /// Group descriptor size in bytes (32, or `s_desc_size` with 64bit).
    pub desc_size: u32,
    /// `s_reserved_gdt_blocks` (room for online growth).
    pub reserved_gdt_blocks: u32,
    /// Groups per flex group, with flex_bg.
    pub flex_bg_size: Option<u32>,
    /// `s_first_meta_bg`, with meta_bg.
    pub first_meta_bg: Option<u32>,
    /// `s_backup_bgs`, with sparse_super2.
    pub backup_bgs: Option<[u32; 2]>,
    /// Feature names as e2fsprogs spells them (`has_journal`, `extent`, ...).
    pub features: Vec<String>,
    /// Which checksums protect the metadata (all were verified unless a warning says so).
    pub checksums: Checksums,
    /// `s_state` in e2fsprogs' words: "clean", "not clean", "... with errors".
    pub state: String,
    /// The journal needs recovery (mounted read-write, or a crash).
    pub needs_recovery: bool,
    /// Byte offset of the superblock the map was built from (1024 = primary).
    pub superblock_offset: u64,
    /// Filesystem UUID, formatted as 8-4-4-4-12 hex.
    pub uuid: String,
    /// Volume label (may be empty).
    pub label: String,
}

impl Geometry {
    fn from_layout(l: &layout::Layout, block_uninit_groups: usize) -> Self {
        use superblock::{COMPAT_SPARSE_SUPER2, INCOMPAT_FLEX_BG, INCOMPAT_META_BG};
        let sb = &l.sb;
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            kind: sb.kind(),
            block_size: small(l.block_size),
            cluster_size: small(l.block_size.saturating_mul(l.cluster_ratio())),
            blocks_count: l.blocks_count,
            fs_bytes: l.fs_bytes(),
            first_data_block: l.first_data_block,
            blocks_per_group: small(l.blocks_per_group),
            clusters_per_group: small(l.clusters_per_group),
            groups_count: small(l.groups),
            block_uninit_groups: u32::try_from(block_uninit_groups).unwrap_or(u32::MAX),
            inodes_count: sb.s_inodes_count,
            inodes_per_group: sb.s_inodes_per_group,
            inode_size: if sb.s_rev_level == 0 {
                128
            } else {
                u32::from(sb.s_inode_size)
            },
            free_blocks_count: sb.s_free_blocks_count,
            desc_size: small(l.desc_size as u64),
            reserved_gdt_blocks: u32::from(sb.s_reserved_gdt_blocks),
            flex_bg_size: sb.has_incompat(INCOMPAT_FLEX_BG).then(|| {
                1u32.checked_shl(u32::from(sb.s_log_groups_per_flex))
                    .unwrap_or(0)
            }),
            first_meta_bg: sb
                .has_incompat(INCOMPAT_META_BG)
                .then_some(sb.s_first_meta_bg),
            backup_bgs: sb
                .has_compat(COMPAT_SPARSE_SUPER2)
                .then_some(sb.s_backup_bgs),
            features: sb.feature_names(),
            checksums: l.checksums,
            state: sb.state_string(),
            needs_recovery: sb.needs_recovery(),
            superblock_offset: l.sb_offset,
            uuid: sb.uuid_string(),
            label: sb.label(),
        }
    }
}

/// The used-block map of a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FsMap {
    /// Geometry and identity.
    pub geometry: Geometry,
    /// Byte ranges in use, sorted and merged, inside `[0, fs_bytes)`.
    ///
    /// Always includes `[0, 2048)` (boot area and primary superblock) and,
    /// with 1 KiB blocks, everything before `first_data_block`; then every
    /// block (bigalloc: every cluster) the bitmaps mark, plus the metadata
    /// of `BLOCK_UNINIT` groups computed as e2fsprogs does.
    pub used: ExtentList,
    /// The parts of `used` that are inode-table blocks past the last inode
    /// in use (`bg_itable_unused`), by what the filesystem assumes of them.
    pub itable_tails: ItableTails,
    /// Things the operator should know (backup superblock used, live map, ...).
    pub warnings: Vec<String>,
}

/// Inode-table blocks past the last inode in use, in groups whose
/// descriptors carry a trusted `bg_itable_unused` (`uninit_bg` or
/// `metadata_csum`). See `src/ext/itable.rs` for the rule and the kernel and
/// e2fsprogs sources it rests on.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ItableTails {
    /// Groups flagged `INODE_ZEROED`: read again once an inode there is
    /// allocated, and taken as unused inodes, so a copy must hold zeros (or
    /// the source's bytes) here.
    pub zeroed: ExtentList,
    /// Groups not yet zeroed: the kernel's lazyinit zeroes them at the
    /// first read-write mount before anything reads them; any content does.
    pub lazy: ExtentList,
}

impl FsMap {
    /// The bytes whose content matters: `used` without the inode-table tails.
    pub fn data(&self) -> ExtentList {
        self.used
            .subtract(&self.itable_tails.zeroed)
            .subtract(&self.itable_tails.lazy)
    }
}

/// Read the used-block map of the ext2/3/4 filesystem on `dev`.
///
/// A primary superblock that has the ext magic but is damaged (fields that
/// do not add up, a bad checksum) is replaced by the first valid backup, with
/// a warning. One without the magic is an error even when backups survive
/// (another filesystem made over an old ext one keeps them); the hint names
/// the backup for `e2fsck -b`.
///
/// Errors: [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) (bad magic,
/// inconsistent sizes, metadata outside the fs, failed checksums unless
/// `ignore_csum`), [`ErrorKind::Incompatible`](crate::ErrorKind::Incompatible)
/// (unknown INCOMPAT or RO_COMPAT features),
/// [`ErrorKind::NeedsRecovery`](crate::ErrorKind::NeedsRecovery) (stale
/// bitmaps, unless `live`), [`ErrorKind::Io`](crate::ErrorKind::Io). Offsets
/// are in the error context; the caller adds the device path.
pub fn read_map(dev: &(impl ReadAt + ?Sized), opts: &MapOptions) -> Result<FsMap> {
    map::read_map(dev, opts)
}

/// What a cheap look at the primary superblock says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Detected {
    /// ext2, ext3 or ext4.
    pub kind: ExtKind,
    /// `s_blocks_count * block size`, when the block size field is sane.
    pub fs_bytes: Option<u64>,
    /// The journal needs recovery (the fs is mounted read-write, or crashed).
    pub needs_recovery: bool,
}

/// Does `dev` hold an ext2/3/4 filesystem? Reads 1 KiB; checks only the
/// primary superblock's magic, so `Some` can still fail [`read_map`] as
/// corrupt. `None` means: not ext (copy it whole).
///
/// A device whose primary superblock is gone gives `None` even if backup
/// superblocks survive: another filesystem made over an old ext one often
/// keeps them, and a full copy is right for both cases.
pub fn detect(dev: &(impl ReadAt + ?Sized)) -> Result<Option<Detected>> {
    let size = dev
        .size()
        .map_err(|e| Error::io("finding the device size", e))?;
    if size < SUPERBLOCK_OFFSET.saturating_add(SUPERBLOCK_SIZE as u64) {
        return Ok(None);
    }
    let mut raw = [0u8; SUPERBLOCK_SIZE];
    dev.read_exact_at(&mut raw, SUPERBLOCK_OFFSET)
        .map_err(|e| Error::io("reading the superblock", e).offset(SUPERBLOCK_OFFSET))?;
    let sb = Superblock::parse(&raw);
    if sb.s_magic != EXT4_SUPER_MAGIC {
        return Ok(None);
    }
    let fs_bytes = (sb.s_log_block_size <= 6)
        .then(|| {
            sb.s_blocks_count
                .checked_mul(1024u64 << sb.s_log_block_size)
        })
        .flatten();
    Ok(Some(Detected {
        kind: sb.kind(),
        fs_bytes,
        needs_recovery: sb.needs_recovery(),
    }))
}

#[cfg(test)]
mod tests;
