//! `reroot verify`: compare the used blocks of two devices by hash.
//!
//! Not built yet: see issue #3.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source device or image.
    pub source: std::path::PathBuf,
    /// The copy to check.
    pub target: std::path::PathBuf,
}

/// Run `reroot verify`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("verify", 3))
}
