//! `reroot bench SRC [DST]`: measure copy strategies on the user's own
//! devices and print a table (MB/s, IOPS, CPU per GB, best row marked) or
//! `--json`; results are saved for `reroot copy --tune`.

use std::fmt::Write as _;
use std::path::PathBuf;

use reroot::exec::bench::{self, BenchOptions, BenchReport, CacheDrop, saved};
use reroot::plan::bench::{Matrix, Method, Row, short_size};

use super::copy::parse_size;
use super::{CmdResult, Ctx, Exit, output};

/// `--matrix` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MatrixArg {
    /// One axis at a time (default).
    Quick,
    /// Every io_uring queue depth x every chunk size, and 2/4/8 threads.
    Full,
}

/// `--drop-caches` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DropArg {
    /// The devices under test only (default).
    Device,
    /// The whole page cache (root).
    System,
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        format!("unknown strategy {s:?} (one of: {})", names.join(", "))
    })
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('s').parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!(
            "not a duration: {s:?} (seconds, e.g. 3 or 0.5; at most 3600)"
        )),
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < 4096 {
        return Err(format!("{s:?} is below 4K"));
    }
    Ok(n as u64)
}

/// Flags of `reroot bench`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Measure copy strategies on your own devices: buffered and O_DIRECT \
pread/pwrite, N threads, io_uring at queue depths 1/4/16/64 and chunk sizes 128K to 8M, \
copy_file_range and splice (where they apply), and reroot's own copy pipeline with and without \
hashing. Read tests run on SRC, which is only read. Copy tests run only when DST is given and \
confirmed with --yes: DST is overwritten from its first byte, and refused like a `reroot copy` \
target when it is mounted, held, in use, read-only, the source, or (without --force) carries a \
signature.\n\n\
Each run stops after --seconds or --bytes, whichever comes first. Caches are dropped before \
every run (or O_DIRECT bypasses them), and each strategy runs --runs times in rounds; the \
table shows the median MB/s with its range and spread, transfers per second (IOPS) and CPU \
seconds per GB (all threads of reroot). The fastest row of each kind is marked with *. \
The whole bench takes at most strategies x runs x seconds (about 14 read and 19 copy \
strategies in the quick matrix).\n\n\
The result is saved (see --save) so `reroot copy --tune` can pick its queue depth and chunk \
size from it."
)]
pub struct Args {
    /// The source device or file (only read).
    pub source: PathBuf,
    /// A scratch target for the copy tests (overwritten; needs --yes).
    pub target: Option<PathBuf>,
    /// Time bound of each run, in seconds.
    #[arg(
        long,
        default_value = "3",
        value_name = "SECS",
        value_parser = parse_seconds,
        long_help = "Stop each run after this many seconds (fractions allowed, e.g. 0.5; at \
most 3600), or earlier when --bytes or the end of the smaller device is reached. A copy's \
final fdatasync is inside the time, so one run may overrun by the time the device takes to \
write back."
    )]
    pub seconds: f64,
    /// Byte bound of each run (K/M/G suffixes).
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = parse_bytes,
        long_help = "Stop each run after this many bytes (at least 4K; suffixes K, M, G are \
powers of 1024), or earlier when --seconds is up. Without it a run may go to the end of the \
smaller device. Every run starts at byte 0."
    )]
    pub bytes: Option<u64>,
    /// Runs per strategy (median and spread over them).
    #[arg(
        long,
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=100),
        long_help = "How many times each strategy runs (1..=100). Runs go in rounds (run 1 of \
every strategy, then run 2, ...) so that a slow drift of a busy machine spreads over all rows. \
The table shows the median, the range and the spread ((max - min) / median)."
    )]
    pub runs: u16,
    /// Which strategies: quick (default) or full.
    #[arg(
        long,
        value_enum,
        default_value = "quick",
        long_help = "quick: one axis at a time: io_uring at queue depths 1/4/16/64 with 1 MiB \
chunks, then chunk sizes 128K..8M at depth 16, plus the other methods. full: every io_uring \
queue depth x every chunk size, and 2, 4 and 8 threads (about three times as long)."
    )]
    pub matrix: MatrixArg,
    /// Only these methods (comma-separated).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        value_parser = parse_method,
        long_help = "Measure only these methods, comma-separated: buffered, direct, threads, \
uring, uring-xxh3, copy-file-range, splice, pipeline, pipeline-hash. Example: --only \
uring,pipeline."
    )]
    pub only: Vec<Method>,
    /// Confirm that DST may be overwritten.
    #[arg(
        long,
        long_help = "Confirm that the copy tests may overwrite DST from its first byte (up to \
--bytes or the smaller device's size). Without it, giving DST is refused (exit code 3)."
    )]
    pub yes: bool,
    /// Overwrite a DST that carries a filesystem or RAID/LVM signature.
    #[arg(
        long,
        long_help = "Accept a DST that carries a filesystem, LVM, md, swap or partition-table \
signature (it will be destroyed). Never overrides the other refusals (mounted, held, opened \
exclusively, read-only, the source or overlapping it)."
    )]
    pub force: bool,
    /// How to drop cached data before each run: device (default) or system.
    #[arg(
        long,
        value_enum,
        default_value = "device",
        long_help = "device: before each run write back and drop the cached pages of SRC and \
DST only (BLKFLSBUF for a block device, posix_fadvise DONTNEED for a file, and the backing \
file of a loop device). system: also `sync; echo 3 > /proc/sys/vm/drop_caches` (root; slows \
every other process for a moment). O_DIRECT strategies bypass the cache either way."
    )]
    pub drop_caches: DropArg,
    /// Where to save the result (default: /var/lib/reroot/bench.json as root).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "no_save",
        long_help = "Save the result in FILE (JSON; the latest result per source and target \
pair is kept), where `reroot copy --tune=FILE` finds it. Default: /var/lib/reroot/bench.json \
when run as root, else $XDG_STATE_HOME/reroot/bench.json (~/.local/state/reroot/bench.json)."
    )]
    pub save: Option<PathBuf>,
    /// Do not save the result.
    #[arg(
        long,
        long_help = "Print the result but do not save it anywhere (`reroot copy --tune` then \
cannot use it)."
    )]
    pub no_save: bool,
}

impl Args {
    /// Library options from these flags.
    pub fn options(&self) -> BenchOptions {
        BenchOptions {
            seconds: self.seconds,
            bytes: self.bytes,
            runs: usize::from(self.runs),
            matrix: match self.matrix {
                MatrixArg::Quick => Matrix::Quick,
                MatrixArg::Full => Matrix::Full,
            },
            only: self.only.clone(),
            confirmed: self.yes,
            force: self.force,
            cache: match self.drop_caches {
                DropArg::Device => CacheDrop::Device,
                DropArg::System => CacheDrop::System,
            },
            ..BenchOptions::default()
        }
    }
}

fn load(l: Option<[f64; 3]>) -> String {
    l.map_or_else(|| "?".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"))
}

fn device_line(d: &bench::DeviceInfo) -> String {
    format!(
        "{} ({}, {}, {}-byte blocks)",
        d.path.display(),
        d.kind,
        reroot::plan::target::human_bytes(d.size),
        d.logical_block_size
    )
}

fn numbers(r: &Row) -> String {
    match (&r.error, r.mb_per_s, r.iops, r.cpu_s_per_gb) {
        (Some(e), ..) => {
            let first = e.lines().next().unwrap_or_default();
            format!("error: {first}")
        }
        (None, Some(mb), Some(iops), cpu) => format!(
            "{:>9.1}  {:>9}  {:>5.0}%  {:>8.0}  {:>8}",
            mb.median,
            format!("{:.0}-{:.0}", mb.min, mb.max),
            mb.spread_pct,
            iops.median,
            cpu.map_or_else(|| "-".into(), |c| format!("{:.2}", c.median))
        ),
        _ => "no runs".into(),
    }
}

/// The human table of a report.
pub fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    let s = &r.settings;
    let _ = writeln!(
        out,
        "reroot bench: {}{}",
        device_line(&r.source),
        r.target
            .as_ref()
            .map(|t| format!(" -> {}", device_line(t)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{} run(s) per strategy, each up to {} s or {}; caches dropped per {}; {} CPU(s), \
kernel {}, load {} at the start, {} at the end",
        s.runs,
        s.seconds,
        reroot::plan::target::human_bytes(s.limit),
        s.cache.name(),
        r.machine.cpus,
        r.machine.kernel,
        load(r.machine.load_start),
        load(r.machine.load_end)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "   {:<4}  {:<18}  {:>5}  {:>9}  {:>9}  {:>6}  {:>8}  {:>8}",
        "op", "strategy", "chunk", "MB/s", "min-max", "spread", "IOPS", "CPU s/GB"
    );
    for row in &r.rows {
        let _ = writeln!(
            out,
            " {} {:<4}  {:<18}  {:>5}  {}",
            if row.best { '*' } else { ' ' },
            row.strategy.op.name(),
            row.label,
            short_size(row.strategy.chunk_size),
            numbers(row)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "* fastest of its kind (highest median MB/s; MB = 10^6 bytes). IOPS counts every read and \
write; CPU is user+system time of all reroot threads per 10^9 bytes."
    );
    match &r.tuning {
        Some(t) => {
            let _ = writeln!(
                out,
                "copy --tune picks --queue-depth {} --chunk-size {} ({}: {:.0} MB/s; fastest \
io_uring row {:.0} MB/s; the least memory within 5%)",
                t.queue_depth,
                short_size(t.chunk_size),
                t.from,
                t.mb_per_s,
                t.best_mb_per_s
            );
        }
        None => {
            let _ = writeln!(
                out,
                "copy --tune: no io_uring row measured, nothing to pick"
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// Run `reroot bench`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let opts = args.options();
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    let result = bench::run(&args.source, args.target.as_deref(), &opts, &sink);
    drop(sink);
    reporter.finish();
    let report = result?;
    if !args.no_save {
        let path = args.save.clone().unwrap_or_else(saved::default_path);
        match saved::save(&path, &report) {
            Ok(()) => eprintln!("saved to {} (for `reroot copy --tune`)", path.display()),
            // The measurement is done; losing the default copy is only a warning.
            Err(e) if args.save.is_none() => eprintln!("warning: result not saved: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    if ctx.json {
        output::json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "bench"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Bench(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    fn fails(args: &[&str]) -> bool {
        let mut v = vec!["reroot", "bench"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).is_err()
    }

    #[test]
    fn defaults() {
        let a = parse(&["/dev/a"]);
        assert_eq!(a.target, None);
        assert_eq!((a.seconds, a.bytes, a.runs), (3.0, None, 3));
        assert_eq!(a.matrix, MatrixArg::Quick);
        assert_eq!(a.drop_caches, DropArg::Device);
        assert!(!a.yes && !a.force && !a.no_save && a.save.is_none() && a.only.is_empty());
        let o = a.options();
        assert!(!o.confirmed);
        assert_eq!(o.runs, 3);
    }

    #[test]
    fn target_argument() {
        assert_eq!(
            parse(&["/dev/a", "/dev/b"]).target,
            Some(PathBuf::from("/dev/b"))
        );
        assert!(fails(&[]));
        assert!(fails(&["a", "b", "c"]));
    }

    #[test]
    fn seconds_flag() {
        assert_eq!(parse(&["s", "--seconds", "0.5"]).seconds, 0.5);
        assert_eq!(parse(&["s", "--seconds", "2s"]).seconds, 2.0);
        assert!(fails(&["s", "--seconds", "0"]));
        assert!(fails(&["s", "--seconds", "-1"]));
        assert!(fails(&["s", "--seconds", "soon"]));
    }

    #[test]
    fn bytes_flag() {
        assert_eq!(parse(&["s", "--bytes", "64M"]).bytes, Some(64 << 20));
        assert_eq!(parse(&["s", "--bytes", "8192"]).bytes, Some(8192));
        assert!(fails(&["s", "--bytes", "100"]));
    }

    #[test]
    fn runs_flag() {
        assert_eq!(parse(&["s", "--runs", "5"]).runs, 5);
        assert!(fails(&["s", "--runs", "0"]));
        assert!(fails(&["s", "--runs", "101"]));
    }

    #[test]
    fn matrix_flag() {
        assert_eq!(parse(&["s", "--matrix", "full"]).matrix, MatrixArg::Full);
        assert_eq!(
            parse(&["s", "--matrix", "full"]).options().matrix,
            Matrix::Full
        );
        assert!(fails(&["s", "--matrix", "huge"]));
    }

    #[test]
    fn only_flag() {
        assert_eq!(
            parse(&["s", "--only", "uring,pipeline-hash"]).only,
            vec![Method::Uring, Method::PipelineHash]
        );
        assert!(fails(&["s", "--only", "dd"]));
    }

    #[test]
    fn yes_and_force_flags() {
        let a = parse(&["s", "d", "--yes", "--force"]);
        assert!(a.yes && a.force);
        let o = a.options();
        assert!(o.confirmed && o.force);
    }

    #[test]
    fn drop_caches_flag() {
        let a = parse(&["s", "--drop-caches", "system"]);
        assert_eq!(a.options().cache, CacheDrop::System);
        assert!(fails(&["s", "--drop-caches", "none"]));
    }

    #[test]
    fn save_flags() {
        assert_eq!(
            parse(&["s", "--save", "/tmp/x.json"]).save,
            Some(PathBuf::from("/tmp/x.json"))
        );
        assert!(parse(&["s", "--no-save"]).no_save);
        assert!(fails(&["s", "--save", "x", "--no-save"]));
    }

    #[test]
    fn help_mentions_confirmation_and_tune() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("bench")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("--yes") && help.contains("copy --tune"),
            "{help}"
        );
    }

    #[test]
    fn table_marks_the_best_and_shows_errors() {
        use reroot::plan::bench::{Op, Sample, Strategy, mark_best, summarize};
        let sample = |mbs: f64| Sample {
            bytes: 100_000_000,
            ops: 100,
            seconds: 100.0 / mbs,
            cpu_seconds: 0.01,
        };
        let mut rows = vec![
            summarize(
                Strategy::new(Op::Read, Method::Direct, 1 << 20, 1),
                vec![sample(100.0), sample(120.0)],
                None,
            ),
            summarize(
                Strategy::new(Op::Read, Method::Uring, 1 << 20, 16),
                vec![sample(300.0), sample(310.0)],
                None,
            ),
            summarize(
                Strategy::new(Op::Copy, Method::Splice, 1 << 20, 1),
                Vec::new(),
                Some("splice: EINVAL\n  hint: x".into()),
            ),
        ];
        mark_best(&mut rows);
        let info = bench::DeviceInfo {
            path: "/dev/loop9".into(),
            canonical: "/dev/loop9".into(),
            kind: "block".into(),
            size: 64 << 20,
            logical_block_size: 512,
        };
        let r = BenchReport {
            version: 1,
            source: info.clone(),
            target: Some(info),
            settings: bench::Settings {
                seconds: 1.0,
                bytes: None,
                limit: 64 << 20,
                runs: 2,
                matrix: Matrix::Quick,
                cache: CacheDrop::Device,
                hash_threads: 2,
            },
            machine: bench::Machine {
                cpus: 2,
                kernel: "6.1".into(),
                load_start: Some([1.0, 2.0, 3.0]),
                load_end: None,
            },
            started_unix: 0,
            seconds: 1.0,
            tuning: reroot::plan::bench::pick_tuning(&rows),
            best: bench::Best::default(),
            rows,
            warnings: vec!["w1".into()],
        };
        let t = render(&r);
        let lines: Vec<&str> = t.lines().collect();
        let uring = lines.iter().find(|l| l.contains("uring qd16")).unwrap();
        assert!(uring.starts_with(" *"), "{t}");
        assert!(uring.contains("305.0"), "median of 300 and 310: {t}");
        let direct = lines.iter().find(|l| l.contains("direct")).unwrap();
        assert!(direct.starts_with("  "), "{t}");
        assert!(t.contains("error: splice: EINVAL"), "{t}");
        assert!(
            !t.contains("hint: x"),
            "only the first line of an error: {t}"
        );
        assert!(t.contains("--queue-depth 16 --chunk-size 1M"), "{t}");
        assert!(
            t.contains("load 1.00 2.00 3.00 at the start, ? at the end"),
            "{t}"
        );
        assert!(t.contains("warning: w1"), "{t}");
    }
}
