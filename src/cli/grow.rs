//! `reroot grow`: e2fsck, then resize2fs to the device size.
//!
//! Not built yet: see issue #6.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot grow`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device whose filesystem to grow.
    pub device: std::path::PathBuf,
}

/// Run `reroot grow`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("grow", 6))
}
