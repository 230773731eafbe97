//! Map assembly: superblock (with fallback to a backup copy), descriptor
//! table, every block bitmap (read in coalesced runs), the metadata that
//! `BLOCK_UNINIT` groups use without a bitmap, into one [`ExtentList`].
//!
//! The only module here that does I/O, all through [`ReadAt`].

use super::bitmap::for_each_run;
use super::desc::{GroupDesc, block_bitmap_csum_ok, desc_csum};
use super::itable::{self, NoTail};
use super::layout::{Checksums, Layout, backup_candidates};
use super::superblock::*;
use super::{FsMap, Geometry, ItableTails, MapOptions, ReadAt};
use crate::error::{Error, ErrorKind, Result};
use crate::units::{Extent, ExtentList};

/// Largest single read: bitmaps and descriptor blocks that sit next to each
/// other (flex_bg packs them) are read together, up to this many bytes.
const MAX_READ: u64 = 1 << 20;

/// Bytes always in the map: the boot area and the primary superblock.
const BOOT_AND_SUPERBLOCK: u64 = 2048;

fn read_exact(dev: &(impl ReadAt + ?Sized), buf: &mut [u8], off: u64, what: &str) -> Result<()> {
    dev.read_exact_at(buf, off)
        .map_err(|e| Error::io(format!("reading {what}"), e).offset(off))
}

fn read_superblock(dev: &(impl ReadAt + ?Sized), off: u64) -> Result<Superblock> {
    let mut raw = [0u8; SUPERBLOCK_SIZE];
    read_exact(dev, &mut raw, off, "the superblock")?;
    Ok(Superblock::parse(&raw))
}

/// The primary superblock's layout; or, when it carries the ext magic but is
/// otherwise unusable (bad fields or checksum), the first backup that is
/// (with a warning); or the primary's error.
fn load_layout(
    dev: &(impl ReadAt + ?Sized),
    dev_size: u64,
    opts: &MapOptions,
    warnings: &mut Vec<String>,
) -> Result<Layout> {
    let end = SUPERBLOCK_OFFSET.saturating_add(SUPERBLOCK_SIZE as u64);
    if dev_size < end {
        return Err(Error::corrupt(format!(
            "the device has {dev_size} bytes; an ext superblock ends at byte {end}"
        ))
        .offset(SUPERBLOCK_OFFSET));
    }
    let primary = read_superblock(dev, SUPERBLOCK_OFFSET)?;
    let primary_err = match Layout::new(primary.clone(), SUPERBLOCK_OFFSET, dev_size) {
        Ok(l) if l.sb.checksum_ok() => return Ok(l),
        Ok(l) if opts.ignore_csum => {
            warnings.push(format!(
                "superblock checksum mismatch at byte {} (stored {:#010x}, computed {:#010x}); \
                 ignored (--ignore-csum)",
                SUPERBLOCK_OFFSET.saturating_add(S_CHECKSUM as u64),
                l.sb.s_checksum,
                l.sb.computed_checksum
            ));
            return Ok(l);
        }
        Ok(l) => Error::corrupt(format!(
            "superblock checksum mismatch (stored {:#010x}, computed {:#010x})",
            l.sb.s_checksum, l.sb.computed_checksum
        ))
        .offset(SUPERBLOCK_OFFSET.saturating_add(S_CHECKSUM as u64))
        .hint("run `e2fsck -f` on the unmounted device, or map anyway with --ignore-csum"),
        Err(e) if matches!(e.kind(), ErrorKind::Incompatible(_)) => return Err(e),
        Err(e) => e,
    };
    let backup = find_backup(dev, &primary, dev_size);
    if primary.s_magic != EXT4_SUPER_MAGIC {
        // No ext signature at all: this may be another filesystem made over
        // an old ext one, whose backups survive. Mapping from them would
        // drop the new filesystem's data, so only say where a backup is.
        return Err(match backup {
            Some(l) => {
                let g = u64::from(l.sb.s_block_group_nr);
                primary_err.hint(format!(
                    "no ext superblock at byte {SUPERBLOCK_OFFSET}, but a backup superblock of \
                     group {g} is at byte {}: if this really is a damaged ext filesystem, \
                     repair it with `e2fsck -b {} -B {}`; otherwise it holds something else",
                    l.sb_offset,
                    l.group_first_block(g),
                    l.block_size
                ))
            }
            None => primary_err,
        });
    }
    if let Some(l) = backup {
        let g = u64::from(l.sb.s_block_group_nr);
        warnings.push(format!(
            "the primary superblock is damaged ({}); using the backup superblock of \
             group {g} at byte {}, with its (older) group descriptors: BLOCK_UNINIT flags and \
             bitmap checksums are not trusted. Repair with `e2fsck -b {} -B {}`",
            primary_err.kind(),
            l.sb_offset,
            l.group_first_block(g),
            l.block_size
        ));
        return Ok(l);
    }
    Err(primary_err)
}

/// The first backup superblock that is valid and describes itself.
fn find_backup(
    dev: &(impl ReadAt + ?Sized),
    primary: &Superblock,
    dev_size: u64,
) -> Option<Layout> {
    for off in backup_candidates(primary, dev_size) {
        let Ok(sb) = read_superblock(dev, off) else {
            continue;
        };
        if sb.s_magic != EXT4_SUPER_MAGIC {
            continue;
        }
        let Ok(l) = Layout::new(sb, off, dev_size) else {
            continue;
        };
        let g = u64::from(l.sb.s_block_group_nr);
        // A real backup describes itself: its group starts at this offset.
        if !l.sb.checksum_ok() || g == 0 || g >= l.groups || l.byte(l.group_first_block(g)) != off {
            continue;
        }
        return Some(l);
    }
    None
}

/// Refuse (or warn about) a filesystem whose on-disk bitmaps may be stale.
/// Returns true when the map is a live, best-effort one.
fn check_state(l: &Layout, opts: &MapOptions, warnings: &mut Vec<String>) -> Result<bool> {
    let sb = &l.sb;
    let stale = if sb.needs_recovery() {
        Some("its journal needs recovery (it is mounted read-write, or was not cleanly unmounted)")
    } else if !sb.has_compat(COMPAT_HAS_JOURNAL)
        && sb.s_state & EXT2_VALID_FS == 0
        // e2fsprogs writes backup superblocks "not clean" on purpose.
        && l.sb_offset == SUPERBLOCK_OFFSET
    {
        Some("it is not clean (mounted read-write, or not cleanly unmounted)")
    } else {
        None
    };
    if let Some(why) = stale {
        if !opts.live {
            return Err(Error::new(ErrorKind::NeedsRecovery(format!(
                "{why}: the block bitmaps on disk may be stale"
            )))
            .offset(l.sb_offset.saturating_add(S_FEATURE_INCOMPAT as u64))
            .hint(
                "remount it read-only (`mount -o remount,ro`), or unmount it and run `e2fsck`; \
                 or ask for a best-effort live map (--live)",
            ));
        }
        warnings.push(format!(
            "{why}: this live map is best-effort; blocks allocated since the last commit are \
             missing, and checksum mismatches (bitmaps and descriptors written back at \
             different times) are only warnings"
        ));
    }
    if sb.s_state & EXT2_ERROR_FS != 0 {
        warnings.push("the filesystem is marked as having errors: run `e2fsck -f`".to_string());
    }
    Ok(stale.is_some())
}

/// Read `items` (key, block) in order, coalescing consecutive blocks into
/// reads of up to [`MAX_READ`] bytes; call `each(key, block, bytes)`.
fn read_blocks<K: Copy>(
    dev: &(impl ReadAt + ?Sized),
    l: &Layout,
    items: &[(K, u64)],
    what: &str,
    mut each: impl FnMut(K, u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let bs = l.block_size;
    let bs_usize = usize::try_from(bs).unwrap_or(usize::MAX);
    let max_blocks = MAX_READ.checked_div(bs).unwrap_or(1).max(1);
    let mut buf = Vec::new();
    let mut rest = items;
    while let Some(&(_, first)) = rest.first() {
        let mut n = 1u64;
        while n < max_blocks
            && rest
                .get(usize::try_from(n).unwrap_or(usize::MAX))
                .is_some_and(|&(_, b)| Some(b) == first.checked_add(n))
        {
            n = n.saturating_add(1);
        }
        let n_usize = usize::try_from(n).unwrap_or(usize::MAX);
        buf.resize(n_usize.saturating_mul(bs_usize), 0);
        read_exact(dev, &mut buf, l.byte(first), what)?;
        let (run, tail) = rest.split_at(n_usize.min(rest.len()));
        for (&(key, blk), bytes) in run.iter().zip(buf.chunks(bs_usize)) {
            each(key, blk, bytes)?;
        }
        rest = tail;
    }
    Ok(())
}

/// Blocks `[b, b + n)` widened to whole clusters and clamped to the fs, as bytes.
fn cluster_extent(l: &Layout, b: u64, n: u64) -> Option<Extent> {
    let mask = l.cluster_ratio().saturating_sub(1);
    let start = b & !mask;
    let end = b.saturating_add(n).saturating_add(mask) & !mask;
    Extent::from_bounds(l.byte(start), l.byte(end.min(l.blocks_count)))
}

/// All group descriptors, checked: checksums, and metadata inside the fs.
fn read_descriptors(
    dev: &(impl ReadAt + ?Sized),
    l: &Layout,
    opts: &MapOptions,
    warnings: &mut Vec<String>,
) -> Result<Vec<GroupDesc>> {
    let group_block = l.sb_offset.checked_div(l.block_size).unwrap_or(0);
    let locs: Vec<(u64, u64)> = (0..l.desc_blocks)
        .map(|i| (i, l.descriptor_block_loc(group_block, i)))
        .collect();
    let lowest = l.superblock_block().saturating_add(1);
    for &(i, b) in &locs {
        if b < lowest || b >= l.blocks_count {
            return Err(Error::corrupt(format!(
                "group descriptor block {i} would be at block {b}, outside the filesystem"
            ))
            .offset(l.sb_offset));
        }
    }
    // OK to allocate: groups <= MAX_GROUPS, checked in Layout::new.
    let mut descs = Vec::with_capacity(usize::try_from(l.groups).unwrap_or(0));
    let mut bad_csum: Option<(u64, u64)> = None; // (count, first offset)
    let desc_size = l.desc_size;
    read_blocks(dev, l, &locs, "the group descriptors", |_, blk, bytes| {
        for (k, raw) in bytes.chunks_exact(desc_size).enumerate() {
            let g = descs.len() as u64;
            if g >= l.groups {
                break;
            }
            let off = l
                .byte(blk)
                .saturating_add((k as u64).saturating_mul(desc_size as u64));
            let d = GroupDesc::parse(l, g, raw);
            if !d.csum_ok {
                if !opts.ignore_csum {
                    let want = desc_csum(l, g, raw).unwrap_or(0);
                    return Err(Error::corrupt(format!(
                        "group {g} descriptor checksum mismatch (stored {:#06x}, computed {want:#06x})",
                        super::le::Le(raw).u16(super::desc::BG_CHECKSUM)
                    ))
                    .offset(off)
                    .hint("run `e2fsck -f` on the unmounted device, or map anyway with --ignore-csum"));
                }
                let e = bad_csum.get_or_insert((0, off));
                e.0 = e.0.saturating_add(1);
            }
            check_desc(l, g, &d, off)?;
            descs.push(d);
        }
        Ok(())
    })?;
    if let Some((n, off)) = bad_csum {
        warnings.push(format!(
            "{n} group descriptor checksum(s) do not match (first at byte {off}); ignored \
             (--ignore-csum): their BLOCK_UNINIT flags are not trusted"
        ));
    }
    Ok(descs)
}

/// The group's bitmaps and inode table must lie inside the filesystem.
fn check_desc(l: &Layout, g: u64, d: &GroupDesc, desc_off: u64) -> Result<()> {
    use super::desc::{BG_BLOCK_BITMAP_LO, BG_INODE_BITMAP_LO, BG_INODE_TABLE_LO};
    let lowest = l.superblock_block().saturating_add(1);
    let fields = [
        ("block bitmap", d.bg_block_bitmap, 1, BG_BLOCK_BITMAP_LO),
        ("inode bitmap", d.bg_inode_bitmap, 1, BG_INODE_BITMAP_LO),
        (
            "inode table",
            d.bg_inode_table,
            l.inode_blocks_per_group,
            BG_INODE_TABLE_LO,
        ),
    ];
    for (what, b, n, field) in fields {
        let end = b.checked_add(n);
        if b < lowest || end.is_none_or(|e| e > l.blocks_count) {
            return Err(Error::corrupt(format!(
                "group {g}: {what} at block {b} (+{n}) lies outside the filesystem \
                 (blocks {lowest}..{})",
                l.blocks_count
            ))
            .offset(desc_off.saturating_add(field as u64))
            .hint("the group descriptors are damaged: run `e2fsck -f` on the unmounted device"));
        }
    }
    Ok(())
}

/// Merge two sorted, merged lists.
fn union(a: &ExtentList, b: &ExtentList) -> ExtentList {
    let mut out = ExtentList::new();
    let (mut x, mut y) = (a.iter().peekable(), b.iter().peekable());
    loop {
        let next = match (x.peek(), y.peek()) {
            (Some(p), Some(q)) if p.start() <= q.start() => x.next(),
            (Some(_), Some(_)) => y.next(),
            (Some(_), None) => x.next(),
            (None, Some(_)) => y.next(),
            (None, None) => break,
        };
        if let Some(e) = next {
            out.push(*e);
        }
    }
    out
}

/// True when `e` lies inside one extent of `list`.
fn covered(list: &ExtentList, e: &Extent) -> bool {
    let s = list.as_slice();
    let i = s.partition_point(|x| x.end() <= e.start());
    s.get(i)
        .is_some_and(|x| x.start() <= e.start() && x.end() >= e.end())
}

/// Read the used-block map (see [`super::read_map`]).
pub(crate) fn read_map(dev: &(impl ReadAt + ?Sized), opts: &MapOptions) -> Result<FsMap> {
    let dev_size = dev
        .size()
        .map_err(|e| Error::io("finding the device size", e))?;
    let mut warnings = Vec::new();
    let l = load_layout(dev, dev_size, opts, &mut warnings)?;
    // A mounted filesystem writes bitmaps and descriptors back at different
    // times, so their checksums disagree now and then: a live map is lenient.
    let live = check_state(&l, opts, &mut warnings)?;
    let opts = &MapOptions {
        ignore_csum: opts.ignore_csum || live,
        ..*opts
    };
    let backup = l.sb_offset != SUPERBLOCK_OFFSET;
    let descs = read_descriptors(dev, &l, opts, &mut warnings)?;
    let has_gd_csum = l.checksums != Checksums::None;
    let verify_bitmaps = l.checksums == Checksums::MetadataCsum && !backup;

    // Which groups have a bitmap to read, and which use computed metadata.
    let uninit = |d: &GroupDesc| has_gd_csum && d.block_uninit();
    let trusted_uninit = |d: &GroupDesc| uninit(d) && d.csum_ok && !backup;
    let to_read: Vec<(u64, u64)> = descs
        .iter()
        .enumerate()
        .filter(|(_, d)| !trusted_uninit(d))
        .map(|(g, d)| (g as u64, d.bg_block_bitmap))
        .collect();

    let bitmap_len = usize::try_from(l.clusters_per_group / 8).unwrap_or(0);
    let ratio = l.cluster_ratio();
    let mut used = ExtentList::new();
    let mut bad_bitmap: Option<(u64, u64)> = None;
    read_blocks(dev, &l, &to_read, "a block bitmap", |g, blk, bytes| {
        let bitmap = bytes.get(..bitmap_len).unwrap_or(bytes);
        // OK to index: `g` comes from enumerating `descs`.
        let d = descs
            .get(usize::try_from(g).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or_default();
        if verify_bitmaps && !uninit(&d) && !block_bitmap_csum_ok(&l, &d, bitmap) {
            let off = l.byte(blk);
            if !opts.ignore_csum {
                return Err(Error::corrupt(format!(
                    "group {g} block bitmap checksum mismatch (block {blk})"
                ))
                .offset(off)
                .hint(
                    "run `e2fsck -f` on the unmounted device, or map anyway with --ignore-csum",
                ));
            }
            let e = bad_bitmap.get_or_insert((0, off));
            e.0 = e.0.saturating_add(1);
        }
        let first = l.group_first_block(g);
        let end = l.group_end_block(g);
        for_each_run(bitmap, |s, e| {
            let b0 = first.saturating_add(s.saturating_mul(ratio));
            let b1 = first.saturating_add(e.saturating_mul(ratio)).min(end);
            if let Some(x) = Extent::from_bounds(l.byte(b0), l.byte(b1)) {
                used.push(x);
            }
        });
        Ok(())
    })?;
    if let Some((n, off)) = bad_bitmap {
        warnings.push(format!(
            "{n} block bitmap checksum(s) do not match (first at byte {off}); ignored (--ignore-csum)"
        ));
    }
    if backup && l.checksums == Checksums::MetadataCsum {
        warnings.push(
            "block bitmap checksums were not verified: the backup descriptors hold old checksums"
                .to_string(),
        );
    }

    // What no bitmap says: the boot area, the metadata BLOCK_UNINIT groups
    // use, and (a safety net for inconsistent filesystems) every group's
    // bitmaps and inode table.
    let mut extra = Vec::new();
    let boot_end = BOOT_AND_SUPERBLOCK
        .max(l.byte(l.first_data_block))
        .min(l.fs_bytes());
    extra.extend(Extent::from_bounds(0, boot_end));
    for (g, d) in descs.iter().enumerate() {
        let g = g as u64;
        for (b, n) in [
            (d.bg_block_bitmap, 1),
            (d.bg_inode_bitmap, 1),
            (d.bg_inode_table, l.inode_blocks_per_group),
        ] {
            if let Some(e) = cluster_extent(&l, b, n).filter(|e| !covered(&used, e)) {
                extra.push(e);
            }
        }
        if uninit(d) {
            let (sb_blk, old_desc, new_desc) = l.super_and_bgd_loc(g);
            extra.extend(sb_blk.and_then(|b| cluster_extent(&l, b, 1)));
            extra.extend(old_desc.and_then(|(b, n)| cluster_extent(&l, b, n)));
            extra.extend(new_desc.and_then(|b| cluster_extent(&l, b, 1)));
        }
    }
    let used = union(&used, &ExtentList::from_unsorted(extra)).clamp(l.fs_bytes());
    let uninit_groups = descs.iter().filter(|d| uninit(d)).count();
    let itable_tails = itable_tails(dev, &l, &descs, !backup, &mut warnings)?;
    let itable_tails = ItableTails {
        zeroed: itable_tails.zeroed.intersect(&used),
        lazy: itable_tails.lazy.intersect(&used),
    };
    Ok(FsMap {
        geometry: Geometry::from_layout(&l, uninit_groups),
        used,
        itable_tails,
        warnings,
    })
}

/// Every group's inode-table tail (see [`itable`]), each checked against
/// its inode bitmap; minus every group's bitmap blocks, which a damaged
/// descriptor could place inside another group's table.
fn itable_tails(
    dev: &(impl ReadAt + ?Sized),
    l: &Layout,
    descs: &[GroupDesc],
    trusted: bool,
    warnings: &mut Vec<String>,
) -> Result<ItableTails> {
    let mut found = Vec::new();
    let mut corrupt: Option<(u64, u32, u64)> = None; // (count, first itable_unused, first group)
    for (g, d) in descs.iter().enumerate() {
        match itable::tail(l, d, trusted) {
            Ok(t) => found.push((g as u64, t)),
            Err(NoTail::Corrupt(n)) => {
                let c = corrupt.get_or_insert((0, n, g as u64));
                c.0 = c.0.saturating_add(1);
            }
            Err(NoTail::Untrusted | NoTail::Full) => {}
        }
    }
    if let Some((n, unused, g)) = corrupt {
        warnings.push(format!(
            "{n} group descriptor(s) claim more unused inodes than a group holds (group {g}: \
             bg_itable_unused {unused}); their inode tables are copied whole. Run `e2fsck -f`"
        ));
    }
    // Inode bitmaps of groups that have one on disk (INODE_UNINIT: none).
    let to_read: Vec<(usize, u64)> = found
        .iter()
        .enumerate()
        .filter(|(_, (g, _))| {
            descs
                .get(usize::try_from(*g).unwrap_or(usize::MAX))
                .is_some_and(|d| !d.inode_uninit())
        })
        .filter_map(|(i, (g, _))| {
            let d = descs.get(usize::try_from(*g).ok()?)?;
            Some((i, d.bg_inode_bitmap))
        })
        .collect();
    let mut disagree = vec![false; found.len()];
    let bitmap_len = usize::try_from(u64::from(l.sb.s_inodes_per_group).div_ceil(8)).unwrap_or(0);
    read_blocks(dev, l, &to_read, "an inode bitmap", |i, _, bytes| {
        let bitmap = bytes.get(..bitmap_len).unwrap_or(bytes);
        if let (Some((_, t)), Some(flag)) = (found.get(i), disagree.get_mut(i)) {
            *flag = !itable::bitmap_agrees(l, bitmap, t.used_inodes);
        }
        Ok(())
    })?;
    let mut zeroed = Vec::new();
    let mut lazy = Vec::new();
    let mut first_disagreeing = None;
    for ((g, t), bad) in found.iter().zip(&disagree) {
        if *bad {
            first_disagreeing.get_or_insert(*g);
            continue;
        }
        let e = Extent::from_bounds(
            l.byte(t.first_block),
            l.byte(t.first_block.saturating_add(t.blocks)),
        );
        if t.zeroed {
            zeroed.extend(e);
        } else {
            lazy.extend(e);
        }
    }
    if let Some(g) = first_disagreeing {
        let n = disagree.iter().filter(|b| **b).count();
        warnings.push(format!(
            "{n} group(s) have an inode in use past bg_itable_unused (first: group {g}); their \
             inode tables are copied whole. Run `e2fsck -f`"
        ));
    }
    let bitmaps = ExtentList::from_unsorted(
        descs
            .iter()
            .flat_map(|d| [d.bg_block_bitmap, d.bg_inode_bitmap])
            .filter_map(|b| cluster_extent(l, b, 1))
            .collect(),
    );
    Ok(ItableTails {
        zeroed: ExtentList::from_unsorted(zeroed).subtract(&bitmaps),
        lazy: ExtentList::from_unsorted(lazy).subtract(&bitmaps),
    })
}
