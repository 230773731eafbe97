//! `reroot demo`: a whole migration in a sandbox.
//!
//! Not built yet: see issue #7.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the sandbox files after the run, for inspection.
    #[arg(long)]
    pub keep: bool,
}

/// Run `reroot demo`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("demo", 7))
}
