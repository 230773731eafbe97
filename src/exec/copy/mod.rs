//! `copy` and `verify`: move the used blocks of a source to one or more
//! targets and prove it by xxh3, or compare two devices without writing.
//!
//! A copy is: open devices (O_DIRECT, exclusive for block-device targets),
//! refuse unsafe targets, read the used-block map, plan aligned chunks,
//! run the copy (or delta) pass, flush every target, then read the targets
//! back and compare with the source hashes. Memory is the buffer pool:
//! queue depth × chunk size, plus 8 bytes per chunk for the hash table.
//!
//! May import `units`, `error`, `ext`, `probe`, `plan`, `sys` and
//! `exec::event`; reports through [`EventSink`], never the terminal.

pub mod hash;
pub mod io;
pub mod locate;
pub mod pipeline;
pub mod tail;
pub mod trace;
pub mod zero;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::exec::event::EventSink;
use crate::exec::interrupt::Interrupts;
use crate::ext::{self, MapOptions};
use crate::plan::copy::{CopyPlan, PlanInput, plan_copy};
use crate::plan::target;
use crate::probe::SysRoot;
use crate::probe::device;
use crate::sys::buf::BufPool;
use crate::units::ExtentList;
use xxhash_rust::xxh3::xxh3_64;

pub use io::{Access, BlockIo, Device, EngineKind, SyncIo, UringIo};
pub use pipeline::{Mismatch, Pass, PassConfig, PassStats, Pipeline};

/// Default chunks in flight (buffers in the pool). Chosen from the peer
/// benchmark (see `benches/BENCHMARKING.md`).
pub const DEFAULT_QUEUE_DEPTH: usize = 64;
/// Default chunk size in bytes (see `benches/BENCHMARKING.md`).
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Default largest free gap copied to join two used ranges (see
/// `benches/BENCHMARKING.md`).
pub const DEFAULT_MAX_GAP: u64 = 0;
/// Largest chunk size accepted.
pub const MAX_CHUNK_SIZE: usize = 64 << 20;
/// Largest queue depth accepted.
pub const MAX_QUEUE_DEPTH: usize = 1024;

/// How a copy is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// No hashes at all.
    None,
    /// Hash the source chunks while copying (digest in the report), no readback.
    Hash,
    /// Hash while copying, flush, then read every target back with O_DIRECT
    /// and compare.
    #[default]
    Readback,
}

/// Settings of a copy or verify.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy every byte of the source, not only the used blocks.
    pub full: bool,
    /// How to check the copy.
    pub verify: VerifyMode,
    /// Which engine moves the data.
    pub engine: EngineKind,
    /// Buffers (chunk transfers) in flight.
    pub queue_depth: usize,
    /// Largest transfer, a power of two ≥ 4096.
    pub chunk_size: usize,
    /// Use O_DIRECT (falls back per device when refused).
    pub direct: bool,
    /// Skip the refusals that `--force` may override (signatures).
    pub force: bool,
    /// Read targets first; write only chunks whose hash differs.
    pub delta: bool,
    /// A live pre-copy: the source may be mounted read-write (its map is a
    /// best-effort snapshot; a later `delta` pass on the quiesced source
    /// makes the copy exact). `migrate` uses it; nothing else should.
    pub live: bool,
    /// Hashing threads (0 = hash on the I/O thread).
    pub hash_threads: usize,
    /// Free gaps up to this many bytes between used ranges are copied too.
    pub max_gap: u64,
    /// Where /proc, /sys and /dev are, for the safety checks.
    pub root: SysRoot,
    /// Signals that stop a pass cleanly (the CLI catches SIGINT, SIGTERM
    /// and SIGHUP); `None`: they keep their default action.
    pub interrupts: Option<Arc<Interrupts>>,
    /// Write a timeline of the run here (see [`trace`]).
    pub trace: Option<PathBuf>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            full: false,
            verify: VerifyMode::Readback,
            engine: EngineKind::Uring,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            chunk_size: DEFAULT_CHUNK_SIZE,
            direct: true,
            force: false,
            delta: false,
            live: false,
            hash_threads: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4)),
            max_gap: DEFAULT_MAX_GAP,
            root: SysRoot::live(),
            interrupts: None,
            trace: None,
        }
    }
}

impl CopyOptions {
    /// These options with `n` hash threads, when given (0 = hash inline).
    #[must_use]
    pub fn with_hash_threads(mut self, n: Option<usize>) -> Self {
        if let Some(n) = n {
            self.hash_threads = n.min(64);
        }
        self
    }
}

/// Where the ranges came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MapSummary {
    /// `"ext"` (used blocks from the bitmaps) or `"full"` (every byte).
    pub kind: &'static str,
    /// Why a full copy, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Filesystem block size, for an ext map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// Filesystem size in bytes, for an ext map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_bytes: Option<u64>,
    /// Bytes the map says are used.
    pub used_bytes: u64,
    /// Used bytes whose content matters (`used_bytes` without the
    /// inode-table tails; all of them for a full copy).
    pub data_bytes: u64,
    /// Inode-table tails of `INODE_ZEROED` groups: zeroed on the targets
    /// where they zero cheaply, copied otherwise.
    pub itable_zeroed_bytes: u64,
    /// Inode-table tails of groups not yet zeroed: zeroed where cheap,
    /// skipped otherwise.
    pub itable_lazy_bytes: u64,
    /// Extents in the map.
    pub extents: usize,
    /// Size of the source device.
    pub device_bytes: u64,
}

/// Time and bytes of one phase.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhaseReport {
    /// `map`, `copy`, `delta`, `flush`, `readback`, `verify`.
    pub name: &'static str,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Bytes of data processed (source bytes).
    pub bytes: u64,
    /// Rate in MB/s (10^6 bytes).
    pub mb_per_s: f64,
}

/// What a copy (or verify) did with one class of the map.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClassReport {
    /// `data`, `itable-zeroed`, `itable-lazy`, `free`.
    pub class: &'static str,
    /// Bytes of the source in this class.
    pub bytes: u64,
    /// Copied (or, for verify, compared with the source).
    pub copied: u64,
    /// Zeroed with write-zeroes (or, for verify, found to read as zeros).
    pub zeroed: u64,
    /// Neither.
    pub skipped: u64,
}

fn class_reports(
    c: &SourceClasses,
    map: &MapSummary,
    out: &zero::ClassOutcome,
    data_zeroed: u64,
) -> Vec<ClassReport> {
    let data = c.data.total_bytes();
    let tz = c.itable_zeroed.total_bytes();
    let tl = c.itable_lazy.total_bytes();
    let used = data.saturating_add(tz).saturating_add(tl);
    vec![
        ClassReport {
            class: "data",
            bytes: data,
            copied: data.saturating_sub(data_zeroed),
            zeroed: data_zeroed,
            skipped: 0,
        },
        ClassReport {
            class: "itable-zeroed",
            bytes: tz,
            copied: out.itable_copied,
            zeroed: tz.saturating_sub(out.itable_copied),
            skipped: 0,
        },
        ClassReport {
            class: "itable-lazy",
            bytes: tl,
            copied: 0,
            zeroed: tl.saturating_sub(out.lazy_skipped),
            skipped: out.lazy_skipped,
        },
        ClassReport {
            class: "free",
            bytes: map.device_bytes.saturating_sub(used),
            copied: 0,
            zeroed: 0,
            skipped: map.device_bytes.saturating_sub(used),
        },
    ]
}

/// A differing chunk, named by device path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MismatchReport {
    /// The device whose data differs.
    pub device: PathBuf,
    /// First byte of the differing chunk.
    pub offset: u64,
    /// Length of the chunk.
    pub len: u64,
}

/// The final report of a copy or verify (`--json` prints it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// `copy` or `verify`.
    pub command: &'static str,
    /// The source.
    pub source: PathBuf,
    /// The targets.
    pub targets: Vec<PathBuf>,
    /// The source map.
    pub map: MapSummary,
    /// `uring` or `sync`.
    pub engine: &'static str,
    /// Buffers in flight.
    pub queue_depth: usize,
    /// Chunk size in bytes.
    pub chunk_size: usize,
    /// O_DIRECT on every device.
    pub direct_io: bool,
    /// Verification mode (copy only).
    pub verify: VerifyMode,
    /// Delta copy (targets read, only differing chunks written).
    pub delta: bool,
    /// Bytes the plan covers (per device).
    pub bytes_planned: u64,
    /// Bytes read from all devices, readback included.
    pub bytes_read: u64,
    /// Bytes written to all targets.
    pub bytes_written: u64,
    /// Bytes zeroed on all targets with write-zeroes instead of written:
    /// inode-table tails and all-zero chunks.
    pub bytes_zeroed: u64,
    /// Bytes of the source device not copied (free blocks).
    pub bytes_skipped: u64,
    /// Per class of the map: bytes, and how many were copied, zeroed or
    /// skipped (per target).
    pub classes: Vec<ClassReport>,
    /// Delta: target bytes found equal and not written.
    pub bytes_unchanged: u64,
    /// Target bytes read back or compared and found equal.
    pub bytes_verified: u64,
    /// Chunks in the plan.
    pub chunks: u64,
    /// Per phase.
    pub phases: Vec<PhaseReport>,
    /// Total wall time in seconds.
    pub seconds: f64,
    /// Planned bytes / total seconds, in MB/s.
    pub mb_per_s: f64,
    /// xxh3 of all chunk hashes in order (empty with `--verify none`).
    pub digest: String,
    /// Differing chunks (at most 1000 listed).
    pub mismatches: Vec<MismatchReport>,
    /// Number of differing chunks.
    pub mismatch_count: u64,
    /// Warnings (buffered fallback, full copy reasons, ...).
    pub warnings: Vec<String>,
}

impl Report {
    /// A `Mismatch` error naming the first differing device and offsets,
    /// when any chunk differed.
    pub fn mismatch_error(&self) -> Option<Error> {
        let first = self.mismatches.first()?;
        let mut ranges: Vec<String> = self
            .mismatches
            .iter()
            .filter(|m| m.device == first.device)
            .take(8)
            .map(|m| format!("{}..{}", m.offset, m.offset + m.len))
            .collect();
        if self.mismatch_count > ranges.len() as u64 {
            ranges.push("...".into());
        }
        Some(
            Error::new(ErrorKind::Mismatch(format!(
                "{} chunk(s) differ from the source; byte ranges: {}",
                self.mismatch_count,
                ranges.join(", ")
            )))
            .stage(if self.command == "copy" { Stage::Copy } else { Stage::Verify })
            .device(&first.device)
            .offset(first.offset)
            .hint(if self.command == "copy" {
                "the target does not hold what was written: check the device (dmesg), then copy again"
            } else {
                "the target differs: copy again (`reroot copy --delta` rewrites only differing chunks)"
            }),
        )
    }
}

fn validate(opts: &CopyOptions) -> Result<()> {
    if !opts.chunk_size.is_power_of_two()
        || opts.chunk_size < 4096
        || opts.chunk_size > MAX_CHUNK_SIZE
    {
        return Err(Error::invalid(format!(
            "chunk size {} must be a power of two between 4 KiB and {} MiB",
            opts.chunk_size,
            MAX_CHUNK_SIZE >> 20
        )));
    }
    if opts.queue_depth == 0 || opts.queue_depth > MAX_QUEUE_DEPTH {
        return Err(Error::invalid(format!(
            "queue depth {} not in 1..={MAX_QUEUE_DEPTH}",
            opts.queue_depth
        )));
    }
    Ok(())
}

/// The source's map by class (see `ext::ItableTails` and `src/ext/itable.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceClasses {
    /// Bytes whose content matters (every byte for a full copy).
    pub data: ExtentList,
    /// Inode-table tails of `INODE_ZEROED` groups: a copy must hold zeros
    /// or the source's bytes there.
    pub itable_zeroed: ExtentList,
    /// Inode-table tails of groups not yet zeroed: any content will do.
    pub itable_lazy: ExtentList,
}

/// Read the source's used-block map, or decide on a full copy. `live`: the
/// source is mounted read-write (see [`CopyOptions::live`]). The list is
/// every used byte, inode-table tails included (see [`source_classes`]).
pub fn source_map(
    path: &Path,
    size: u64,
    full: bool,
    live: bool,
) -> Result<(ExtentList, MapSummary)> {
    let (c, summary) = source_classes(path, size, full, live)?;
    let mut all: Vec<_> = c.data.iter().copied().collect();
    all.extend(c.itable_zeroed.iter().copied());
    all.extend(c.itable_lazy.iter().copied());
    Ok((ExtentList::from_unsorted(all), summary))
}

/// [`source_map`], split into classes: what must be copied, and the
/// inode-table tails that may be zeroed or skipped instead.
pub fn source_classes(
    path: &Path,
    size: u64,
    full: bool,
    live: bool,
) -> Result<(SourceClasses, MapSummary)> {
    let whole = |reason: String| {
        let used = ExtentList::whole(size);
        let summary = MapSummary {
            kind: "full",
            reason: Some(reason),
            block_size: None,
            fs_bytes: None,
            used_bytes: size,
            data_bytes: size,
            itable_zeroed_bytes: 0,
            itable_lazy_bytes: 0,
            extents: used.len(),
            device_bytes: size,
        };
        (
            SourceClasses {
                data: used,
                ..SourceClasses::default()
            },
            summary,
        )
    };
    if full {
        return Ok(whole("--full".into()));
    }
    let file =
        std::fs::File::open(path).map_err(|e| Error::io("opening for the map", e).device(path))?;
    let detected = ext::detect(&file).map_err(|e| e.stage(Stage::Map).device(path))?;
    if detected.is_none() {
        // Not ext2/3/4: copying every byte is always faithful.
        return Ok(whole(
            "not an ext2/3/4 filesystem; copying every byte".into(),
        ));
    }
    let map_opts = MapOptions {
        live,
        ..MapOptions::default()
    };
    let map = ext::read_map(&file, &map_opts).map_err(|e| {
        let hint = match e.kind() {
            ErrorKind::NeedsRecovery(_) => {
                "replay the journal first (mount and unmount it, or e2fsck), or copy every byte with --full"
            }
            _ => "check it with `e2fsck -fn`, or copy every byte with --full",
        };
        e.stage(Stage::Map).device(path).hint(hint)
    })?;
    let summary = MapSummary {
        kind: "ext",
        reason: None,
        block_size: Some(map.geometry.block_size),
        fs_bytes: Some(map.geometry.fs_bytes),
        used_bytes: map.used.total_bytes(),
        data_bytes: 0,
        itable_zeroed_bytes: map.itable_tails.zeroed.total_bytes(),
        itable_lazy_bytes: map.itable_tails.lazy.total_bytes(),
        extents: map.used.len(),
        device_bytes: size,
    };
    let data = map.data();
    let summary = MapSummary {
        data_bytes: data.total_bytes(),
        ..summary
    };
    Ok((
        SourceClasses {
            data,
            itable_zeroed: map.itable_tails.zeroed,
            itable_lazy: map.itable_tails.lazy,
        },
        summary,
    ))
}

/// A zero-length source has nothing to copy or compare: say so rather than
/// report an empty success.
fn refuse_empty(source: &device::DeviceFacts) -> Result<()> {
    if source.size > 0 {
        return Ok(());
    }
    Err(Error::refused("is empty (0 bytes): there is nothing to copy or compare")
        .device(&source.path)
        .hint("check the source path (an image file that was never written, or a device of size 0)"))
}

/// Check the tail (see [`tail`]) of every target against the source's bytes.
fn check_tail(
    plan: &CopyPlan,
    src: &[u8],
    targets: &[PathBuf],
    stats: &mut PassStats,
) -> Result<u64> {
    let Some(t) = plan.tail else {
        return Ok(0);
    };
    let mut read = 0;
    for (i, path) in targets.iter().enumerate() {
        let got = tail::read(path, t)?;
        read += t.len();
        if got != src {
            stats.mismatches.push(Mismatch {
                device: i + 1,
                offset: t.start(),
                len: t.len(),
            });
            stats.mismatch_count += 1;
            stats.mismatch_bytes += t.len();
        }
    }
    Ok(read)
}

fn refuse_same(source: &Device, targets: &[Device]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let key = |d: &Device| {
        d.file.metadata().map(|m| {
            if d.is_block {
                (0, m.rdev())
            } else {
                (m.dev(), m.ino())
            }
        })
    };
    let src = key(source).map_err(|e| Error::io("fstat", e).device(&source.path))?;
    let mut seen = vec![src];
    for t in targets {
        let k = key(t).map_err(|e| Error::io("fstat", e).device(&t.path))?;
        if seen.contains(&k) {
            let what = if k == src {
                "is the source"
            } else {
                "is given twice"
            };
            return Err(
                Error::refused(format!("target {} {what}", t.path.display()))
                    .stage(Stage::Copy)
                    .device(&t.path)
                    .hint("name each target once, and never the source"),
            );
        }
        seen.push(k);
    }
    Ok(())
}

struct Opened {
    source: Device,
    targets: Vec<Device>,
    warnings: Vec<String>,
}

impl Opened {
    /// Source, then targets: the pipeline's device numbering.
    fn devices(&self) -> Vec<&Device> {
        std::iter::once(&self.source).chain(&self.targets).collect()
    }
}

fn open_all(
    source: &Path,
    targets: &[PathBuf],
    opts: &CopyOptions,
    write: bool,
    events: &EventSink,
) -> Result<Opened> {
    let mut warnings = Vec::new();
    let (src, w) = Device::open(source, Access::Read, opts.direct)?;
    warnings.extend(w);
    let mut tgts = Vec::with_capacity(targets.len());
    for t in targets {
        let access = if write { Access::Write } else { Access::Read };
        let (d, w) = Device::open(t, access, opts.direct)?;
        warnings.extend(w);
        tgts.push(d);
    }
    for w in &warnings {
        events.warn(w.clone());
    }
    Ok(Opened {
        source: src,
        targets: tgts,
        warnings,
    })
}

fn build_pipeline(o: &Opened, opts: &CopyOptions) -> Result<Pipeline> {
    build_pipeline_with(o, opts, new_pool(opts))
}

fn new_pool(opts: &CopyOptions) -> Result<BufPool> {
    BufPool::new(opts.queue_depth, opts.chunk_size, 4096)
        .map_err(|e| Error::io("allocating I/O buffers", e))
}

/// The buffer pool, allocated and touched page by page on a thread of its
/// own, so faulting in its memory (which io_uring's registration would do,
/// ~0.1 s for 64 MiB on a loaded machine, see benches/BENCHMARKING.md)
/// overlaps the device checks and the map instead of following them.
fn pool_in_background(opts: &CopyOptions) -> std::thread::JoinHandle<Result<BufPool>> {
    let opts = opts.clone();
    std::thread::spawn(move || {
        let mut pool = new_pool(&opts)?;
        let mut bufs = Vec::with_capacity(opts.queue_depth);
        while let Some(mut b) = pool.take() {
            for page in b.as_mut_full().chunks_mut(4096) {
                if let Some(x) = page.first_mut() {
                    *x = 0;
                }
            }
            bufs.push(b);
        }
        for b in bufs {
            pool.put(b);
        }
        Ok(pool)
    })
}

fn build_pipeline_with(o: &Opened, opts: &CopyOptions, pool: Result<BufPool>) -> Result<Pipeline> {
    let pool = pool?;
    let mut files = vec![&o.source.file];
    files.extend(o.targets.iter().map(|d| &d.file));
    let io = io::engine(opts.engine, &files, opts.queue_depth, Some(pool.mem()))?;
    let mut pipe = Pipeline::new(io, pool, o.targets.len(), opts.hash_threads)?;
    pipe.set_interrupts(opts.interrupts.clone());
    Ok(pipe)
}

fn phase(name: &'static str, stats_bytes: u64, seconds: f64) -> PhaseReport {
    PhaseReport {
        name,
        seconds,
        bytes: stats_bytes,
        mb_per_s: if seconds > 0.0 {
            stats_bytes as f64 / 1e6 / seconds
        } else {
            0.0
        },
    }
}

/// xxh3 over the chunk hashes in order, then the partial last block's.
fn digest(table: &[u64], tail: Option<u64>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for v in table.iter().chain(tail.as_ref()) {
        h.update(&v.to_le_bytes());
    }
    format!("{:016x}", h.digest())
}

/// What copying the partial last block did.
#[derive(Debug, Default)]
struct TailCopy {
    /// The source's bytes (empty without a tail).
    data: Vec<u8>,
    read: u64,
    written: u64,
    unchanged: u64,
}

/// Copy the plan's partial last block (if any) to every target, buffered;
/// a delta pass rewrites it only where it differs.
fn copy_tail(plan: &CopyPlan, o: &Opened, delta: bool) -> Result<TailCopy> {
    let Some(t) = plan.tail else {
        return Ok(TailCopy::default());
    };
    let mut out = TailCopy {
        data: tail::read(&o.source.path, t)?,
        read: t.len(),
        ..TailCopy::default()
    };
    for d in &o.targets {
        if delta {
            out.read += t.len();
            if tail::read(&d.path, t)? == out.data {
                out.unchanged += t.len();
                continue;
            }
        }
        tail::write(&d.path, t, &out.data)?;
        out.written += t.len();
    }
    Ok(out)
}

/// The largest logical block size of all devices: every transfer's alignment.
fn align_of(o: &Opened) -> u64 {
    u64::from(
        o.targets
            .iter()
            .map(|d| d.logical_block_size)
            .chain([o.source.logical_block_size])
            .max()
            .unwrap_or(512),
    )
}

/// Handles for write-zeroes when every target zeroes without moving data
/// (see [`zero`]); `None` for a full copy or when one cannot.
fn zero_targets(
    o: &Opened,
    facts: &[device::DeviceFacts],
    opts: &CopyOptions,
) -> Result<Option<std::sync::Arc<zero::ZeroTargets>>> {
    let cheap = !opts.full
        && o.targets.len() == facts.len()
        && o.targets
            .iter()
            .zip(facts)
            .all(|(d, f)| zero::cheap(f, d.is_block, &opts.root));
    if !cheap {
        return Ok(None);
    }
    let files: Vec<(&std::fs::File, bool)> =
        o.targets.iter().map(|d| (&d.file, d.is_block)).collect();
    zero::ZeroTargets::new(&files, usize::try_from(align_of(o)).unwrap_or(4096))
        .map(|z| Some(std::sync::Arc::new(z)))
        .map_err(|e| Error::io("duplicating a target descriptor", e).stage(Stage::Copy))
}

fn plan_for(o: &Opened, used: &ExtentList, opts: &CopyOptions) -> Result<CopyPlan> {
    let align = align_of(o);
    let sizes: Vec<u64> = o.targets.iter().map(|d| d.size).collect();
    plan_copy(&PlanInput {
        used,
        source_size: o.source.size,
        target_sizes: &sizes,
        align,
        chunk_size: opts.chunk_size as u64,
        max_gap: opts.max_gap,
    })
}

fn paths(o: &Opened) -> Vec<PathBuf> {
    let mut p = vec![o.source.path.clone()];
    p.extend(o.targets.iter().map(|d| d.path.clone()));
    p
}

fn mismatch_reports(stats: &PassStats, paths: &[PathBuf]) -> Vec<MismatchReport> {
    stats
        .mismatches
        .iter()
        .map(|m| MismatchReport {
            device: paths.get(m.device).cloned().unwrap_or_default(),
            offset: m.offset,
            len: m.len,
        })
        .collect()
}

/// Copy `source` to every target. Returns the report; a readback mismatch
/// is in the report (see [`Report::mismatch_error`]), an I/O error or a
/// refusal is an `Err`.
pub fn copy(
    source: &Path,
    targets: &[PathBuf],
    opts: &CopyOptions,
    events: &EventSink,
) -> Result<Report> {
    validate(opts).map_err(|e| e.stage(Stage::Copy))?;
    if targets.is_empty() || targets.len() > 63 {
        return Err(Error::invalid("give between 1 and 63 targets").stage(Stage::Copy));
    }
    let t0 = Instant::now();
    let pool = pool_in_background(opts);
    // Safety first, before anything is opened for writing. A delta pass
    // expects the target to carry the filesystem of an earlier pass, so its
    // signature is no reason to refuse, as long as it is that filesystem.
    let src_facts = device::inspect(source, &opts.root).map_err(|e| e.stage(Stage::Copy))?;
    refuse_empty(&src_facts).map_err(|e| e.stage(Stage::Copy))?;
    let tgt_facts = targets
        .iter()
        .map(|t| device::inspect(t, &opts.root).map_err(|e| e.stage(Stage::Copy)))
        .collect::<Result<Vec<_>>>()?;
    let needed = target::needed_bytes(&src_facts);
    let mut refusals = target::check_copy(&src_facts, &tgt_facts, needed, opts.force || opts.delta);
    if opts.delta && !opts.force {
        refusals.extend(target::check_delta(&src_facts, &tgt_facts));
    }
    if opts.live {
        refusals.retain(|r| r.rule != target::Rule::SourceMountedRw);
    }
    target::into_result(&refusals, Stage::Copy)?;
    let o = open_all(source, targets, opts, true, events).map_err(|e| e.stage(Stage::Copy))?;
    refuse_same(&o.source, &o.targets)?;
    let mut warnings = o.warnings.clone();

    let tm = Instant::now();
    let mut tl = opts.trace.as_ref().map(|_| {
        let mut t = trace::Trace::new(t0, 1 << 16);
        t.phase("setup", true);
        t.phase("setup", false);
        t.phase("map", true);
        t
    });
    let (classes, map) = source_classes(source, o.source.size, opts.full, opts.live)?;
    if let Some(r) = &map.reason {
        if !opts.full {
            events.warn(r.clone());
            warnings.push(r.clone());
        }
    }
    let mut phases = vec![phase("map", 0, tm.elapsed().as_secs_f64())];
    // Zero the inode-table tails first (the data pass may overwrite an
    // aligned edge), where every target zeroes without moving data.
    let paths = paths(&o);
    let zt = zero_targets(&o, &tgt_facts, opts)?;
    if let Some(t) = tl.as_mut() {
        t.phase("map", false);
        t.phase("zero", true);
    }
    let tz = Instant::now();
    let all_targets = ((1u64 << (o.targets.len() + 1)) - 1) & !1;
    let outcome = zero::zero_classes(zt.as_deref(), &classes, align_of(&o), all_targets).map_err(
        |(dev, off, e)| {
            Error::io("write-zeroes (fallocate) failed", e)
                .stage(Stage::Copy)
                .device(paths.get(dev).cloned().unwrap_or_default())
                .offset(off)
        },
    )?;
    if !outcome.zeroed.is_empty() {
        phases.push(phase(
            "zero",
            outcome.zeroed.total_bytes(),
            tz.elapsed().as_secs_f64(),
        ));
    }
    if let Some(t) = tl.as_mut() {
        t.phase("zero", false);
        t.phase("plan", true);
    }
    let plan = plan_for(&o, &outcome.data, opts).map_err(|e| e.stage(Stage::Copy))?;
    let pool = pool
        .join()
        .unwrap_or_else(|_| Err(Error::invalid("internal: the buffer thread panicked")));
    let mut pipe = build_pipeline_with(&o, opts, pool)?;
    if let Some(mut t) = tl.take() {
        t.phase("plan", false);
        t.reserve(plan.chunks.saturating_mul(8));
        pipe.set_trace(Some(t));
    }
    pipe.set_zero_targets(zt.clone().filter(|z| z.usable()));
    let mut table = vec![0u64; usize::try_from(plan.chunks).unwrap_or(usize::MAX)];

    let (pass, name) = if opts.delta {
        (Pass::Delta, "delta")
    } else {
        (
            Pass::Copy {
                hash: opts.verify != VerifyMode::None,
            },
            "copy",
        )
    };
    let cfg = PassConfig {
        paths: &paths,
        queue_depth: opts.queue_depth,
        phase: name,
    };
    let stats = pipe
        .run(&plan, pass, &cfg, &mut table, events)
        .map_err(|e| locate::refine(e, &o.devices(), pipe.last_failure()).stage(Stage::Copy))?;
    phases.push(phase(name, stats.bytes_done, stats.elapsed.as_secs_f64()));
    let tail = copy_tail(&plan, &o, opts.delta).map_err(|e| e.stage(Stage::Copy))?;

    let tf = Instant::now();
    if let Some(t) = pipe.trace_mut() {
        t.phase("flush", true);
    }
    events.phase("flush", None, crate::exec::event::Unit::Items);
    for t in &o.targets {
        t.flush().map_err(|e| e.stage(Stage::Copy))?;
    }
    events.phase_end("flush", o.targets.len() as u64, tf.elapsed());
    phases.push(phase("flush", 0, tf.elapsed().as_secs_f64()));
    if let Some(t) = pipe.trace_mut() {
        t.phase("flush", false);
    }

    let mut bytes_read = stats.bytes_read;
    let mut bytes_verified = 0;
    let mut check = PassStats::default();
    if opts.verify == VerifyMode::Readback && plan.chunks > 0 {
        let cfg = PassConfig {
            paths: &paths,
            queue_depth: opts.queue_depth,
            phase: "readback",
        };
        check = pipe
            .run(
                &plan,
                Pass::Check { read_source: false },
                &cfg,
                &mut table,
                events,
            )
            .map_err(|e| locate::refine(e, &o.devices(), pipe.last_failure()).stage(Stage::Copy))?;
        bytes_read += check.bytes_read;
        bytes_verified = check.bytes_read.saturating_sub(check.mismatch_bytes);
    }
    if opts.verify == VerifyMode::Readback && plan.tail.is_some() {
        let before = check.mismatch_bytes;
        let read = check_tail(&plan, &tail.data, &paths[1..], &mut check)
            .map_err(|e| e.stage(Stage::Copy))?;
        bytes_read += read;
        bytes_verified += read.saturating_sub(check.mismatch_bytes - before);
    }
    if opts.verify == VerifyMode::Readback && (plan.chunks > 0 || plan.tail.is_some()) {
        phases.push(phase(
            "readback",
            check.bytes_done,
            check.elapsed.as_secs_f64(),
        ));
    }
    if opts.verify == VerifyMode::Readback && !outcome.zeroed.is_empty() {
        // What was zeroed must read as zeros.
        let zc = zero_check(&o, &outcome.zeroed, opts, &mut pipe, &paths, events)
            .map_err(|e| e.stage(Stage::Copy))?;
        bytes_read += zc.bytes_read;
        bytes_verified += zc.bytes_read.saturating_sub(zc.mismatch_bytes);
        phases.push(phase("zero-check", zc.bytes_done, zc.elapsed.as_secs_f64()));
        check.mismatch_count += zc.mismatch_count;
        check.mismatch_bytes += zc.mismatch_bytes;
        let room = pipeline::MAX_MISMATCHES.saturating_sub(check.mismatches.len());
        check
            .mismatches
            .extend(zc.mismatches.into_iter().take(room));
    }
    let engine = pipe.engine();
    let direct_io = o.source.direct && o.targets.iter().all(|d| d.direct);
    let o_targets = o.targets.len();
    drop(zt);
    let class_report = class_reports(
        &classes,
        &map,
        &outcome,
        stats.bytes_zeroed / (o_targets as u64).max(1),
    );
    // Return only once the targets are free again: the ring's registered
    // files are put from io_uring's own workers, which can finish after our
    // last close; until then the O_EXCL claim holds and the next stage's
    // exclusive open (a delta pass, e2fsck, a mount) would fail with EBUSY.
    let tl = pipe.take_trace();
    drop(pipe);
    drop(o);
    for t in targets {
        crate::exec::claim::wait_released(t);
    }
    write_trace(tl, opts)?;
    let seconds = t0.elapsed().as_secs_f64();
    let report = Report {
        command: "copy",
        source: source.to_path_buf(),
        targets: targets.to_vec(),
        map,
        engine,
        queue_depth: opts.queue_depth,
        chunk_size: opts.chunk_size,
        direct_io,
        verify: opts.verify,
        delta: opts.delta,
        bytes_planned: plan.bytes,
        bytes_read: bytes_read + tail.read,
        bytes_written: stats.bytes_written + tail.written,
        bytes_zeroed: stats
            .bytes_zeroed
            .saturating_add(outcome.zeroed.total_bytes() * o_targets as u64),
        bytes_skipped: plan.skipped,
        classes: class_report,
        bytes_unchanged: stats.bytes_unchanged + tail.unchanged,
        bytes_verified,
        chunks: plan.chunks + u64::from(plan.tail.is_some()),
        phases,
        seconds,
        mb_per_s: if seconds > 0.0 {
            plan.bytes as f64 / 1e6 / seconds
        } else {
            0.0
        },
        digest: if opts.verify == VerifyMode::None {
            String::new()
        } else {
            digest(&table, plan.tail.map(|_| xxh3_64(&tail.data)))
        },
        mismatches: mismatch_reports(&check, &paths),
        mismatch_count: check.mismatch_count,
        warnings,
    };
    Ok(report)
}

/// Compare the used blocks (or every byte with `full`) of `source` and
/// `target` by hash, writing nothing. Differences are in the report.
pub fn verify(
    source: &Path,
    target: &Path,
    opts: &CopyOptions,
    events: &EventSink,
) -> Result<Report> {
    validate(opts).map_err(|e| e.stage(Stage::Verify))?;
    let t0 = Instant::now();
    let targets = [target.to_path_buf()];
    let src_facts = device::inspect(source, &opts.root).map_err(|e| e.stage(Stage::Verify))?;
    refuse_empty(&src_facts).map_err(|e| e.stage(Stage::Verify))?;
    let tgt_facts = device::inspect(target, &opts.root).map_err(|e| e.stage(Stage::Verify))?;
    target::into_result(&target::check_verify(&src_facts, &tgt_facts), Stage::Verify)?;
    let o = open_all(source, &targets, opts, false, events).map_err(|e| e.stage(Stage::Verify))?;
    let mut warnings = o.warnings.clone();
    let tm = Instant::now();
    let (classes, map) = source_classes(source, o.source.size, opts.full, false)?;
    if let Some(r) = &map.reason {
        if !opts.full {
            events.warn(r.clone());
            warnings.push(r.clone());
        }
    }
    let mut phases = vec![phase("map", 0, tm.elapsed().as_secs_f64())];
    // INODE_ZEROED tails must read as zeros or as the source; the parts a
    // copy cannot zero (unaligned, small) are compared like data. Lazy
    // tails may hold anything.
    let zcheck = zero::zeroable(&classes.itable_zeroed, align_of(&o));
    let used = {
        let mut v: Vec<_> = classes.data.iter().copied().collect();
        v.extend(classes.itable_zeroed.subtract(&zcheck).iter().copied());
        ExtentList::from_unsorted(v)
    };
    // Compare used bytes only: free gaps may differ between faithful copies.
    let opts = &CopyOptions {
        max_gap: 0,
        ..opts.clone()
    };
    let plan = plan_for(&o, &used, opts).map_err(|e| {
        if matches!(e.kind(), ErrorKind::Refused(_)) {
            Error::new(ErrorKind::Mismatch(format!(
                "{} is smaller than the data to compare",
                target.display()
            )))
            .stage(Stage::Verify)
            .device(target)
        } else {
            e.stage(Stage::Verify)
        }
    })?;
    let paths = paths(&o);
    let mut pipe = build_pipeline(&o, opts)?;
    if opts.trace.is_some() {
        let mut t = trace::Trace::new(t0, 1 << 16);
        t.reserve(plan.chunks.saturating_mul(8));
        pipe.set_trace(Some(t));
    }
    let mut table = vec![0u64; usize::try_from(plan.chunks).unwrap_or(usize::MAX)];
    let cfg = PassConfig {
        paths: &paths,
        queue_depth: opts.queue_depth,
        phase: "verify",
    };
    let mut stats = pipe
        .run(
            &plan,
            Pass::Check { read_source: true },
            &cfg,
            &mut table,
            events,
        )
        .map_err(|e| locate::refine(e, &o.devices(), pipe.last_failure()).stage(Stage::Verify))?;
    let mut tail_hash = None;
    if let Some(t) = plan.tail {
        let src = tail::read(source, t).map_err(|e| e.stage(Stage::Verify))?;
        let read =
            check_tail(&plan, &src, &targets, &mut stats).map_err(|e| e.stage(Stage::Verify))?;
        stats.bytes_read += read + t.len();
        stats.bytes_done += t.len();
        tail_hash = Some(xxh3_64(&src));
    }
    phases.push(phase(
        "verify",
        stats.bytes_done,
        stats.elapsed.as_secs_f64(),
    ));
    let tails = verify_tails(&o, &zcheck, opts, &mut pipe, &paths, events)?;
    stats.bytes_read += tails.bytes_read;
    stats.mismatch_count += tails.mismatch_count;
    stats.mismatch_bytes += tails.mismatch_bytes;
    let room = pipeline::MAX_MISMATCHES.saturating_sub(stats.mismatches.len());
    stats
        .mismatches
        .extend(tails.mismatches.iter().copied().take(room));
    phases.extend(tails.phases.iter().cloned());
    let outcome = zero::ClassOutcome {
        itable_copied: tails.compared,
        lazy_skipped: classes.itable_lazy.total_bytes(),
        ..zero::ClassOutcome::default()
    };
    let mut class_report = class_reports(&classes, &map, &outcome, 0);
    write_trace(pipe.take_trace(), opts)?;
    if let Some(c) = class_report.get_mut(1) {
        // Unaligned slivers were compared with the data.
        c.copied = c.bytes.saturating_sub(tails.zeros);
        c.zeroed = tails.zeros;
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Report {
        command: "verify",
        source: source.to_path_buf(),
        targets: targets.to_vec(),
        map,
        engine: pipe.engine(),
        queue_depth: opts.queue_depth,
        chunk_size: opts.chunk_size,
        direct_io: o.source.direct && o.targets.iter().all(|d| d.direct),
        verify: VerifyMode::Hash,
        delta: false,
        bytes_planned: plan.bytes,
        bytes_read: stats.bytes_read,
        bytes_written: 0,
        bytes_zeroed: 0,
        bytes_skipped: plan.skipped,
        classes: class_report,
        bytes_unchanged: 0,
        bytes_verified: stats
            .bytes_read
            .saturating_sub(stats.bytes_done)
            .saturating_sub(tails.source_read)
            .saturating_sub(stats.mismatch_bytes),
        chunks: plan.chunks + u64::from(plan.tail.is_some()),
        phases,
        seconds,
        mb_per_s: if seconds > 0.0 {
            plan.bytes as f64 / 1e6 / seconds
        } else {
            0.0
        },
        digest: digest(&table, tail_hash),
        mismatches: mismatch_reports(&stats, &paths),
        mismatch_count: stats.mismatch_count,
        warnings,
    })
}

/// Write the timeline to `--trace FILE`, when asked for.
fn write_trace(t: Option<trace::Trace>, opts: &CopyOptions) -> Result<()> {
    if let (Some(t), Some(path)) = (t, opts.trace.as_ref()) {
        t.write(path)
            .map_err(|e| Error::io("writing the trace", e).device(path))?;
    }
    Ok(())
}

/// What [`verify_tails`] found.
#[derive(Debug, Default)]
struct TailCheck {
    /// Bytes read from both devices.
    bytes_read: u64,
    /// Of which from the source.
    source_read: u64,
    /// Bytes that read as zeros on the target.
    zeros: u64,
    /// Bytes that did not and were compared with the source.
    compared: u64,
    mismatch_count: u64,
    mismatch_bytes: u64,
    mismatches: Vec<Mismatch>,
    phases: Vec<PhaseReport>,
}

/// Read the targets in `ranges` and compare them with zeros (the
/// "zero-check" phase); what is not zeros is a mismatch.
fn zero_check(
    o: &Opened,
    ranges: &ExtentList,
    opts: &CopyOptions,
    pipe: &mut Pipeline,
    paths: &[PathBuf],
    events: &EventSink,
) -> Result<pipeline::PassStats> {
    let zplan = plan_for(o, ranges, opts)?;
    let mut ztable = zero::zeros_table(&zplan);
    let cfg = PassConfig {
        paths,
        queue_depth: opts.queue_depth,
        phase: "zero-check",
    };
    pipe.run(
        &zplan,
        Pass::Check { read_source: false },
        &cfg,
        &mut ztable,
        events,
    )
}

/// Check that the target reads as zeros in `ranges` (INODE_ZEROED tails),
/// or else holds the source's bytes there; what holds neither differs.
fn verify_tails(
    o: &Opened,
    ranges: &ExtentList,
    opts: &CopyOptions,
    pipe: &mut Pipeline,
    paths: &[PathBuf],
    events: &EventSink,
) -> Result<TailCheck> {
    let mut out = TailCheck::default();
    if ranges.is_empty() {
        return Ok(out);
    }
    let z = zero_check(o, ranges, opts, pipe, paths, events).map_err(|e| e.stage(Stage::Verify))?;
    out.bytes_read = z.bytes_read;
    out.zeros = z.bytes_done.saturating_sub(z.mismatch_bytes);
    out.phases
        .push(phase("zero-check", z.bytes_done, z.elapsed.as_secs_f64()));
    if z.mismatch_count == 0 {
        return Ok(out);
    }
    // Not zeros: compare with the source (all of it when the list was cut short).
    let rest = if z.mismatch_count > z.mismatches.len() as u64 {
        ranges.clone()
    } else {
        ExtentList::from_unsorted(
            z.mismatches
                .iter()
                .filter_map(|m| crate::units::Extent::new(m.offset, m.len))
                .collect(),
        )
    };
    let cplan = plan_for(o, &rest, opts).map_err(|e| e.stage(Stage::Verify))?;
    let mut table = vec![0u64; usize::try_from(cplan.chunks).unwrap_or(usize::MAX)];
    let cfg = PassConfig {
        paths,
        queue_depth: opts.queue_depth,
        phase: "itable-compare",
    };
    let c = pipe
        .run(
            &cplan,
            Pass::Check { read_source: true },
            &cfg,
            &mut table,
            events,
        )
        .map_err(|e| e.stage(Stage::Verify))?;
    out.bytes_read += c.bytes_read;
    out.source_read = c.bytes_done;
    out.compared = z.mismatch_bytes;
    out.mismatch_count = c.mismatch_count;
    out.mismatch_bytes = c.mismatch_bytes;
    out.mismatches = c.mismatches;
    out.phases.push(phase(
        "itable-compare",
        c.bytes_done,
        c.elapsed.as_secs_f64(),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests;
