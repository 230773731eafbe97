//! `bench`: measure copy strategies on the user's own devices. Read tests on
//! the source always; copy tests onto a scratch target only when one is
//! given and confirmed, after the same refusals `copy` applies (mounted,
//! held, opened exclusively, read-only, the source itself, overlapping it;
//! a signature unless `force`). Also [`tune`]: the queue depth and chunk
//! size for `copy --tune`, from a saved result or a short read probe.
//!
//! Every strategy is run `runs` times in rounds (run 1 of every strategy,
//! then run 2, ...) so slow drifts of a shared machine spread over all rows;
//! caches are dropped before each run. May import `probe`, `plan`, `sys`,
//! `exec::copy` and `exec::event`.

pub mod cache;
mod runs;
pub mod saved;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::exec::copy::{self, Access, Device};
use crate::exec::event::{EventSink, Unit};
use crate::plan::bench::{
    self, Matrix, MatrixInput, Method, Row, Sample, Tuning, mark_best, pick_tuning, summarize,
};
use crate::plan::target;
use crate::probe::device::{self, DeviceFacts, DeviceKind};
use crate::probe::{SysRoot, loadavg};

pub use cache::CacheDrop;

/// Version of the report layout (`--json` and the saved file).
pub const REPORT_VERSION: u32 = 1;

/// Settings of a bench.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Time bound of one run, in seconds.
    pub seconds: f64,
    /// Byte bound of one run (the device size when `None`).
    pub bytes: Option<u64>,
    /// Runs per strategy.
    pub runs: usize,
    /// Quick or full matrix.
    pub matrix: Matrix,
    /// Only these methods (all when empty).
    pub only: Vec<Method>,
    /// The operator confirmed that the target may be overwritten (`--yes`).
    pub confirmed: bool,
    /// Overwrite a target that carries a signature (`--force`).
    pub force: bool,
    /// How caches are dropped before each run.
    pub cache: CacheDrop,
    /// Hashing threads of the hashing methods.
    pub hash_threads: usize,
    /// Where /proc, /sys and /dev are.
    pub root: SysRoot,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            seconds: 3.0,
            bytes: None,
            runs: 3,
            matrix: Matrix::Quick,
            only: Vec::new(),
            confirmed: false,
            force: false,
            cache: CacheDrop::Device,
            hash_threads: copy::CopyOptions::default().hash_threads,
            root: SysRoot::live(),
        }
    }
}

/// A device as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// The path as given.
    pub path: PathBuf,
    /// The path with symlinks resolved (what saved results are matched by).
    pub canonical: PathBuf,
    /// `block` or `file`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size (the O_DIRECT unit).
    pub logical_block_size: u32,
}

/// The settings a report was made with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Time bound of one run, seconds.
    pub seconds: f64,
    /// Byte bound asked for, if any.
    pub bytes: Option<u64>,
    /// Bytes one run may move at most: the byte bound, the devices' sizes,
    /// rounded down to the logical block size.
    pub limit: u64,
    /// Runs per strategy.
    pub runs: usize,
    /// `quick` or `full`.
    pub matrix: Matrix,
    /// How caches were dropped before each run.
    pub cache: CacheDrop,
    /// Hashing threads of the hashing methods.
    pub hash_threads: usize,
}

/// The machine while the bench ran.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// CPUs available to reroot.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// 1/5/15-minute load averages at the start.
    pub load_start: Option<[f64; 3]>,
    /// ... and at the end.
    pub load_end: Option<[f64; 3]>,
}

/// The best row of each operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Best {
    /// Id of the fastest read row.
    pub read: Option<String>,
    /// Id of the fastest copy row.
    pub copy: Option<String>,
}

/// The result of a bench (`--json` prints it; `--save` keeps it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    /// Layout version ([`REPORT_VERSION`]).
    pub version: u32,
    /// The source (read only).
    pub source: DeviceInfo,
    /// The scratch target of the copy tests.
    pub target: Option<DeviceInfo>,
    /// How it was measured.
    pub settings: Settings,
    /// Where.
    pub machine: Machine,
    /// Start, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Wall time of the whole bench, seconds.
    pub seconds: f64,
    /// One row per strategy, in table order.
    pub rows: Vec<Row>,
    /// The fastest rows.
    pub best: Best,
    /// What `copy --tune` takes from this result.
    pub tuning: Option<Tuning>,
    /// What went less well than planned (no O_DIRECT, caches not dropped...).
    pub warnings: Vec<String>,
}

fn validate(opts: &BenchOptions) -> Result<()> {
    if !(opts.seconds.is_finite() && opts.seconds > 0.0 && opts.seconds <= 3600.0) {
        return Err(Error::invalid(format!(
            "--seconds {} not in (0, 3600]",
            opts.seconds
        )));
    }
    if opts.runs == 0 || opts.runs > 100 {
        return Err(Error::invalid(format!(
            "--runs {} not in 1..=100",
            opts.runs
        )));
    }
    if opts.bytes.is_some_and(|b| b < 4096) {
        return Err(Error::invalid("--bytes must be at least 4K"));
    }
    Ok(())
}

fn info(facts: &DeviceFacts, dev: &Device) -> DeviceInfo {
    DeviceInfo {
        path: facts.path.clone(),
        canonical: facts.canonical.clone(),
        kind: match facts.kind {
            DeviceKind::Block => "block".into(),
            DeviceKind::File => "file".into(),
        },
        size: dev.size,
        logical_block_size: dev.logical_block_size,
    }
}

/// Warnings kept once each, in order; each new one is also sent as an event.
#[derive(Debug, Default)]
struct Warnings(Vec<String>);

impl Warnings {
    fn add(&mut self, events: &EventSink, w: impl IntoIterator<Item = String>) {
        for w in w {
            if !self.0.contains(&w) {
                events.warn(w.clone());
                self.0.push(w);
            }
        }
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The refusals for a bench: only the target's rules (the source is only
/// read, so a mounted source is allowed), then the confirmation.
fn check_target(source: &DeviceFacts, target: &DeviceFacts, opts: &BenchOptions) -> Result<()> {
    target::into_result(
        &target::check_targets(source, std::slice::from_ref(target), 0, opts.force),
        Stage::Bench,
    )?;
    if !opts.confirmed {
        return Err(Error::refused(format!(
            "the copy tests overwrite {} from its first byte",
            target.path.display()
        ))
        .stage(Stage::Bench)
        .device(&target.path)
        .hint("add --yes to confirm that everything on it may be destroyed, or leave DST out to run the read tests only"));
    }
    Ok(())
}

/// Measure every strategy of the matrix on `source` (and `target`, when
/// given and confirmed). A strategy that fails gets its error in its row;
/// a refusal (a target that became busy) ends the bench.
pub fn run(
    source: &Path,
    target: Option<&Path>,
    opts: &BenchOptions,
    events: &EventSink,
) -> Result<BenchReport> {
    let stage = |e: Error| e.stage(Stage::Bench);
    validate(opts).map_err(stage)?;
    let t0 = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load_start = loadavg::read(&opts.root);
    let src_facts = device::inspect(source, &opts.root).map_err(stage)?;
    let tgt_facts = target
        .map(|t| device::inspect(t, &opts.root))
        .transpose()
        .map_err(stage)?;
    if let Some(t) = &tgt_facts {
        check_target(&src_facts, t, opts)?;
    }
    let mut warnings = Warnings::default();
    if let Some(m) = src_facts.mounted_rw() {
        warnings.add(
            events,
            [format!(
                "the source is {}: its own writers may disturb the numbers",
                m.describe()
            )],
        );
    }
    // Learn sizes and alignment (and whether O_DIRECT works). The target
    // stays open, exclusively for a block device, until the bench ends: no
    // one mounts or claims it meanwhile, and the runs open it again without
    // O_EXCL.
    let (src, w) = Device::open(source, Access::Read, true).map_err(stage)?;
    warnings.add(events, w);
    let dst = match target {
        Some(t) => {
            let (d, w) = Device::open(t, Access::Write, true).map_err(stage)?;
            warnings.add(events, w);
            Some(d)
        }
        None => None,
    };
    let align = u64::from(
        dst.as_ref()
            .map_or(src.logical_block_size, |d| d.logical_block_size)
            .max(src.logical_block_size),
    );
    let mut limit = src.size;
    if let Some(d) = &dst {
        limit = limit.min(d.size);
    }
    if let Some(b) = opts.bytes {
        limit = limit.min(b);
    }
    limit -= limit % align;
    if limit == 0 {
        return Err(stage(
            Error::invalid("nothing to measure: the devices are smaller than one block")
                .device(source),
        ));
    }
    let source_info = info(&src_facts, &src);
    let target_info = tgt_facts
        .as_ref()
        .zip(dst.as_ref())
        .map(|(f, d)| info(f, d));
    let files = !src.is_block && dst.as_ref().is_some_and(|d| !d.is_block);
    drop(src);
    let _target_guard = dst;

    let defaults = copy::CopyOptions::default();
    let strategies = bench::matrix(&MatrixInput {
        matrix: opts.matrix,
        copy: target.is_some(),
        files,
        pipeline: (
            u32::try_from(defaults.queue_depth).unwrap_or(16),
            defaults.chunk_size as u64,
        ),
        only: opts.only.clone(),
    });
    if strategies.is_empty() {
        return Err(stage(Error::invalid(
            "no strategy left to measure (--only names none that applies here)",
        )));
    }
    let total = strategies.len() * opts.runs;
    events.info(format!(
        "{} strategies x {} runs, each up to {:.1} s or {} bytes: about {:.0} s at most",
        strategies.len(),
        opts.runs,
        opts.seconds,
        limit,
        total as f64 * opts.seconds
    ));
    let ctx = runs::RunCtx {
        source,
        target,
        limit,
        align,
        seconds: opts.seconds,
        hash_threads: opts.hash_threads.max(1),
    };
    let facts: Vec<&DeviceFacts> = std::iter::once(&src_facts).chain(&tgt_facts).collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); strategies.len()];
    let mut errors: Vec<Option<String>> = vec![None; strategies.len()];
    events.phase("bench", Some(total as u64), Unit::Items);
    let mut done = 0u64;
    for _round in 0..opts.runs {
        for (i, s) in strategies.iter().enumerate() {
            done += 1;
            if errors[i].is_some() {
                continue;
            }
            warnings.add(events, cache::drop_caches(&facts, opts.cache, &opts.root));
            match runs::run_one(s, &ctx) {
                Ok((sample, w)) => {
                    samples[i].push(sample);
                    warnings.add(events, w);
                }
                Err(e) if matches!(e.kind(), ErrorKind::Refused(_)) => {
                    return Err(stage(e));
                }
                Err(e) => {
                    events.warn(format!("{s}: {e}"));
                    errors[i] = Some(e.to_string());
                }
            }
            events.progress(done);
        }
    }
    events.phase_end("bench", done, t0.elapsed());
    let mut rows: Vec<Row> = strategies
        .into_iter()
        .zip(samples)
        .zip(errors)
        .map(|((s, v), e)| summarize(s, v, e))
        .collect();
    let (read, copy) = mark_best(&mut rows);
    let tuning = pick_tuning(&rows);
    Ok(BenchReport {
        version: REPORT_VERSION,
        source: source_info,
        target: target_info,
        settings: Settings {
            seconds: opts.seconds,
            bytes: opts.bytes,
            limit,
            runs: opts.runs,
            matrix: opts.matrix,
            cache: opts.cache,
            hash_threads: ctx.hash_threads,
        },
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: kernel_release(),
            load_start,
            load_end: loadavg::read(&opts.root),
        },
        started_unix,
        seconds: t0.elapsed().as_secs_f64(),
        rows,
        best: Best { read, copy },
        tuning,
        warnings: warnings.0,
    })
}

/// Where a `copy --tune` setting came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum TuneSource {
    /// A saved bench result.
    Saved {
        /// The results file.
        file: PathBuf,
        /// When that bench started (seconds since the epoch).
        started_unix: u64,
        /// Whether it measured copies (a target) or only reads.
        copy_tests: bool,
    },
    /// The short read probe ([`bench::tune_matrix`]).
    Probe,
    /// Nothing measured: the copy defaults.
    Defaults,
}

/// The queue depth and chunk size for a copy, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TuneChoice {
    /// Chunks in flight.
    pub queue_depth: usize,
    /// Bytes per transfer.
    pub chunk_size: usize,
    /// Where it came from.
    pub source: TuneSource,
    /// The row it was picked from, with its numbers.
    pub tuning: Option<Tuning>,
}

/// Seconds per strategy of the tune probe.
pub const TUNE_PROBE_SECONDS: f64 = 0.3;
/// Byte bound per strategy of the tune probe.
pub const TUNE_PROBE_BYTES: u64 = 256 << 20;

/// Pick queue depth and chunk size for copying `source`: from the newest
/// saved result for it in `saved` (the default file when `None`), else from
/// a short read-only io_uring probe of the source, else the copy defaults.
/// Reads only; writes nothing anywhere.
pub fn tune(source: &Path, saved: Option<&Path>, events: &EventSink) -> Result<TuneChoice> {
    let stage = |e: Error| e.stage(Stage::Copy);
    let file = saved.map_or_else(saved::default_path, Path::to_path_buf);
    let canonical = std::fs::canonicalize(source)
        .map_err(|e| stage(Error::io("resolving the source path", e).device(source)))?;
    let (src, _) = Device::open(source, Access::Read, true).map_err(stage)?;
    let clamp = |t: &Tuning| {
        (
            usize::try_from(t.queue_depth)
                .unwrap_or(copy::DEFAULT_QUEUE_DEPTH)
                .clamp(1, copy::MAX_QUEUE_DEPTH),
            usize::try_from(t.chunk_size)
                .ok()
                .filter(|c| c.is_power_of_two())
                .unwrap_or(copy::DEFAULT_CHUNK_SIZE)
                .clamp(4096, copy::MAX_CHUNK_SIZE),
        )
    };
    match saved::load(&file) {
        Ok(s) => {
            if let Some(r) = saved::find(&s, &canonical, src.size) {
                if let Some(t) = &r.tuning {
                    let (queue_depth, chunk_size) = clamp(t);
                    return Ok(TuneChoice {
                        queue_depth,
                        chunk_size,
                        source: TuneSource::Saved {
                            file,
                            started_unix: r.started_unix,
                            copy_tests: r.target.is_some(),
                        },
                        tuning: Some(t.clone()),
                    });
                }
            }
        }
        Err(e) => events.warn(format!("{e}; probing instead")),
    }
    events.info(format!(
        "no saved bench result for {} in {}: probing reads for 3 s",
        source.display(),
        file.display()
    ));
    let align = u64::from(src.logical_block_size);
    let limit = src.size.min(TUNE_PROBE_BYTES);
    let limit = limit - limit % align;
    let ctx = runs::RunCtx {
        source,
        target: None,
        limit,
        align,
        seconds: TUNE_PROBE_SECONDS,
        hash_threads: 1,
    };
    drop(src);
    let strategies = bench::tune_matrix();
    events.phase("tune", Some(strategies.len() as u64), Unit::Items);
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for (i, s) in strategies.into_iter().enumerate() {
        let row = match (limit > 0).then(|| runs::run_one(&s, &ctx)) {
            Some(Ok((sample, _))) => summarize(s, vec![sample], None),
            Some(Err(e)) => summarize(s, Vec::new(), Some(e.to_string())),
            None => summarize(s, Vec::new(), Some("source too small".into())),
        };
        rows.push(row);
        events.progress(i as u64 + 1);
    }
    events.phase_end("tune", rows.len() as u64, t0.elapsed());
    Ok(match pick_tuning(&rows) {
        Some(t) => {
            let (queue_depth, chunk_size) = clamp(&t);
            TuneChoice {
                queue_depth,
                chunk_size,
                source: TuneSource::Probe,
                tuning: Some(t),
            }
        }
        None => {
            events.warn(
                "the tune probe measured nothing; using the default queue depth and chunk size",
            );
            TuneChoice {
                queue_depth: copy::DEFAULT_QUEUE_DEPTH,
                chunk_size: copy::DEFAULT_CHUNK_SIZE,
                source: TuneSource::Defaults,
                tuning: None,
            }
        }
    })
}

#[cfg(test)]
mod tests;
