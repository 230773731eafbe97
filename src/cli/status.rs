//! `reroot status`: progress and log of a running or finished migration.
//!
//! Not built yet: see issue #7.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Follow the log until the migration ends.
    #[arg(long)]
    pub follow: bool,
}

/// Run `reroot status`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("status", 7))
}
