//! `reroot quiesce` and `reroot resume-services`: stop what keeps the root
//! busy, remount it read-only; and undo that.
//!
//! Not built yet: see issue #4.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot quiesce`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The root to make read-only.
    #[arg(long, default_value = "/")]
    pub root: std::path::PathBuf,
}

/// Flags of `reroot resume-services`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The root to make read-write again.
    #[arg(long, default_value = "/")]
    pub root: std::path::PathBuf,
}

/// Run `reroot quiesce`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("quiesce", 4))
}

/// Run `reroot resume-services`.
pub fn run_resume(args: ResumeArgs, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("resume-services", 4))
}
