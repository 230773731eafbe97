//! Inode-table tails: the blocks of a group's inode table past the last
//! inode in use, which the block bitmap marks used but which hold nothing
//! the filesystem needs, and what it assumes about their content.
//!
//! Pure: works on descriptors and inode bitmaps already read; `map` does the I/O.
//!
//! # The rule, and where it comes from
//!
//! With descriptor checksums (`uninit_bg` = `RO_COMPAT_GDT_CSUM`, or
//! `metadata_csum`) every group descriptor carries `bg_itable_unused`: the
//! inodes at the end of the table that are not in use. It is trusted only
//! when the descriptor's checksum is good (the kernel refuses to mount
//! otherwise). Readers honour it:
//!
//! - e2fsprogs' inode scan (`lib/ext2fs/inode.c`, `get_next_blockgroup` with
//!   `EXT2_SF_DO_LAZY`, set whenever the fs has descriptor checksums) reads
//!   only `s_inodes_per_group - bg_itable_unused` inodes of a group, and
//!   none of a group flagged `EXT2_BG_INODE_UNINIT`. e2fsck's pass 1 is that
//!   scan, so it never looks at a tail.
//! - The kernel (`fs/ext4/ialloc.c`, `__ext4_new_inode`) clears
//!   `INODE_UNINIT` and shrinks `bg_itable_unused` when it allocates an inode
//!   in the tail; from then on the inodes below the new boundary are scanned
//!   again, the unused ones among them included. They must then look unused.
//! - The kernel's lazyinit thread (`ext4_init_inode_table`, called for every
//!   group without `EXT4_BG_INODE_ZEROED` on a read-write mount unless
//!   `noinit_itable`) zeroes the table past the used blocks
//!   (`DIV_ROUND_UP(ipg - itable_unused, inodes_per_block)`, or the whole
//!   table for an `INODE_UNINIT` group) and then sets `INODE_ZEROED`.
//!   mke2fs sets `INODE_ZEROED` when it zeroed the tables itself
//!   (`lazy_itable_init=0`, or a device whose discard zeroes).
//! - e2fsprogs' `ext2fs_set_gdt_csum` (`lib/ext2fs/csum.c`), run when e2fsck
//!   or tune2fs write the descriptors, recomputes `bg_itable_unused` from
//!   the inode bitmap (the last inode in use), so a tail may also hold old,
//!   deleted inodes: valid unused inodes, not zeros.
//!
//! So a tail in a group with `INODE_ZEROED` must read, on the copy, as
//! zeros or as the source's bytes (both are unused inodes); a tail in a
//! group without it may hold anything, because the first read-write mount
//! zeroes it before the flag is set, exactly as it would on the source.
//!
//! A tail is cut at whole blocks: the block holding the last used inode is
//! data. As a safety net against an inconsistent descriptor, a group whose
//! inode bitmap marks an inode inside its tail gets no tail at all.

use super::desc::GroupDesc;
use super::layout::{Checksums, Layout, div_ceil};

/// The unused end of one group's inode table, in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    /// First block past the blocks holding used inodes.
    pub first_block: u64,
    /// Blocks up to the end of the table (at least 1).
    pub blocks: u64,
    /// Inodes in use according to the descriptor (the bitmap may say no
    /// inode at or past this index is in use; see [`bitmap_agrees`]).
    pub used_inodes: u64,
    /// The group carries `INODE_ZEROED`: the tail must read as zeros (or as
    /// the source's bytes) on a copy.
    pub zeroed: bool,
}

/// Why a group with a checksummed descriptor gets no tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoTail {
    /// The filesystem or this descriptor gives no trustworthy `bg_itable_unused`.
    Untrusted,
    /// Every block of the table holds a used inode.
    Full,
    /// `bg_itable_unused` exceeds `s_inodes_per_group`: damaged descriptor.
    Corrupt(u32),
}

/// The tail of group `d`'s inode table. `trusted`: the descriptor came from
/// the primary table and its checksum matched.
pub(crate) fn tail(l: &Layout, d: &GroupDesc, trusted: bool) -> Result<Tail, NoTail> {
    if l.checksums == Checksums::None || !trusted || !d.csum_ok {
        return Err(NoTail::Untrusted);
    }
    let ipg = u64::from(l.sb.s_inodes_per_group);
    let used_inodes = if d.inode_uninit() {
        0
    } else {
        ipg.checked_sub(u64::from(d.bg_itable_unused))
            .ok_or(NoTail::Corrupt(d.bg_itable_unused))?
    };
    let inode_size = if l.sb.s_rev_level == 0 {
        128
    } else {
        u64::from(l.sb.s_inode_size)
    };
    // Layout::new checked inode_size <= block_size, both powers of two.
    let per_block = l.block_size.checked_div(inode_size).unwrap_or(1).max(1);
    let used_blocks = div_ceil(used_inodes, per_block);
    let blocks = l.inode_blocks_per_group.saturating_sub(used_blocks);
    if blocks == 0 {
        return Err(NoTail::Full);
    }
    Ok(Tail {
        first_block: d.bg_inode_table.saturating_add(used_blocks),
        blocks,
        used_inodes,
        zeroed: d.inode_zeroed(),
    })
}

/// Does the inode `bitmap` (its first `s_inodes_per_group` bits) mark no
/// inode at or past `used_inodes`? Bits past `s_inodes_per_group` are
/// padding the kernel sets to 1 and are ignored.
pub(crate) fn bitmap_agrees(l: &Layout, bitmap: &[u8], used_inodes: u64) -> bool {
    let ipg = u64::from(l.sb.s_inodes_per_group);
    let mut bit = used_inodes;
    while bit < ipg {
        let byte = usize::try_from(bit / 8).unwrap_or(usize::MAX);
        let Some(&b) = bitmap.get(byte) else {
            return false;
        };
        let shift = bit % 8;
        if shift == 0 && bit.saturating_add(8) <= ipg {
            if b != 0 {
                return false;
            }
            bit = bit.saturating_add(8);
            continue;
        }
        if (b >> shift) & 1 != 0 {
            return false;
        }
        bit = bit.saturating_add(1);
    }
    true
}
