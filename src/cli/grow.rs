//! `reroot grow`: check the copy with e2fsck, then grow its filesystem to the
//! device (or `--size`) with resize2fs, xfs_growfs or btrfs.

use std::path::PathBuf;

use indicatif::BinaryBytes;
use reroot::exec::e2fs::FsckVerdict;
use reroot::exec::grow::{self, GrowOptions};
use reroot::plan::grow::GrowDecision;

use super::{CmdResult, Ctx, Exit, output};

/// The long help of `reroot grow` (attached to the subcommand in `args.rs`).
pub const LONG_ABOUT: &str = "Grow the filesystem on DEV (normally a fresh copy, unmounted) to fill \
the device, or to --size.\n\n\
ext2/3/4: `e2fsck -f -p` runs first; if it finds damage it may not repair unattended, the copy \
is bad and grow stops before resize2fs touches it (exit 6). Then `resize2fs -p`. xfs and btrfs \
grow only while mounted: reroot mounts DEV privately (invisible to the rest of the system), runs \
`xfs_growfs` or `btrfs filesystem resize`, and unmounts, also on error.\n\n\
Shrinking is refused: a block copy keeps the source's layout, so a smaller target needs a \
file-level copy.";

/// Flags of `reroot grow`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device whose filesystem to grow.
    #[arg(
        long_help = "The device (or, for ext2/3/4, an image file) whose filesystem to grow. It \
must not be mounted or held by anything."
    )]
    pub device: PathBuf,
    /// New size (512M, 2G, 1T or bytes); default: the whole device.
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = parse_size,
        long_help = "New filesystem size: a number of bytes, or a number with a binary suffix \
K, M, G, T or P (optionally followed by iB): 512M = 512 MiB. Rounded down to whole filesystem \
blocks. It must not exceed the device and must not be smaller than the filesystem. Default: \
the whole device."
    )]
    pub size: Option<u64>,
}

/// Parse a size: bytes, or a number with a binary suffix (`512M`, `2GiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a size: give bytes or a number with K, M, G, T or P"
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is too large"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        "p" | "pib" => 50,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} in {s:?}: use K, M, G, T or P (binary: 1K = 1024), \
or plain bytes"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Run `reroot grow`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    let result = grow::grow(&args.device, &GrowOptions { size: args.size }, &sink);
    drop(sink);
    reporter.finish();
    let report = result?;
    if ctx.json {
        output::json(&report)?;
        return Ok(Exit::Success);
    }
    let fsck = match report.fsck.as_ref().map(|f| f.verdict) {
        None => String::new(),
        Some(FsckVerdict::Clean) => "; e2fsck: clean".into(),
        Some(FsckVerdict::Corrected) => "; e2fsck: corrected errors (see above)".into(),
        Some(FsckVerdict::RebootAdvised) => "; e2fsck: corrected errors, advises a reboot".into(),
    };
    match report.decision {
        GrowDecision::AlreadyThatSize { .. } => println!(
            "{} ({}) already fills {}{fsck}",
            report.device.display(),
            report.fstype,
            BinaryBytes(report.new_bytes)
        ),
        GrowDecision::Grow { .. } => println!(
            "grew {} ({}) from {} to {} (device {}){fsck}",
            report.device.display(),
            report.fstype,
            BinaryBytes(report.old_bytes),
            BinaryBytes(report.new_bytes),
            BinaryBytes(report.device_bytes)
        ),
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(["reroot", "grow"].iter().chain(args))?;
        match cli.command {
            Command::Grow(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn device_is_required() {
        assert!(parse(&[]).is_err());
        let a = parse(&["/dev/loop3"]).unwrap();
        assert_eq!(a.device, PathBuf::from("/dev/loop3"));
        assert_eq!(a.size, None);
    }

    #[test]
    fn size_flag_parses_units() {
        assert_eq!(
            parse(&["/dev/x", "--size", "512M"]).unwrap().size,
            Some(512 << 20)
        );
        assert_eq!(parse(&["/dev/x", "--size=2G"]).unwrap().size, Some(2 << 30));
        assert!(parse(&["/dev/x", "--size", "2GB"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("123456789"), Ok(123_456_789));
        assert_eq!(parse_size(" 7 G "), Ok(7 << 30));
        assert_eq!(parse_size("0"), Ok(0)); // refused later, with a reason
        for bad in [
            "",
            "G",
            "-1G",
            "1.5G",
            "2GB",
            "1X",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn help_texts_exist() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let grow = cmd.find_subcommand_mut("grow").unwrap();
        let help = grow.render_long_help().to_string();
        assert!(help.contains("Shrinking is refused"), "{help}");
        assert!(help.contains("512M"), "{help}");
    }
}
