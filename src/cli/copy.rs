//! `reroot copy`: used-block copy to one or more targets, xxh3-verified.
//!
//! Not built yet: see issue #3.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot copy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source device or image.
    pub source: std::path::PathBuf,
    /// One or more targets (several = mirror).
    #[arg(required = true)]
    pub targets: Vec<std::path::PathBuf>,
}

/// Run `reroot copy`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("copy", 3))
}
