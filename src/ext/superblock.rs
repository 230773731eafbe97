//! The ext2/3/4 superblock: field offsets (kernel names), parsing of the
//! 1024-byte structure, feature flags and their e2fsprogs names, and the
//! `metadata_csum` superblock checksum.
//!
//! Parsing never fails; judging whether the values make sense is
//! `layout::Layout::new`'s job. Imports only `le` and `crc`.

use super::crc::crc32c;
use super::le::Le;

/// Byte offset of the primary superblock on the device.
pub(crate) const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock structure.
pub(crate) const SUPERBLOCK_SIZE: usize = 1024;
/// `EXT4_SUPER_MAGIC`.
pub(crate) const EXT4_SUPER_MAGIC: u16 = 0xEF53;

// Field offsets inside `struct ext4_super_block`.
pub(crate) const S_INODES_COUNT: usize = 0x00;
pub(crate) const S_BLOCKS_COUNT_LO: usize = 0x04;
pub(crate) const S_FREE_BLOCKS_COUNT_LO: usize = 0x0C;
pub(crate) const S_FIRST_DATA_BLOCK: usize = 0x14;
pub(crate) const S_LOG_BLOCK_SIZE: usize = 0x18;
pub(crate) const S_LOG_CLUSTER_SIZE: usize = 0x1C;
pub(crate) const S_BLOCKS_PER_GROUP: usize = 0x20;
pub(crate) const S_CLUSTERS_PER_GROUP: usize = 0x24;
pub(crate) const S_INODES_PER_GROUP: usize = 0x28;
pub(crate) const S_MAGIC: usize = 0x38;
pub(crate) const S_STATE: usize = 0x3A;
pub(crate) const S_REV_LEVEL: usize = 0x4C;
pub(crate) const S_INODE_SIZE: usize = 0x58;
pub(crate) const S_BLOCK_GROUP_NR: usize = 0x5A;
pub(crate) const S_FEATURE_COMPAT: usize = 0x5C;
pub(crate) const S_FEATURE_INCOMPAT: usize = 0x60;
pub(crate) const S_FEATURE_RO_COMPAT: usize = 0x64;
pub(crate) const S_UUID: usize = 0x68;
pub(crate) const S_VOLUME_NAME: usize = 0x78;
pub(crate) const S_RESERVED_GDT_BLOCKS: usize = 0xCE;
pub(crate) const S_DESC_SIZE: usize = 0xFE;
pub(crate) const S_FIRST_META_BG: usize = 0x104;
pub(crate) const S_BLOCKS_COUNT_HI: usize = 0x150;
pub(crate) const S_FREE_BLOCKS_HI: usize = 0x158;
pub(crate) const S_LOG_GROUPS_PER_FLEX: usize = 0x174;
pub(crate) const S_CHECKSUM_TYPE: usize = 0x175;
pub(crate) const S_BACKUP_BGS: usize = 0x24C;
pub(crate) const S_CHECKSUM_SEED: usize = 0x270;
pub(crate) const S_CHECKSUM: usize = 0x3FC;

// s_state bits.
pub(crate) const EXT2_VALID_FS: u16 = 0x0001;
pub(crate) const EXT2_ERROR_FS: u16 = 0x0002;

// Feature bits (ext2_fs.h).
pub(crate) const COMPAT_HAS_JOURNAL: u32 = 0x0004;
pub(crate) const COMPAT_SPARSE_SUPER2: u32 = 0x0200;

pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
pub(crate) const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
pub(crate) const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
pub(crate) const RO_COMPAT_GDT_CSUM: u32 = 0x0010;
pub(crate) const RO_COMPAT_BIGALLOC: u32 = 0x0200;
pub(crate) const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;

pub(crate) const INCOMPAT_FILETYPE: u32 = 0x0002;
pub(crate) const INCOMPAT_RECOVER: u32 = 0x0004;
pub(crate) const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
pub(crate) const INCOMPAT_META_BG: u32 = 0x0010;
pub(crate) const INCOMPAT_64BIT: u32 = 0x0080;
pub(crate) const INCOMPAT_FLEX_BG: u32 = 0x0200;
pub(crate) const INCOMPAT_CSUM_SEED: u32 = 0x2000;

/// INCOMPAT features whose on-disk layout reroot understands (the block
/// bitmaps mean what they say): e2fsprogs' supported set.
pub(crate) const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | 0x0040 // extent
    | INCOMPAT_64BIT
    | 0x0100 // mmp
    | INCOMPAT_FLEX_BG
    | 0x0400 // ea_inode
    | INCOMPAT_CSUM_SEED
    | 0x4000 // large_dir
    | 0x8000 // inline_data
    | 0x1_0000 // encrypt
    | 0x2_0000; // casefold

/// RO_COMPAT features reroot knows. An unknown one is refused too: bigalloc
/// (an RO_COMPAT feature) shows that such a bit can change what a bitmap bit
/// means, and a wrong map loses data.
pub(crate) const RO_COMPAT_KNOWN: u32 = 0x1_FFFF;

/// ext3's INCOMPAT and RO_COMPAT sets: anything beyond makes it ext4 (blkid's rule).
const EXT3_INCOMPAT: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;
const EXT3_RO_COMPAT: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;

/// e2fsprogs' feature names (lib/e2p/feature.c), in bit order per set.
const COMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "dir_prealloc"),
    (0x0002, "imagic_inodes"),
    (0x0004, "has_journal"),
    (0x0008, "ext_attr"),
    (0x0010, "resize_inode"),
    (0x0020, "dir_index"),
    (0x0040, "lazy_bg"),
    (0x0100, "snapshot_bitmap"),
    (0x0200, "sparse_super2"),
    (0x0400, "fast_commit"),
    (0x0800, "stable_inodes"),
    (0x1000, "orphan_file"),
];
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "compression"),
    (0x0002, "filetype"),
    (0x0004, "needs_recovery"),
    (0x0008, "journal_dev"),
    (0x0010, "meta_bg"),
    (0x0040, "extent"),
    (0x0080, "64bit"),
    (0x0100, "mmp"),
    (0x0200, "flex_bg"),
    (0x0400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x1_0000, "encrypt"),
    (0x2_0000, "casefold"),
];
const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "sparse_super"),
    (0x0002, "large_file"),
    (0x0004, "btree_dir"),
    (0x0008, "huge_file"),
    (0x0010, "uninit_bg"),
    (0x0020, "dir_nlink"),
    (0x0040, "extra_isize"),
    (0x0080, "snapshot"),
    (0x0100, "quota"),
    (0x0200, "bigalloc"),
    (0x0400, "metadata_csum"),
    (0x0800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x1_0000, "orphan_present"),
];

/// Names of the bits set in `mask`; unknown bits as e2fsprogs prints them
/// (`FEATURE_I31`), with `tag` being `C`, `I` or `R`.
pub(crate) fn feature_names(mask: u32, names: &[(u32, &str)], tag: char) -> Vec<String> {
    (0..32u32)
        .map(|b| 1u32 << b)
        .filter(|bit| mask & bit != 0)
        .map(|bit| {
            names.iter().find(|(b, _)| *b == bit).map_or_else(
                || format!("FEATURE_{tag}{}", bit.trailing_zeros()),
                |(_, n)| (*n).to_string(),
            )
        })
        .collect()
}

/// Which ext flavour a superblock describes (blkid's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtKind {
    /// No journal, no ext4 feature.
    Ext2,
    /// A journal, no ext4 feature.
    Ext3,
    /// Any feature beyond ext3's.
    Ext4,
}

impl std::fmt::Display for ExtKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExtKind::Ext2 => "ext2",
            ExtKind::Ext3 => "ext3",
            ExtKind::Ext4 => "ext4",
        })
    }
}

/// The superblock fields reroot uses, read at their kernel offsets.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // fields are named and documented by the kernel
pub(crate) struct Superblock {
    pub s_inodes_count: u32,
    pub s_blocks_count: u64,
    pub s_free_blocks_count: u64,
    pub s_first_data_block: u32,
    pub s_log_block_size: u32,
    pub s_log_cluster_size: u32,
    pub s_blocks_per_group: u32,
    pub s_clusters_per_group: u32,
    pub s_inodes_per_group: u32,
    pub s_magic: u16,
    pub s_state: u16,
    pub s_rev_level: u32,
    pub s_inode_size: u16,
    pub s_block_group_nr: u16,
    pub s_feature_compat: u32,
    pub s_feature_incompat: u32,
    pub s_feature_ro_compat: u32,
    pub s_uuid: [u8; 16],
    pub s_volume_name: [u8; 16],
    pub s_reserved_gdt_blocks: u16,
    pub s_desc_size: u16,
    pub s_first_meta_bg: u32,
    pub s_log_groups_per_flex: u8,
    pub s_checksum_type: u8,
    pub s_backup_bgs: [u32; 2],
    pub s_checksum_seed: u32,
    pub s_checksum: u32,
    /// crc32c of the structure up to `s_checksum` (seed !0, raw).
    pub computed_checksum: u32,
}

impl Superblock {
    /// Read the fields of a 1024-byte superblock.
    pub(crate) fn parse(raw: &[u8; SUPERBLOCK_SIZE]) -> Self {
        let le = Le(raw);
        let is_64bit = le.u32(S_FEATURE_INCOMPAT) & INCOMPAT_64BIT != 0;
        Self {
            s_inodes_count: le.u32(S_INODES_COUNT),
            s_blocks_count: le.lo_hi(S_BLOCKS_COUNT_LO, S_BLOCKS_COUNT_HI, is_64bit),
            s_free_blocks_count: le.lo_hi(S_FREE_BLOCKS_COUNT_LO, S_FREE_BLOCKS_HI, is_64bit),
            s_first_data_block: le.u32(S_FIRST_DATA_BLOCK),
            s_log_block_size: le.u32(S_LOG_BLOCK_SIZE),
            s_log_cluster_size: le.u32(S_LOG_CLUSTER_SIZE),
            s_blocks_per_group: le.u32(S_BLOCKS_PER_GROUP),
            s_clusters_per_group: le.u32(S_CLUSTERS_PER_GROUP),
            s_inodes_per_group: le.u32(S_INODES_PER_GROUP),
            s_magic: le.u16(S_MAGIC),
            s_state: le.u16(S_STATE),
            s_rev_level: le.u32(S_REV_LEVEL),
            s_inode_size: le.u16(S_INODE_SIZE),
            s_block_group_nr: le.u16(S_BLOCK_GROUP_NR),
            s_feature_compat: le.u32(S_FEATURE_COMPAT),
            s_feature_incompat: le.u32(S_FEATURE_INCOMPAT),
            s_feature_ro_compat: le.u32(S_FEATURE_RO_COMPAT),
            s_uuid: le.array(S_UUID),
            s_volume_name: le.array(S_VOLUME_NAME),
            s_reserved_gdt_blocks: le.u16(S_RESERVED_GDT_BLOCKS),
            s_desc_size: le.u16(S_DESC_SIZE),
            s_first_meta_bg: le.u32(S_FIRST_META_BG),
            s_log_groups_per_flex: le.u8(S_LOG_GROUPS_PER_FLEX),
            s_checksum_type: le.u8(S_CHECKSUM_TYPE),
            s_backup_bgs: [le.u32(S_BACKUP_BGS), le.u32(S_BACKUP_BGS + 4)],
            s_checksum_seed: le.u32(S_CHECKSUM_SEED),
            s_checksum: le.u32(S_CHECKSUM),
            computed_checksum: crc32c(!0, raw.get(..S_CHECKSUM).unwrap_or_default()),
        }
    }

    pub(crate) fn has_compat(&self, f: u32) -> bool {
        self.s_feature_compat & f != 0
    }

    pub(crate) fn has_incompat(&self, f: u32) -> bool {
        self.s_feature_incompat & f != 0
    }

    pub(crate) fn has_ro_compat(&self, f: u32) -> bool {
        self.s_feature_ro_compat & f != 0
    }

    /// ext2, ext3 or ext4.
    pub(crate) fn kind(&self) -> ExtKind {
        if self.s_feature_incompat & !EXT3_INCOMPAT != 0
            || self.s_feature_ro_compat & !EXT3_RO_COMPAT != 0
        {
            ExtKind::Ext4
        } else if self.has_compat(COMPAT_HAS_JOURNAL) {
            ExtKind::Ext3
        } else {
            ExtKind::Ext2
        }
    }

    /// The journal must be replayed before the bitmaps can be trusted.
    pub(crate) fn needs_recovery(&self) -> bool {
        self.has_incompat(INCOMPAT_RECOVER)
    }

    /// `metadata_csum` is on and the stored checksum matches.
    pub(crate) fn checksum_ok(&self) -> bool {
        !self.has_ro_compat(RO_COMPAT_METADATA_CSUM) || self.s_checksum == self.computed_checksum
    }

    /// All feature names, compat then incompat then ro_compat.
    pub(crate) fn feature_names(&self) -> Vec<String> {
        let mut v = feature_names(self.s_feature_compat, COMPAT_NAMES, 'C');
        v.extend(feature_names(self.s_feature_incompat, INCOMPAT_NAMES, 'I'));
        v.extend(feature_names(
            self.s_feature_ro_compat,
            RO_COMPAT_NAMES,
            'R',
        ));
        v
    }

    /// The names of the INCOMPAT bits reroot cannot handle.
    pub(crate) fn unsupported_incompat(&self) -> Vec<String> {
        feature_names(
            self.s_feature_incompat & !INCOMPAT_SUPPORTED,
            INCOMPAT_NAMES,
            'I',
        )
    }

    /// The names of unknown RO_COMPAT bits.
    pub(crate) fn unknown_ro_compat(&self) -> Vec<String> {
        feature_names(
            self.s_feature_ro_compat & !RO_COMPAT_KNOWN,
            RO_COMPAT_NAMES,
            'R',
        )
    }

    /// UUID as 8-4-4-4-12 lowercase hex.
    pub(crate) fn uuid_string(&self) -> String {
        let h: Vec<String> = self.s_uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            h[0..4].concat(),
            h[4..6].concat(),
            h[6..8].concat(),
            h[8..10].concat(),
            h[10..16].concat()
        )
    }

    /// The volume label, up to its first NUL, lossily decoded.
    pub(crate) fn label(&self) -> String {
        let end = self
            .s_volume_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(16);
        String::from_utf8_lossy(self.s_volume_name.get(..end).unwrap_or_default()).into_owned()
    }

    /// e2fsprogs' words for `s_state`.
    pub(crate) fn state_string(&self) -> String {
        let clean = if self.s_state & EXT2_VALID_FS != 0 {
            "clean"
        } else {
            "not clean"
        };
        if self.s_state & EXT2_ERROR_FS != 0 {
            format!("{clean} with errors")
        } else {
            clean.to_string()
        }
    }

    /// The seed of every `metadata_csum` checksum.
    pub(crate) fn csum_seed(&self) -> u32 {
        if self.has_incompat(INCOMPAT_CSUM_SEED) {
            self.s_checksum_seed
        } else {
            crc32c(!0, &self.s_uuid)
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_bits() {
        assert_eq!(
            feature_names(0x0004 | 0x8000_0000, INCOMPAT_NAMES, 'I'),
            vec!["needs_recovery".to_string(), "FEATURE_I31".to_string()]
        );
    }

    #[test]
    fn kind_follows_features() {
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        assert_eq!(Superblock::parse(&raw).kind(), ExtKind::Ext2);
        raw[S_FEATURE_COMPAT] = 0x04;
        assert_eq!(Superblock::parse(&raw).kind(), ExtKind::Ext3);
        raw[S_FEATURE_INCOMPAT] = 0x40;
        assert_eq!(Superblock::parse(&raw).kind(), ExtKind::Ext4);
    }

    #[test]
    fn uuid_and_label() {
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        for (i, b) in raw[S_UUID..S_UUID + 16].iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap();
        }
        raw[S_VOLUME_NAME..S_VOLUME_NAME + 4].copy_from_slice(b"root");
        let sb = Superblock::parse(&raw);
        assert_eq!(sb.uuid_string(), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(sb.label(), "root");
    }
}
