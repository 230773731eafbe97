//! `reroot finish`: release and re-identify the old root, check fstab and boot setup.
//!
//! Not built yet: see issue #5.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot finish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the old root is mounted after the pivot.
    #[arg(long, default_value = "/mnt/oldroot")]
    pub oldroot: std::path::PathBuf,
}

/// Run `reroot finish`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("finish", 5))
}
