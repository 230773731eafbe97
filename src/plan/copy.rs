//! The copy plan: which byte ranges to move, cut into chunks, from a used
//! map and the devices' facts. Pure: no I/O, unit-tested without root.
//!
//! Ranges are widened to the largest logical block size of all devices (so
//! every transfer is O_DIRECT-able), clamped to the source, and refused when
//! they would not fit in a target: the engine never writes outside one.

use crate::error::{Error, Result};
use crate::units::{Extent, ExtentList};

/// What the plan is made from.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// Bytes to copy (the filesystem's used map, or the whole device).
    pub used: &'a ExtentList,
    /// Size of the source device in bytes.
    pub source_size: u64,
    /// Sizes of the targets in bytes.
    pub target_sizes: &'a [u64],
    /// Largest logical block size among source and targets (a power of two).
    pub align: u64,
    /// Largest transfer in bytes (a power of two, a multiple of `align`).
    pub chunk_size: u64,
    /// Free gaps up to this many bytes between used ranges are copied too:
    /// one larger transfer costs less than two small ones on most devices,
    /// and free blocks may hold anything.
    pub max_gap: u64,
}

/// The ranges to copy and how they are cut.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyPlan {
    /// Aligned ranges, sorted and merged, inside the source and every target.
    pub ranges: ExtentList,
    /// Largest transfer in bytes.
    pub chunk_size: u64,
    /// Number of chunks (`ranges.chunks(chunk_size)` yields exactly this many).
    pub chunks: u64,
    /// Bytes to copy (sum of `ranges`).
    pub bytes: u64,
    /// Bytes of the source not copied.
    pub skipped: u64,
    /// Size of the source device.
    pub source_size: u64,
    /// The source's last partial block (its size is not a multiple of the
    /// alignment) when the used map reaches into it: O_DIRECT cannot move
    /// it, so the engine copies and checks it with buffered I/O. Not in
    /// `ranges` or `chunks`; in `bytes`.
    pub tail: Option<Extent>,
}

impl CopyPlan {
    /// The chunks, in device order (allocation-free).
    pub fn chunks(&self) -> crate::units::Chunks<'_> {
        self.ranges.chunks(self.chunk_size)
    }
}

/// Make the plan, or refuse when a target is too small for the ranges.
pub fn plan_copy(input: &PlanInput<'_>) -> Result<CopyPlan> {
    let PlanInput {
        used,
        source_size,
        target_sizes,
        align,
        chunk_size,
        max_gap,
    } = *input;
    if !align.is_power_of_two() {
        return Err(Error::invalid(format!(
            "logical block size {align} is not a power of two"
        )));
    }
    if !chunk_size.is_power_of_two() || chunk_size < align {
        return Err(Error::invalid(format!(
            "chunk size {chunk_size} must be a power of two and at least the logical block size {align}"
        )));
    }
    // A source whose size is not a multiple of the block size keeps its tail
    // out of O_DIRECT reach: the aligned part goes in chunks, the partial
    // last block (when the map reaches it: a full copy) is the `tail`.
    let src_limit = source_size.saturating_sub(source_size.checked_rem(align).unwrap_or(0));
    let ranges = bridge_gaps(&used.clamp(src_limit).align_out(align, src_limit), max_gap);
    let tail = if used.clamp(source_size).end() > src_limit {
        Extent::from_bounds(src_limit, source_size)
    } else {
        None
    };
    let need = tail.map_or(ranges.end(), |t| t.end());
    for (i, &size) in target_sizes.iter().enumerate() {
        if size < need {
            return Err(Error::refused(format!(
                "target {} is {size} bytes, but the data to copy reaches byte {need}",
                i.saturating_add(1)
            ))
            .hint("use a target at least as large as the source filesystem"));
        }
    }
    let bytes = ranges
        .total_bytes()
        .saturating_add(tail.map_or(0, |t| t.len()));
    let chunks = ranges.chunk_count(chunk_size);
    Ok(CopyPlan {
        chunk_size,
        chunks,
        bytes,
        skipped: source_size.saturating_sub(bytes),
        source_size,
        ranges,
        tail,
    })
}

/// Join extents separated by at most `max_gap` bytes (0 = unchanged).
pub fn bridge_gaps(list: &ExtentList, max_gap: u64) -> ExtentList {
    if max_gap == 0 {
        return list.clone();
    }
    let mut out = ExtentList::new();
    let mut cur: Option<Extent> = None;
    for &e in list {
        cur = Some(match cur {
            Some(c) if e.start().saturating_sub(c.end()) <= max_gap => {
                // OK: e.end() > c.start(), so the range is non-empty.
                Extent::from_bounds(c.start(), e.end()).unwrap_or(c)
            }
            Some(c) => {
                out.push(c);
                e
            }
            None => e,
        });
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out
}

/// The extent of chunk number `index` of `plan`, when the caller keeps only
/// indices (reports of differing ranges).
pub fn chunk_at(plan: &CopyPlan, index: u64) -> Option<Extent> {
    plan.chunks().nth(usize::try_from(index).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[(u64, u64)]) -> ExtentList {
        ExtentList::from_unsorted(v.iter().map(|&(s, l)| Extent::new(s, l).unwrap()).collect())
    }

    fn pairs(l: &ExtentList) -> Vec<(u64, u64)> {
        l.iter().map(|e| (e.start(), e.end())).collect()
    }

    #[test]
    fn aligns_clamps_and_chunks() {
        let used = list(&[(100, 10), (5000, 3000), (1 << 20, 1 << 20), (9 << 20, 100)]);
        let p = plan_copy(&PlanInput {
            used: &used,
            source_size: 2 << 20,
            target_sizes: &[2 << 20, 4 << 20],
            align: 4096,
            chunk_size: 1 << 19,
            max_gap: 0,
        })
        .unwrap();
        // 100..110 -> 0..4096; 5000..8000 -> 4096..8192, merged; the range
        // past the source end is dropped.
        assert_eq!(pairs(&p.ranges), vec![(0, 8192), (1 << 20, 2 << 20)]);
        assert_eq!(p.bytes, 8192 + (1 << 20));
        assert_eq!(p.chunks, 3);
        assert_eq!(p.chunks().count() as u64, p.chunks);
        assert_eq!(p.skipped, (2 << 20) - p.bytes);
        for c in p.chunks() {
            assert_eq!(c.start() % 4096, 0);
            assert_eq!(c.len() % 4096, 0);
            assert!(c.len() <= 1 << 19);
        }
        assert_eq!(chunk_at(&p, 1).map(|e| e.start()), Some(1 << 20));
        assert_eq!(chunk_at(&p, 3), None);
    }

    #[test]
    fn refuses_a_target_too_small_and_bad_geometry() {
        let used = list(&[(0, 4096), (1 << 20, 4096)]);
        let mut input = PlanInput {
            used: &used,
            source_size: 4 << 20,
            target_sizes: &[4 << 20, 1 << 20],
            align: 512,
            chunk_size: 1 << 20,
            max_gap: 0,
        };
        let e = plan_copy(&input).unwrap_err();
        assert!(matches!(e.kind(), crate::ErrorKind::Refused(m) if m.contains("target 2")));
        input.target_sizes = &[(1 << 20) + 4096];
        assert!(
            plan_copy(&input).is_ok(),
            "a target just large enough is fine"
        );
        input.chunk_size = 256;
        assert!(plan_copy(&input).is_err());
        input.chunk_size = 3 << 20;
        assert!(plan_copy(&input).is_err());
        input.chunk_size = 1 << 20;
        input.align = 1000;
        assert!(plan_copy(&input).is_err());
    }

    #[test]
    fn small_gaps_are_bridged() {
        let used = list(&[(0, 4096), (8192, 4096), (65536, 4096), (1 << 20, 4096)]);
        assert_eq!(pairs(&bridge_gaps(&used, 0)), pairs(&used));
        assert_eq!(
            pairs(&bridge_gaps(&used, 4096)),
            vec![(0, 12288), (65536, 69632), (1 << 20, (1 << 20) + 4096)]
        );
        assert_eq!(
            pairs(&bridge_gaps(&used, 64 << 10)),
            vec![(0, 69632), (1 << 20, (1 << 20) + 4096)]
        );
        let p = plan_copy(&PlanInput {
            used: &used,
            source_size: 2 << 20,
            target_sizes: &[2 << 20],
            align: 4096,
            chunk_size: 1 << 20,
            max_gap: 1 << 20,
        })
        .unwrap();
        assert_eq!(pairs(&p.ranges), vec![(0, (1 << 20) + 4096)]);
    }

    /// Issue 11: a source whose size is not a multiple of 4 KiB lost its
    /// tail (a 5000-byte source copied 4096 bytes and reported success; a
    /// 1500-byte one copied "0 chunks").
    #[test]
    fn unaligned_source_tail_is_planned_not_dropped() {
        let input = |used, size, targets| PlanInput {
            used,
            source_size: size,
            target_sizes: targets,
            align: 4096,
            chunk_size: 4096,
            max_gap: 0,
        };
        let used = ExtentList::whole(10_000);
        let p = plan_copy(&input(&used, 10_000, &[10_000])).unwrap();
        assert_eq!(pairs(&p.ranges), vec![(0, 8192)]);
        assert_eq!(p.tail, Extent::from_bounds(8192, 10_000));
        assert_eq!((p.bytes, p.skipped, p.chunks), (10_000, 0, 2));
        // The tail needs room on the target.
        let e = plan_copy(&input(&used, 10_000, &[8192])).unwrap_err();
        assert!(e.to_string().contains("reaches byte 10000"), "{e}");
        // Smaller than one block: no chunk at all, only the tail.
        let used = ExtentList::whole(1500);
        let p = plan_copy(&input(&used, 1500, &[4096])).unwrap();
        assert!(p.ranges.is_empty());
        assert_eq!(p.tail, Extent::from_bounds(0, 1500));
        assert_eq!((p.bytes, p.chunks), (1500, 0));
        // A used map that stops before the partial block: no tail.
        let used = list(&[(0, 4096)]);
        let p = plan_copy(&input(&used, 10_000, &[8192])).unwrap();
        assert_eq!(p.tail, None);
        assert_eq!(p.bytes, 4096);
    }
}
