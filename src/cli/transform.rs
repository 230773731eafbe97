//! `reroot copy --mkfs TYPE` and `reroot verify --files`: the CLI side of
//! filesystem transforms (`reroot::exec::transform`). Flags live with their
//! commands (`cli/copy.rs`, `cli/verify.rs`); this turns them into options
//! and shows the reports.

use reroot::exec::transform::{self, FilesVerifyReport, TransformOptions, TransformReport};
use reroot::plan::transform::MkfsType;

use super::{CmdResult, Ctx, Exit, output};

/// `--mkfs` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MkfsArg {
    /// ext2 (no journal).
    Ext2,
    /// ext3.
    Ext3,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs (one device, no subvolumes made).
    Btrfs,
}

impl MkfsArg {
    /// The library's type.
    pub fn kind(self) -> MkfsType {
        match self {
            Self::Ext2 => MkfsType::Ext2,
            Self::Ext3 => MkfsType::Ext3,
            Self::Ext4 => MkfsType::Ext4,
            Self::Xfs => MkfsType::Xfs,
            Self::Btrfs => MkfsType::Btrfs,
        }
    }
}

/// Long help of `--mkfs`.
pub const MKFS_HELP: &str = "Instead of a block copy, make a new TYPE filesystem (ext2, ext3, \
ext4, xfs, btrfs) on the single target, sized to the target (which may be smaller than the \
source, as long as the used bytes and inodes fit: checked before anything is written), and copy \
the files: contents (holes kept), directories, symlinks, hard links, device nodes, fifos, \
sockets; numeric owner and group, mode with setuid/setgid/sticky, nanosecond atime and mtime; \
every extended attribute (user, trusted, security: capabilities, SELinux labels; POSIX ACLs); \
chattr flags (immutable and append-only last). The source (a device, or a directory such as a \
live /) is mounted read-only and the target read-write in a private mount namespace nobody \
else sees.\n\nThe new filesystem gets the source's UUID and label (mkfs.ext4 -U -L, mkfs.xfs -m \
uuid= -L, mkfs.btrfs -U -L) so root=UUID= and fstab keep working; --new-uuid lets mkfs pick a \
new one. xfs labels hold at most 12 bytes: a longer label is refused unless --lossy.\n\nAfter \
the copy, digests of both trees (contents and all the metadata above, xxh3) are compared \
unless --verify none. Whatever the target type cannot hold is listed with its paths and fails \
the command (exit 3) unless --lossy.";

/// Run `reroot copy --mkfs`.
pub fn run_copy(args: &super::copy::Args, ctx: &Ctx) -> CmdResult {
    let Some(mkfs) = args.mkfs else {
        anyhow::bail!("run_copy without --mkfs");
    };
    if args.targets.len() != 1 {
        anyhow::bail!(
            "--mkfs takes exactly one target (got {})",
            args.targets.len()
        );
    }
    if args.delta || args.resume {
        anyhow::bail!(
            "--mkfs makes a new filesystem: --delta and --resume apply to block copies \
(a live transform's delta pass runs inside `reroot migrate --mkfs`)"
        );
    }
    let opts = TransformOptions {
        kind: mkfs.kind(),
        new_uuid: args.new_uuid,
        lossy: args.lossy,
        force: args.force,
        verify: args.verify != super::copy::VerifyArg::None,
        threads: args
            .threads
            .unwrap_or_else(transform::tree::default_threads),
    };
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    let result = transform::transform(&args.source, &args.targets[0], &opts, None, &sink);
    drop(sink);
    reporter.finish();
    let report = result?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print_transform(&report);
    }
    match report.outcome_error() {
        Some(e) if ctx.json => Ok(Exit::of(e.kind())),
        Some(e) => Err(e.into()),
        None => Ok(Exit::Success),
    }
}

fn print_transform(r: &TransformReport) {
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "copy --mkfs {}: {} ({}) -> {}",
        r.fstype,
        r.source.display(),
        r.source_fstype.as_deref().unwrap_or("?"),
        r.target.display()
    );
    println!(
        "  identity: UUID {} label {:?}",
        r.uuid.as_deref().unwrap_or("(new, random)"),
        r.label
    );
    println!(
        "  source uses {:.1} MB in {} inodes; target {:.1} MB, estimate {:.1} MB",
        mb(r.usage.used_bytes),
        r.usage.used_inodes,
        mb(r.fit.target_bytes),
        mb(r.fit.needed_bytes)
    );
    let s = &r.stats;
    println!(
        "  {} files ({:.1} MB, {:.1} MB of holes kept), {} dirs, {} symlinks, {} hard links, {} special",
        s.files,
        mb(s.bytes),
        mb(s.hole_bytes),
        s.dirs,
        s.symlinks,
        s.hard_links,
        s.specials
    );
    if let Some(d) = &r.delta {
        println!(
            "  delta: {} files rewritten, {} unchanged, {} removed",
            d.files, d.unchanged, d.removed
        );
    }
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {:.2} s", p.name, p.seconds))
        .collect();
    println!("  {:.2} s total ({})", r.seconds, phases.join(", "));
    for n in &r.notes {
        println!("  note: {n}");
    }
    for l in &r.losses {
        println!(
            "  {}: {}: {}",
            if r.lossy {
                "lost (accepted)"
            } else {
                "cannot hold"
            },
            l.path.display(),
            l.what
        );
    }
    for d in &r.differences {
        println!(
            "  differs{}: {}: {}",
            if d.explained { " (reported loss)" } else { "" },
            d.path.display(),
            d.what
        );
    }
    if r.verified {
        println!(
            "  digest: source {} target {}{}",
            r.source_digest.as_deref().unwrap_or(""),
            r.target_digest.as_deref().unwrap_or(""),
            if r.differences.is_empty() {
                " (every path, its metadata and contents match)"
            } else {
                ""
            }
        );
    }
}

/// Run `reroot verify --files`.
pub fn run_verify(args: &super::verify::Args, ctx: &Ctx) -> CmdResult {
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    let threads = args
        .threads
        .unwrap_or_else(transform::tree::default_threads);
    let result = transform::verify_files(&args.source, &args.target, threads, &sink);
    drop(sink);
    reporter.finish();
    let r = result?;
    if ctx.json {
        output::json(&r)?;
        return Ok(if r.differences.is_empty() {
            Exit::Success
        } else {
            Exit::Mismatch
        });
    }
    print_files(&r);
    match r.mismatch_error() {
        Some(e) => Err(e.into()),
        None => Ok(Exit::Success),
    }
}

fn print_files(r: &FilesVerifyReport) {
    println!(
        "verify --files: {} -> {}",
        r.source.display(),
        r.target.display()
    );
    println!(
        "  {} paths, {:.1} MB hashed in {:.2} s; digest source {} target {}",
        r.entries,
        r.bytes as f64 / 1e6,
        r.seconds,
        r.source_digest,
        r.target_digest
    );
    for d in &r.differences {
        println!("  differs: {}: {}", d.path.display(), d.what);
    }
    if r.differences.is_empty() {
        println!("  verified: no differences");
    }
}
