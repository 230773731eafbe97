//! `reroot map`: geometry and used byte ranges of an ext2/3/4 filesystem.
//!
//! Not built yet: see issue #2.

use super::{CmdResult, Ctx, not_built};

/// Flags of `reroot map`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device or image to read.
    pub device: std::path::PathBuf,
}

/// Run `reroot map`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let _ = (args, ctx);
    Err(not_built("map", 2))
}
