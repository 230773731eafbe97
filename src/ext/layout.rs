//! The geometry derived from a superblock, validated: block and cluster
//! sizes, group count, descriptor size and count; and e2fsprogs' placement
//! rules (`ext2fs_bg_has_super`, `ext2fs_super_and_bgd_loc2`,
//! `ext2fs_descriptor_block_loc2`) for superblock and descriptor copies.
//!
//! After [`Layout::new`] succeeds every block number below `blocks_count`
//! times the block size fits the device, so the helpers' arithmetic cannot
//! overflow; they still use checked or saturating operations.

use super::superblock::*;
use crate::error::{Error, Result};

/// Most groups reroot accepts: 4 Mi groups is 512 TiB with 4 KiB blocks.
/// Per-group state costs about 40 bytes, so this bounds memory at ~160 MiB
/// whatever the superblock claims.
pub(crate) const MAX_GROUPS: u64 = 1 << 22;

/// Which checksums protect the group descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksums {
    /// None (ext2/ext3, or ext4 without `uninit_bg`/`metadata_csum`).
    None,
    /// `uninit_bg` (`gdt_csum`): CRC-16 of each group descriptor.
    GdtCsum,
    /// `metadata_csum`: CRC-32C of superblock, descriptors and bitmaps.
    MetadataCsum,
}

/// Validated geometry and the placement rules of one filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub sb: Superblock,
    /// Byte offset of the superblock this layout was read from.
    pub sb_offset: u64,
    pub block_size: u64,
    /// log2(cluster size / block size).
    pub cluster_bits: u32,
    pub blocks_count: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub clusters_per_group: u64,
    pub groups: u64,
    pub desc_size: usize,
    pub desc_per_block: u64,
    pub desc_blocks: u64,
    pub inode_blocks_per_group: u64,
    pub checksums: Checksums,
    pub csum_seed: u32,
}

fn corrupt_at(at: u64, field: usize, msg: String) -> Error {
    Error::corrupt(msg)
        .offset(at.saturating_add(field as u64))
        .hint("the superblock is damaged: run `e2fsck -n` on the device to see more")
}

/// `ceil(a / b)` for `b > 0`.
pub(crate) fn div_ceil(a: u64, b: u64) -> u64 {
    a.checked_div(b)
        .unwrap_or(0)
        .saturating_add(u64::from(a.checked_rem(b).unwrap_or(0) != 0))
}

impl Layout {
    /// Check the superblock read at byte `sb_offset` against itself and
    /// against a device of `dev_size` bytes. The superblock checksum is not
    /// judged here (see [`Superblock::checksum_ok`]).
    pub(crate) fn new(sb: Superblock, sb_offset: u64, dev_size: u64) -> Result<Self> {
        let at = sb_offset;
        if sb.s_magic != EXT4_SUPER_MAGIC {
            return Err(Error::corrupt(format!(
                "bad superblock magic {:#06x} (ext2/3/4 has {EXT4_SUPER_MAGIC:#06x})",
                sb.s_magic
            ))
            .offset(at.saturating_add(S_MAGIC as u64))
            .hint("is this an ext2/3/4 filesystem? `blkid` on the device tells what it holds"));
        }
        if sb.s_rev_level > 1 {
            return Err(Error::incompatible(format!(
                "superblock revision {} (reroot knows 0 and 1)",
                sb.s_rev_level
            ))
            .offset(at.saturating_add(S_REV_LEVEL as u64)));
        }
        if sb.has_incompat(INCOMPAT_JOURNAL_DEV) {
            return Err(Error::incompatible(
                "this is an external ext3/4 journal device, not a filesystem",
            )
            .offset(at.saturating_add(S_FEATURE_INCOMPAT as u64))
            .hint("copy the filesystem that uses this journal, or copy the journal device whole"));
        }
        let bad = sb.unsupported_incompat();
        if !bad.is_empty() {
            return Err(Error::incompatible(format!(
                "unknown or unsupported INCOMPAT features: {}",
                bad.join(" ")
            ))
            .offset(at.saturating_add(S_FEATURE_INCOMPAT as u64))
            .hint(
                "reroot cannot read this filesystem's block map; a full copy (--full) still works",
            ));
        }
        let bad = sb.unknown_ro_compat();
        if !bad.is_empty() {
            return Err(Error::incompatible(format!(
                "unknown RO_COMPAT features: {} (they may change what the block bitmaps mean)",
                bad.join(" ")
            ))
            .offset(at.saturating_add(S_FEATURE_RO_COMPAT as u64))
            .hint(
                "reroot cannot trust this filesystem's block map; a full copy (--full) still works",
            ));
        }

        if sb.s_log_block_size > 6 {
            return Err(corrupt_at(
                at,
                S_LOG_BLOCK_SIZE,
                format!(
                    "s_log_block_size {} (block size above 64 KiB)",
                    sb.s_log_block_size
                ),
            ));
        }
        let block_size = 1024u64 << sb.s_log_block_size;
        let bigalloc = sb.has_ro_compat(RO_COMPAT_BIGALLOC);
        let cluster_bits = if bigalloc {
            if sb.s_log_cluster_size < sb.s_log_block_size || sb.s_log_cluster_size > 19 {
                return Err(corrupt_at(
                    at,
                    S_LOG_CLUSTER_SIZE,
                    format!(
                        "s_log_cluster_size {} does not fit s_log_block_size {}",
                        sb.s_log_cluster_size, sb.s_log_block_size
                    ),
                ));
            }
            sb.s_log_cluster_size.saturating_sub(sb.s_log_block_size)
        } else {
            if sb.s_log_cluster_size != sb.s_log_block_size {
                return Err(corrupt_at(
                    at,
                    S_LOG_CLUSTER_SIZE,
                    format!(
                        "s_log_cluster_size {} differs from s_log_block_size {} without bigalloc",
                        sb.s_log_cluster_size, sb.s_log_block_size
                    ),
                ));
            }
            0
        };

        let inode_size = if sb.s_rev_level == 0 {
            128
        } else {
            u64::from(sb.s_inode_size)
        };
        if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
            return Err(corrupt_at(
                at,
                S_INODE_SIZE,
                format!("s_inode_size {inode_size}"),
            ));
        }

        let is_64bit = sb.has_incompat(INCOMPAT_64BIT);
        let desc_size: usize = if is_64bit {
            let d = usize::from(sb.s_desc_size);
            if !(64..=1024).contains(&d) || !d.is_power_of_two() {
                return Err(corrupt_at(
                    at,
                    S_DESC_SIZE,
                    format!("s_desc_size {d} with 64bit"),
                ));
            }
            d
        } else {
            32
        };

        let bits_per_bitmap = block_size.saturating_mul(8);
        let cpg = u64::from(sb.s_clusters_per_group);
        if cpg < 8 || cpg > bits_per_bitmap || cpg % 8 != 0 {
            return Err(corrupt_at(
                at,
                S_CLUSTERS_PER_GROUP,
                format!(
                    "s_clusters_per_group {cpg} (must be a multiple of 8 up to {bits_per_bitmap})"
                ),
            ));
        }
        let bpg = u64::from(sb.s_blocks_per_group);
        if cpg.checked_shl(cluster_bits) != Some(bpg) {
            return Err(corrupt_at(
                at,
                S_BLOCKS_PER_GROUP,
                format!(
                    "s_blocks_per_group {bpg} is not s_clusters_per_group {cpg} times the cluster ratio {}",
                    1u64 << cluster_bits
                ),
            ));
        }
        let ipg = u64::from(sb.s_inodes_per_group);
        if ipg == 0 || ipg > bits_per_bitmap {
            return Err(corrupt_at(
                at,
                S_INODES_PER_GROUP,
                format!("s_inodes_per_group {ipg}"),
            ));
        }
        let inode_blocks_per_group = div_ceil(ipg.saturating_mul(inode_size), block_size);

        let blocks_count = sb.s_blocks_count;
        let first_data_block = u64::from(sb.s_first_data_block);
        if first_data_block >= blocks_count {
            return Err(corrupt_at(
                at,
                S_FIRST_DATA_BLOCK,
                format!(
                    "s_first_data_block {first_data_block} is not below s_blocks_count {blocks_count}"
                ),
            ));
        }
        // Group 0 starts right after the boot sector's kilobyte: block 1 with
        // 1 KiB blocks (and clusters), else block 0. Anything else shifts
        // every group by a block; e2fsck's check_super_block requires
        // exactly this ("first_data_block ... should have been ...").
        let should_be = u64::from(block_size == 1024 && !bigalloc);
        if first_data_block != should_be {
            return Err(corrupt_at(
                at,
                S_FIRST_DATA_BLOCK,
                format!(
                    "s_first_data_block {first_data_block} with {block_size}-byte blocks{} (must be {should_be})",
                    if bigalloc { " and bigalloc" } else { "" }
                ),
            ));
        }
        let fs_bytes = blocks_count.checked_mul(block_size).ok_or_else(|| {
            corrupt_at(
                at,
                S_BLOCKS_COUNT_LO,
                format!("s_blocks_count {blocks_count} overflows"),
            )
        })?;
        if fs_bytes > dev_size {
            return Err(Error::corrupt(format!(
                "the filesystem claims {fs_bytes} bytes ({blocks_count} blocks of {block_size}) \
                 but the device has only {dev_size}"
            ))
            .offset(at.saturating_add(S_BLOCKS_COUNT_LO as u64))
            .hint(
                "the device was truncated, or the superblock is damaged: check with `e2fsck -n`",
            ));
        }
        let groups = div_ceil(blocks_count.saturating_sub(first_data_block), bpg);
        if groups > MAX_GROUPS {
            return Err(corrupt_at(
                at,
                S_BLOCKS_COUNT_LO,
                format!("{groups} block groups (reroot accepts at most {MAX_GROUPS})"),
            ));
        }
        if groups.checked_mul(ipg) != Some(u64::from(sb.s_inodes_count)) {
            return Err(corrupt_at(
                at,
                S_INODES_COUNT,
                format!(
                    "s_inodes_count {} is not {groups} groups times s_inodes_per_group {ipg}",
                    sb.s_inodes_count
                ),
            ));
        }
        let desc_per_block = block_size.checked_div(desc_size as u64).unwrap_or(1);
        let desc_blocks = div_ceil(groups, desc_per_block);
        if sb.has_incompat(INCOMPAT_META_BG) && u64::from(sb.s_first_meta_bg) > desc_blocks {
            return Err(corrupt_at(
                at,
                S_FIRST_META_BG,
                format!(
                    "s_first_meta_bg {} beyond the {desc_blocks} descriptor blocks",
                    sb.s_first_meta_bg
                ),
            ));
        }
        if u64::from(sb.s_reserved_gdt_blocks) > block_size / 4 {
            return Err(corrupt_at(
                at,
                S_RESERVED_GDT_BLOCKS,
                format!("s_reserved_gdt_blocks {}", sb.s_reserved_gdt_blocks),
            ));
        }
        if sb.has_incompat(INCOMPAT_FLEX_BG) && sb.s_log_groups_per_flex > 31 {
            return Err(corrupt_at(
                at,
                S_LOG_GROUPS_PER_FLEX,
                format!("s_log_groups_per_flex {}", sb.s_log_groups_per_flex),
            ));
        }
        let checksums = if sb.has_ro_compat(RO_COMPAT_METADATA_CSUM) {
            if sb.s_checksum_type != 1 {
                return Err(corrupt_at(
                    at,
                    S_CHECKSUM_TYPE,
                    format!(
                        "s_checksum_type {} (only 1, crc32c, exists)",
                        sb.s_checksum_type
                    ),
                ));
            }
            Checksums::MetadataCsum
        } else if sb.has_ro_compat(RO_COMPAT_GDT_CSUM) {
            Checksums::GdtCsum
        } else {
            Checksums::None
        };
        let csum_seed = sb.csum_seed();
        Ok(Self {
            sb,
            sb_offset,
            block_size,
            cluster_bits,
            blocks_count,
            first_data_block,
            blocks_per_group: bpg,
            clusters_per_group: cpg,
            groups,
            desc_size,
            desc_per_block,
            desc_blocks,
            inode_blocks_per_group,
            checksums,
            csum_seed,
        })
    }

    /// Bytes in the filesystem.
    pub(crate) fn fs_bytes(&self) -> u64 {
        self.blocks_count.saturating_mul(self.block_size)
    }

    /// Byte offset of block `b`.
    pub(crate) fn byte(&self, b: u64) -> u64 {
        b.saturating_mul(self.block_size)
    }

    /// Blocks per cluster.
    pub(crate) fn cluster_ratio(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// The block the superblock sits in (1 with 1 KiB blocks, else 0).
    pub(crate) fn superblock_block(&self) -> u64 {
        SUPERBLOCK_OFFSET.checked_div(self.block_size).unwrap_or(0)
    }

    /// `ext2fs_group_first_block2`.
    pub(crate) fn group_first_block(&self, g: u64) -> u64 {
        self.first_data_block
            .saturating_add(g.saturating_mul(self.blocks_per_group))
    }

    /// One past the last block of group `g` (clamped to the filesystem).
    pub(crate) fn group_end_block(&self, g: u64) -> u64 {
        self.group_first_block(g)
            .saturating_add(self.blocks_per_group)
            .min(self.blocks_count)
    }

    fn has_meta_bg(&self) -> bool {
        self.sb.has_incompat(INCOMPAT_META_BG)
    }

    /// `ext2fs_bg_has_super`: does group `g` hold a superblock copy?
    pub(crate) fn bg_has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.sb.has_compat(COMPAT_SPARSE_SUPER2) {
            return self.sb.s_backup_bgs.iter().any(|&b| u64::from(b) == g);
        }
        if g <= 1 || !self.sb.has_ro_compat(RO_COMPAT_SPARSE_SUPER) {
            return true;
        }
        if g % 2 == 0 {
            return false;
        }
        is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
    }

    /// Descriptor blocks before the meta_bg ones (plus the reserved GDT
    /// blocks without meta_bg): what follows each old-style superblock copy.
    pub(crate) fn old_desc_blocks(&self) -> u64 {
        if self.has_meta_bg() {
            u64::from(self.sb.s_first_meta_bg)
        } else {
            self.desc_blocks
                .saturating_add(u64::from(self.sb.s_reserved_gdt_blocks))
        }
    }

    /// `ext2fs_super_and_bgd_loc2`: the superblock copy, old-style
    /// descriptor table copy (first block, count) and meta_bg descriptor
    /// block that group `g` holds, if any.
    pub(crate) fn super_and_bgd_loc(
        &self,
        g: u64,
    ) -> (Option<u64>, Option<(u64, u64)>, Option<u64>) {
        let mut group_block = self.group_first_block(g);
        if group_block == 0 && self.block_size == 1024 {
            group_block = 1; // 1 KiB blocks with bigalloc: block 0 is the boot block
        }
        let has_super = self.bg_has_super(g);
        let super_blk = has_super.then_some(group_block);
        let meta_bg = g.checked_div(self.desc_per_block).unwrap_or(0);
        let mut old_desc = None;
        let mut new_desc = None;
        if !self.has_meta_bg() || meta_bg < u64::from(self.sb.s_first_meta_bg) {
            if has_super {
                let start = group_block.saturating_add(1);
                // Clamp as ext2fs_reserve_super_and_bgd does.
                let n = self
                    .old_desc_blocks()
                    .min(self.blocks_count.saturating_sub(start));
                old_desc = (n > 0).then_some((start, n));
            }
        } else {
            let r = g.checked_rem(self.desc_per_block).unwrap_or(0);
            if r == 0 || r == 1 || r == self.desc_per_block.saturating_sub(1) {
                new_desc = Some(group_block.saturating_add(u64::from(has_super)));
            }
        }
        (super_blk, old_desc, new_desc)
    }

    /// `ext2fs_descriptor_block_loc2`: where descriptor block `i` is read
    /// from, for the superblock in block `group_block` (the primary's
    /// `s_first_data_block`, or a backup's block).
    pub(crate) fn descriptor_block_loc(&self, group_block: u64, i: u64) -> u64 {
        let primary = group_block == self.first_data_block;
        // 1 KiB blocks with bigalloc: the primary superblock is in block 1.
        let zero_adjust = u64::from(primary && group_block == 0 && self.block_size == 1024);
        if !self.has_meta_bg() || i < u64::from(self.sb.s_first_meta_bg) {
            return group_block
                .saturating_add(zero_adjust)
                .saturating_add(1)
                .saturating_add(i);
        }
        let bg = self.desc_per_block.saturating_mul(i);
        let mut has_super = u64::from(self.bg_has_super(bg));
        let mut blk = self.group_first_block(bg);
        if !primary
            && blk
                .saturating_add(has_super)
                .saturating_add(self.blocks_per_group)
                < self.blocks_count
        {
            // Backup: the copy in the meta group's second group.
            blk = blk.saturating_add(self.blocks_per_group);
            has_super = u64::from(self.bg_has_super(bg.saturating_add(1)));
        }
        let adjust = u64::from(i == 0 && self.block_size == 1024 && self.cluster_bits > 0);
        blk.saturating_add(has_super).saturating_add(adjust)
    }
}

/// Is `a` a power of `b` (b^0 = 1 excluded, as e2fsprogs' `test_root`)?
fn is_power_of(mut a: u64, b: u64) -> bool {
    loop {
        if a < b {
            return false;
        }
        if a == b {
            return true;
        }
        match (a.checked_rem(b), a.checked_div(b)) {
            (Some(0), Some(q)) => a = q,
            _ => return false,
        }
    }
}

/// Where backup superblocks are searched when the primary is unusable: group
/// 1 for each block size with the default group size (`8 * block_size`
/// blocks), as `e2fsck` does, preceded by the group 1 the damaged primary
/// itself describes when its numbers look plausible.
pub(crate) fn backup_candidates(damaged: &Superblock, dev_size: u64) -> Vec<u64> {
    let mut v = Vec::new();
    if damaged.s_log_block_size <= 6 && damaged.s_blocks_per_group >= 8 {
        let bs = 1024u64 << damaged.s_log_block_size;
        let blk = u64::from(damaged.s_first_data_block)
            .saturating_add(u64::from(damaged.s_blocks_per_group));
        v.push(blk.saturating_mul(bs));
    }
    for log in 0..=6u32 {
        let bs = 1024u64 << log;
        let fdb = u64::from(bs == 1024);
        v.push(fdb.saturating_add(bs.saturating_mul(8)).saturating_mul(bs));
    }
    let mut seen = Vec::new();
    v.retain(|&off| {
        let fits = off > SUPERBLOCK_OFFSET
            && off.saturating_add(SUPERBLOCK_SIZE as u64) <= dev_size
            && !seen.contains(&off);
        seen.push(off);
        fits
    });
    v
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn powers() {
        let yes: Vec<u64> = (2..400)
            .filter(|&g| is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7))
            .collect();
        assert_eq!(yes, vec![3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343]);
        assert!(!is_power_of(1, 3));
    }

    #[test]
    fn ceil_division() {
        assert_eq!(div_ceil(0, 8), 0);
        assert_eq!(div_ceil(1, 8), 1);
        assert_eq!(div_ceil(16, 8), 2);
        assert_eq!(div_ceil(17, 8), 3);
        assert_eq!(div_ceil(5, 0), 0);
    }
}
