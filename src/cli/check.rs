//! `reroot check`: preflight of the live system and the target.
//!
//! Not built yet: see issue #4.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The root to migrate.
    #[arg(long, default_value = "/")]
    pub root: std::path::PathBuf,
    /// The target device.
    #[arg(long)]
    pub target: Option<std::path::PathBuf>,
}

/// Run `reroot check`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("check", 4))
}
