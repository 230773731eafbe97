//! Unit tests on hand-made images: a tiny, consistent ext2/ext4 written
//! byte by byte (1 KiB blocks, 256 blocks per group), then damaged one field
//! at a time to reach every error kind. Real mkfs images are tested in
//! `tests/integration/map.rs` against dumpe2fs.

#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use super::crc::{crc16, crc32c};
use super::*;
use crate::ErrorKind;

const BS: usize = 1024;
const BPG: usize = 256;
const IPG: usize = 16; // 128-byte inodes: 2 blocks of inode table

#[derive(Clone, Copy, PartialEq)]
enum Csum {
    None,
    Gdt,
    Metadata,
}

/// A tiny image and what its map must be.
struct Tiny {
    data: Vec<u8>,
    groups: usize,
    blocks: usize,
    csum: Csum,
    wide: bool,
    /// Used blocks per the bitmaps (including metadata), sorted.
    used: Vec<usize>,
}

fn has_super(g: usize) -> bool {
    g <= 1 || [3, 5, 7, 9, 25, 27, 49].contains(&g)
}

impl Tiny {
    /// `groups` groups; the last one is 100 blocks shorter. `uninit` groups
    /// get BLOCK_UNINIT (with checksums) and a garbage on-disk bitmap.
    fn new(groups: usize, csum: Csum, wide: bool, uninit: &[usize]) -> Self {
        let blocks = 1 + groups * BPG - 100;
        let mut t = Tiny {
            data: vec![0u8; blocks * BS],
            groups,
            blocks,
            csum,
            wide,
            used: Vec::new(),
        };
        let mut used = vec![false; blocks];
        used[0] = true; // boot block (before first_data_block): not in any bitmap
        let mut descs = Vec::new();
        for g in 0..groups {
            let first = 1 + g * BPG;
            let mut b = first;
            if has_super(g) {
                used[b] = true; // superblock
                used[b + 1] = true; // one descriptor block
                b += 2;
            }
            let (bb, ib, it) = (b, b + 1, b + 2);
            for u in &mut used[bb..it + 2] {
                *u = true;
            }
            // Some data blocks in initialized groups: a run and a lone block.
            if !uninit.contains(&g) {
                for u in &mut used[it + 10..it + 30] {
                    *u = true;
                }
                if first + 200 < blocks {
                    used[first + 200] = true;
                }
            }
            descs.push((bb, ib, it));
        }
        // Write bitmaps.
        for (g, &(bb, _, _)) in descs.iter().enumerate() {
            let first = 1 + g * BPG;
            let bm = &mut t.data[bb * BS..bb * BS + BPG / 8];
            if uninit.contains(&g) {
                bm.fill(0xFF); // never written: whatever was on the disk
                continue;
            }
            for i in 0..BPG {
                // Bits past the end of the fs are set, as mke2fs pads them.
                if first + i >= blocks || used[first + i] {
                    bm[i / 8] |= 1 << (i % 8);
                }
            }
        }
        t.used = (0..blocks).filter(|&b| used[b]).collect();
        t.write_super_and_descs(&descs, uninit);
        t
    }

    fn desc_size(&self) -> usize {
        if self.wide { 64 } else { 32 }
    }

    fn superblock(&self, group: usize) -> [u8; 1024] {
        let mut s = [0u8; 1024];
        let put32 = |s: &mut [u8; 1024], off: usize, v: u32| {
            s[off..off + 4].copy_from_slice(&v.to_le_bytes());
        };
        put32(&mut s, 0x00, (self.groups * IPG) as u32);
        put32(&mut s, 0x04, self.blocks as u32);
        put32(&mut s, 0x14, 1); // s_first_data_block
        put32(&mut s, 0x20, BPG as u32);
        put32(&mut s, 0x24, BPG as u32);
        put32(&mut s, 0x28, IPG as u32);
        s[0x38..0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        s[0x3A] = 1; // s_state: clean
        put32(&mut s, 0x4C, 1); // s_rev_level
        s[0x58..0x5A].copy_from_slice(&128u16.to_le_bytes());
        s[0x5A..0x5C].copy_from_slice(&(group as u16).to_le_bytes());
        let mut incompat = 0x2; // filetype
        let mut ro = 0x1; // sparse_super
        match self.csum {
            Csum::None => {}
            Csum::Gdt => ro |= 0x10,
            Csum::Metadata => ro |= 0x400,
        }
        if self.wide {
            incompat |= 0x80;
            s[0xFE..0x100].copy_from_slice(&64u16.to_le_bytes());
        }
        put32(&mut s, 0x60, incompat);
        put32(&mut s, 0x64, ro);
        for (i, b) in s[0x68..0x78].iter_mut().enumerate() {
            *b = 0xA0 + i as u8; // s_uuid
        }
        s[0x78..0x7C].copy_from_slice(b"tiny");
        s[0x175] = u8::from(self.csum == Csum::Metadata); // s_checksum_type
        self.seal_superblock(&mut s);
        s
    }

    fn seal_superblock(&self, s: &mut [u8; 1024]) {
        if self.csum == Csum::Metadata {
            let c = crc32c(!0, &s[..0x3FC]);
            s[0x3FC..].copy_from_slice(&c.to_le_bytes());
        }
    }

    fn seed(&self) -> u32 {
        let uuid: Vec<u8> = (0..16).map(|i| 0xA0 + i as u8).collect();
        crc32c(!0, &uuid)
    }

    fn write_super_and_descs(&mut self, descs: &[(usize, usize, usize)], uninit: &[usize]) {
        let ds = self.desc_size();
        let mut table = vec![0u8; BS];
        for (g, &(bb, ib, it)) in descs.iter().enumerate() {
            let d = &mut table[g * ds..(g + 1) * ds];
            d[0..4].copy_from_slice(&(bb as u32).to_le_bytes());
            d[4..8].copy_from_slice(&(ib as u32).to_le_bytes());
            d[8..12].copy_from_slice(&(it as u32).to_le_bytes());
            if self.csum != Csum::None && uninit.contains(&g) {
                d[0x12] = 0x02; // BLOCK_UNINIT
            }
            if self.csum == Csum::Metadata && !uninit.contains(&g) {
                let bm = &self.data[bb * BS..bb * BS + BPG / 8];
                let c = crc32c(self.seed(), bm);
                d[0x18..0x1A].copy_from_slice(&(c as u16).to_le_bytes());
                if ds >= 64 {
                    d[0x38..0x3A].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
                }
            }
        }
        for g in 0..self.groups {
            self.seal_desc(&mut table, g);
        }
        for g in (0..self.groups).filter(|&g| has_super(g)) {
            let first = 1 + g * BPG;
            let sb = self.superblock(g);
            let at = if g == 0 { 1024 } else { first * BS };
            self.data[at..at + 1024].copy_from_slice(&sb);
            self.data[(first + 1) * BS..(first + 2) * BS].copy_from_slice(&table);
        }
    }

    /// Recompute descriptor `g`'s checksum inside `table`.
    fn seal_desc(&self, table: &mut [u8], g: usize) {
        let ds = self.desc_size();
        let d = &mut table[g * ds..(g + 1) * ds];
        d[0x1E] = 0;
        d[0x1F] = 0;
        let gle = (g as u32).to_le_bytes();
        let c = match self.csum {
            Csum::None => return,
            Csum::Metadata => crc32c(crc32c(self.seed(), &gle), d) as u16,
            Csum::Gdt => {
                let uuid: Vec<u8> = (0..16).map(|i| 0xA0 + i as u8).collect();
                let c = crc16(crc16(crc16(!0, &uuid), &gle), &d[..0x1E]);
                crc16(c, &d[0x20..])
            }
        };
        d[0x1E..0x20].copy_from_slice(&c.to_le_bytes());
    }

    /// Byte offset of group `g`'s primary descriptor.
    fn desc_off(&self, g: usize) -> usize {
        2 * BS + g * self.desc_size()
    }

    /// Change the primary superblock with `f`, then fix its checksum.
    fn edit_super(&mut self, f: impl FnOnce(&mut [u8; 1024])) {
        let mut s = [0u8; 1024];
        s.copy_from_slice(&self.data[1024..2048]);
        f(&mut s);
        self.seal_superblock(&mut s);
        self.data[1024..2048].copy_from_slice(&s);
    }

    /// Change primary descriptor `g` with `f`, then fix its checksum.
    fn edit_desc(&mut self, g: usize, f: impl FnOnce(&mut [u8])) {
        let ds = self.desc_size();
        let mut table = self.data[2 * BS..3 * BS].to_vec();
        f(&mut table[g * ds..(g + 1) * ds]);
        self.seal_desc(&mut table, g);
        self.data[2 * BS..3 * BS].copy_from_slice(&table);
    }

    fn map(&self) -> Result<FsMap> {
        read_map(&self.data, &MapOptions::default())
    }
}

/// Blocks covered by a map (1 KiB blocks).
fn blocks_of(m: &FsMap) -> Vec<usize> {
    m.used
        .iter()
        .flat_map(|e| (e.start() / 1024) as usize..e.end().div_ceil(1024) as usize)
        .collect()
}

fn kind(r: Result<FsMap>) -> ErrorKind {
    r.expect_err("must fail").kind().clone()
}

#[test]
fn tiny_images_map_exactly() {
    for csum in [Csum::None, Csum::Gdt, Csum::Metadata] {
        for wide in [false, true] {
            let t = Tiny::new(4, csum, wide, &[]);
            let m = t.map().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(blocks_of(&m), t.used);
            assert!(m.warnings.is_empty(), "{:?}", m.warnings);
            assert_eq!(m.geometry.groups_count, 4);
            assert_eq!(m.geometry.fs_bytes, (t.blocks * BS) as u64);
            assert_eq!(m.geometry.label, "tiny");
            let want = if csum == Csum::None && !wide {
                ExtKind::Ext2
            } else {
                ExtKind::Ext4
            };
            assert_eq!(m.geometry.kind, want);
        }
    }
}

#[test]
fn block_uninit_groups_use_computed_metadata_not_their_bitmap() {
    for csum in [Csum::Gdt, Csum::Metadata] {
        let t = Tiny::new(4, csum, true, &[1, 2]);
        let m = t.map().unwrap();
        assert_eq!(
            blocks_of(&m),
            t.used,
            "garbage bitmaps of uninit groups must not count"
        );
        assert_eq!(m.geometry.block_uninit_groups, 2);
    }
    // Without descriptor checksums the flag means nothing: the bitmap counts.
    let t = Tiny::new(4, Csum::None, false, &[2]);
    let m = t.map().unwrap();
    let group2: Vec<usize> = (1 + 2 * BPG..1 + 3 * BPG).collect();
    assert!(group2.iter().all(|b| blocks_of(&m).contains(b)));
}

#[test]
fn bad_magic_is_corrupt_at_the_magic() {
    // One group: no backup superblock to fall back to.
    let mut t = Tiny::new(1, Csum::None, false, &[]);
    t.data[1024 + 0x38] = 0;
    let e = t.map().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Corrupt(m) if m.contains("magic")));
    assert_eq!(e.context().offset, Some(1024 + 0x38));
    assert!(detect(&t.data).unwrap().is_none());
    // Two groups: a backup exists, but without the primary's magic this may
    // be another filesystem over an old ext one: refuse, and point at it.
    let mut t = Tiny::new(2, Csum::None, false, &[]);
    t.data[1024 + 0x38] = 0;
    let e = t.map().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Corrupt(m) if m.contains("magic")));
    assert!(
        e.hint_text().unwrap().contains("e2fsck -b 257 -B 1024"),
        "{e}"
    );
}

#[test]
fn damaged_primary_fields_fall_back_to_the_backup() {
    let mut t = Tiny::new(2, Csum::None, false, &[]);
    t.edit_super(|s| s[0x00] ^= 1); // s_inodes_count no longer adds up
    let m = t.map().unwrap();
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("backup superblock of group 1"))
    );
    assert_eq!(blocks_of(&m), t.used);
}

#[test]
fn tiny_device_is_corrupt() {
    let e = read_map(&vec![0u8; 1500], &MapOptions::default()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Corrupt(_)));
    assert!(detect(&vec![0u8; 1500]).unwrap().is_none());
}

#[test]
fn unknown_features_are_incompatible() {
    for (off, bit) in [
        (0x60, 0x8000_0000u32),
        (0x60, 0x1000),
        (0x60, 0x0001),
        (0x64, 0x0100_0000),
    ] {
        let mut t = Tiny::new(2, Csum::Metadata, false, &[]);
        t.edit_super(|s| {
            let v = u32::from_le_bytes(s[off..off + 4].try_into().unwrap()) | bit;
            s[off..off + 4].copy_from_slice(&v.to_le_bytes());
        });
        let e = t.map().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Incompatible(_)),
            "{off:#x} {bit:#x}: {e}"
        );
        assert_eq!(e.context().offset, Some(1024 + off as u64));
    }
    let mut t = Tiny::new(2, Csum::None, false, &[]);
    t.edit_super(|s| s[0x60] |= 0x08); // journal_dev
    assert!(matches!(kind(t.map()), ErrorKind::Incompatible(m) if m.contains("journal")));
}

#[test]
fn needs_recovery_refuses_unless_live() {
    let mut t = Tiny::new(2, Csum::Metadata, false, &[]);
    t.edit_super(|s| {
        s[0x5C] |= 0x04; // has_journal
        s[0x60] |= 0x04; // needs_recovery
    });
    let e = t.map().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NeedsRecovery(_)));
    assert!(e.hint_text().unwrap().contains("read-only"));
    let live = MapOptions {
        live: true,
        ..MapOptions::default()
    };
    let m = read_map(&t.data, &live).unwrap();
    assert_eq!(blocks_of(&m), t.used);
    assert!(m.warnings.iter().any(|w| w.contains("best-effort")));
    assert!(detect(&t.data).unwrap().unwrap().needs_recovery);
}

#[test]
fn unclean_ext2_refuses_unless_live() {
    let mut t = Tiny::new(2, Csum::None, false, &[]);
    t.edit_super(|s| s[0x3A] = 0); // s_state: not clean
    assert!(matches!(kind(t.map()), ErrorKind::NeedsRecovery(_)));
    let live = MapOptions {
        live: true,
        ..MapOptions::default()
    };
    assert!(read_map(&t.data, &live).is_ok());
}

#[test]
fn sizes_that_do_not_add_up_are_corrupt() {
    type Edit = fn(&mut [u8; 1024]);
    let cases: [(&str, Edit, u64); 8] = [
        (
            "bigger than the device",
            |s| s[0x04..0x08].copy_from_slice(&100_000u32.to_le_bytes()),
            0x04,
        ),
        ("block size", |s| s[0x18] = 7, 0x18),
        ("cluster size", |s| s[0x1C] = 1, 0x1C),
        (
            "blocks per group",
            |s| s[0x20..0x24].copy_from_slice(&0u32.to_le_bytes()),
            0x20,
        ),
        (
            "clusters per group",
            |s| s[0x24..0x28].copy_from_slice(&9u32.to_le_bytes()),
            0x24,
        ),
        ("inode count", |s| s[0x00] ^= 1, 0x00),
        ("inode size", |s| s[0x58] = 100, 0x58),
        (
            "first data block",
            |s| s[0x14..0x18].copy_from_slice(&u32::MAX.to_le_bytes()),
            0x14,
        ),
    ];
    for (what, edit, field) in cases {
        // One group: no backup superblock to fall back to.
        let mut t = Tiny::new(1, Csum::Metadata, false, &[]);
        t.edit_super(edit);
        let e = t.map().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Corrupt(_)), "{what}: {e}");
        assert_eq!(e.context().offset, Some(1024 + field), "{what}: {e}");
    }
}

#[test]
fn absurd_group_counts_are_corrupt() {
    // 8 blocks per group on a 3-group image claims ~100 groups: the inode
    // count cannot match, and nothing is allocated per claimed group first.
    let mut t = Tiny::new(3, Csum::None, false, &[]);
    t.edit_super(|s| {
        s[0x20..0x24].copy_from_slice(&8u32.to_le_bytes());
        s[0x24..0x28].copy_from_slice(&8u32.to_le_bytes());
    });
    assert!(matches!(kind(t.map()), ErrorKind::Corrupt(m) if m.contains("s_inodes_count")));
}

#[test]
fn metadata_outside_the_fs_is_corrupt_at_the_descriptor() {
    for (field, name) in [
        (0x00, "block bitmap"),
        (0x04, "inode bitmap"),
        (0x08, "inode table"),
    ] {
        let mut t = Tiny::new(3, Csum::Gdt, false, &[]);
        let blocks = t.blocks as u32;
        t.edit_desc(1, |d| {
            d[field..field + 4].copy_from_slice(&(blocks - 1).to_le_bytes())
        });
        if field != 0x08 {
            // One block inside is fine for a bitmap; past the end is not.
            t.edit_desc(1, |d| {
                d[field..field + 4].copy_from_slice(&blocks.to_le_bytes())
            });
        }
        let off = t.desc_off(1) + field;
        let e = t.map().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Corrupt(m) if m.contains(name)),
            "{e}"
        );
        assert_eq!(e.context().offset, Some(off as u64));
    }
    // A bitmap in block 0 or 1 (boot block, superblock) is corrupt too.
    let mut t = Tiny::new(2, Csum::None, false, &[]);
    t.edit_desc(0, |d| d[0..4].copy_from_slice(&1u32.to_le_bytes()));
    assert!(matches!(kind(t.map()), ErrorKind::Corrupt(_)));
}

#[test]
fn descriptor_checksum_failure_is_corrupt_unless_ignored() {
    for csum in [Csum::Gdt, Csum::Metadata] {
        let mut t = Tiny::new(3, csum, true, &[2]);
        let off = t.desc_off(2);
        t.data[off + 0x10] ^= 1; // bg_used_dirs_count_lo, checksum not fixed
        let e = t.map().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Corrupt(m) if m.contains("descriptor checksum")));
        assert_eq!(e.context().offset, Some(off as u64));
        let m = read_map(
            &t.data,
            &MapOptions {
                ignore_csum: true,
                ..MapOptions::default()
            },
        )
        .unwrap();
        assert!(m.warnings.iter().any(|w| w.contains("descriptor checksum")));
        // Its BLOCK_UNINIT flag is no longer trusted: the (garbage, all-ones)
        // bitmap is read, so the map errs on the side of more blocks.
        let b = blocks_of(&m);
        assert!((1 + 2 * BPG..t.blocks).all(|x| b.contains(&x)));
    }
}

#[test]
fn bitmap_checksum_failure_is_corrupt_unless_ignored() {
    let mut t = Tiny::new(3, Csum::Metadata, false, &[]);
    let bb = 1 + BPG + 2; // group 1: superblock, descriptors, then the bitmap
    t.data[bb * BS + 20] ^= 0x04;
    let e = t.map().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Corrupt(m) if m.contains("bitmap checksum")));
    assert_eq!(e.context().offset, Some((bb * BS) as u64));
    let m = read_map(
        &t.data,
        &MapOptions {
            ignore_csum: true,
            ..MapOptions::default()
        },
    )
    .unwrap();
    assert!(m.warnings.iter().any(|w| w.contains("bitmap checksum")));
    // Only the low 16 bits are stored with 32-byte descriptors: still checked.
    let t = Tiny::new(3, Csum::Metadata, false, &[]);
    assert!(t.map().is_ok());
}

#[test]
fn bad_superblock_checksum_falls_back_to_the_backup() {
    let mut t = Tiny::new(3, Csum::Metadata, false, &[]);
    t.data[1024 + 0x7A] ^= 1; // label byte, checksum not fixed
    let m = t.map().unwrap();
    assert_eq!(m.geometry.superblock_offset, ((1 + BPG) * BS) as u64);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("backup superblock of group 1"))
    );
    assert_eq!(blocks_of(&m), t.used);
    // With --ignore-csum the primary is used, with a warning.
    let m = read_map(
        &t.data,
        &MapOptions {
            ignore_csum: true,
            ..MapOptions::default()
        },
    )
    .unwrap();
    assert_eq!(m.geometry.superblock_offset, 1024);
    assert!(m.warnings.iter().any(|w| w.contains("superblock checksum")));
    // Both copies bad: the primary's error.
    t.data[(1 + BPG) * BS + 0x7A] ^= 1;
    let e = t.map().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Corrupt(m) if m.contains("superblock checksum")));
}

#[test]
fn detect_reads_the_primary_only() {
    let t = Tiny::new(2, Csum::None, false, &[]);
    let d = detect(&t.data).unwrap().unwrap();
    assert_eq!(d.kind, ExtKind::Ext2);
    assert_eq!(d.fs_bytes, Some((t.blocks * BS) as u64));
    assert!(!d.needs_recovery);
}

#[test]
fn live_maps_tolerate_checksum_mismatches() {
    // A mounted fs writes bitmaps and descriptors back at different times.
    let mut t = Tiny::new(3, Csum::Metadata, false, &[]);
    t.edit_super(|s| {
        s[0x5C] |= 0x04; // has_journal
        s[0x60] |= 0x04; // needs_recovery
    });
    let bb = 1 + BPG + 2;
    t.data[bb * BS + 20] ^= 0x04;
    let live = MapOptions {
        live: true,
        ..MapOptions::default()
    };
    let m = read_map(&t.data, &live).unwrap();
    assert!(m.warnings.iter().any(|w| w.contains("bitmap checksum")));
    // A clean filesystem mapped with --live stays strict.
    let mut t = Tiny::new(3, Csum::Metadata, false, &[]);
    t.data[bb * BS + 20] ^= 0x04;
    assert!(matches!(
        read_map(&t.data, &live).unwrap_err().kind(),
        ErrorKind::Corrupt(_)
    ));
}
