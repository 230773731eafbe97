//! The pure side of `reroot bench`: which strategies to measure (the
//! matrix), the median and spread of repeated runs, which row is best, and
//! which queue depth and chunk size `reroot copy --tune` takes from a result.
//!
//! No I/O and no `sys`: strategies and samples in, rows and choices out.
//! Imports nothing from the crate but this module's own types.

use std::fmt;

/// Bytes in a KiB and a MiB.
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// What a strategy measures: reading the source, or copying it to the target.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Read the source only (always safe).
    Read,
    /// Read the source and write the same bytes at the same offsets of the target.
    Copy,
}

impl Op {
    /// `read` or `copy`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Copy => "copy",
        }
    }
}

/// How the bytes move.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `pread`/`pwrite` through the page cache, one thread (what `dd` and `cp` do).
    Buffered,
    /// `pread`/`pwrite` with O_DIRECT, one thread, one transfer at a time.
    Direct,
    /// `pread`/`pwrite` with O_DIRECT from `depth` threads taking chunks in turn.
    Threads,
    /// io_uring with O_DIRECT and registered buffers, `depth` transfers in flight.
    Uring,
    /// As `uring`, reading only, with every chunk hashed (xxh3) on worker
    /// threads: the cost of `reroot verify` and of a readback.
    UringXxh3,
    /// `copy_file_range(2)`: the kernel copies, no user-space buffer (regular files).
    CopyFileRange,
    /// `splice(2)` source → pipe → target: the kernel moves page references.
    Splice,
    /// reroot's own copy pipeline (plan, io_uring, buffer pool), no hashing
    /// (`copy --verify none`).
    Pipeline,
    /// reroot's copy pipeline hashing every chunk (`copy --verify hash`).
    PipelineHash,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 9] = [
        Method::Buffered,
        Method::Direct,
        Method::Threads,
        Method::Uring,
        Method::UringXxh3,
        Method::CopyFileRange,
        Method::Splice,
        Method::Pipeline,
        Method::PipelineHash,
    ];

    /// The name used in flags, ids and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Buffered => "buffered",
            Method::Direct => "direct",
            Method::Threads => "threads",
            Method::Uring => "uring",
            Method::UringXxh3 => "uring-xxh3",
            Method::CopyFileRange => "copy-file-range",
            Method::Splice => "splice",
            Method::Pipeline => "pipeline",
            Method::PipelineHash => "pipeline-hash",
        }
    }

    /// The method named `name` (as in [`name`](Self::name)).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// True when the method bypasses the page cache with O_DIRECT.
    pub fn direct(self) -> bool {
        !matches!(
            self,
            Method::Buffered | Method::CopyFileRange | Method::Splice
        )
    }

    /// What `depth` means for this method, for labels: `qd` (in flight) or
    /// `x` (threads); `None` when it is always 1.
    fn depth_kind(self) -> Option<&'static str> {
        match self {
            Method::Threads => Some("x"),
            Method::Uring | Method::UringXxh3 | Method::Pipeline | Method::PipelineHash => {
                Some("qd")
            }
            _ => None,
        }
    }
}

/// One cell of the matrix: an operation, a method, a chunk size and a depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Strategy {
    /// Read or copy.
    pub op: Op,
    /// How.
    pub method: Method,
    /// Bytes per transfer.
    pub chunk_size: u64,
    /// Transfers in flight (io_uring, pipeline) or threads; 1 otherwise.
    pub depth: u32,
}

/// "128K", "1M", "8M", "4096".
pub fn short_size(bytes: u64) -> String {
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{}M", bytes >> 20)
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{}K", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

impl Strategy {
    /// A strategy.
    pub fn new(op: Op, method: Method, chunk_size: u64, depth: u32) -> Self {
        Self {
            op,
            method,
            chunk_size,
            depth,
        }
    }

    /// A stable identifier: `read/uring/qd16/1M`, `copy/buffered/1M`.
    pub fn id(&self) -> String {
        match self.method.depth_kind() {
            Some(k) => format!(
                "{}/{}/{k}{}/{}",
                self.op.name(),
                self.method.name(),
                self.depth,
                short_size(self.chunk_size)
            ),
            None => format!(
                "{}/{}/{}",
                self.op.name(),
                self.method.name(),
                short_size(self.chunk_size)
            ),
        }
    }

    /// The method and its depth for the table: `uring qd16`, `threads x4`, `buffered`.
    pub fn label(&self) -> String {
        match self.method.depth_kind() {
            Some(k) => format!("{} {k}{}", self.method.name(), self.depth),
            None => self.method.name().to_owned(),
        }
    }

    /// Buffer memory the strategy holds: chunk size × depth.
    pub fn memory(&self) -> u64 {
        self.chunk_size.saturating_mul(u64::from(self.depth))
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.op.name(),
            self.label(),
            short_size(self.chunk_size)
        )
    }
}

/// How many strategies to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Matrix {
    /// One axis at a time: queue depths at 1 MiB, chunk sizes at depth 16.
    #[default]
    Quick,
    /// Every queue depth × every chunk size for io_uring, and more thread counts.
    Full,
}

/// Chunk sizes measured: 128 KiB to 8 MiB.
pub const CHUNK_SIZES: [u64; 7] = [
    128 * KIB,
    256 * KIB,
    512 * KIB,
    MIB,
    2 * MIB,
    4 * MIB,
    8 * MIB,
];
/// io_uring queue depths measured.
pub const QUEUE_DEPTHS: [u32; 4] = [1, 4, 16, 64];
/// The chunk size the one-thread methods and the depth sweep use.
pub const BASE_CHUNK: u64 = MIB;
/// The queue depth the chunk sweep uses.
pub const BASE_DEPTH: u32 = 16;

/// What the matrix depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixInput {
    /// Quick or full.
    pub matrix: Matrix,
    /// A confirmed target exists: add the copy strategies.
    pub copy: bool,
    /// Source and target are both regular files (`copy_file_range` applies).
    pub files: bool,
    /// Queue depth and chunk size of reroot's pipeline rows (the copy defaults).
    pub pipeline: (u32, u64),
    /// Only these methods (all when empty).
    pub only: Vec<Method>,
}

/// The strategies to measure, in table order: reads first, then copies.
pub fn matrix(input: &MatrixInput) -> Vec<Strategy> {
    let mut out = Vec::new();
    let ops: &[Op] = if input.copy {
        &[Op::Read, Op::Copy]
    } else {
        &[Op::Read]
    };
    let threads: &[u32] = match input.matrix {
        Matrix::Quick => &[4],
        Matrix::Full => &[2, 4, 8],
    };
    for &op in ops {
        let s = |method, chunk, depth| Strategy::new(op, method, chunk, depth);
        out.push(s(Method::Buffered, BASE_CHUNK, 1));
        out.push(s(Method::Direct, BASE_CHUNK, 1));
        for &t in threads {
            out.push(s(Method::Threads, BASE_CHUNK, t));
        }
        match input.matrix {
            Matrix::Quick => {
                for qd in QUEUE_DEPTHS {
                    out.push(s(Method::Uring, BASE_CHUNK, qd));
                }
                for chunk in CHUNK_SIZES.into_iter().filter(|&c| c != BASE_CHUNK) {
                    out.push(s(Method::Uring, chunk, BASE_DEPTH));
                }
            }
            Matrix::Full => {
                for qd in QUEUE_DEPTHS {
                    for chunk in CHUNK_SIZES {
                        out.push(s(Method::Uring, chunk, qd));
                    }
                }
            }
        }
        let (pqd, pchunk) = input.pipeline;
        match op {
            Op::Read => out.push(s(Method::UringXxh3, pchunk, pqd)),
            Op::Copy => {
                if input.files {
                    out.push(s(Method::CopyFileRange, BASE_CHUNK, 1));
                }
                out.push(s(Method::Splice, BASE_CHUNK, 1));
                out.push(s(Method::Pipeline, pchunk, pqd));
                out.push(s(Method::PipelineHash, pchunk, pqd));
            }
        }
    }
    if !input.only.is_empty() {
        out.retain(|s| input.only.contains(&s.method));
    }
    out
}

/// The short read-only probe `copy --tune` runs when no saved result fits:
/// io_uring reads at three depths × three chunk sizes.
pub fn tune_matrix() -> Vec<Strategy> {
    let mut out = Vec::new();
    for qd in [4, 16, 64] {
        for chunk in [256 * KIB, MIB, 4 * MIB] {
            out.push(Strategy::new(Op::Read, Method::Uring, chunk, qd));
        }
    }
    out
}

/// One timed run of one strategy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Bytes moved (source bytes; a copy counts each byte once).
    pub bytes: u64,
    /// Transfers issued (each read and each write, or each kernel copy call).
    pub ops: u64,
    /// Wall time, including the final `fdatasync` of a copy.
    pub seconds: f64,
    /// User + system CPU time of the whole process (every thread).
    pub cpu_seconds: f64,
}

impl Sample {
    /// MB/s (10^6 bytes per second).
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }

    /// Transfers per second.
    pub fn iops(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// CPU seconds per GB (10^9 bytes) moved; `None` when nothing moved.
    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        (self.bytes > 0).then(|| self.cpu_seconds / (self.bytes as f64 / 1e9))
    }
}

/// Median and range of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// (max − min) / median, in percent (0 for one run).
    pub spread_pct: f64,
}

/// The median and spread of `values`; `None` when empty or not all finite.
pub fn spread(values: &[f64]) -> Option<Spread> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let (lower, upper) = v.split_at(mid);
    let median = match (lower.last(), upper.first()) {
        (Some(&a), Some(&b)) if v.len() % 2 == 0 => f64::midpoint(a, b),
        (_, Some(&b)) => b,
        _ => return None,
    };
    let (&min, &max) = (v.first()?, v.last()?);
    let spread_pct = if median > 0.0 {
        (max - min) / median * 100.0
    } else {
        0.0
    };
    Some(Spread {
        median,
        min,
        max,
        spread_pct,
    })
}

/// One line of the result: a strategy, its runs and their summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Stable identifier (see [`Strategy::id`]).
    pub id: String,
    /// `uring qd16`, `threads x4`, ...
    pub label: String,
    /// The strategy.
    #[serde(flatten)]
    pub strategy: Strategy,
    /// O_DIRECT was asked for (and granted, unless a warning says otherwise).
    pub direct: bool,
    /// Every run, in order.
    pub samples: Vec<Sample>,
    /// MB/s over the runs.
    pub mb_per_s: Option<Spread>,
    /// Transfers per second over the runs.
    pub iops: Option<Spread>,
    /// CPU seconds per GB over the runs.
    pub cpu_s_per_gb: Option<Spread>,
    /// The highest median MB/s of its operation (read or copy).
    pub best: bool,
    /// Why the strategy has no numbers (it failed, or does not apply here).
    pub error: Option<String>,
}

/// Summarise the runs of `strategy` (`error` when a run failed).
pub fn summarize(strategy: Strategy, samples: Vec<Sample>, error: Option<String>) -> Row {
    let of = |f: &dyn Fn(&Sample) -> Option<f64>| {
        let v: Vec<f64> = samples.iter().filter_map(f).collect();
        spread(&v)
    };
    let ok = error.is_none();
    Row {
        id: strategy.id(),
        label: strategy.label(),
        direct: strategy.method.direct(),
        mb_per_s: of(&|s| Some(s.mb_per_s())).filter(|_| ok),
        iops: of(&|s| Some(s.iops())).filter(|_| ok),
        cpu_s_per_gb: of(&Sample::cpu_s_per_gb).filter(|_| ok),
        strategy,
        samples,
        best: false,
        error,
    }
}

/// Mark, per operation, the row with the highest median MB/s (rows with an
/// error never win). Returns the ids of the winners: (read, copy).
pub fn mark_best(rows: &mut [Row]) -> (Option<String>, Option<String>) {
    let mut winners = (None, None);
    for op in [Op::Read, Op::Copy] {
        let best = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.strategy.op == op && r.error.is_none())
            .filter_map(|(i, r)| r.mb_per_s.map(|s| (i, s.median)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        for r in rows.iter_mut().filter(|r| r.strategy.op == op) {
            r.best = false;
        }
        if let Some((i, _)) = best {
            rows[i].best = true;
            let id = Some(rows[i].id.clone());
            match op {
                Op::Read => winners.0 = id,
                Op::Copy => winners.1 = id,
            }
        }
    }
    winners
}

/// Rows within this fraction of the fastest count as equally fast when
/// picking a tuning (the noise of a shared machine is about this size).
pub const TUNE_TOLERANCE: f64 = 0.05;

/// The queue depth and chunk size `copy --tune` uses, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tuning {
    /// Chunks in flight.
    pub queue_depth: u32,
    /// Bytes per transfer.
    pub chunk_size: u64,
    /// The row it comes from.
    pub from: String,
    /// That row's median MB/s.
    pub mb_per_s: f64,
    /// The fastest io_uring row's median MB/s (the choice is within
    /// [`TUNE_TOLERANCE`] of it).
    pub best_mb_per_s: f64,
}

/// Pick the io_uring setting for copies: among the io_uring copy rows
/// (io_uring read rows when there are none), the one using the least buffer
/// memory (queue depth × chunk size) whose median MB/s is within
/// [`TUNE_TOLERANCE`] of the fastest; ties go to the faster row.
pub fn pick_tuning(rows: &[Row]) -> Option<Tuning> {
    let candidates = |op: Op| -> Vec<(&Row, f64)> {
        rows.iter()
            .filter(|r| r.strategy.op == op && r.strategy.method == Method::Uring)
            .filter(|r| r.error.is_none())
            .filter_map(|r| r.mb_per_s.map(|s| (r, s.median)))
            .filter(|(_, m)| *m > 0.0)
            .collect()
    };
    let mut c = candidates(Op::Copy);
    if c.is_empty() {
        c = candidates(Op::Read);
    }
    let fastest = c.iter().map(|(_, m)| *m).max_by(f64::total_cmp)?;
    let floor = fastest * (1.0 - TUNE_TOLERANCE);
    let (row, mb) = c.into_iter().filter(|(_, m)| *m >= floor).min_by(|a, b| {
        a.0.strategy
            .memory()
            .cmp(&b.0.strategy.memory())
            .then(b.1.total_cmp(&a.1))
    })?;
    Some(Tuning {
        queue_depth: row.strategy.depth,
        chunk_size: row.strategy.chunk_size,
        from: row.id.clone(),
        mb_per_s: mb,
        best_mb_per_s: fastest,
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn input(copy: bool, files: bool, matrix: Matrix) -> MatrixInput {
        MatrixInput {
            matrix,
            copy,
            files,
            pipeline: (16, MIB),
            only: Vec::new(),
        }
    }

    #[test]
    fn quick_read_matrix_covers_every_axis_once() {
        let m = matrix(&input(false, false, Matrix::Quick));
        assert!(m.iter().all(|s| s.op == Op::Read));
        let ids: Vec<String> = m.iter().map(Strategy::id).collect();
        for want in [
            "read/buffered/1M",
            "read/direct/1M",
            "read/threads/x4/1M",
            "read/uring/qd1/1M",
            "read/uring/qd4/1M",
            "read/uring/qd16/1M",
            "read/uring/qd64/1M",
            "read/uring/qd16/128K",
            "read/uring/qd16/8M",
            "read/uring-xxh3/qd16/1M",
        ] {
            assert!(ids.iter().any(|i| i == want), "{want} missing from {ids:?}");
        }
        // Every chunk size appears once at depth 16, no duplicates anywhere.
        let mut dedup = ids.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), ids.len());
        assert_eq!(m.len(), 3 + 4 + 6 + 1);
    }

    #[test]
    fn copy_matrix_adds_kernel_copies_only_where_they_apply() {
        let devs = matrix(&input(true, false, Matrix::Quick));
        let files = matrix(&input(true, true, Matrix::Quick));
        let has = |m: &[Strategy], meth| m.iter().any(|s| s.op == Op::Copy && s.method == meth);
        assert!(!has(&devs, Method::CopyFileRange));
        assert!(has(&files, Method::CopyFileRange));
        for meth in [Method::Splice, Method::Pipeline, Method::PipelineHash] {
            assert!(has(&devs, meth) && has(&files, meth));
        }
        assert_eq!(files.len(), devs.len() + 1);
        // Reads first, then copies.
        let first_copy = devs.iter().position(|s| s.op == Op::Copy).unwrap();
        assert!(devs[first_copy..].iter().all(|s| s.op == Op::Copy));
        assert!(!has(&devs, Method::UringXxh3));
    }

    #[test]
    fn full_matrix_is_the_cross_product() {
        let m = matrix(&input(false, false, Matrix::Full));
        let uring = m.iter().filter(|s| s.method == Method::Uring).count();
        assert_eq!(uring, QUEUE_DEPTHS.len() * CHUNK_SIZES.len());
        assert_eq!(m.iter().filter(|s| s.method == Method::Threads).count(), 3);
    }

    #[test]
    fn only_filters_methods() {
        let mut i = input(true, true, Matrix::Quick);
        i.only = vec![Method::Splice, Method::Direct];
        let m = matrix(&i);
        assert_eq!(m.len(), 3, "{m:?}"); // read direct, copy direct, copy splice
        assert!(
            m.iter()
                .all(|s| matches!(s.method, Method::Splice | Method::Direct))
        );
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.name()), Some(m));
        }
        assert_eq!(Method::parse("dd"), None);
    }

    #[test]
    fn labels_and_sizes() {
        assert_eq!(short_size(128 * KIB), "128K");
        assert_eq!(short_size(8 * MIB), "8M");
        assert_eq!(short_size(1536 * KIB), "1536K");
        assert_eq!(short_size(1000), "1000");
        let s = Strategy::new(Op::Copy, Method::Threads, MIB, 4);
        assert_eq!(
            (s.label(), s.id()),
            ("threads x4".into(), "copy/threads/x4/1M".into())
        );
        assert_eq!(s.to_string(), "copy threads x4 1M");
        assert_eq!(s.memory(), 4 * MIB);
    }

    #[test]
    fn median_and_spread() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert!((s.spread_pct - 100.0).abs() < 1e-9);
        let s = spread(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        let one = spread(&[7.0]).unwrap();
        assert_eq!((one.median, one.spread_pct), (7.0, 0.0));
        assert!(spread(&[]).is_none());
        assert!(spread(&[1.0, f64::NAN]).is_none());
        assert_eq!(spread(&[0.0, 0.0]).unwrap().spread_pct, 0.0);
    }

    fn sample(mb_per_s: f64) -> Sample {
        Sample {
            bytes: 1_000_000_000,
            ops: 1000,
            seconds: 1000.0 / mb_per_s,
            cpu_seconds: 0.5,
        }
    }

    fn row(op: Op, method: Method, chunk: u64, depth: u32, mbs: &[f64]) -> Row {
        summarize(
            Strategy::new(op, method, chunk, depth),
            mbs.iter().map(|&m| sample(m)).collect(),
            None,
        )
    }

    #[test]
    fn summary_numbers() {
        let r = row(Op::Read, Method::Direct, MIB, 1, &[100.0, 300.0, 200.0]);
        assert!((r.mb_per_s.unwrap().median - 200.0).abs() < 1e-9);
        assert!((r.iops.unwrap().median - 200.0).abs() < 1e-9);
        assert!((r.cpu_s_per_gb.unwrap().median - 0.5).abs() < 1e-9);
        let failed = summarize(
            Strategy::new(Op::Copy, Method::Splice, MIB, 1),
            Vec::new(),
            Some("EINVAL".into()),
        );
        assert!(failed.mb_per_s.is_none() && failed.iops.is_none());
    }

    #[test]
    fn best_per_operation_ignores_failures() {
        let mut rows = vec![
            row(Op::Read, Method::Direct, MIB, 1, &[100.0]),
            row(Op::Read, Method::Uring, MIB, 16, &[300.0]),
            row(Op::Copy, Method::Uring, MIB, 16, &[150.0]),
            row(Op::Copy, Method::Direct, MIB, 1, &[90.0]),
            summarize(
                Strategy::new(Op::Copy, Method::Splice, MIB, 1),
                vec![sample(999.0)],
                Some("failed".into()),
            ),
        ];
        let (r, c) = mark_best(&mut rows);
        assert_eq!(r.as_deref(), Some("read/uring/qd16/1M"));
        assert_eq!(c.as_deref(), Some("copy/uring/qd16/1M"));
        let marked: Vec<bool> = rows.iter().map(|r| r.best).collect();
        assert_eq!(marked, [false, true, true, false, false]);
    }

    #[test]
    fn tuning_prefers_least_memory_within_tolerance() {
        let rows = vec![
            row(Op::Copy, Method::Uring, MIB, 64, &[200.0]),
            row(Op::Copy, Method::Uring, MIB, 16, &[196.0]), // within 5%: 16 MiB
            row(Op::Copy, Method::Uring, 256 * KIB, 16, &[150.0]), // too slow
            row(Op::Copy, Method::Threads, 128 * KIB, 1, &[500.0]), // not io_uring
            row(Op::Read, Method::Uring, 128 * KIB, 1, &[900.0]), // copies win
        ];
        let t = pick_tuning(&rows).unwrap();
        assert_eq!((t.queue_depth, t.chunk_size), (16, MIB));
        assert_eq!(t.from, "copy/uring/qd16/1M");
        assert!((t.best_mb_per_s - 200.0).abs() < 1e-9);
    }

    #[test]
    fn tuning_falls_back_to_reads_and_to_nothing() {
        let rows = vec![
            row(Op::Read, Method::Uring, 4 * MIB, 4, &[300.0]),
            row(Op::Read, Method::Uring, MIB, 4, &[310.0]),
        ];
        let t = pick_tuning(&rows).unwrap();
        assert_eq!((t.queue_depth, t.chunk_size), (4, MIB));
        assert!(pick_tuning(&[row(Op::Read, Method::Direct, MIB, 1, &[1.0])]).is_none());
        assert!(pick_tuning(&[]).is_none());
    }

    #[test]
    fn tune_probe_is_small_and_read_only() {
        let m = tune_matrix();
        assert_eq!(m.len(), 9);
        assert!(
            m.iter()
                .all(|s| s.op == Op::Read && s.method == Method::Uring)
        );
    }

    #[test]
    fn rows_round_trip_through_json() {
        let r = row(Op::Copy, Method::PipelineHash, MIB, 16, &[100.0, 120.0]);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["op"], "copy");
        assert_eq!(j["method"], "pipeline-hash");
        assert_eq!(j["depth"], 16);
        let back: Row = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }
}
