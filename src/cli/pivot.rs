//! `reroot pivot`: switch the running system to the new root.
//!
//! Not built yet: see issue #5.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot pivot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device holding the new root.
    pub newdev: std::path::PathBuf,
}

/// Run `reroot pivot`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("pivot", 5))
}
