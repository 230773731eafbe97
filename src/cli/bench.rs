//! `reroot bench`: benchmark copy strategies on your own devices.
//!
//! Not built yet: see issue #8.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source device or file (read only).
    pub source: std::path::PathBuf,
    /// A scratch target for write tests (overwritten; needs --yes).
    pub target: Option<std::path::PathBuf>,
}

/// Run `reroot bench`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("bench", 8))
}
