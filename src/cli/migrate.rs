//! `reroot migrate`: the whole move, journaled, with rollback before the pivot.
//!
//! Not built yet: see issue #7.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The current root device.
    pub source: std::path::PathBuf,
    /// The target device.
    pub target: std::path::PathBuf,
}

/// Run `reroot migrate`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("migrate", 7))
}
