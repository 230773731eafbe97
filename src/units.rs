//! Newtypes for positions and sizes on a device: [`BlockNo`], [`ByteOffset`],
//! [`Extent`] (a byte range) and [`ExtentList`] (sorted, merged byte ranges).
//!
//! Pure data, no I/O. `ExtentList` is what the used-block map produces and what
//! the copy engine consumes, cut into aligned, bounded chunks.

use std::fmt;

/// A filesystem block number (in units of the filesystem's block size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct BlockNo(pub u64);

/// A byte offset on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct ByteOffset(pub u64);

impl BlockNo {
    /// The byte offset of this block, or `None` on overflow.
    pub fn to_bytes(self, block_size: u32) -> Option<ByteOffset> {
        self.0.checked_mul(u64::from(block_size)).map(ByteOffset)
    }
}

impl fmt::Display for BlockNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.0)
    }
}

impl fmt::Display for ByteOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}", self.0)
    }
}

/// A non-empty half-open byte range `[start, start + len)`.
///
/// The constructor guarantees `len > 0` and that `start + len` does not overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Extent {
    start: u64,
    len: u64,
}

impl Extent {
    /// `[start, start + len)`, or `None` when `len == 0` or the end overflows.
    pub fn new(start: u64, len: u64) -> Option<Self> {
        if len == 0 {
            return None;
        }
        start.checked_add(len)?;
        Some(Self { start, len })
    }

    /// `[start, end)`, or `None` when `end <= start`.
    pub fn from_bounds(start: u64, end: u64) -> Option<Self> {
        Self::new(start, end.checked_sub(start)?)
    }

    /// First byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Length in bytes (never 0).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: an extent is never empty. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        // Cannot overflow: checked in `new`.
        self.start + self.len
    }

    /// The part of `self` inside `[0, limit)`, if any.
    pub fn clamp(&self, limit: u64) -> Option<Self> {
        Self::from_bounds(self.start, self.end().min(limit))
    }

    /// The overlap of two extents, if any.
    pub fn intersect(&self, other: &Extent) -> Option<Self> {
        Self::from_bounds(self.start.max(other.start), self.end().min(other.end()))
    }
}

impl fmt::Display for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end())
    }
}

/// Sorted, non-overlapping, non-adjacent byte ranges.
///
/// Every constructor and mutator keeps that invariant, so consumers can rely on
/// it (the fuzz targets assert it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ExtentList {
    extents: Vec<Extent>,
}

impl ExtentList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// One extent covering `[0, len)` (empty when `len == 0`).
    pub fn whole(len: u64) -> Self {
        let mut l = Self::new();
        if let Some(e) = Extent::new(0, len) {
            l.extents.push(e);
        }
        l
    }

    /// Build from extents in any order, possibly overlapping.
    pub fn from_unsorted(mut extents: Vec<Extent>) -> Self {
        extents.sort_unstable();
        let mut l = Self::new();
        for e in extents {
            l.push(e);
        }
        l
    }

    /// Append an extent. Cheap (amortised O(1)) when extents arrive in order,
    /// which is how bitmap scans produce them; an out-of-order extent is merged
    /// in place (O(n)).
    pub fn push(&mut self, e: Extent) {
        match self.extents.last_mut() {
            None => self.extents.push(e),
            Some(last) if e.start >= last.start => {
                if e.start <= last.end() {
                    let end = last.end().max(e.end());
                    last.len = end - last.start;
                } else {
                    self.extents.push(e);
                }
            }
            Some(_) => self.insert_slow(e),
        }
    }

    /// Append `[start, start + len)`; a zero length is ignored. Returns false
    /// (and adds nothing) when the end would overflow.
    pub fn push_range(&mut self, start: u64, len: u64) -> bool {
        match Extent::new(start, len) {
            Some(e) => {
                self.push(e);
                true
            }
            None => len == 0,
        }
    }

    fn insert_slow(&mut self, e: Extent) {
        let mut all = std::mem::take(&mut self.extents);
        let pos = all.partition_point(|x| x.start < e.start);
        all.insert(pos, e);
        for x in all {
            self.push(x);
        }
    }

    /// The extents, sorted and merged.
    pub fn as_slice(&self) -> &[Extent] {
        &self.extents
    }

    /// Iterate over the extents.
    pub fn iter(&self) -> std::slice::Iter<'_, Extent> {
        self.extents.iter()
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.extents.len()
    }

    /// True when there are no extents.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Total number of bytes covered.
    pub fn total_bytes(&self) -> u64 {
        // Cannot overflow: extents are disjoint ranges inside u64.
        self.extents.iter().map(|e| e.len).sum()
    }

    /// One past the last covered byte (0 when empty).
    pub fn end(&self) -> u64 {
        self.extents.last().map_or(0, Extent::end)
    }

    /// True when byte `off` is covered.
    pub fn contains(&self, off: u64) -> bool {
        let i = self.extents.partition_point(|e| e.end() <= off);
        self.extents.get(i).is_some_and(|e| e.start <= off)
    }

    /// The parts of the list inside `[0, limit)`.
    #[must_use]
    pub fn clamp(&self, limit: u64) -> Self {
        let mut l = Self::new();
        for e in &self.extents {
            match e.clamp(limit) {
                Some(c) => l.push(c),
                None => break,
            }
        }
        l
    }

    /// Widen every extent outwards to multiples of `align` (a power of two),
    /// clamped to `[0, limit)`, and merge what now touches. Used to make ranges
    /// O_DIRECT-able on a device with a logical block size of `align`.
    ///
    /// # Panics
    /// When `align` is not a power of two (a caller bug, not input).
    #[must_use]
    pub fn align_out(&self, align: u64, limit: u64) -> Self {
        assert!(align.is_power_of_two(), "alignment must be a power of two");
        let mask = align - 1;
        let mut l = Self::new();
        for e in &self.extents {
            let start = e.start & !mask;
            let end = e.end().checked_add(mask).map_or(!mask, |x| x & !mask);
            if let Some(x) = Extent::from_bounds(start, end.min(limit)) {
                l.push(x);
            }
        }
        l
    }

    /// The bytes of `[0, limit)` not covered by the list.
    #[must_use]
    pub fn complement(&self, limit: u64) -> Self {
        let mut l = Self::new();
        let mut pos = 0u64;
        for e in &self.extents {
            if e.start >= limit {
                break;
            }
            if let Some(gap) = Extent::from_bounds(pos, e.start) {
                l.push(gap);
            }
            pos = e.end();
        }
        if let Some(gap) = Extent::from_bounds(pos, limit) {
            l.push(gap);
        }
        l
    }

    /// The bytes covered by both lists.
    #[must_use]
    pub fn intersect(&self, other: &Self) -> Self {
        let mut l = Self::new();
        let (a, b) = (&self.extents, &other.extents);
        let (mut i, mut j) = (0, 0);
        while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            if let Some(c) = x.intersect(y) {
                l.push(c);
            }
            if x.end() <= y.end() {
                i += 1;
            } else {
                j += 1;
            }
        }
        l
    }

    /// The bytes of this list not covered by `other`.
    #[must_use]
    pub fn subtract(&self, other: &Self) -> Self {
        self.intersect(&other.complement(self.end()))
    }

    /// Cut the list into pieces of at most `max_len` bytes, each inside one
    /// extent. Pieces start at the extent start and then at multiples of
    /// `max_len` in absolute device offsets, so the same map always yields the
    /// same chunks (a resumed or delta copy compares like with like).
    ///
    /// # Panics
    /// When `max_len` is 0 (a caller bug, not input).
    pub fn chunks(&self, max_len: u64) -> Chunks<'_> {
        assert!(max_len > 0, "chunk size must be positive");
        Chunks {
            extents: self.extents.iter(),
            current: None,
            max_len,
        }
    }

    /// Number of pieces [`chunks`](Self::chunks) yields, without allocating.
    pub fn chunk_count(&self, max_len: u64) -> u64 {
        self.chunks(max_len).map(|_| 1u64).sum()
    }
}

impl<'a> IntoIterator for &'a ExtentList {
    type Item = &'a Extent;
    type IntoIter = std::slice::Iter<'a, Extent>;
    fn into_iter(self) -> Self::IntoIter {
        self.extents.iter()
    }
}

/// Iterator returned by [`ExtentList::chunks`].
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    extents: std::slice::Iter<'a, Extent>,
    current: Option<Extent>,
    max_len: u64,
}

impl Iterator for Chunks<'_> {
    type Item = Extent;

    fn next(&mut self) -> Option<Extent> {
        let cur = match self.current.take() {
            Some(c) => c,
            None => *self.extents.next()?,
        };
        // Next boundary: the next multiple of max_len after cur.start.
        let boundary = (cur.start / self.max_len)
            .checked_add(1)
            .and_then(|n| n.checked_mul(self.max_len))
            .unwrap_or(u64::MAX);
        let end = cur.end().min(boundary);
        // OK to unwrap: end > cur.start because boundary > cur.start and cur is non-empty.
        let piece = Extent::from_bounds(cur.start, end).expect("non-empty piece");
        self.current = Extent::from_bounds(end, cur.end());
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: u64, l: u64) -> Extent {
        Extent::new(s, l).unwrap()
    }

    fn pairs(l: &ExtentList) -> Vec<(u64, u64)> {
        l.iter().map(|e| (e.start(), e.end())).collect()
    }

    #[test]
    fn intersect_and_subtract_against_a_byte_oracle() {
        let a = ExtentList::from_unsorted(vec![ext(0, 10), ext(20, 10), ext(40, 30)]);
        let b = ExtentList::from_unsorted(vec![ext(5, 20), ext(45, 5), ext(60, 100)]);
        let bytes = |l: &ExtentList| (0..200u64).filter(|&o| l.contains(o)).collect::<Vec<_>>();
        let both: Vec<u64> = (0..200)
            .filter(|&o| a.contains(o) && b.contains(o))
            .collect();
        let only_a: Vec<u64> = (0..200)
            .filter(|&o| a.contains(o) && !b.contains(o))
            .collect();
        assert_eq!(bytes(&a.intersect(&b)), both);
        assert_eq!(bytes(&a.subtract(&b)), only_a);
        assert_eq!(
            pairs(&a.subtract(&b)),
            vec![(0, 5), (25, 30), (40, 45), (50, 60)]
        );
        assert!(a.intersect(&ExtentList::new()).is_empty());
        assert_eq!(a.subtract(&ExtentList::new()), a);
    }

    #[test]
    fn extent_rejects_empty_and_overflow() {
        assert!(Extent::new(5, 0).is_none());
        assert!(Extent::new(u64::MAX, 1).is_none());
        assert!(Extent::new(u64::MAX - 1, 1).is_some());
        assert!(Extent::from_bounds(5, 5).is_none());
        assert!(Extent::from_bounds(6, 5).is_none());
    }

    #[test]
    fn push_merges_adjacent_and_overlapping() {
        let mut l = ExtentList::new();
        l.push(ext(0, 10));
        l.push(ext(10, 5));
        l.push(ext(12, 10));
        l.push(ext(30, 1));
        assert_eq!(pairs(&l), vec![(0, 22), (30, 31)]);
        assert_eq!(l.total_bytes(), 23);
    }

    #[test]
    fn out_of_order_push_is_merged() {
        let mut l = ExtentList::new();
        l.push(ext(100, 10));
        l.push(ext(0, 10));
        l.push(ext(5, 100));
        assert_eq!(pairs(&l), vec![(0, 110)]);
        let l = ExtentList::from_unsorted(vec![ext(50, 5), ext(0, 5), ext(4, 2), ext(55, 1)]);
        assert_eq!(pairs(&l), vec![(0, 6), (50, 56)]);
    }

    #[test]
    fn contains_and_complement() {
        let l = ExtentList::from_unsorted(vec![ext(10, 10), ext(30, 10)]);
        assert!(!l.contains(9));
        assert!(l.contains(10));
        assert!(l.contains(19));
        assert!(!l.contains(20));
        assert!(l.contains(39));
        assert!(!l.contains(40));
        assert_eq!(pairs(&l.complement(50)), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(pairs(&l.complement(35)), vec![(0, 10), (20, 30)]);
        assert_eq!(pairs(&ExtentList::new().complement(7)), vec![(0, 7)]);
    }

    #[test]
    fn align_out_widens_and_merges() {
        let l = ExtentList::from_unsorted(vec![ext(100, 10), ext(600, 10), ext(1030, 2)]);
        // 100..110 -> 0..512, 600..610 -> 512..1024, 1030..1032 -> 1024..1536: all touch.
        assert_eq!(pairs(&l.align_out(512, 1 << 20)), vec![(0, 1536)]);
        assert_eq!(pairs(&l.align_out(512, 1100)), vec![(0, 1100)]);
    }

    #[test]
    fn chunks_are_bounded_and_on_grid() {
        let l = ExtentList::from_unsorted(vec![ext(0, 10), ext(14, 20), ext(40, 3)]);
        let c: Vec<_> = l.chunks(8).map(|e| (e.start(), e.end())).collect();
        assert_eq!(
            c,
            vec![
                (0, 8),
                (8, 10),
                (14, 16),
                (16, 24),
                (24, 32),
                (32, 34),
                (40, 43)
            ]
        );
        assert_eq!(l.chunk_count(8), 7);
        let total: u64 = l.chunks(8).map(|e| e.len()).sum();
        assert_eq!(total, l.total_bytes());
    }

    #[test]
    fn chunks_near_u64_max() {
        let l = ExtentList::from_unsorted(vec![ext(u64::MAX - 10, 10)]);
        let total: u64 = l.chunks(4).map(|e| e.len()).sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn clamp_cuts_at_limit() {
        let l = ExtentList::from_unsorted(vec![ext(0, 10), ext(20, 10)]);
        assert_eq!(pairs(&l.clamp(25)), vec![(0, 10), (20, 25)]);
        assert_eq!(pairs(&l.clamp(5)), vec![(0, 5)]);
        assert!(l.clamp(0).is_empty());
    }
}
