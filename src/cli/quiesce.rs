//! `reroot quiesce` and `reroot resume-services`: stop what keeps the root
//! busy and remount it read-only, recording every step in a state file; and
//! undo that from the state file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use reroot::exec::check::CheckOptions;
use reroot::exec::quiesce::{self, DEFAULT_STATE_FILE, QuiesceOptions};
use reroot::plan::quiesce::{DEFAULT_PREPARE_DIRS, QuiescePlan};
use reroot::probe::SysRoot;

use super::{CmdResult, Ctx, Exit, output};

/// Flags of `reroot quiesce`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The mount point of the filesystem to make read-only.
    #[arg(
        long,
        default_value = "/",
        value_name = "DIR",
        long_help = "The mount point of the filesystem to make read-only (default /). It is \
checked like `reroot check --root DIR` first; what the check can resolve is resolved."
    )]
    pub root: PathBuf,
    /// Do it without asking.
    #[arg(
        long,
        short,
        long_help = "Do not ask for confirmation before stopping services, unmounting, swapping \
off and remounting. Without it, quiesce shows its plan and asks on a terminal, and refuses \
when there is no terminal to ask on."
    )]
    pub yes: bool,
    /// Try the remount even though blockers remain that quiesce cannot resolve.
    #[arg(
        long,
        long_help = "Go on although the check found blockers that no quiesce step resolves \
(processes in no service, services reroot will not stop). The remount to read-only then \
probably fails; when it does, quiesce names who holds the root. Steps done stay recorded."
    )]
    pub force: bool,
    /// Where to record what was done.
    #[arg(
        long,
        value_name = "FILE",
        default_value = DEFAULT_STATE_FILE,
        long_help = "The JSON file that records every step done, so `reroot resume-services` \
(and a migration rollback) can undo them in reverse. Keep it off the root being made \
read-only: the default lives on /run (tmpfs)."
    )]
    pub state_file: PathBuf,
    /// Also create DIR (relative to the root) before it goes read-only.
    #[arg(
        long = "mkdir",
        value_name = "DIR",
        long_help = "Create this directory (relative to the root) before the root goes \
read-only, so later stages find it in the copy. Repeatable. Always created: mnt/oldroot \
(where `reroot pivot` puts the old root)."
    )]
    pub mkdir: Vec<PathBuf>,
}

/// Flags of `reroot resume-services`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The state file `reroot quiesce` wrote.
    #[arg(
        long,
        value_name = "FILE",
        default_value = DEFAULT_STATE_FILE,
        long_help = "The JSON file `reroot quiesce` wrote. Every step it records is undone, \
last first: remount read-write, swap on, re-attach loop devices and mount again, start the \
services, let journald write to /var again. The file is removed when everything is undone."
    )]
    pub state_file: PathBuf,
}

fn print_plan(plan: &QuiescePlan) {
    eprintln!("reroot quiesce {} will:", plan.root.display());
    for (i, s) in plan.steps.iter().enumerate() {
        eprintln!("  {}. {}", i + 1, s.describe());
    }
    for f in &plan.unresolved {
        eprintln!("  still blocking (not handled): {}", f.summary);
    }
    for n in &plan.notes {
        eprintln!("  note: {n}");
    }
}

/// Ask on the terminal; `false` when there is none to ask on.
fn confirm() -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("Proceed? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// Run `reroot quiesce`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let sys = SysRoot::live();
    let mut prepare: Vec<PathBuf> = DEFAULT_PREPARE_DIRS.iter().map(PathBuf::from).collect();
    prepare.extend(args.mkdir);
    let opts = QuiesceOptions {
        check: CheckOptions {
            root: args.root,
            ..CheckOptions::default()
        },
        state_file: args.state_file,
        force: args.force,
        prepare_dirs: prepare,
    };
    let (_, plan) = quiesce::prepare(&sys, &opts)?;
    if !plan.unresolved.is_empty() && !opts.force {
        return Err(quiesce::unresolved_error(&plan.unresolved).into());
    }
    if !ctx.json {
        print_plan(&plan);
    }
    if !args.yes && (ctx.json || !confirm()) {
        return Err(reroot::Error::refused("not confirmed: nothing was changed")
            .hint("answer y on a terminal, or pass --yes")
            .into());
    }
    let mgr = quiesce::manager_for(&reroot::exec::check::init_of(&sys, &opts.check));
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    let result = quiesce::quiesce(&sys, &opts, &plan, mgr.as_ref(), &sink);
    drop(sink);
    reporter.finish();
    let out = result?;
    if ctx.json {
        output::json(&out)?;
    } else {
        for n in &out.notes {
            println!("note: {n}");
        }
        for s in &out.done {
            println!("done: {}", s.describe());
        }
        if out.read_only {
            println!(
                "{} is read-only. Undo with `reroot resume-services --state-file {}`.",
                out.root.display(),
                out.state_file.display()
            );
        } else {
            println!(
                "The remount of {} read-only failed: it is still in use.",
                out.root.display()
            );
            for f in &out.holders {
                println!("  {}\n      -> {}", f.summary, f.advice);
            }
            println!(
                "Steps done are recorded in {}: deal with the above and run `reroot quiesce` \
                 again, or undo with `reroot resume-services`.",
                out.state_file.display()
            );
        }
    }
    Ok(if out.read_only {
        Exit::Success
    } else {
        Exit::Busy
    })
}

/// Run `reroot resume-services`.
pub fn run_resume(args: ResumeArgs, ctx: &Ctx) -> CmdResult {
    let sys = SysRoot::live();
    let state = quiesce::State::load(&args.state_file)?;
    let init = state.as_ref().map_or_else(
        || reroot::probe::init::InitSystem::Other(String::new()),
        |s| s.init.clone(),
    );
    let mgr = quiesce::manager_for(&init);
    let reporter = ctx.reporter();
    let sink = reporter.sink();
    let result = quiesce::resume(&sys, &args.state_file, mgr.as_ref(), &sink);
    drop(sink);
    reporter.finish();
    let out = result?;
    if ctx.json {
        output::json(&out)?;
    } else {
        for s in &out.undone {
            if let Some(u) = s.undo_description() {
                println!("done: {u}");
            }
        }
        for n in &out.notes {
            println!("note: {n}");
        }
        for f in &out.failed {
            println!("FAILED: {f}");
        }
    }
    Ok(if out.failed.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "quiesce"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Quiesce(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    fn parse_resume(args: &[&str]) -> ResumeArgs {
        let mut v = vec!["reroot", "resume-services"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::ResumeServices(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn root_flag() {
        assert_eq!(parse(&[]).root, PathBuf::from("/"));
        assert_eq!(parse(&["--root", "/mnt/r"]).root, PathBuf::from("/mnt/r"));
    }

    #[test]
    fn yes_flag() {
        assert!(!parse(&[]).yes);
        assert!(parse(&["--yes"]).yes);
        assert!(parse(&["-y"]).yes);
    }

    #[test]
    fn force_flag() {
        assert!(!parse(&[]).force);
        assert!(parse(&["--force"]).force);
    }

    #[test]
    fn state_file_flag() {
        assert_eq!(parse(&[]).state_file, PathBuf::from(DEFAULT_STATE_FILE));
        assert_eq!(
            parse(&["--state-file", "/tmp/s.json"]).state_file,
            PathBuf::from("/tmp/s.json")
        );
        assert_eq!(
            parse_resume(&[]).state_file,
            PathBuf::from(DEFAULT_STATE_FILE)
        );
        assert_eq!(
            parse_resume(&["--state-file", "/x"]).state_file,
            PathBuf::from("/x")
        );
    }

    #[test]
    fn mkdir_flag_repeats() {
        assert!(parse(&[]).mkdir.is_empty());
        assert_eq!(
            parse(&["--mkdir", "a", "--mkdir", "b/c"]).mkdir,
            vec![PathBuf::from("a"), PathBuf::from("b/c")]
        );
    }
}
