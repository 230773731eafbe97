//! Decisions of the iterative pre-copy, pure: which ranges the next round
//! copies, when to stop iterating, and what the read-only window copies.
//!
//! A write is recorded when its bio is queued, not when it completes, so a
//! round that reads a range right after the take may still see the old
//! data. A dirty set therefore stays pending until a round that *started*
//! at least `settle` after its take has copied it; the final pass (after
//! `remount,ro`, when every write has completed) copies everything pending.

use std::time::Duration;

use crate::units::{Extent, ExtentList};

/// The union of two lists.
pub fn union(a: &ExtentList, b: &ExtentList) -> ExtentList {
    let mut v: Vec<Extent> = a.iter().copied().collect();
    v.extend(b.iter().copied());
    ExtentList::from_unsorted(v)
}

/// The bytes of `a` not in `b`.
pub fn difference(a: &ExtentList, b: &ExtentList) -> ExtentList {
    let limit = a.end().max(b.end());
    intersection(a, &b.complement(limit))
}

/// The bytes in both lists.
pub fn intersection(a: &ExtentList, b: &ExtentList) -> ExtentList {
    let mut out = ExtentList::new();
    let (xs, ys) = (a.as_slice(), b.as_slice());
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (xs.get(i), ys.get(j)) {
        if let Some(c) = x.intersect(y) {
            out.push(c);
        }
        if x.end() <= y.end() {
            i = i.saturating_add(1);
        } else {
            j = j.saturating_add(1);
        }
    }
    out
}

/// When to stop iterating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRule {
    /// Rounds at most, the first included.
    pub max_rounds: u32,
    /// A dirty set this small is left for the read-only window.
    pub small_bytes: u64,
    /// A round whose set is not below this share (percent) of the previous
    /// one's is not worth it: the writer is as fast as the copy.
    pub shrink_percent: u64,
}

impl Default for StopRule {
    fn default() -> Self {
        Self {
            max_rounds: 10,
            small_bytes: 8 << 20,
            shrink_percent: 90,
        }
    }
}

/// Why iterating stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// The dirty set is small enough for the window.
    Small,
    /// The dirty set stopped shrinking.
    NotShrinking,
    /// `max_rounds` reached.
    MaxRounds,
}

impl StopRule {
    /// Whether to stop before round `next` (2, 3, ...), whose set would be
    /// `bytes`, after a previous round of `prev_bytes` (`None` after round 1).
    pub fn decide(&self, next: u32, bytes: u64, prev_bytes: Option<u64>) -> Option<Stop> {
        if bytes <= self.small_bytes {
            return Some(Stop::Small);
        }
        if next > self.max_rounds {
            return Some(Stop::MaxRounds);
        }
        match prev_bytes {
            Some(p)
                if u128::from(bytes).saturating_mul(100)
                    >= u128::from(p).saturating_mul(u128::from(self.shrink_percent)) =>
            {
                Some(Stop::NotShrinking)
            }
            _ => None,
        }
    }
}

/// Dirty sets waiting to be copied, each with the time (since the start)
/// it was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    sets: Vec<(Duration, ExtentList)>,
}

impl Pending {
    /// Add the set taken at `at`.
    pub fn add(&mut self, at: Duration, set: ExtentList) {
        if !set.is_empty() {
            self.sets.push((at, set));
        }
    }

    /// Everything pending.
    pub fn all(&self) -> ExtentList {
        self.sets
            .iter()
            .fold(ExtentList::new(), |acc, (_, s)| union(&acc, s))
    }

    /// A round that started at `round_start` copied everything pending:
    /// forget the sets taken at least `settle` before it.
    pub fn copied(&mut self, round_start: Duration, settle: Duration) {
        self.sets
            .retain(|(at, _)| at.saturating_add(settle) > round_start);
    }
}

/// What the read-only window copies: every pending set, the last one drained
/// after the freeze, and the blocks the filesystem uses now but did not use
/// when round 1 read its map (written before tracking and allocated only in
/// bitmaps flushed later, so never seen as a write of their own).
pub fn final_set(
    pending: &Pending,
    drained: &ExtentList,
    map_round1: &ExtentList,
    map_now: &ExtentList,
) -> ExtentList {
    union(
        &union(&pending.all(), drained),
        &difference(map_now, map_round1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &[(u64, u64)]) -> ExtentList {
        ExtentList::from_unsorted(
            v.iter()
                .map(|&(s, e)| Extent::from_bounds(s, e).unwrap())
                .collect(),
        )
    }

    #[test]
    fn set_operations() {
        let a = l(&[(0, 10), (20, 30), (40, 50)]);
        let b = l(&[(5, 25), (45, 60)]);
        assert_eq!(union(&a, &b), l(&[(0, 30), (40, 60)]));
        assert_eq!(intersection(&a, &b), l(&[(5, 10), (20, 25), (45, 50)]));
        assert_eq!(difference(&a, &b), l(&[(0, 5), (25, 30), (40, 45)]));
        assert_eq!(difference(&b, &a), l(&[(10, 20), (50, 60)]));
        let e = ExtentList::new();
        assert_eq!(difference(&a, &e), a);
        assert_eq!(intersection(&a, &e), e);
        assert_eq!(union(&e, &e), e);
    }

    #[test]
    fn set_operations_agree_with_a_bitmap() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let mut mk = || {
                let mut v = Vec::new();
                for _ in 0..(next() % 6) {
                    let s = next() % 200;
                    v.push(Extent::new(s, 1 + next() % 30).unwrap());
                }
                ExtentList::from_unsorted(v)
            };
            let (a, b) = (mk(), mk());
            for off in 0..240 {
                let (ia, ib) = (a.contains(off), b.contains(off));
                assert_eq!(union(&a, &b).contains(off), ia || ib);
                assert_eq!(intersection(&a, &b).contains(off), ia && ib);
                assert_eq!(difference(&a, &b).contains(off), ia && !ib);
            }
        }
    }

    #[test]
    fn stop_rule() {
        let r = StopRule {
            max_rounds: 4,
            small_bytes: 100,
            shrink_percent: 90,
        };
        assert_eq!(r.decide(2, 100, None), Some(Stop::Small));
        assert_eq!(r.decide(2, 1000, None), None);
        assert_eq!(r.decide(3, 1000, Some(2000)), None);
        assert_eq!(r.decide(3, 1800, Some(2000)), Some(Stop::NotShrinking));
        assert_eq!(r.decide(3, 2500, Some(2000)), Some(Stop::NotShrinking));
        assert_eq!(r.decide(5, 1000, Some(9000)), Some(Stop::MaxRounds));
        assert_eq!(
            r.decide(2, u64::MAX, Some(u64::MAX)),
            Some(Stop::NotShrinking)
        );
    }

    #[test]
    fn a_set_stays_pending_until_a_round_started_after_it_settled() {
        let s = Duration::from_secs;
        let mut p = Pending::default();
        p.add(s(10), l(&[(0, 10)]));
        p.add(s(12), l(&[(100, 110)]));
        p.add(s(12), ExtentList::new());
        assert_eq!(p.all(), l(&[(0, 10), (100, 110)]));
        // A round starting at 11 s with a 1 s settle: the first set is done.
        p.copied(s(11), s(1));
        assert_eq!(p.all(), l(&[(100, 110)]));
        // One starting at 12.5 s: the second is not settled yet.
        p.copied(Duration::from_millis(12_500), s(1));
        assert_eq!(p.all(), l(&[(100, 110)]));
        p.copied(s(13), s(1));
        assert!(p.all().is_empty());
    }

    #[test]
    fn the_window_copies_pending_drained_and_newly_used() {
        let mut p = Pending::default();
        p.add(Duration::ZERO, l(&[(0, 10)]));
        let drained = l(&[(50, 60)]);
        let map1 = l(&[(0, 100)]);
        let now = l(&[(0, 100), (200, 300)]);
        assert_eq!(
            final_set(&p, &drained, &map1, &now),
            l(&[(0, 10), (50, 60), (200, 300)])
        );
    }
}
