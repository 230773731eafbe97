//! `reroot pivot`: switch the running system to the new root: mount it,
//! `pivot_root`, move every mount back, restart what runs from the old root.
//! Flags to [`PivotOptions`]; the report as text or JSON.

use std::path::PathBuf;

use reroot::exec::pivot::{self, PivotOptions, PivotReport, RestartMode};

use super::{CmdResult, Ctx, Exit, output};

/// `--restart` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartArg {
    /// Restart everything that runs from the old root, in a safe order (default).
    Auto,
    /// Like auto, but leave user managers (user@UID.service) running from the old root.
    System,
    /// Only list what runs from the old root and the order it would restart in.
    List,
    /// Neither list nor restart (restart sshd yourself before logging out).
    None,
}

/// Flags of `reroot pivot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device holding the new root (a copy of the running root).
    #[arg(
        required_unless_present = "worker",
        long_help = "The block device that holds the new root filesystem, normally made with \
`reroot copy` (and `reroot grow`). It must not be mounted: reroot mounts it on a private \
staging tmpfs under the state directory."
    )]
    pub newdev: Option<PathBuf>,
    /// Where the old root is put (inside the new root).
    #[arg(
        long,
        default_value = "/mnt/oldroot",
        value_name = "DIR",
        long_help = "Where pivot_root attaches the old root, as a path in the new root. It is \
created when missing, must be empty, and must not lie under any mount point that is moved \
back (such as /run or /boot). `reroot finish` unmounts it later."
    )]
    pub oldroot: PathBuf,
    /// After the pivot: restart (auto), list, or leave (none) what runs from the old root.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        long_help = "What to do with processes that still run from the old root after the \
pivot. `auto`: re-execute init (systemctl daemon-reexec / telinit u), then restart \
journald/syslog, udev, network, dbus and logind, sshd (which must listen again before the \
pivot reports success), gettys, then the other services, then user managers (user@UID.service: the \
user's sessions stay, the user's own services restart); your own session is reported as \"log \
out and in again\". `system`: the same without the user managers. `list`: only list them, grouped by unit, and the \
order they would restart in. `none`: neither (restart sshd yourself before logging out)."
    )]
    pub restart: RestartArg,
    /// State directory (log, request, result), on a tmpfs.
    #[arg(
        long,
        default_value = pivot::STATE_DIR,
        value_name = "DIR",
        long_help = "Where the pivot keeps its log (pivot.log), request, state and result. It \
must be on a filesystem that is writable when the root is read-only and that survives the \
pivot: /run (a tmpfs moved back with the API filesystems) is the right place."
    )]
    pub state_dir: PathBuf,
    /// Seconds sshd may take to listen again after its restart.
    #[arg(
        long,
        default_value_t = 30,
        value_name = "SECS",
        long_help = "After restarting sshd, wait at most this long for every TCP port the old \
sshd listened on to be listened on again by a process running from the new root. If it is \
not, the pivot reports failure: do not log out then."
    )]
    pub sshd_timeout: u64,
    /// Internal: run as the detached worker with this request file.
    #[arg(long, hide = true, value_name = "REQUEST")]
    pub worker: Option<PathBuf>,
    /// Internal: the worker re-executed from the new root.
    #[arg(long, hide = true, requires = "worker")]
    pub after_pivot: bool,
}

/// Run `reroot pivot`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    if let Some(req) = &args.worker {
        // The detached worker: its output goes to the log; the operator's
        // command reads result.json.
        let r = if args.after_pivot {
            pivot::worker_after_pivot(req)
        } else {
            pivot::worker(req)
        };
        return Ok(match r {
            Ok(rep) if rep.ok => Exit::Success,
            Ok(rep) => rep.to_error().map_or(Exit::Failure, |e| Exit::of(e.kind())),
            Err(e) => {
                eprintln!("reroot pivot worker: {e}");
                Exit::of(e.kind())
            }
        });
    }
    let Some(newdev) = args.newdev else {
        anyhow::bail!("NEWDEV is required");
    };
    let mut o = PivotOptions::new(newdev);
    o.put_old = args.oldroot;
    o.state_dir = args.state_dir;
    o.sshd_timeout_secs = args.sshd_timeout;
    o.restart = match args.restart {
        RestartArg::Auto => RestartMode::Auto,
        RestartArg::System => RestartMode::System,
        RestartArg::List => RestartMode::List,
        RestartArg::None => RestartMode::None,
    };
    let quiet = ctx.json;
    let report = pivot::launch(&o, &mut |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    })?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print_human(&report);
    }
    match report.to_error() {
        None => Ok(Exit::Success),
        Some(e) if ctx.json => Ok(Exit::of(e.kind())),
        Some(e) => Err(e.into()),
    }
}

fn print_human(r: &PivotReport) {
    if !r.pivoted {
        println!(
            "not pivoted{}",
            if r.rolled_back {
                ": nothing was changed"
            } else {
                ""
            }
        );
        return;
    }
    println!(
        "/ is now {} ({}); the old root ({}) is at {}",
        r.new_device.display(),
        r.new_fstype.as_deref().unwrap_or("?"),
        r.old_source.as_deref().unwrap_or("?"),
        r.old_root_at.display()
    );
    if let (Some(api), Some(all)) = (r.api_moved_ms, r.all_moved_ms) {
        println!("mounts back in place: API filesystems after {api} ms, all after {all} ms");
    }
    for m in &r.mounts {
        println!(
            "  {:<6} {:<24} {:<10} {} -> {}{}",
            if m.ok { "ok" } else { "FAILED" },
            m.to.display(),
            m.fstype,
            m.propagation_before,
            m.propagation_after.as_deref().unwrap_or("?"),
            m.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    if let Some((b, a)) = &r.root_propagation {
        println!("  / propagation {b} -> {a}");
    }
    if let Some(id) = &r.old_identity {
        println!(
            "old root {}: label {:?} -> {:?}, UUID {} -> {}",
            id.device.display(),
            id.label_before,
            id.label_after,
            id.uuid_before,
            id.uuid_after
        );
        if let Some(why) = &id.uuid_deferred {
            println!("  its UUID changes when it is unmounted: {why}");
        }
    }
    match &r.shutdown_guard {
        Some(Ok(g)) => println!("shutdown guard: {g}"),
        Some(Err(why)) => println!("no shutdown guard: {why}"),
        None => {}
    }
    print_names(&r.names);
    if !r.groups.is_empty() {
        println!("ran from the old root after the pivot:");
        for g in &r.groups {
            println!(
                "  {:<12} {:<28} pids {:?}  {}",
                format!("{:?}", g.class).to_lowercase(),
                g.unit.as_deref().unwrap_or("-"),
                g.pids,
                g.note
            );
        }
    }
    for o in &r.restarts {
        println!(
            "  restart {:<28} {:?}",
            o.unit.as_deref().unwrap_or("PID 1"),
            o.status
        );
    }
    for c in &r.sshd {
        println!(
            "  {} {} on {:?}",
            c.unit,
            if c.listening {
                "listens again"
            } else {
                "is NOT listening: do not log out"
            },
            c.ports
        );
    }
    if matches!(r.restart, RestartMode::Auto | RestartMode::System) {
        if r.remaining.is_empty() {
            println!("nothing runs from the old root any more: run `reroot finish`");
        } else {
            println!("still on the old root:");
            for g in &r.remaining {
                println!(
                    "  {:<28} pids {:?}  {}",
                    g.unit.as_deref().unwrap_or("-"),
                    g.pids,
                    g.note
                );
            }
            println!("when they are gone, run `reroot finish`");
        }
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    println!("log: {}", r.log.display());
}

/// Where each name of the root leads (pivot, finish and status print it).
pub fn print_names(names: &[reroot::plan::identity::NameStatus]) {
    use reroot::plan::identity::NameTarget;
    if names.is_empty() {
        return;
    }
    println!("names of the root:");
    for n in names {
        let to = match n.target {
            NameTarget::NewOnly => "the new root only",
            NameTarget::Both => "BOTH roots",
            NameTarget::OldOnly => "the OLD root",
            NameTarget::Neither => "neither root",
        };
        println!("  {:<46} ({}) -> {to}", n.name, n.used_by);
        if let Some(l) = &n.left {
            println!("    left: {l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "pivot"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Pivot(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = parse(&["/dev/vg/root"]);
        assert_eq!(a.newdev, Some(PathBuf::from("/dev/vg/root")));
        assert_eq!(a.oldroot, PathBuf::from("/mnt/oldroot"));
        assert_eq!(a.restart, RestartArg::Auto);
        assert_eq!(a.state_dir, PathBuf::from("/run/reroot"));
        assert_eq!(a.sshd_timeout, 30);
        assert!(a.worker.is_none() && !a.after_pivot);
        assert!(Cli::try_parse_from(["reroot", "pivot"]).is_err());
    }

    #[test]
    fn oldroot_flag() {
        assert_eq!(
            parse(&["d", "--oldroot", "/old"]).oldroot,
            PathBuf::from("/old")
        );
    }

    #[test]
    fn restart_flag() {
        assert_eq!(parse(&["d", "--restart", "list"]).restart, RestartArg::List);
        assert_eq!(parse(&["d", "--restart", "none"]).restart, RestartArg::None);
        assert_eq!(
            parse(&["d", "--restart", "system"]).restart,
            RestartArg::System
        );
        assert!(Cli::try_parse_from(["reroot", "pivot", "d", "--restart", "x"]).is_err());
    }

    #[test]
    fn state_dir_and_sshd_timeout_flags() {
        let a = parse(&["d", "--state-dir", "/run/x", "--sshd-timeout", "5"]);
        assert_eq!(a.state_dir, PathBuf::from("/run/x"));
        assert_eq!(a.sshd_timeout, 5);
    }

    #[test]
    fn worker_flags_are_hidden_and_need_no_device() {
        let a = parse(&["--worker", "/run/reroot/request.json", "--after-pivot"]);
        assert!(a.newdev.is_none() && a.after_pivot);
        assert!(Cli::try_parse_from(["reroot", "pivot", "d", "--after-pivot"]).is_err());
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("pivot")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("--worker") && help.contains("--restart"));
    }
}
