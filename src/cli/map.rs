//! `reroot map`: geometry and used byte ranges of an ext2/3/4 filesystem,
//! for people (a summary and the ranges) and for scripts and tests
//! (`--json`: full geometry and every used range).

use std::fmt::Write as _;

use anyhow::Context as _;
use reroot::error::Stage;
use reroot::ext::{self, FsMap, MapOptions};
use serde::Serialize;

use super::{CmdResult, Ctx, Exit, output};

/// Flags of `reroot map`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device or image to read.
    pub device: std::path::PathBuf,
    /// Map even when descriptor or bitmap checksums fail.
    #[arg(
        long,
        long_help = "Do not stop at a failed metadata checksum (metadata_csum or uninit_bg): \
report it as a warning and map anyway. A group whose descriptor checksum fails then has its \
bitmap read even if flagged BLOCK_UNINIT, so the map errs on the side of more blocks. \
Without this flag a failed checksum is an error (exit code 6): run `e2fsck -f` first."
    )]
    pub ignore_csum: bool,
    /// Map a filesystem that is mounted read-write (best effort).
    #[arg(
        long,
        long_help = "Accept a filesystem whose journal needs recovery, i.e. one mounted \
read-write or not cleanly unmounted. Its on-disk bitmaps may lag behind recent allocations, \
so the map is a best-effort snapshot (fine for a live pre-copy that a later delta pass \
corrects); checksum mismatches, normal while bitmaps and descriptors are written back at \
different times, are then warnings. Without this flag such a filesystem is refused with exit \
code 6 and a hint."
    )]
    pub live: bool,
    /// Print ranges as filesystem block numbers instead of bytes.
    #[arg(
        long,
        long_help = "Print used ranges as inclusive block ranges `first-last` (in units of the \
filesystem block size), the way dumpe2fs prints free blocks, instead of half-open byte ranges \
`start..end`. Does not change --json, which always gives bytes."
    )]
    pub blocks: bool,
    /// Print only the geometry and the summary, not every range.
    #[arg(
        long,
        conflicts_with = "blocks",
        long_help = "Print the geometry, the used total and the warnings, but not the list of \
used ranges (which can be long on a fragmented filesystem). Does not change --json."
    )]
    pub summary: bool,
}

#[derive(Serialize)]
struct JsonMap<'a> {
    device: String,
    used_bytes: u64,
    used_ranges: usize,
    /// Bytes per class, as a copy treats them.
    classes: Classes,
    #[serde(flatten)]
    map: &'a FsMap,
}

/// Run `reroot map`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    // A missing path or a directory is the user's mistake (exit 3), said
    // once, not an I/O error reading a superblock (issue 11).
    reroot::probe::device::kind_of(&args.device).map_err(|e| e.stage(Stage::Map))?;
    let file = std::fs::File::open(&args.device)
        .map_err(|e| reroot::Error::io("opening the device", e).device(&args.device))
        .with_context(|| format!("cannot map {}", args.device.display()))?;
    let opts = MapOptions {
        ignore_csum: args.ignore_csum,
        live: args.live,
    };
    let map = ext::read_map(&file, &opts).map_err(|e| e.stage(Stage::Map).device(&args.device))?;
    if ctx.json {
        output::json(&JsonMap {
            device: args.device.display().to_string(),
            used_bytes: map.used.total_bytes(),
            used_ranges: map.used.len(),
            classes: Classes::of(&map),
            map: &map,
        })?;
    } else {
        for w in &map.warnings {
            eprintln!("reroot: warning: {w}");
        }
        print!("{}", human(&args, &map));
    }
    Ok(Exit::Success)
}

/// The map's bytes by class: what a copy moves, zeroes and skips.
#[derive(Serialize)]
struct Classes {
    /// Used bytes whose content matters: copied.
    data_bytes: u64,
    /// Inode-table tails of INODE_ZEROED groups: zeroed on the target where
    /// it zeroes without moving data, copied otherwise.
    itable_zeroed_bytes: u64,
    /// Inode-table tails of groups not yet zeroed: skipped.
    itable_lazy_bytes: u64,
    /// Free bytes: skipped.
    free_bytes: u64,
}

impl Classes {
    fn of(map: &FsMap) -> Self {
        let used = map.used.total_bytes();
        Self {
            data_bytes: map.data().total_bytes(),
            itable_zeroed_bytes: map.itable_tails.zeroed.total_bytes(),
            itable_lazy_bytes: map.itable_tails.lazy.total_bytes(),
            free_bytes: map.geometry.fs_bytes.saturating_sub(used),
        }
    }
}

/// Sizes as people read them: "1.5 GiB".
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human(args: &Args, map: &FsMap) -> String {
    let g = &map.geometry;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {}, {} ({} blocks of {} B), {} groups",
        args.device.display(),
        g.kind,
        size(g.fs_bytes),
        g.blocks_count,
        g.block_size,
        g.groups_count
    );
    let label = if g.label.is_empty() {
        "(none)".to_string()
    } else {
        format!("{:?}", g.label)
    };
    let _ = writeln!(s, "  uuid       {}  label {label}", g.uuid);
    let _ = writeln!(
        s,
        "  state      {}{}",
        g.state,
        if g.needs_recovery {
            ", needs journal recovery"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "  features   {}", g.features.join(" "));
    let mut layout = format!(
        "{} blocks per group, {} B descriptors, {} inodes of {} B",
        g.blocks_per_group, g.desc_size, g.inodes_count, g.inode_size
    );
    if g.cluster_size != g.block_size {
        let _ = write!(layout, ", clusters of {} B", g.cluster_size);
    }
    if let Some(f) = g.flex_bg_size {
        let _ = write!(layout, ", flex_bg of {f}");
    }
    if g.block_uninit_groups > 0 {
        let _ = write!(layout, ", {} BLOCK_UNINIT groups", g.block_uninit_groups);
    }
    let _ = writeln!(s, "  layout     {layout}");
    let csum = match g.checksums {
        ext::Checksums::None => "none",
        ext::Checksums::GdtCsum => "uninit_bg (crc16 of descriptors)",
        ext::Checksums::MetadataCsum => {
            "metadata_csum (crc32c of superblock, descriptors, bitmaps)"
        }
    };
    let _ = writeln!(s, "  checksums  {csum}");
    if g.superblock_offset != 1024 {
        let _ = writeln!(s, "  superblock backup at byte {}", g.superblock_offset);
    }
    let used = map.used.total_bytes();
    let pct = if g.fs_bytes == 0 {
        0.0
    } else {
        used as f64 * 100.0 / g.fs_bytes as f64
    };
    let _ = writeln!(
        s,
        "used: {} of {} ({pct:.1} %) in {} ranges",
        size(used),
        size(g.fs_bytes),
        map.used.len()
    );
    let c = Classes::of(map);
    let _ = writeln!(s, "  data              {:>10}  copied", size(c.data_bytes));
    let _ = writeln!(
        s,
        "  itable tails      {:>10}  zeroed on the target (INODE_ZEROED groups; copied where \
         the target cannot zero without writing)",
        size(c.itable_zeroed_bytes)
    );
    let _ = writeln!(
        s,
        "  itable tails      {:>10}  skipped (groups not yet zeroed: the first read-write \
         mount zeroes them)",
        size(c.itable_lazy_bytes)
    );
    let _ = writeln!(s, "  free              {:>10}  skipped", size(c.free_bytes));
    if args.summary {
        return s;
    }
    let bs = u64::from(g.block_size);
    for e in &map.used {
        if args.blocks {
            // Ranges are block-aligned except [0, 2048) with larger blocks.
            let first = e.start() / bs;
            let last = (e.end() - 1) / bs;
            let _ = writeln!(s, "  {first}-{last}");
        } else {
            let _ = writeln!(s, "  {}..{}  ({})", e.start(), e.end(), size(e.len()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(argv: &[&str]) -> Args {
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Map(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn device_only() {
        let a = parse(&["reroot", "map", "/dev/x"]);
        assert_eq!(a.device, std::path::PathBuf::from("/dev/x"));
        assert!(!a.ignore_csum && !a.live && !a.blocks && !a.summary);
    }

    #[test]
    fn ignore_csum_flag() {
        assert!(parse(&["reroot", "map", "--ignore-csum", "/dev/x"]).ignore_csum);
    }

    #[test]
    fn live_flag() {
        assert!(parse(&["reroot", "map", "/dev/x", "--live"]).live);
    }

    #[test]
    fn blocks_flag() {
        assert!(parse(&["reroot", "map", "/dev/x", "--blocks"]).blocks);
    }

    #[test]
    fn summary_flag_conflicts_with_blocks() {
        assert!(parse(&["reroot", "map", "/dev/x", "--summary"]).summary);
        assert!(Cli::try_parse_from(["reroot", "map", "/dev/x", "--summary", "--blocks"]).is_err());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1 << 40), "1.0 TiB");
    }
}
