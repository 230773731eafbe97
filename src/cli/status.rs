//! `reroot status`: where a running, interrupted or finished migration
//! stands (its report, from the journal) and the end of its log; with
//! `--follow`, its progress until it ends (without answering questions:
//! `reroot migrate --attach` does that).

use std::path::PathBuf;

use reroot::exec::journal;
use reroot::exec::migrate::follow::Follower;
use reroot::exec::migrate::{self, Paths, report};

use super::migrate::{Attach, attach, print_report};
use super::{CmdResult, Ctx, Exit, output};

/// Flags of `reroot status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Follow the log until the migration ends.
    #[arg(
        long,
        short,
        long_help = "Show the progress and the log as they come until the migration ends, then \
its report, and exit with the migration's exit code. It does not answer the migration's \
questions: `reroot migrate --attach` does."
    )]
    pub follow: bool,
    /// The state directory of the migration.
    #[arg(
        long,
        default_value = migrate::STATE_DIR,
        value_name = "DIR",
        long_help = "Where the migration keeps its journal and log (the --state-dir given to \
`reroot migrate`)."
    )]
    pub state_dir: PathBuf,
    /// Lines of the log to show.
    #[arg(
        long,
        short = 'n',
        default_value_t = 20,
        value_name = "N",
        long_help = "How many of the log's last lines to show (0: none). With --json they are \
in `log_tail`."
    )]
    pub lines: usize,
}

#[derive(serde::Serialize)]
struct Status {
    #[serde(flatten)]
    report: report::MigrateReport,
    log_tail: Vec<String>,
}

/// Run `reroot status`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let paths = Paths::new(&args.state_dir);
    let Some(parsed) = journal::read(&paths.journal)? else {
        // The state directory is a tmpfs: after a restart only the copy
        // kept on the root tells what happened.
        let kept = paths.kept_copy();
        if !args.follow {
            if let Some(parsed) = journal::read(&kept.journal)? {
                let summary = journal::summarize(&parsed.records)?;
                let rep = report::from_kept_copy(
                    report::build(&summary, None, journal::now_ms(), &kept),
                    &kept.dir,
                );
                let tail = Follower::new(&kept.dir, 0, 0).tail(args.lines);
                return show(rep, tail, &kept, ctx);
            }
        }
        if ctx.json {
            output::json(&serde_json::json!({
                "state": "none",
                "journal": paths.journal,
            }))?;
        } else {
            println!(
                "no migration: there is no journal in {}",
                args.state_dir.display()
            );
        }
        return Ok(Exit::Success);
    };
    if args.follow {
        let f = Follower::from_end(&args.state_dir);
        if !ctx.json {
            for l in f.tail(args.lines) {
                eprintln!("{l}");
            }
        }
        let (lp, ep) = f.positions();
        return attach(
            &args.state_dir,
            ctx,
            &Attach {
                answer: false,
                reexeced: false,
                log_offset: lp,
                events_offset: ep,
                follow: true,
            },
        );
    }
    let summary = journal::summarize(&parsed.records)?;
    let rep = report::build(
        &summary,
        migrate::worker_pid(&paths),
        journal::now_ms(),
        &paths,
    );
    let tail = Follower::new(&args.state_dir, 0, 0).tail(args.lines);
    show(rep, tail, &paths, ctx)
}

fn show(rep: report::MigrateReport, tail: Vec<String>, paths: &Paths, ctx: &Ctx) -> CmdResult {
    if ctx.json {
        output::json(&Status {
            report: rep,
            log_tail: tail,
        })?;
    } else {
        print_report(&rep);
        if !tail.is_empty() {
            println!("--- last lines of {} ---", paths.log.display());
            for l in tail {
                println!("{l}");
            }
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "status"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Status(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = parse(&[]);
        assert!(!a.follow);
        assert_eq!(a.state_dir, PathBuf::from("/run/reroot"));
        assert_eq!(a.lines, 20);
    }

    #[test]
    fn follow_flag() {
        assert!(parse(&["--follow"]).follow);
        assert!(parse(&["-f"]).follow);
    }

    #[test]
    fn state_dir_and_lines_flags() {
        let a = parse(&["--state-dir", "/tmp/x", "-n", "5"]);
        assert_eq!(a.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(a.lines, 5);
        assert_eq!(parse(&["--lines", "0"]).lines, 0);
    }

    #[test]
    fn no_journal_is_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            json: true,
            style: reroot::report::progress::Style::Quiet,
        };
        let a = Args {
            follow: false,
            state_dir: d.path().into(),
            lines: 3,
        };
        assert_eq!(run(a, &ctx).unwrap(), Exit::Success);
    }
}
