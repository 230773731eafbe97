//! Write-zeroes on the targets: which targets can zero a range without
//! moving data, zeroing the map's zero class (inode-table tails, see
//! `ext::ItableTails`) and chunks that read as all zeros, and checking that
//! such ranges read back as zeros.
//!
//! One call, `fallocate(2)`, serves both kinds of target:
//! - a block device: `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE` is
//!   `blkdev_issue_zeroout(..., BLKDEV_ZERO_NOFALLBACK)` (block/fops.c,
//!   `blkdev_fallocate`): a `REQ_OP_WRITE_ZEROES` (or an unmap that
//!   guarantees zeros), never a fallback to writing zero pages. It is only
//!   tried where sysfs `queue/write_zeroes_max_bytes` is non-zero. A loop
//!   device implements it with `fallocate` on its backing file.
//! - an image file: `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE` (keeps the
//!   image sparse), or `FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE`
//!   (unwritten extents) where the filesystem refuses holes.
//!
//! A target that refuses is copied as before: zeroing is an optimisation,
//! never a requirement.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FallocateFlags, fallocate};

use super::SourceClasses;
use super::hash::chunk_hash;
use crate::plan::copy::CopyPlan;
use crate::probe::device::DeviceFacts;
use crate::probe::{SysRoot, queue};
use crate::units::{Extent, ExtentList};

/// Below this, a write costs about what a zeroing call does: not worth it.
pub const MIN_ZERO_BYTES: u64 = 64 << 10;

/// At most this many non-zero runs make a chunk worth a sparse write
/// (each run is one synchronous write on the I/O thread).
pub const MAX_RUNS: usize = 8;

/// The non-zero runs of whole `block`s in `data`, when there are at most
/// [`MAX_RUNS`] and they cover at most a quarter of it; `None` otherwise
/// (write the chunk whole). Fills `runs` (cleared first).
pub fn sparse_runs(data: &[u8], block: usize, runs: &mut Vec<(usize, usize)>) -> Option<u64> {
    runs.clear();
    if block == 0 || data.len() % block != 0 {
        return None;
    }
    let mut nonzero = 0usize;
    for (i, b) in data.chunks_exact(block).enumerate() {
        if is_zero(b) {
            continue;
        }
        nonzero += block;
        if nonzero > data.len() / 4 {
            return None;
        }
        let start = i * block;
        if let Some(last) = runs.last_mut().filter(|l| l.0 + l.1 == start) {
            last.1 += block;
        } else if runs.len() == MAX_RUNS {
            return None;
        } else {
            runs.push((start, block));
        }
    }
    Some(nonzero as u64)
}

/// The targets' handles for zeroing, shared with the pipeline.
#[derive(Debug)]
pub struct ZeroTargets {
    /// Index i is device i + 1 of the engine (the targets).
    files: Vec<(File, bool)>,
    /// Set after the first refusal: from then on everything is written.
    refused: AtomicBool,
    /// Granularity of sparse writes (a multiple of every logical block size).
    block: usize,
}

/// Can this target zero without moving data? Block devices: sysfs says so.
/// Files: assume yes; the first call confirms (a refusal falls back).
pub fn cheap(facts: &DeviceFacts, is_block: bool, root: &SysRoot) -> bool {
    if is_block {
        queue::write_zeroes_max_bytes(root, facts).is_some_and(|n| n > 0)
    } else {
        true
    }
}

impl ZeroTargets {
    /// Handles for zeroing `targets` (`(file, is_block)`), each duplicated;
    /// `block`: the largest logical block size (sparse writes use at least 4 KiB).
    pub fn new(targets: &[(&File, bool)], block: usize) -> io::Result<Self> {
        let files = targets
            .iter()
            .map(|(f, b)| Ok((f.try_clone()?, *b)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            files,
            refused: AtomicBool::new(false),
            block: block.max(4096),
        })
    }

    /// The granularity of [`Self::write_sparse`].
    pub fn block(&self) -> usize {
        self.block
    }

    /// Write `data` (at `offset`, at most [`MAX_RUNS`] non-zero runs of
    /// whole blocks listed in `runs` as (start, len) inside `data`) to the
    /// targets in `mask` as one write-zeroes of the whole range followed by
    /// a write of each run: metadata areas (backup descriptors, reserved
    /// GDT blocks) are mostly zeros inside chunks that are not.
    pub fn write_sparse(
        &self,
        mask: u64,
        offset: u64,
        data: &[u8],
        runs: &[(usize, usize)],
    ) -> Result<(), ZeroError> {
        use std::os::unix::fs::FileExt;
        self.zero(mask, offset, data.len() as u64)?;
        for (i, (f, _)) in self.files.iter().enumerate() {
            if mask & (1u64 << (i + 1)) == 0 {
                continue;
            }
            for &(start, len) in runs {
                let piece = data
                    .get(start..start.saturating_add(len))
                    .unwrap_or_default();
                f.write_all_at(piece, offset.saturating_add(start as u64))
                    .map_err(|error| ZeroError::Io {
                        device: i + 1,
                        error,
                    })?;
            }
        }
        Ok(())
    }

    /// False once a target has refused: write instead.
    pub fn usable(&self) -> bool {
        !self.refused.load(Ordering::Relaxed)
    }

    /// Zero `[offset, offset + len)` on every target whose bit (1..=T, as
    /// in the engine's device numbering) is in `mask`. An error that says
    /// "not supported here" marks the set unusable and is returned, so the
    /// caller writes instead; other errors are real I/O errors.
    pub fn zero(&self, mask: u64, offset: u64, len: u64) -> Result<(), ZeroError> {
        for (i, (f, is_block)) in self.files.iter().enumerate() {
            if mask & (1u64 << (i + 1)) == 0 {
                continue;
            }
            if let Err(e) = zero_range(f, *is_block, offset, len) {
                if unsupported(&e) {
                    self.refused.store(true, Ordering::Relaxed);
                    return Err(ZeroError::Unsupported);
                }
                return Err(ZeroError::Io {
                    device: i + 1,
                    error: e,
                });
            }
        }
        Ok(())
    }
}

/// Why a zeroing call failed.
#[derive(Debug)]
pub enum ZeroError {
    /// The target (or its filesystem) cannot do it: write instead.
    Unsupported,
    /// A real error on device `device` (1..=T).
    Io {
        /// Engine device index.
        device: usize,
        /// What the kernel said.
        error: io::Error,
    },
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::ENOSYS | libc::EINVAL)
    )
}

/// `fallocate` as described in the module docs.
fn zero_range(f: &File, is_block: bool, offset: u64, len: u64) -> io::Result<()> {
    let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let n = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let call = |flags| fallocate(f.as_fd(), flags, off, n).map_err(io::Error::from);
    let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    if is_block {
        return call(punch);
    }
    // A hole keeps an image sparse; ZERO_RANGE where holes are refused.
    match call(punch) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            call(FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE)
        }
        r => r,
    }
}

/// True when every byte of `data` is zero (fast for data that is not:
/// it stops at the first non-zero word).
pub fn is_zero(data: &[u8]) -> bool {
    let (words, tail) = data.split_at(data.len() / 16 * 16);
    words
        .chunks_exact(16)
        .all(|c| <[u8; 16]>::try_from(c).is_ok_and(|w| u128::from_ne_bytes(w) == 0))
        && tail.iter().all(|&b| b == 0)
}

/// The parts of `list` that can be zeroed on devices with logical block
/// size `align` (a power of two): each extent shrunk inwards to `align`,
/// pieces shorter than [`MIN_ZERO_BYTES`] dropped. The rest of `list` is
/// what must be copied instead.
pub fn zeroable(list: &ExtentList, align: u64) -> ExtentList {
    let mask = align.saturating_sub(1);
    let mut out = ExtentList::new();
    for e in list {
        let start = e.start().checked_add(mask).map_or(u64::MAX, |s| s & !mask);
        let end = e.end() & !mask;
        if let Some(x) = Extent::from_bounds(start, end).filter(|x| x.len() >= MIN_ZERO_BYTES) {
            out.push(x);
        }
    }
    out
}

/// What happened to the classes of the map before the copy pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassOutcome {
    /// What the copy pass must move: the data, plus every part of the
    /// `INODE_ZEROED` tails that was not zeroed.
    pub data: ExtentList,
    /// Ranges zeroed on every target (tails of both kinds).
    pub zeroed: ExtentList,
    /// Bytes of `INODE_ZEROED` tails copied instead of zeroed.
    pub itable_copied: u64,
    /// Bytes of lazy tails neither zeroed nor copied.
    pub lazy_skipped: u64,
}

/// Zero the inode-table tails on the targets in `mask` where `z` allows
/// (aligned to `align`), and say what the copy pass must still move. A
/// refusal stops zeroing (the rest is copied); an I/O error is returned as
/// (engine device index, offset, error).
pub fn zero_classes(
    z: Option<&ZeroTargets>,
    c: &SourceClasses,
    align: u64,
    mask: u64,
) -> Result<ClassOutcome, (usize, u64, io::Error)> {
    let mut both: Vec<Extent> = c.itable_zeroed.iter().copied().collect();
    both.extend(c.itable_lazy.iter().copied());
    let wanted = zeroable(&ExtentList::from_unsorted(both), align);
    let mut done = ExtentList::new();
    if let Some(z) = z {
        for e in &wanted {
            match z.zero(mask, e.start(), e.len()) {
                Ok(()) => done.push(*e),
                Err(ZeroError::Unsupported) => break,
                Err(ZeroError::Io { device, error }) => return Err((device, e.start(), error)),
            }
        }
    }
    let copied = c.itable_zeroed.subtract(&done);
    let mut data: Vec<Extent> = c.data.iter().copied().collect();
    data.extend(copied.iter().copied());
    Ok(ClassOutcome {
        data: ExtentList::from_unsorted(data),
        itable_copied: copied.total_bytes(),
        lazy_skipped: c.itable_lazy.subtract(&done).total_bytes(),
        zeroed: done,
    })
}

/// The hash table a check pass over `plan` expects when every chunk reads
/// as zeros.
pub fn zeros_table(plan: &CopyPlan) -> Vec<u64> {
    let zeros = vec![0u8; usize::try_from(plan.chunk_size).unwrap_or(0)];
    let mut last: Option<(u64, u64)> = None;
    plan.chunks()
        .map(|c| match last {
            Some((len, h)) if len == c.len() => h,
            _ => {
                let n = usize::try_from(c.len()).unwrap_or(0).min(zeros.len());
                let h = chunk_hash(zeros.get(..n).unwrap_or_default());
                last = Some((c.len(), h));
                h
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn sparse_runs_of_mostly_zero_chunks() {
        let mut runs = Vec::new();
        let mut v = vec![0u8; 64 << 10];
        assert_eq!(sparse_runs(&v, 4096, &mut runs), Some(0));
        assert!(runs.is_empty());
        v[5] = 1;
        v[4096 + 7] = 1;
        v[40960] = 1;
        assert_eq!(sparse_runs(&v, 4096, &mut runs), Some(3 * 4096));
        assert_eq!(runs, vec![(0, 8192), (40960, 4096)]);
        // More than a quarter non-zero: write it whole.
        v.iter_mut().take(20 << 10).for_each(|b| *b = 9);
        assert_eq!(sparse_runs(&v, 4096, &mut runs), None);
        // Too many runs.
        let mut w = vec![0u8; 1 << 20];
        for i in 0..10 {
            w[i * 65536] = 1;
        }
        assert_eq!(sparse_runs(&w, 4096, &mut runs), None);
    }

    #[test]
    fn sparse_write_zeroes_the_gaps() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&vec![0xAB; 64 << 10], 0).unwrap();
        let z = ZeroTargets::new(&[(&f, false)], 4096).unwrap();
        let mut data = vec![0u8; 64 << 10];
        data[4096..8192].fill(7);
        match z.write_sparse(0b10, 0, &data, &[(4096, 4096)]) {
            Ok(()) => {}
            Err(ZeroError::Unsupported) => return eprintln!("SKIP: no fallocate zeroing here"),
            Err(ZeroError::Io { error, .. }) => panic!("{error}"),
        }
        let mut got = vec![1u8; 64 << 10];
        f.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn is_zero_finds_any_byte() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v));
        for i in [0, 15, 16, 4095, 4098] {
            v[i] = 1;
            assert!(!is_zero(&v), "byte {i}");
            v[i] = 0;
        }
        assert!(is_zero(&[]));
    }

    #[test]
    fn zeroable_shrinks_to_alignment_and_drops_slivers() {
        let l = ExtentList::from_unsorted(vec![
            Extent::new(1024, 1 << 20).unwrap(),
            Extent::new(8 << 20, 4096).unwrap(),
        ]);
        let z = zeroable(&l, 4096);
        let v: Vec<(u64, u64)> = z.iter().map(|e| (e.start(), e.end())).collect();
        assert_eq!(v, vec![(4096, 1 << 20)]);
    }

    #[test]
    fn zeroes_a_file_range_and_keeps_the_rest() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&vec![0xAB; 3 << 16], 0).unwrap();
        let z = ZeroTargets::new(&[(&f, false)], 4096).unwrap();
        match z.zero(0b10, 1 << 16, 1 << 16) {
            Ok(()) => {}
            Err(ZeroError::Unsupported) => {
                return crate::test_skip::skip("no fallocate zeroing on this filesystem");
            }
            Err(ZeroError::Io { error, .. }) => panic!("{error}"),
        }
        let mut got = vec![0u8; 3 << 16];
        f.read_exact_at(&mut got, 0).unwrap();
        assert!(got[..1 << 16].iter().all(|&b| b == 0xAB));
        assert!(is_zero(&got[1 << 16..2 << 16]));
        assert!(got[2 << 16..].iter().all(|&b| b == 0xAB));
        assert_eq!(f.metadata().unwrap().len(), 3 << 16);
        // A mask without this target touches nothing.
        z.zero(0b100, 0, 1 << 16).unwrap();
        f.read_exact_at(&mut got[..16], 0).unwrap();
        assert_eq!(got[0], 0xAB);
    }
}
