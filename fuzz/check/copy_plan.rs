//! Fuzz the copy plan (`reroot::plan::copy::plan_copy`) with used maps,
//! device sizes, block and chunk sizes decoded from the input, up to the
//! end of the u64 range. Whatever they are, planning returns (no panic, no
//! overflow); a plan it makes covers every used byte of the source's
//! block-aligned part with aligned ranges that fit the source and every
//! target, its chunks cover exactly its ranges, and its counts add up. A
//! target at least as large as the source is never refused.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/copy_plan.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::plan::copy::{PlanInput, chunk_at, plan_copy};
use reroot::units::{Extent, ExtentList};

/// Reads little-endian numbers off the input; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u64 {
        u64::from(u16::from_le_bytes(self.take()))
    }
    fn u32(&mut self) -> u64 {
        u64::from(u32::from_le_bytes(self.take()))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let mut b = Bytes(data);
    let shape = b.u8();
    let flags = b.u8();
    // Block sizes 512 B .. 64 KiB (or, rarely, not a power of two); chunks
    // 1 to 32 blocks: bounded chunk counts for bounded used maps.
    let align = if flags & 1 != 0 && shape & 0x80 != 0 {
        u64::from(shape)
    } else {
        512 << (shape % 8)
    };
    let chunk_size = align << ((shape >> 3) % 6);
    let base = if flags & 2 != 0 { b.u64() } else { 0 };
    let source_size = base.saturating_add(b.u32());
    let max_gap = b.u32() % (4 << 20);
    let targets: Vec<u64> = (0..(flags >> 2) % 4)
        .map(|_| match b.u8() % 3 {
            0 => source_size,
            1 => base.saturating_add(b.u32()),
            _ => b.u64(),
        })
        .collect();
    let mut extents = Vec::new();
    while !b.0.is_empty() && extents.len() < 256 {
        let start = base.saturating_add(b.u32());
        if let Some(e) = Extent::new(start, b.u16()) {
            extents.push(e);
        }
    }
    let used = ExtentList::from_unsorted(extents);
    let input = PlanInput {
        used: &used,
        source_size,
        target_sizes: &targets,
        align,
        chunk_size,
        max_gap,
    };
    let valid = align.is_power_of_two() && chunk_size.is_power_of_two() && chunk_size >= align;
    let plan = match plan_copy(&input) {
        Ok(p) => p,
        Err(e) => {
            assert!(
                !valid || targets.iter().any(|&t| t < source_size),
                "refused with every target as large as the source: {e}"
            );
            return false;
        }
    };
    assert!(valid, "accepted align {align}, chunk {chunk_size}");
    let r = &plan.ranges;
    // Every used byte of the aligned part of the source is copied.
    let src_limit = source_size - source_size % align;
    for e in &used {
        for off in [e.start(), e.end() - 1, e.start() + e.len() / 2] {
            if off < src_limit {
                assert!(r.contains(off), "used byte {off} not planned");
            }
        }
    }
    // Aligned, sorted, apart by more than max_gap, inside source and targets.
    let mut prev_end: Option<u64> = None;
    for e in r {
        assert!(!e.is_empty());
        assert_eq!(e.start() % align, 0, "{e:?} start not aligned to {align}");
        assert!(
            e.end() % align == 0 || e.end() == source_size,
            "{e:?} end not aligned to {align}"
        );
        if let Some(p) = prev_end {
            assert!(e.start() > p && e.start() - p > max_gap, "{e:?} after {p}");
        }
        prev_end = Some(e.end());
    }
    assert!(r.end() <= source_size);
    for &t in &targets {
        assert!(
            r.end() <= t,
            "plan reaches {} past a target of {t}",
            r.end()
        );
    }
    // The counts add up, and the chunks cover exactly the ranges.
    assert_eq!(plan.bytes, r.total_bytes());
    assert_eq!(plan.skipped, source_size.saturating_sub(plan.bytes));
    assert_eq!(plan.chunk_size, chunk_size);
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut last: Option<Extent> = None;
    for c in plan.chunks() {
        assert!(!c.is_empty() && c.len() <= chunk_size);
        assert!(r.contains(c.start()) && r.contains(c.end() - 1));
        if let Some(l) = last {
            assert!(c.start() >= l.end());
        }
        if n < 4 {
            assert_eq!(chunk_at(&plan, n), Some(c));
        }
        last = Some(c);
        n += 1;
        bytes += c.len();
    }
    assert_eq!(n, plan.chunks);
    assert_eq!(bytes, plan.bytes);
    assert_eq!(chunk_at(&plan, n), None);
    true
}
