//! `reroot verify`: compare the used blocks of two devices by hash, writing
//! nothing; exit 4 and the differing byte ranges when they differ.

use std::path::PathBuf;

use reroot::exec::copy;

use super::copy::{EngineArgs, finish};
use super::{CmdResult, Ctx};

/// Flags of `reroot verify`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Hash the used blocks of the source (every byte with --full, or when the \
source is not ext2/3/4) and the same ranges of the target with xxh3, and compare. Writes \
nothing. Exits 4 and names the differing byte ranges when they differ. Memory is bounded by \
queue depth x chunk size. SIGINT, SIGTERM or SIGHUP stop it cleanly with exit code 130."
)]
pub struct Args {
    /// The source device or image.
    pub source: PathBuf,
    /// The copy to check.
    pub target: PathBuf,
    /// Compare the file trees (after `copy --mkfs`), not blocks.
    #[arg(
        long,
        long_help = "Compare the two file trees instead of blocks: SRC and DST are devices \
(mounted read-only in a private namespace, or their existing mount bound read-only) or \
directories (bound read-only). Per path: type, mode, numeric owner and group, size, nanosecond \
atime and mtime, device numbers, hard-link partners, symlink targets, every xattr (ACLs and \
capabilities included), chattr flags and the xxh3 of the contents. A lost+found only one side \
has is ignored. Exits 4 and lists the differing paths when they differ."
    )]
    pub files: bool,
    /// With --files: hashing threads.
    #[arg(
        long,
        requires = "files",
        value_name = "N",
        long_help = "With --files: how many threads read and hash file contents (default: one \
per core, 2 to 8)."
    )]
    pub threads: Option<usize>,
    /// Engine flags.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Run `reroot verify`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    if args.files {
        return super::transform::run_verify(&args, ctx);
    }
    // Before any thread starts, so every thread blocks them (exit 130).
    let interrupts = std::sync::Arc::new(reroot::exec::interrupt::Interrupts::catch());
    let mut opts = args.engine.options();
    opts.interrupts = Some(interrupts);
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    let result = copy::verify(&args.source, &args.target, &opts, &sink);
    drop(sink);
    reporter.finish();
    finish(&result?, ctx)
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "verify"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Verify(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn positional_and_engine_flags() {
        let a = parse(&[
            "/dev/a",
            "/dev/b",
            "--full",
            "--engine",
            "sync",
            "--chunk-size",
            "64K",
        ]);
        assert_eq!(a.target, PathBuf::from("/dev/b"));
        assert!(a.engine.full);
        assert_eq!(a.engine.chunk_size, 64 << 10);
        assert!(Cli::try_parse_from(["reroot", "verify", "a", "b", "c"]).is_err());
    }

    #[test]
    fn files_and_threads_flags() {
        let a = parse(&["/a", "/b", "--files", "--threads", "3"]);
        assert!(a.files);
        assert_eq!(a.threads, Some(3));
        assert!(!parse(&["/a", "/b"]).files);
        assert!(Cli::try_parse_from(["reroot", "verify", "a", "b", "--threads", "2"]).is_err());
    }

    #[test]
    fn queue_depth_flag() {
        assert_eq!(
            parse(&["a", "b", "--queue-depth", "4"]).engine.queue_depth,
            4
        );
    }
}
