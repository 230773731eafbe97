//! `reroot demo`: a whole migration in a sandbox (loop devices, private
//! namespaces), checked, then cleaned up. Flags to [`DemoOptions`]; the
//! report as text or JSON.

use std::path::PathBuf;

use reroot::exec::demo::{self, DemoOptions, DemoReport, Interrupts};
use reroot::report::progress::Style;

use super::{CmdResult, Ctx, Exit, output};

/// Flags of `reroot demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the sandbox's image files after the run, for inspection.
    #[arg(
        long,
        long_help = "Keep the work directory under /var/tmp (the old and new root images) after \
the run, to look at them (`losetup`, `mount -o ro` them yourself). The loop devices are \
detached and nothing stays mounted either way."
    )]
    pub keep: bool,
    /// Where the work directory goes.
    #[arg(
        long,
        default_value = "/var/tmp",
        value_name = "DIR",
        long_help = "The directory in which the demo makes its work directory (two sparse image \
files, 640 MiB apparent, about 120 MiB used). It must be on a disk filesystem, not a tmpfs \
(O_DIRECT)."
    )]
    pub dir: PathBuf,
    /// Migrate into a new TYPE filesystem (`migrate --mkfs TYPE`).
    #[arg(
        long,
        value_enum,
        value_name = "TYPE",
        long_help = "Run the sandbox migration through a transform: `reroot migrate --mkfs TYPE` \
makes a new TYPE filesystem (xfs, btrfs, ext4, ...) on the target and copies the files live, \
then the delta after quiesce, compares tree digests and rewrites the new root's fstab. btrfs \
also gets --new-uuid (mkfs.btrfs refuses a UUID another device carries). The mkfs tool is \
copied into the sandbox from this machine."
    )]
    pub mkfs: Option<super::transform::MkfsArg>,
    /// Bytes of data in the sandbox's data tree (images sized to fit).
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = super::grow::parse_size,
        long_help = "The size of the data tree the sandbox's root carries (default 24M; K, M, G \
suffixes). The old root image is sized to hold it with room to spare (1.5x plus 232 MiB) and \
the target a quarter larger. Use it to see that the read-only window does not grow with the \
used size: compare --data 256M with --data 2G, both with --churn."
    )]
    pub data: Option<u64>,
    /// A service in the sandbox that writes RATE bytes per second throughout.
    #[arg(
        long,
        value_name = "RATE",
        value_parser = super::grow::parse_size,
        long_help = "Start churn.service in the sandbox, writing about RATE bytes per second \
(K, M, G suffixes) during the whole migration: appends with fsync, rewrites in place, new and \
deleted small files, and O_DIRECT rewrites of a database-like file. The live pre-copy tracks \
these writes and re-copies them in rounds; the read-only window copies only the last ones."
    )]
    pub churn: Option<u64>,
    /// Compare every used block inside the read-only window (migrate --verify-full).
    #[arg(
        long,
        long_help = "Pass --verify-full to the migration inside: after the final dirty pass, \
hash every used block of both devices and compare them with the root read-only. Slower \
window; proves that no write escaped the tracker."
    )]
    pub verify_full: bool,
    /// Do not track writes (migrate --no-track): the window holds a full delta pass.
    #[arg(
        long,
        long_help = "Pass --no-track to the migration inside: no write tracking, so the \
read-only window holds a delta pass over every used block and a full verify. The baseline \
to compare a tracked run's window with."
    )]
    pub no_track: bool,
    /// Internal: print the tree hash of DIR (used inside the sandbox).
    #[arg(long, hide = true, value_name = "DIR")]
    pub tree_hash: Option<PathBuf>,
}

/// Run `reroot demo`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    if let Some(dir) = &args.tree_hash {
        println!("{}", demo::tree_hash(dir)?);
        return Ok(Exit::Success);
    }
    let exe = std::env::current_exe()?;
    let mut o = DemoOptions::new(exe);
    o.rig.keep = args.keep;
    o.rig.parent = args.dir;
    if let Some(m) = args.mkfs {
        let kind = m.kind();
        o.migrate_flags = format!("--mkfs {kind}");
        if kind == reroot::plan::transform::MkfsType::Btrfs {
            o.migrate_flags.push_str(" --new-uuid");
        }
        o.rig.extra_tools.push(kind.program().to_owned());
    }
    if let Some(data) = args.data {
        let (old, new) = demo::image_sizes(data);
        o.rig.data_bytes = data;
        o.rig.old_bytes = old;
        o.rig.new_bytes = new;
    }
    o.rig.churn_bytes_per_s = args.churn.unwrap_or(0);
    if args.verify_full {
        o.migrate_flags.push_str(" --verify-full");
    }
    if args.no_track {
        o.migrate_flags.push_str(" --no-track");
    }
    let show = ctx.style != Style::Quiet;
    let signals = Interrupts::catch();
    let result = demo::run(
        &o,
        &mut |line: &str| {
            if show {
                eprintln!("{line}");
            }
        },
        &mut || signals.poll(),
    );
    drop(signals);
    let report = result?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(if report.ok {
        Exit::Success
    } else if report.interrupted.is_some() {
        Exit::Interrupted
    } else {
        Exit::Failure
    })
}

fn print_human(r: &DemoReport) {
    println!();
    if let Some(why) = &r.interrupted {
        println!("demo stopped: {why}");
    }
    if let Some(m) = &r.migrate {
        println!(
            "reroot migrate {} -> {}: {}",
            r.old_device,
            r.new_device,
            m["outcome"].as_str().unwrap_or("?")
        );
        if let Some(stages) = m["stages"].as_array() {
            for s in stages {
                let secs = s["seconds"]
                    .as_f64()
                    .map(|t| format!("{t:6.2} s"))
                    .unwrap_or_default();
                println!(
                    "  {:<9} {:<8} {secs}",
                    s["stage"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or("")
                );
            }
        }
        let h = |k: &str| reroot::plan::target::human_bytes(m[k].as_u64().unwrap_or(0));
        if let Some(w) = m["read_only_window_seconds"].as_f64() {
            println!(
                "  read-only window: {w:.2} s ({} copied inside it)",
                h("window_bytes")
            );
        }
        if let Some(t) = m["write_tracking"].as_str() {
            println!(
                "  live pre-copy: {} round(s), writes {}",
                m["precopy_rounds"].as_u64().unwrap_or(0),
                if t == "tracked" {
                    "tracked".to_owned()
                } else {
                    format!("not tracked ({t})")
                }
            );
        }
        println!(
            "  copied {} (live pre-copy {}, delta {}), verified {}",
            h("bytes_copied"),
            h("bytes_precopied"),
            h("bytes_delta"),
            h("bytes_verified")
        );
        if let Some(rs) = m["restarted"].as_array() {
            let names: Vec<&str> = rs.iter().filter_map(|v| v.as_str()).collect();
            println!("  restarted: {}", names.join(", "));
        }
    }
    println!("checks:");
    for c in &r.checks {
        println!(
            "  [{}] {}: {}",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        );
    }
    println!(
        "cleanup: loop devices {} detached; {}",
        r.cleanup.loop_devices.join(", "),
        if r.cleanup.left_behind.is_empty() {
            "nothing left behind".to_owned()
        } else {
            format!("LEFT BEHIND: {}", r.cleanup.left_behind.join("; "))
        }
    );
    if r.cleanup.kept {
        println!("kept: {}", r.cleanup.work_dir.display());
    }
    if let Some(out) = &r.sandbox_output {
        println!("--- the sandbox's output ---\n{out}");
    }
    println!(
        "{} in {:.1} s",
        if r.ok {
            "demo passed"
        } else if r.interrupted.is_some() {
            "demo interrupted (cleaned up)"
        } else {
            "demo FAILED"
        },
        r.seconds
    );
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "demo"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Demo(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = parse(&[]);
        assert!(!a.keep);
        assert_eq!(a.dir, PathBuf::from("/var/tmp"));
        assert!(a.tree_hash.is_none());
    }

    #[test]
    fn mkfs_flag() {
        use super::super::transform::MkfsArg;
        assert_eq!(parse(&[]).mkfs, None);
        assert_eq!(parse(&["--mkfs", "btrfs"]).mkfs, Some(MkfsArg::Btrfs));
        assert!(Cli::try_parse_from(["reroot", "demo", "--mkfs", "zfs"]).is_err());
    }

    #[test]
    fn data_churn_and_verify_full_flags() {
        let a = parse(&[]);
        assert_eq!((a.data, a.churn, a.verify_full), (None, None, false));
        assert_eq!(parse(&["--data", "2G"]).data, Some(2 << 30));
        assert_eq!(parse(&["--churn", "4M"]).churn, Some(4 << 20));
        assert!(parse(&["--verify-full"]).verify_full);
        assert!(parse(&["--no-track"]).no_track);
        assert!(Cli::try_parse_from(["reroot", "demo", "--data", "lots"]).is_err());
    }

    #[test]
    fn keep_flag() {
        assert!(parse(&["--keep"]).keep);
    }

    #[test]
    fn dir_flag() {
        assert_eq!(parse(&["--dir", "/srv/x"]).dir, PathBuf::from("/srv/x"));
    }

    #[test]
    fn hidden_tree_hash() {
        assert_eq!(
            parse(&["--tree-hash", "/var/lib/demo"]).tree_hash,
            Some(PathBuf::from("/var/lib/demo"))
        );
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("demo")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("tree-hash"));
    }
}
