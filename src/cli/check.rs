//! `reroot check`: preflight of the live system and the target. Prints the
//! findings (blockers, warnings, information) grouped by service, or the
//! whole report as JSON; exits 0 only when nothing blocks, 3 otherwise.

use std::fmt::Write as _;
use std::path::PathBuf;

use reroot::exec::check::{self, CheckOptions};
use reroot::plan::preflight::{Finding, Report, Severity};
use reroot::probe::SysRoot;

use super::{CmdResult, Ctx, Exit, output};

/// Flags of `reroot check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The mount point of the filesystem to migrate.
    #[arg(
        long,
        default_value = "/",
        value_name = "DIR",
        long_help = "The mount point of the filesystem to migrate (default /). Everything that \
uses that filesystem is looked for, whatever path it is reached by: bind mounts, other mount \
namespaces, chroots. Tests and rehearsals point it at a loop-mounted image."
    )]
    pub root: PathBuf,
    /// Also check the target device.
    #[arg(
        long,
        value_name = "DEV",
        long_help = "Also check the device the root will move to: it exists, is not mounted or \
held (dm, md, loop), does not overlap the root's device, is large enough for the root's \
filesystem, and carries no filesystem, LVM, md, swap or partition-table signature (a blocker \
unless --force)."
    )]
    pub target: Option<PathBuf>,
    /// Accept a target that carries a signature.
    #[arg(
        long,
        long_help = "Do not count a filesystem, LVM, md, swap or partition-table signature on \
the target as a blocker: you have checked that its contents may be overwritten. The other \
target checks still apply."
    )]
    pub force: bool,
    /// The copy will get a new UUID: say which boot references that breaks.
    #[arg(
        long,
        long_help = "Judge fstab and the kernel command line as if the copy will get a new \
filesystem UUID (`reroot copy --new-uuid`): references by UUID= then break and are reported \
with what to change. Without it, the copy is assumed identical (UUID= and LABEL= keep working; \
device paths, device numbers, PARTUUID= and PARTLABEL= break either way)."
    )]
    pub new_uuid: bool,
    /// The copy will be a transform into TYPE (`migrate --mkfs`).
    #[arg(
        long,
        value_enum,
        value_name = "TYPE",
        requires = "target",
        long_help = "Judge the target for a transform (`reroot migrate --mkfs TYPE`): it may \
be smaller than the root, but the root's used bytes and inodes must fit a new TYPE filesystem \
on it (a blocker otherwise); the running kernel must have TYPE (a blocker otherwise); and the \
initramfs must carry TYPE's module for the next boot (a warning naming what to install and \
run). GRUB reads ext4, xfs and btrfs, with limits the finding names."
    )]
    pub mkfs: Option<super::transform::MkfsArg>,
}

/// How many findings of information are listed before "and N more".
const MAX_INFO_SHOWN: usize = 12;

fn finding_lines(out: &mut String, f: &Finding) {
    let cat = serde_json::to_value(f.category)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(out, "  [{cat}] {}", f.summary);
    // No arrow to nothing: a finding without advice is one line.
    if !f.advice.trim().is_empty() {
        let _ = writeln!(out, "      -> {}", f.advice);
    }
}

/// The human form of a report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Root {}: {} on {} ({}); init: {}; {} processes scanned.",
        r.root.display(),
        r.fstype,
        r.source,
        r.device,
        r.init,
        r.scanned
    );
    for (sev, title) in [
        (Severity::Blocker, "Blockers"),
        (Severity::Warning, "Warnings"),
        (Severity::Info, "Information"),
    ] {
        let fs: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if fs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({}):", fs.len());
        let shown = if sev == Severity::Info {
            MAX_INFO_SHOWN
        } else {
            usize::MAX
        };
        for f in fs.iter().take(shown) {
            finding_lines(&mut out, f);
        }
        if fs.len() > shown {
            let _ = writeln!(
                out,
                "  ... and {} more (--json lists them all)",
                fs.len() - shown
            );
        }
    }
    if !r.services.is_empty() {
        let _ = writeln!(out, "\nBy service:");
        for s in &r.services {
            let pids: Vec<String> = s.pids.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "  {} (pids {}): {}",
                s.service,
                reroot::plan::preflight::shorten(&pids, 6),
                s.todo
            );
        }
    }
    out.push('\n');
    if r.ready {
        let _ = writeln!(out, "Ready: nothing blocks ({} warnings).", r.warnings);
    } else {
        let auto = r.blockers().filter(|f| f.action.is_some()).count();
        let _ = writeln!(
            out,
            "Not ready: {} blockers; `reroot quiesce` can handle {auto} of them, the others \
             need you.",
            r.blockers
        );
    }
    out
}

/// Run `reroot check`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let opts = CheckOptions {
        root: args.root,
        target: args.target,
        force: args.force,
        new_uuid: args.new_uuid,
        mkfs: args.mkfs.map(super::transform::MkfsArg::kind),
        ..CheckOptions::default()
    };
    let report = check::check(&SysRoot::live(), &opts)?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.ready {
        Exit::Success
    } else {
        Exit::Refused
    })
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "check"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Check(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn root_flag() {
        assert_eq!(parse(&[]).root, PathBuf::from("/"));
        assert_eq!(parse(&["--root", "/mnt/x"]).root, PathBuf::from("/mnt/x"));
    }

    #[test]
    fn target_flag() {
        assert_eq!(parse(&[]).target, None);
        assert_eq!(
            parse(&["--target", "/dev/sdb"]).target,
            Some(PathBuf::from("/dev/sdb"))
        );
    }

    #[test]
    fn new_uuid_flag() {
        assert!(!parse(&[]).new_uuid);
        assert!(parse(&["--new-uuid"]).new_uuid);
    }

    #[test]
    fn mkfs_flag() {
        use super::super::transform::MkfsArg;
        assert_eq!(parse(&[]).mkfs, None);
        assert_eq!(
            parse(&["--target", "/dev/x", "--mkfs", "xfs"]).mkfs,
            Some(MkfsArg::Xfs)
        );
        assert!(Cli::try_parse_from(["reroot", "check", "--mkfs", "xfs"]).is_err());
    }

    #[test]
    fn force_flag() {
        assert!(!parse(&[]).force);
        assert!(parse(&["--force"]).force);
    }

    #[test]
    fn render_names_blockers_advice_and_verdict() {
        use reroot::plan::preflight::Category;
        let mut r = sample_report();
        let mut f = Finding::new(
            Severity::Blocker,
            Category::OpenForWrite,
            "pid 7 (sh) writes /x/log",
            "stop it",
        );
        f.pids = vec![7];
        r.add([f]);
        let text = render(&r);
        assert!(text.contains("Blockers (1):"), "{text}");
        assert!(
            text.contains("[open-for-write] pid 7 (sh) writes /x/log"),
            "{text}"
        );
        assert!(text.contains("-> stop it"), "{text}");
        assert!(text.contains("Not ready: 1 blockers"), "{text}");
        let ok = render(&sample_report());
        assert!(ok.contains("Ready: nothing blocks"), "{ok}");
    }

    /// Issue 11: a finding without advice printed an arrow to nothing.
    #[test]
    fn finding_without_advice_has_no_arrow() {
        use reroot::plan::preflight::Category;
        let mut out = String::new();
        let f = Finding::new(Severity::Info, Category::BootConfig, "some fact", "");
        finding_lines(&mut out, &f);
        assert_eq!(out, "  [boot-config] some fact\n");
    }

    fn sample_report() -> Report {
        let facts = reroot::probe::rootfs::RootFacts {
            root: reroot::probe::mountinfo::parse_line("1 0 7:3 / /x rw - ext4 /dev/loop3 rw", 1)
                .unwrap(),
            binds: vec![],
            sub_mounts: vec![],
            loops: vec![],
            swaps: vec![],
            overlays: vec![],
            network: vec![],
            scan: Default::default(),
        };
        reroot::plan::preflight::assess(&facts, &reroot::probe::init::InitSystem::Systemd)
    }
}
