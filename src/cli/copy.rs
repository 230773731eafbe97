//! `reroot copy`: used-block copy to one or more targets, xxh3-verified.
//! Also the engine flags shared with `reroot verify` ([`EngineArgs`]) and
//! the human summary of a [`Report`].

use std::path::PathBuf;

use reroot::exec::copy::{self, CopyOptions, EngineKind, Report, VerifyMode};
use reroot::exec::event::EventSink;
use reroot::exec::identity::{self, IdentityReport, UuidChange};

use super::{CmdResult, Ctx, Exit, output};

/// `--engine` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// io_uring, O_DIRECT, registered buffers (default).
    Uring,
    /// Plain pread/pwrite, one transfer at a time.
    Sync,
}

/// `--verify` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyArg {
    /// No hashing, no readback.
    None,
    /// Hash the source while copying (digest in the report), no readback.
    Hash,
    /// Hash while copying, flush, read every target back and compare (default).
    Readback,
}

/// Parse a size: a number of bytes with an optional K/M/G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.trim_end_matches(['B', 'b', 'i']).char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: usize = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M or G)")),
            };
            (&t[..i], mult)
        }
        _ => (t.trim_end_matches(['B', 'b']), 1),
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?} (examples: 65536, 256K, 1M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

/// Flags that tune the engine, shared by `copy` and `verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Copy or compare every byte, not only the blocks the filesystem uses.
    #[arg(
        long,
        long_help = "Copy (or compare) every byte of the source instead of only the blocks its \
ext2/3/4 bitmaps mark as used. Sources that are not ext2/3/4 are always copied in full."
    )]
    pub full: bool,
    /// I/O engine: uring (default) or sync.
    #[arg(
        long,
        value_enum,
        default_value = "uring",
        long_help = "How data is moved. `uring`: io_uring with O_DIRECT and registered buffers, \
reads and writes in flight together. `sync`: plain pread/pwrite one chunk at a time (old \
kernels, debugging); same plan, same checks."
    )]
    pub engine: EngineArg,
    /// Buffers (chunk transfers) in flight.
    #[arg(
        long,
        default_value_t = copy::DEFAULT_QUEUE_DEPTH,
        value_name = "N",
        long_help = "How many chunk-sized buffers are in flight at once (1..=1024). Memory used \
for data is bounded by queue depth x chunk size, whatever the device size (64 x 1 MiB = 64 MiB \
by default), plus 8 bytes per chunk for the hash table."
    )]
    pub queue_depth: usize,
    /// Largest transfer (power of two, 4K..64M).
    #[arg(
        long,
        default_value = "1M",
        value_name = "SIZE",
        value_parser = parse_size,
        long_help = "Largest single read or write, a power of two from 4K to 64M (suffixes K, M, \
G are powers of 1024). Memory is bounded by queue depth x chunk size."
    )]
    pub chunk_size: usize,
    /// Threads hashing chunks (0 = on the I/O thread).
    #[arg(
        long,
        value_name = "N",
        long_help = "Threads that compute the xxh3 of each chunk, so hashing never holds up \
the I/O thread. 0 hashes on the I/O thread itself (no hand-off; can be faster when every core \
is busy). Default: one per core, at most 4."
    )]
    pub hash_threads: Option<usize>,
    /// Write a timeline of the run (JSON lines) to FILE.
    #[arg(
        long,
        value_name = "FILE",
        long_help = "Write a timeline to FILE, one JSON object per line with `t_us` \
(microseconds since the start): `phase_start`/`phase_end` (setup, map, zero, plan, copy, flush, \
readback, ...), per chunk `read_submit`, `read_done`, `write_submit`, `write_done`, `zeroed`, \
`hash_submit`, `hash_done`, `done` (with chunk, dev, off, len), and `reap` (completions and \
microseconds the I/O thread waited). For finding where time goes beyond the disks' limits; \
costs a few bytes of memory per event. tools/trace-summary.py sums it up."
    )]
    pub trace: Option<PathBuf>,
}

impl EngineArgs {
    /// Library options from these flags.
    pub fn options(&self) -> CopyOptions {
        CopyOptions {
            full: self.full,
            engine: match self.engine {
                EngineArg::Uring => EngineKind::Uring,
                EngineArg::Sync => EngineKind::Sync,
            },
            queue_depth: self.queue_depth,
            chunk_size: self.chunk_size,
            trace: self.trace.clone(),
            ..CopyOptions::default()
        }
        .with_hash_threads(self.hash_threads)
    }
}

/// Flags of `reroot copy`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Copy the source to one or more targets (several = mirror: each chunk is read \
once and written to every target). For an ext2/3/4 source only the blocks the filesystem uses \
are copied; anything else is copied in full. The source must be unmounted or mounted read-only.\n\n\
By default every written range is then read back from each target with O_DIRECT and compared \
with the source's xxh3 hashes. Memory is bounded by queue depth x chunk size (64 MiB by default).\n\n\
SIGINT (Ctrl-C), SIGTERM and SIGHUP stop a copy cleanly: the transfers in flight finish, the \
targets are released, the message says how far the copy got, and reroot exits with code 130 \
(interrupted); `reroot copy --resume` continues it."
)]
pub struct Args {
    /// The source device or image.
    pub source: PathBuf,
    /// One or more targets (several = mirror).
    #[arg(required = true)]
    pub targets: Vec<PathBuf>,
    /// How to check the copy: none, hash or readback (default).
    #[arg(
        long,
        value_enum,
        default_value = "readback",
        long_help = "none: no hashing. hash: xxh3 of every source chunk while copying (the \
report's digest), no readback. readback (default): after writing and flushing (fdatasync, \
BLKFLSBUF), read every written range back from each target with O_DIRECT and compare; any \
difference exits with code 4 naming the device and byte offsets."
    )]
    pub verify: VerifyArg,
    /// Rewrite only chunks whose hash differs on the target.
    #[arg(
        long,
        long_help = "Read each target chunk too and write the source chunk only where the \
hashes differ: the second pass of a migration, after the source became read-only. The \
target is expected to hold an earlier copy, so its filesystem signature is not refused. Memory \
stays queue depth x chunk size (fewer chunks in flight)."
    )]
    pub delta: bool,
    /// Continue an interrupted copy (same as --delta).
    #[arg(
        long,
        long_help = "Continue a copy that was interrupted: chunks already on the target with \
the right content are read and compared, not rewritten. This is the same pass as --delta."
    )]
    pub resume: bool,
    /// Write even over a target that carries a filesystem or RAID/LVM signature.
    #[arg(
        long,
        long_help = "Overwrite a target that carries a filesystem, LVM, md or swap signature. \
Never overrides the other refusals (mounted, held, opened exclusively, overlapping the source, \
too small)."
    )]
    pub force: bool,
    /// Also copy free gaps up to SIZE between used ranges (fewer, larger transfers).
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = parse_size,
        default_value_t = copy::DEFAULT_MAX_GAP as usize,
        long_help = "Free space between two used ranges that is at most SIZE bytes is copied \
too, so the two ranges become one transfer: on fragmented filesystems fewer, larger I/Os beat \
skipping a few free blocks. 0 copies used blocks only. Free blocks may hold anything, so this \
never changes the copied filesystem."
    )]
    pub max_gap: usize,
    /// Give each target a new filesystem UUID after the copy.
    #[arg(
        long,
        long_help = "After a successful copy, give each target a fresh random filesystem UUID \
(ext2/3/4: tune2fs -U, running e2fsck -f first when metadata_csum requires it; xfs: xfs_admin \
-U; btrfs: btrfstune -u), so source and copy are no longer twins. The label stays. fstab and \
the kernel command line must then name the new root by its new UUID; `reroot check` says which \
entries. Without it the copy keeps the source's identity, so root=UUID= and fstab keep working, \
and `reroot finish` re-identifies the old root. Either way the report names every device's UUID."
    )]
    pub new_uuid: bool,
    /// Pick queue depth and chunk size from a saved `reroot bench` result (or a short probe).
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        conflicts_with_all = ["queue_depth", "chunk_size"],
        long_help = "Choose --queue-depth and --chunk-size from the newest saved `reroot bench` \
result for this source (same path and size; one with copy tests preferred) in FILE, or in the \
default results file with plain --tune (/var/lib/reroot/bench.json as root). Without a fitting \
result, run a short read-only io_uring probe of the source (9 settings, about 3 s) instead. \
The setting chosen is the least memory within 5% of the fastest; the report shows it."
    )]
    pub tune: Option<Option<PathBuf>>,
    /// Make a new TYPE filesystem on the target and copy the files into it.
    #[arg(long, value_enum, value_name = "TYPE", long_help = super::transform::MKFS_HELP)]
    pub mkfs: Option<super::transform::MkfsArg>,
    /// With --mkfs: accept, and list, what the new type cannot hold.
    #[arg(
        long,
        requires = "mkfs",
        long_help = "With --mkfs: things the new filesystem type cannot represent (an inode \
flag xfs does not have, an xattr larger than the type allows, a label longer than 12 bytes on \
xfs) are listed with their paths either way; without --lossy they fail the command (exit 3), \
with it they are accepted and the digest comparison excuses exactly those paths."
    )]
    pub lossy: bool,
    /// With --mkfs: worker threads for the file copy.
    #[arg(
        long,
        requires = "mkfs",
        value_name = "N",
        long_help = "With --mkfs: how many threads create files and copy their data while one \
thread walks the source (default: one per core, 2 to 8). Memory stays bounded: a 1 MiB buffer \
per thread, a queue of 4096 entries, and a list of directories and multiply-linked inodes."
    )]
    pub threads: Option<usize>,
    /// Engine flags.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Print the human summary of a report on stdout (progress and errors go to stderr).
pub fn print_summary(r: &Report) {
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "{}: {} -> {}",
        r.command,
        r.source.display(),
        r.targets
            .iter()
            .map(|t| t.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  map: {} ({:.1} MB used of {:.1} MB{})",
        r.map.kind,
        mb(r.map.used_bytes),
        mb(r.map.device_bytes),
        r.map
            .reason
            .as_deref()
            .map(|s| format!("; {s}"))
            .unwrap_or_default()
    );
    println!(
        "  {:.1} MB planned, {:.1} MB read, {:.1} MB written, {:.1} MB skipped{}",
        mb(r.bytes_planned),
        mb(r.bytes_read),
        mb(r.bytes_written),
        mb(r.bytes_skipped),
        if r.delta {
            format!(", {:.1} MB unchanged", mb(r.bytes_unchanged))
        } else {
            String::new()
        }
    );
    print_classes(r);
    let phases: Vec<String> = r
        .phases
        .iter()
        .filter(|p| p.seconds >= 0.0005)
        .map(|p| format!("{} {:.2} s", p.name, p.seconds))
        .collect();
    println!(
        "  {:.2} s total ({}), {:.0} MB/s; engine {}, queue depth {}, chunk {} KiB{}",
        r.seconds,
        phases.join(", "),
        r.mb_per_s,
        r.engine,
        r.queue_depth,
        r.chunk_size >> 10,
        if r.direct_io { "" } else { ", buffered I/O" }
    );
    if !r.digest.is_empty() {
        println!("  digest {} over {} chunks", r.digest, r.chunks);
    }
}

/// One line per class of the map: bytes copied, zeroed, skipped.
fn print_classes(r: &Report) {
    let mb = |b: u64| b as f64 / 1e6;
    if r.bytes_zeroed > 0 {
        println!("  {:.1} MB zeroed (write-zeroes)", mb(r.bytes_zeroed));
    }
    for c in r.classes.iter().filter(|c| c.bytes > 0) {
        println!(
            "  {:<14} {:>10.1} MB: {:.1} copied, {:.1} zeroed, {:.1} skipped",
            c.class,
            mb(c.bytes),
            mb(c.copied),
            mb(c.zeroed),
            mb(c.skipped)
        );
    }
}

/// Print a report (JSON or summary) and turn a mismatch into exit code 4.
pub fn finish(r: &Report, ctx: &Ctx) -> CmdResult {
    if ctx.json {
        output::json(r)?;
        return Ok(if r.mismatch_count > 0 {
            Exit::Mismatch
        } else {
            Exit::Success
        });
    }
    print_summary(r);
    match r.mismatch_error() {
        Some(e) => Err(e.into()),
        None => {
            if r.command == "copy" && r.verify == VerifyMode::Readback {
                println!("  verified: every written byte read back and matched");
            } else if r.command == "verify" {
                println!("  verified: no differences");
            }
            Ok(Exit::Success)
        }
    }
}

/// Run `reroot copy`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    if args.mkfs.is_some() {
        return super::transform::run_copy(&args, ctx);
    }
    // Before any thread starts (reporter, hashers, --tune's probe), so every
    // thread blocks them and the pipeline reads them: a clean stop, exit 130.
    let interrupts = std::sync::Arc::new(reroot::exec::interrupt::Interrupts::catch());
    let mut opts = args.engine.options();
    opts.interrupts = Some(interrupts);
    opts.verify = match args.verify {
        VerifyArg::None => VerifyMode::None,
        VerifyArg::Hash => VerifyMode::Hash,
        VerifyArg::Readback => VerifyMode::Readback,
    };
    opts.delta = args.delta || args.resume;
    opts.force = args.force;
    opts.max_gap = args.max_gap as u64;
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    if let Some(file) = &args.tune {
        // Issue 8: `--tune` takes queue depth and chunk size from `reroot bench`.
        let t = match reroot::exec::bench::tune(&args.source, file.as_deref(), &sink) {
            Ok(t) => t,
            Err(e) => {
                drop(sink);
                reporter.finish();
                return Err(e.into());
            }
        };
        sink.info(format!(
            "--tune: queue depth {}, chunk size {} KiB ({})",
            t.queue_depth,
            t.chunk_size >> 10,
            match &t.source {
                reroot::exec::bench::TuneSource::Saved { file, .. } =>
                    format!("saved bench result in {}", file.display()),
                reroot::exec::bench::TuneSource::Probe => "short read probe".to_owned(),
                reroot::exec::bench::TuneSource::Defaults =>
                    "defaults: nothing measured".to_owned(),
            }
        ));
        opts.queue_depth = t.queue_depth;
        opts.chunk_size = t.chunk_size;
    }
    let result = copy::copy(&args.source, &args.targets, &opts, &sink);
    let identity = match &result {
        Ok(r) if r.mismatch_count == 0 => identity_after_copy(&args, &sink),
        _ => Ok(None),
    };
    drop(sink);
    reporter.finish();
    let report = result?;
    let Some(identity) = identity? else {
        return finish(&report, ctx);
    };
    if ctx.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["identity"] = serde_json::to_value(&identity)?;
        output::json(&doc)?;
        return Ok(Exit::Success);
    }
    let code = finish(&report, ctx)?;
    for c in &identity.changes {
        println!(
            "  new UUID on {}: {} (was {}; {})",
            c.device.display(),
            c.new_uuid,
            c.old_uuid,
            c.method
        );
    }
    for d in &identity.report.devices {
        println!(
            "  identity: {} {} UUID {} label {:?}",
            d.device.display(),
            d.fstype,
            d.uuid,
            d.label
        );
    }
    for n in &identity.report.notes {
        println!("  note: {n}");
    }
    Ok(code)
}

/// Who is who after a copy (issue 6): UUID changes made by `--new-uuid` and
/// every device's identity.
#[derive(Debug, serde::Serialize)]
struct CopyIdentity {
    changes: Vec<UuidChange>,
    #[serde(flatten)]
    report: IdentityReport,
}

/// With `--new-uuid`, re-identify every target (errors are errors); then
/// report identities, best effort without it (a source with no ext, xfs or
/// btrfs filesystem has none to report).
fn identity_after_copy(args: &Args, sink: &EventSink) -> anyhow::Result<Option<CopyIdentity>> {
    let mut changes = Vec::new();
    if args.new_uuid {
        for t in &args.targets {
            let change = identity::set_new_uuid(t, None, sink).map_err(|e| {
                anyhow::Error::from(e)
                    .context("the copy completed, but giving the target a new UUID failed")
            })?;
            changes.push(change);
        }
    }
    let devices: Vec<&std::path::Path> = std::iter::once(&args.source)
        .chain(&args.targets)
        .map(PathBuf::as_path)
        .collect();
    match identity::report(&devices) {
        Ok(report) => Ok(Some(CopyIdentity { changes, report })),
        Err(e) if args.new_uuid => Err(e.into()),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "copy"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Copy(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = parse(&["/dev/a", "/dev/b"]);
        assert_eq!(a.targets, vec![PathBuf::from("/dev/b")]);
        assert_eq!(a.verify, VerifyArg::Readback);
        assert_eq!(a.engine.engine, EngineArg::Uring);
        assert_eq!(a.engine.queue_depth, copy::DEFAULT_QUEUE_DEPTH);
        assert_eq!(a.engine.chunk_size, copy::DEFAULT_CHUNK_SIZE);
        assert!(!a.delta && !a.resume && !a.force && !a.engine.full);
    }

    #[test]
    fn mirror_targets() {
        assert_eq!(parse(&["s", "t1", "t2", "t3"]).targets.len(), 3);
        assert!(Cli::try_parse_from(["reroot", "copy", "s"]).is_err());
    }

    #[test]
    fn hash_threads_flag() {
        assert_eq!(parse(&["s", "t"]).engine.hash_threads, None);
        assert_eq!(
            parse(&["s", "t", "--hash-threads", "0"])
                .engine
                .hash_threads,
            Some(0)
        );
        assert_eq!(
            parse(&["s", "t", "--hash-threads", "3"])
                .engine
                .options()
                .hash_threads,
            3
        );
    }

    #[test]
    fn trace_flag() {
        assert_eq!(parse(&["s", "t"]).engine.trace, None);
        let a = parse(&["s", "t", "--trace", "/tmp/t.jsonl"]);
        assert_eq!(
            a.engine.options().trace,
            Some(PathBuf::from("/tmp/t.jsonl"))
        );
    }

    #[test]
    fn full_flag() {
        assert!(parse(&["s", "t", "--full"]).engine.full);
    }

    #[test]
    fn verify_flag() {
        assert_eq!(
            parse(&["s", "t", "--verify", "none"]).verify,
            VerifyArg::None
        );
        assert_eq!(
            parse(&["s", "t", "--verify", "hash"]).verify,
            VerifyArg::Hash
        );
        assert!(Cli::try_parse_from(["reroot", "copy", "s", "t", "--verify", "x"]).is_err());
    }

    #[test]
    fn engine_flag() {
        assert_eq!(
            parse(&["s", "t", "--engine", "sync"]).engine.engine,
            EngineArg::Sync
        );
    }

    #[test]
    fn queue_depth_flag() {
        assert_eq!(
            parse(&["s", "t", "--queue-depth", "32"]).engine.queue_depth,
            32
        );
    }

    #[test]
    fn chunk_size_flag() {
        assert_eq!(
            parse(&["s", "t", "--chunk-size", "256K"]).engine.chunk_size,
            256 << 10
        );
        assert_eq!(
            parse(&["s", "t", "--chunk-size", "4MiB"]).engine.chunk_size,
            4 << 20
        );
        assert_eq!(
            parse(&["s", "t", "--chunk-size", "65536"])
                .engine
                .chunk_size,
            65536
        );
        assert!(Cli::try_parse_from(["reroot", "copy", "s", "t", "--chunk-size", "1X"]).is_err());
    }

    #[test]
    fn force_delta_resume_flags() {
        let a = parse(&["s", "t", "--force", "--delta"]);
        assert!(a.force && a.delta);
        assert!(parse(&["s", "t", "--resume"]).resume);
    }

    #[test]
    fn max_gap_flag() {
        assert_eq!(parse(&["s", "t"]).max_gap as u64, copy::DEFAULT_MAX_GAP);
        assert_eq!(parse(&["s", "t", "--max-gap", "64K"]).max_gap, 64 << 10);
    }

    #[test]
    fn new_uuid_flag() {
        assert!(parse(&["s", "t", "--new-uuid"]).new_uuid);
        assert!(!parse(&["s", "t"]).new_uuid);
    }

    #[test]
    fn tune_flag() {
        assert_eq!(parse(&["s", "t"]).tune, None);
        assert_eq!(parse(&["--tune", "s", "t"]).tune, Some(None));
        assert_eq!(
            parse(&["s", "t", "--tune=/x/bench.json"]).tune,
            Some(Some(PathBuf::from("/x/bench.json")))
        );
        // Explicit engine settings and --tune contradict each other.
        for flag in ["--queue-depth=8", "--chunk-size=4M"] {
            assert!(Cli::try_parse_from(["reroot", "copy", "s", "t", "--tune", flag]).is_err());
        }
    }

    #[test]
    fn mkfs_lossy_threads_flags() {
        use super::super::transform::MkfsArg;
        let a = parse(&["s", "t", "--mkfs", "xfs"]);
        assert_eq!(a.mkfs, Some(MkfsArg::Xfs));
        assert!(!a.lossy);
        assert_eq!(
            parse(&["s", "t", "--mkfs=btrfs", "--lossy"]).mkfs,
            Some(MkfsArg::Btrfs)
        );
        assert!(parse(&["s", "t", "--mkfs=ext4", "--lossy"]).lossy);
        assert_eq!(
            parse(&["s", "t", "--mkfs=ext3", "--threads", "3"]).threads,
            Some(3)
        );
        assert!(Cli::try_parse_from(["reroot", "copy", "s", "t", "--mkfs", "zfs"]).is_err());
        // --lossy and --threads only mean something with --mkfs.
        assert!(Cli::try_parse_from(["reroot", "copy", "s", "t", "--lossy"]).is_err());
        assert!(Cli::try_parse_from(["reroot", "copy", "s", "t", "--threads", "2"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn help_states_the_memory_bound() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("copy")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("queue depth x chunk size"), "{help}");
    }
}
