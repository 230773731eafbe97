//! `reroot migrate`: the whole move, run by a detached worker, journaled,
//! with confirmations and rollback before the pivot. This module turns the
//! flags into [`MigrateOptions`], starts (or resumes) the worker, and
//! attaches: it shows the worker's progress and log, asks its questions on
//! the terminal, and prints the final report. [`attach`] is shared with
//! `reroot status --follow`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reroot::exec::journal::Outcome;
use reroot::exec::migrate::follow::Follower;
use reroot::exec::migrate::report::{self, MigrateReport};
use reroot::exec::migrate::{self, MigrateOptions, Paths, dry_run, worker};
use reroot::plan::migrate::{Choices, MigratePlan, Stage};
use reroot::report::progress::Style;

use super::{CmdResult, Ctx, Exit, output};

/// `--inject-failure` values: the stages a test may make fail.
fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// Flags of `reroot migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The current root device (the one mounted at /).
    #[arg(
        required_unless_present_any = ["resume", "attach", "worker", "answer"],
        long_help = "The block device of the running root: the one mounted at / (`findmnt -no \
SOURCE /`). It is read while the system runs (live pre-copy), then again after the root is \
remounted read-only; it is changed only at the end, when `finish` gives it a new UUID and the \
label `oldroot`."
    )]
    pub source: Option<PathBuf>,
    /// The target device (not mounted, no filesystem on it).
    #[arg(
        required_unless_present_any = ["resume", "attach", "worker", "answer"],
        long_help = "The block device that becomes the root: an LVM volume, an md array, a \
partition. It must not be mounted or held, must not overlap the source, must be at least as \
large as the source filesystem and must carry no filesystem, LVM, md or swap signature (the \
check stage refuses it otherwise, before anything is changed)."
    )]
    pub target: Option<PathBuf>,
    /// Grow the copy to fill the target (e2fsck, then resize2fs).
    #[arg(
        long,
        long_help = "After the copy is verified, check it (`e2fsck -f -p`) and grow its \
filesystem to fill the target (`resize2fs`; xfs_growfs and btrfs resize on a private \
temporary mount). Without it the copy keeps the source's size."
    )]
    pub grow: bool,
    /// Compare every used block inside the read-only window (slow; proves the tracker).
    #[arg(
        long,
        long_help = "The live pre-copy tracks every write to the source at the block layer, so the read-only \
window copies and reads back only the chunks written since the last round. With \
--verify-full the window also hashes every used block of both devices and compares them, \
as a copy without tracking does: it costs a read of the used size twice (at 500 MB/s, \
about 4 s per GiB used) with the root read-only. Use it to prove the tracker on your \
system; a missed write shows up as a difference and stops the migration before the pivot."
    )]
    pub verify_full: bool,
    /// Do not track writes: the window holds a full delta pass and verify.
    #[arg(
        long,
        long_help = "Turn the block-layer write tracking off (it uses a private tracefs instance on \
block:block_bio_queue). The read-only window then holds a delta pass over every used block \
and a full verify, as before tracking existed: its length grows with the used size. \
Tracking also falls back to this, with a warning, when tracefs is unavailable or trace \
events were lost."
    )]
    pub no_track: bool,
    /// On LVM, md or dm-crypt: finish does what the next boot needs.
    #[arg(
        long,
        long_help = "Pass --boot to the finish stage: when the target is an LVM volume, an md \
array or a dm-crypt mapping, write mdadm.conf, regenerate every initramfs and the GRUB \
configuration, and install GRUB on every boot disk (both halves of a RAID1). Without it the \
report lists these commands. `reroot check --target DEV` says beforehand what the next boot \
needs and blocks when a tool is missing."
    )]
    pub boot: bool,
    /// Give the copy a new filesystem UUID.
    #[arg(
        long,
        long_help = "Give the copy a fresh UUID (tune2fs -U, xfs_admin -U, btrfstune -u) before \
the pivot; the old root then keeps its identity. By default the copy keeps the source's UUID \
and label (so `root=UUID=` and fstab keep working) and `finish` gives the OLD root a new UUID \
and the label `oldroot` instead. With --new-uuid, update fstab and the bootloader to the new \
UUID before the next reboot (the report says so)."
    )]
    pub new_uuid: bool,
    /// Move into a new TYPE filesystem (a file copy) instead of a block copy.
    #[arg(
        long,
        value_enum,
        value_name = "TYPE",
        long_help = "Migrate through a transform: the pre-copy makes a new TYPE filesystem \
(ext2, ext3, ext4, xfs, btrfs) on the target, sized to it (it may be smaller than the root \
when the used bytes and inodes fit: the check stage refuses before anything changes \
otherwise), and copies the files with every kind of metadata while the system runs; after \
quiesce the delta pass copies what changed and removes what is gone; verify compares digests \
of both trees (`reroot verify --files`) and gives the new root's /etc/fstab the new type and \
options valid for it. The new filesystem keeps the root's UUID and label unless --new-uuid \
(btrfs needs --new-uuid). Grow and identity stages are not needed. `reroot check --target DEV \
--mkfs TYPE` says whether the kernel and the initramfs can mount TYPE."
    )]
    pub mkfs: Option<super::transform::MkfsArg>,
    /// With --mkfs: accept what the new type cannot hold.
    #[arg(
        long,
        requires = "mkfs",
        long_help = "With --mkfs: things the new type cannot represent (an inode flag, an \
oversized xattr, a label too long for xfs) are listed in the report; without --lossy they stop \
the migration before the pivot, with it they are accepted."
    )]
    pub lossy: bool,
    /// Do not ask before quiesce and before the pivot.
    #[arg(
        long,
        short,
        long_help = "Do not ask for confirmation. Without it, the worker asks twice, through \
this terminal (or `reroot migrate --attach` from another): before quiesce (services stop and \
the root goes read-only) and before the pivot (the point of no return). Without a terminal to \
ask on, and without --yes, migrate refuses to start."
    )]
    pub yes: bool,
    /// Accept a target that carries a filesystem or other signature.
    #[arg(
        long,
        long_help = "Accept a target that carries a filesystem, LVM, md, swap or partition-table \
signature (it is overwritten). Needed, for example, to try again after a rolled-back migration \
left a partial copy on the target. Every other target check still applies."
    )]
    pub force: bool,
    /// Print the plan (every command, the point of no return) and exit.
    #[arg(
        long,
        long_help = "Examine this system and print the plan: every stage with the real devices, \
processes, services and mounts, every command it would run, what a failure at each stage rolls \
back, and where the point of no return is. Changes nothing. Exit 0 when the migration could \
start, 3 when something blocks it (listed)."
    )]
    pub dry_run: bool,
    /// Continue an interrupted migration from its last completed stage.
    #[arg(
        long,
        conflicts_with_all = ["attach", "dry_run"],
        long_help = "Continue a migration whose worker is gone (killed, or the machine lost \
power in a way that kept /run: rare) from its journal: the stage that was running runs again, \
and a copy that was already made is verified again before going on. SRC and DST come from the \
journal."
    )]
    pub resume: bool,
    /// Follow a running migration: progress, log, questions, report.
    #[arg(
        long,
        conflicts_with = "dry_run",
        long_help = "Attach to the running migration (for example from a new SSH session after \
the old one dropped): show its progress and log, answer its questions, and print the report \
when it ends. Leaving (Ctrl-C, a dropped connection) does not stop the migration."
    )]
    pub attach: bool,
    /// Start the migration and return at once; follow it later.
    #[arg(
        long,
        conflicts_with_all = ["attach", "resume", "dry_run", "answer"],
        long_help = "Start the worker and return at once instead of following it. Its questions \
(unless --yes) wait for `reroot migrate --attach` on a terminal or `reroot migrate --answer`; \
`reroot status` shows where it is."
    )]
    pub detach: bool,
    /// Answer the question the migration waits for (yes or no), then exit.
    #[arg(
        long,
        value_name = "yes|no",
        value_parser = ["yes", "no"],
        conflicts_with_all = ["attach", "resume", "dry_run"],
        long_help = "Answer the running migration's pending question (before quiesce, before the \
pivot) without a terminal, from a script or another session, then exit. `no` cancels: the \
worker rolls back what it did. Refused when no question is waiting."
    )]
    pub answer: Option<String>,
    /// The state directory (journal, log, quiesce and pivot state), on a tmpfs.
    #[arg(
        long,
        default_value = migrate::STATE_DIR,
        value_name = "DIR",
        long_help = "Where the migration keeps its journal (migrate.journal), log \
(migrate.log), progress events, report (migrate-report.json), quiesce's state file and the \
pivot's files. It must stay writable while the root is read-only and survive the pivot: /run \
(a tmpfs moved back with the API filesystems) is the right place."
    )]
    pub state_dir: PathBuf,
    /// Seconds to wait for an answer before giving up (and rolling back).
    #[arg(
        long,
        default_value_t = 600,
        value_name = "SECS",
        long_help = "How long the worker waits for an answer to its question. No answer counts \
as no: before quiesce nothing has changed yet; before the pivot the rollback puts the root \
back to read-write and starts the services again."
    )]
    pub confirm_timeout: u64,
    /// Seconds `finish` waits for the old root to be released.
    #[arg(
        long,
        default_value_t = 600,
        value_name = "SECS",
        long_help = "After the pivot and the restarts, the old root can be unmounted only when \
nothing uses it; your own login shell does until you log out and in again. The worker waits \
this long (telling you who holds it), then leaves the old root mounted and the report says to \
run `reroot finish`."
    )]
    pub release_timeout: u64,
    /// Internal: run as the detached worker.
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: why the worker starts (start, resume, reexec).
    #[arg(long, hide = true, default_value = "start")]
    pub reason: String,
    /// Test hook: make this stage fail after its work, to test the rollback.
    #[arg(long, hide = true, value_name = "STAGE", value_parser = parse_stage)]
    pub inject_failure: Option<Stage>,
    /// Test hook: make the worker die after this stage's work, to test --resume.
    #[arg(long, hide = true, value_name = "STAGE", value_parser = parse_stage)]
    pub inject_crash: Option<Stage>,
    /// Internal: the attached command re-executed from the new root.
    #[arg(long, hide = true)]
    pub reexeced: bool,
    /// Internal: follow without answering (`reroot status --follow`).
    #[arg(long, hide = true)]
    pub watch_only: bool,
    /// Internal: log position to follow from (after a re-exec).
    #[arg(long, hide = true, default_value_t = 0)]
    pub log_offset: u64,
    /// Internal: events position to follow from (after a re-exec).
    #[arg(long, hide = true, default_value_t = 0)]
    pub events_offset: u64,
}

/// Run `reroot migrate`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    if args.worker {
        let r = worker::run(&args.state_dir, &args.reason);
        return Ok(match r {
            Ok(Outcome::Done) => Exit::Success,
            Ok(_) => Exit::Failure,
            Err(e) => {
                eprintln!("reroot migrate worker: {e}");
                Exit::of(e.kind())
            }
        });
    }
    if let Some(word) = &args.answer {
        return answer_pending(&args.state_dir, word == "yes", ctx);
    }
    if args.attach || args.reexeced {
        return attach(&args.state_dir, ctx, &Attach::from_args(&args));
    }
    if args.resume {
        let req = migrate::resume(&args.state_dir)?;
        if !ctx.json {
            eprintln!(
                "resuming the migration {} -> {}",
                req.source.display(),
                req.target.display()
            );
        }
        return attach(&args.state_dir, ctx, &Attach::from_args(&args));
    }
    let (Some(source), Some(target)) = (args.source.clone(), args.target.clone()) else {
        anyhow::bail!("SRC and DST are required");
    };
    let o = MigrateOptions {
        source,
        target,
        choices: Choices {
            grow: args.grow,
            new_uuid: args.new_uuid,
            mkfs: args.mkfs.map(super::transform::MkfsArg::kind),
            lossy: args.lossy,
            verify_full: args.verify_full,
            no_track: args.no_track,
            boot: args.boot,
        },
        yes: args.yes,
        force: args.force,
        state_dir: args.state_dir.clone(),
        confirm_timeout_secs: args.confirm_timeout,
        release_timeout_secs: args.release_timeout,
        inject_failure: args.inject_failure,
        inject_crash: args.inject_crash,
    };
    if args.dry_run {
        let plan = dry_run::dry_run(&o)?;
        if ctx.json {
            output::json(&plan)?;
        } else {
            print_plan(&plan);
        }
        return Ok(if plan.blockers.is_empty() {
            Exit::Success
        } else {
            Exit::Refused
        });
    }
    if !o.yes && !args.detach && (ctx.json || !std::io::stdin().is_terminal()) {
        return Err(reroot::Error::refused(
            "migrate asks before quiesce and before the pivot, and there is no terminal to ask on",
        )
        .hint("run it on a terminal, pass --yes, or --detach and answer with --answer")
        .into());
    }
    let req = migrate::request(&o)?;
    let follower = Follower::from_end(&req.state_dir);
    migrate::start(&req)?;
    if !ctx.json {
        eprintln!(
            "reroot migrate {} -> {}: the worker runs detached (log: {}); a dropped connection \
             does not stop it: `reroot status` or `reroot migrate --attach` from a new session",
            req.source.display(),
            req.target.display(),
            Paths::new(&req.state_dir).log.display()
        );
    }
    if args.detach {
        if ctx.json {
            output::json(&serde_json::json!({
                "state": "started",
                "journal": Paths::new(&req.state_dir).journal,
            }))?;
        }
        return Ok(Exit::Success);
    }
    let (lp, ep) = follower.positions();
    let mut a = Attach::from_args(&args);
    a.log_offset = lp;
    a.events_offset = ep;
    attach(&req.state_dir, ctx, &a)
}

/// `--answer`: answer the pending question.
fn answer_pending(state_dir: &Path, yes: bool, ctx: &Ctx) -> CmdResult {
    let paths = Paths::new(state_dir);
    let summary = reroot::exec::journal::read(&paths.journal)?
        .map(|p| reroot::exec::journal::summarize(&p.records))
        .transpose()?;
    let Some((stage, question)) = summary.and_then(|s| s.awaiting) else {
        return Err(
            reroot::Error::refused("no question is waiting for an answer")
                .hint("`reroot status` shows where the migration is")
                .into(),
        );
    };
    if migrate::worker_pid(&paths).is_none() {
        return Err(reroot::Error::refused(
            "the migration that asked is not running (its worker is gone)",
        )
        .hint("`reroot migrate --resume` asks again")
        .into());
    }
    migrate::answer(state_dir, stage, yes)?;
    if ctx.json {
        output::json(&serde_json::json!({ "stage": stage, "question": question, "yes": yes }))?;
    } else {
        println!("answered {} to: {question}", if yes { "yes" } else { "no" });
    }
    Ok(Exit::Success)
}

/// How to attach.
#[derive(Debug, Clone)]
pub struct Attach {
    /// Answer the worker's questions on this terminal.
    pub answer: bool,
    /// This process was re-executed after the pivot already.
    pub reexeced: bool,
    /// Log position to start from.
    pub log_offset: u64,
    /// Events position to start from.
    pub events_offset: u64,
    /// Follow until the migration ends (else: one look).
    pub follow: bool,
}

impl Attach {
    fn from_args(a: &Args) -> Self {
        Self {
            answer: !a.watch_only,
            reexeced: a.reexeced,
            log_offset: a.log_offset,
            events_offset: a.events_offset,
            follow: true,
        }
    }
}

fn ask(question: &str) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("\n{question}\n[y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(matches!(line.trim(), "y" | "Y" | "yes")),
    }
}

/// After the pivot, go on from the new root's reroot (so that this
/// command does not keep the old root busy). Returns only on failure.
fn reexec_follower(state_dir: &Path, ctx: &Ctx, f: &Follower, answer: bool) -> String {
    use std::os::unix::process::CommandExt;
    let Some(exe) = self_exe() else {
        return "the executable's path is unknown".into();
    };
    let _ = std::env::set_current_dir("/");
    let (lp, ep) = f.positions();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("migrate")
        .arg("--attach")
        .arg("--reexeced")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--log-offset")
        .arg(lp.to_string())
        .arg("--events-offset")
        .arg(ep.to_string());
    if ctx.json {
        cmd.arg("--json");
    }
    if !answer {
        cmd.arg("--watch-only");
    }
    if ctx.style == Style::Quiet {
        cmd.arg("--quiet");
    }
    cmd.exec().to_string()
}

/// The path of this executable as it was at startup (before any pivot).
fn self_exe() -> Option<PathBuf> {
    static EXE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| std::fs::read_link("/proc/self/exe").ok())
        .clone()
}

/// Where the worker's progress goes: its log lines (plain style), or its
/// events into a progress bar (a terminal); nothing when quiet.
struct Show {
    style: Style,
    bar: Option<(
        reroot::report::progress::Reporter,
        reroot::exec::event::EventSink,
    )>,
}

impl Show {
    fn new(ctx: &Ctx) -> Self {
        let mut s = Self {
            style: ctx.style,
            bar: None,
        };
        s.resume(ctx);
        s
    }

    fn show(&self, u: reroot::exec::migrate::follow::Update) {
        if matches!(self.style, Style::Plain { .. }) {
            for l in &u.log_lines {
                eprintln!("{l}");
            }
        }
        if let Some((_, sink)) = &self.bar {
            for e in u.events {
                sink.emit(e);
            }
        }
    }

    /// Let the bar draw what it has, and stop it (before a question).
    fn drain(&mut self) {
        if let Some((r, sink)) = self.bar.take() {
            drop(sink);
            r.finish();
        }
    }

    fn resume(&mut self, ctx: &Ctx) {
        if self.style == Style::Bar && self.bar.is_none() {
            let r = ctx.reporter();
            let sink = r.sink();
            self.bar = Some((r, sink));
        }
    }
}

/// Follow the migration in `state_dir`: progress and log on stderr, its
/// questions on the terminal, the report at the end.
pub fn attach(state_dir: &Path, ctx: &Ctx, a: &Attach) -> CmdResult {
    let _ = self_exe();
    let mut f = Follower::new(state_dir, a.log_offset, a.events_offset);
    let mut show = Show::new(ctx);
    let mut asked: Option<Stage> = None;
    let mut told_no_tty = false;
    let t0 = Instant::now();
    let mut gone_since: Option<Instant> = None;
    let mut last_release_look: Option<Instant> = None;
    let mut seen_journal = a.reexeced || a.log_offset > 0;
    let mut missing_since: Option<Instant> = None;
    let summary = loop {
        let mut u = f.poll()?;
        let summary = u.summary.take();
        let worker = u.worker;
        show.show(u);
        let Some(s) = summary else {
            // Between pivot_root and the move of /run back to its place,
            // /run is the new root's empty directory for a moment (long
            // under emulation): a journal seen before is waited for.
            let limit = if seen_journal { 120 } else { 10 };
            let since = *missing_since.get_or_insert_with(Instant::now);
            if t0.elapsed() > Duration::from_secs(10)
                && since.elapsed() > Duration::from_secs(limit)
            {
                return Err(reroot::Error::invalid(format!(
                    "no migration journal in {}",
                    state_dir.display()
                ))
                .hint("start one with `reroot migrate SRC DST`")
                .into());
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        seen_journal = true;
        missing_since = None;
        if s.outcome.is_some() || !a.follow {
            break s;
        }
        if let Some((stage, q)) = &s.awaiting {
            if a.answer && asked != Some(*stage) {
                // Show everything the worker said before it asked, then ask.
                std::thread::sleep(Duration::from_millis(300));
                let mut more = f.poll()?;
                more.summary = None;
                show.show(more);
                show.drain();
                let answer = ask(q);
                show.resume(ctx);
                match answer {
                    Some(yes) => {
                        migrate::answer(state_dir, *stage, yes)?;
                        asked = Some(*stage);
                    }
                    None if !told_no_tty => {
                        eprintln!(
                            "the migration waits for an answer ({stage}): run `reroot migrate \
                             --attach` on a terminal"
                        );
                        told_no_tty = true;
                    }
                    None => {}
                }
            }
        }
        if s.pivoted && !a.reexeced && self_exe().is_some_and(|p| p.is_file()) {
            show.drain();
            let why = reexec_follower(state_dir, ctx, &f, a.answer);
            eprintln!("could not re-execute from the new root ({why}); still following");
            return attach(
                state_dir,
                ctx,
                &Attach {
                    reexeced: true,
                    log_offset: f.positions().0,
                    events_offset: f.positions().1,
                    ..a.clone()
                },
            );
        }
        if let Some(exit) = own_session_only(state_dir, ctx, &s, &mut last_release_look)? {
            show.drain();
            return Ok(exit);
        }
        if worker.is_none() {
            let since = *gone_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                break s;
            }
        } else {
            gone_since = None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // What the worker wrote last.
    let mut last = f.poll()?;
    last.summary = None;
    show.show(last);
    show.drain();
    let paths = Paths::new(state_dir);
    let rep = report::build(
        &summary,
        migrate::worker_pid(&paths),
        reroot::exec::journal::now_ms(),
        &paths,
    );
    if ctx.json {
        output::json(&rep)?;
    } else {
        print_report(&rep);
    }
    Ok(exit_of(&rep))
}

/// While the worker waits in `finish` for the old root to be released: when
/// only this command's own login session holds it (this process, its
/// shell, its sshd session, anything else of the same login), say so and
/// end with [`Exit::Pending`] instead of waiting for ourselves. Looks every
/// 2 seconds; `None` while there is something else to wait for.
fn own_session_only(
    state_dir: &Path,
    ctx: &Ctx,
    s: &reroot::exec::journal::Summary,
    last: &mut Option<Instant>,
) -> anyhow::Result<Option<Exit>> {
    use reroot::exec::journal::StageStatus;
    let finishing = s.pivoted
        && s.outcome.is_none()
        && s.stage(Stage::Finish)
            .is_some_and(|f| f.status == StageStatus::Running);
    if !finishing || last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
        return Ok(None);
    }
    *last = Some(Instant::now());
    let put_old = &s.request.put_old;
    let Some(w) = reroot::exec::finish::release_wait(put_old, state_dir, std::process::id())?
    else {
        return Ok(None);
    };
    if !w.only_own_session() {
        return Ok(None);
    }
    let worker = migrate::worker_pid(&Paths::new(state_dir));
    if ctx.json {
        output::json(&serde_json::json!({
            "state": "pending-release",
            "exit_code": Exit::Pending as u8,
            "old_root": put_old,
            "own_session": w.own,
            "worker": worker,
            "finish": "the worker unmounts and re-identifies the old root by itself once this \
                       login session ends; `reroot status` shows it",
        }))?;
    } else {
        let who: Vec<String> = w.own.iter().map(|(p, c)| format!("{c} ({p})")).collect();
        println!(
            "reroot migrate: / is {} and every service was restarted on it. Only your own \
             login session still uses the old root at {}: {}.",
            s.request.target.display(),
            put_old.display(),
            who.join(", ")
        );
        println!(
            "Left to do: release the old root, give it a new UUID, check fstab. The worker{} \
             does it by itself as soon as you log out; log in again and `reroot status` shows \
             it done. (Or, from a new login once this one is closed: `reroot finish`.)",
            worker.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
    }
    Ok(Some(Exit::Pending))
}

/// The exit code for a report.
pub fn exit_of(r: &MigrateReport) -> Exit {
    match r.outcome {
        Some(Outcome::Done) => Exit::Success,
        Some(Outcome::Cancelled) => Exit::Refused,
        Some(Outcome::RollbackIncomplete) => Exit::Failure,
        Some(Outcome::RolledBack | Outcome::FailedAfterPivot) => r
            .failed
            .as_ref()
            .map_or(Exit::Failure, |f| Exit::of(f.error.to_error().kind())),
        None if r.worker.is_some() => Exit::Success,
        None => Exit::Interrupted,
    }
}

/// Print the plan of `--dry-run`.
pub fn print_plan(p: &MigratePlan) {
    println!(
        "reroot migrate {} -> {}: the plan (nothing is changed by --dry-run)",
        p.source.display(),
        p.target.display()
    );
    for (i, s) in p.stages.iter().enumerate() {
        println!();
        match &s.skipped {
            Some(why) => {
                println!("{}. {} (skipped: {why})", i + 1, s.stage);
                continue;
            }
            None => println!("{}. {}: {}", i + 1, s.stage, s.title),
        }
        if s.confirm {
            println!("   ask for confirmation first (unless --yes)");
        }
        for c in &s.commands {
            println!("   $ {c}");
        }
        println!(
            "   if it fails: {}",
            if s.on_failure.possible {
                "roll back"
            } else {
                "no rollback"
            }
        );
        for a in &s.on_failure.actions {
            println!("     - {a}");
        }
    }
    println!("\npoint of no return: {}", p.point_of_no_return);
    for w in &p.warnings {
        println!("warning: {w}");
    }
    if p.blockers.is_empty() {
        println!("\nnothing blocks: `reroot migrate` can start");
    } else {
        println!("\nblocked: the migration cannot start:");
        for b in &p.blockers {
            println!("  - {b}");
        }
    }
}

/// Print a report for humans.
pub fn print_report(r: &MigrateReport) {
    let headline = match r.outcome {
        Some(Outcome::Done) => format!("done: / is now {}", r.target.display()),
        Some(Outcome::RolledBack) => {
            "FAILED, rolled back: the system is as it was before the migration".to_owned()
        }
        Some(Outcome::Cancelled) => {
            "cancelled: the system is as it was before the migration".to_owned()
        }
        Some(Outcome::RollbackIncomplete) => {
            "FAILED, and the rollback is incomplete: the system is NOT entirely as it was"
                .to_owned()
        }
        Some(Outcome::FailedAfterPivot) => format!(
            "FAILED after the pivot: the system runs from {}; fix forward",
            r.target.display()
        ),
        None => r.state.clone(),
    };
    println!(
        "reroot migrate {} -> {}: {headline}",
        r.source.display(),
        r.target.display()
    );
    for s in &r.stages {
        if s.status == "pending" && r.outcome.is_some() {
            continue;
        }
        let time = s.seconds.map(|t| format!("{t:.1} s")).unwrap_or_default();
        let runs = if s.runs > 1 {
            format!(" ({} runs)", s.runs)
        } else {
            String::new()
        };
        println!("  {:<9} {:<8} {time:>8}{runs}", s.stage.name(), s.status);
        for n in s.notes.iter().take(6) {
            println!("              {n}");
        }
    }
    let h = reroot::plan::target::human_bytes;
    if let Some(w) = r.read_only_window_seconds {
        println!(
            "read-only window: {w:.1} s ({} copied inside it)",
            h(r.window_bytes)
        );
    }
    if r.precopy_rounds > 0 {
        println!(
            "live pre-copy: {} round(s); writes {}",
            r.precopy_rounds,
            match r.write_tracking.as_deref() {
                Some("tracked") => "tracked at the block layer".to_owned(),
                Some(why) => format!("not tracked ({why})"),
                None => "not tracked yet".to_owned(),
            }
        );
    }
    println!(
        "copied: {} (live pre-copy {}, delta {}); verified: {}",
        h(r.bytes_copied),
        h(r.bytes_precopied),
        h(r.bytes_delta),
        h(r.bytes_verified)
    );
    if !r.restarted.is_empty() {
        println!("restarted: {}", r.restarted.join(", "));
    }
    if let Some(f) = &r.failed {
        println!("failed: {}: {}", f.stage, f.error.message);
        if let Some(hint) = &f.error.hint {
            println!("  hint: {hint}");
        }
    }
    if let Some(rb) = &r.rollback {
        for u in &rb.undone {
            println!("rolled back: {u}");
        }
        for u in &rb.failed {
            println!("NOT rolled back: {u}");
        }
    }
    if let Some(q) = &r.awaiting {
        println!("waiting for an answer: {q}");
    }
    if !r.todo.is_empty() {
        println!("to do:");
        for t in &r.todo {
            println!("  - {t}");
        }
    }
    println!(
        "log: {}   journal: {}",
        r.log.display(),
        r.journal.display()
    );
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "migrate"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Migrate(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    fn fails(args: &[&str]) -> bool {
        let mut v = vec!["reroot", "migrate"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).is_err()
    }

    #[test]
    fn defaults() {
        let a = parse(&["/dev/sda2", "/dev/vg/root"]);
        assert_eq!(a.source, Some(PathBuf::from("/dev/sda2")));
        assert_eq!(a.target, Some(PathBuf::from("/dev/vg/root")));
        assert!(!a.grow && !a.new_uuid && !a.yes && !a.dry_run && !a.resume && !a.attach);
        assert_eq!(a.state_dir, PathBuf::from("/run/reroot"));
        assert_eq!((a.confirm_timeout, a.release_timeout), (600, 600));
        assert!(!a.worker && a.inject_failure.is_none());
    }

    #[test]
    fn verify_full_and_no_track() {
        let a = parse(&["a", "b"]);
        assert!(!a.verify_full && !a.no_track);
        assert!(parse(&["a", "b", "--verify-full"]).verify_full);
        assert!(parse(&["a", "b", "--no-track"]).no_track);
    }

    #[test]
    fn devices_are_required_unless_resuming_or_attaching() {
        assert!(fails(&[]));
        assert!(fails(&["/dev/sda2"]));
        assert!(parse(&["--resume"]).resume);
        assert!(parse(&["--attach"]).attach);
    }

    #[test]
    fn mkfs_and_lossy_flags() {
        use super::super::transform::MkfsArg;
        let a = parse(&["a", "b", "--mkfs", "xfs", "--lossy"]);
        assert_eq!(a.mkfs, Some(MkfsArg::Xfs));
        assert!(a.lossy);
        assert_eq!(parse(&["a", "b"]).mkfs, None);
        assert!(Cli::try_parse_from(["reroot", "migrate", "a", "b", "--lossy"]).is_err());
    }

    #[test]
    fn grow_and_new_uuid_flags() {
        let a = parse(&["a", "b", "--grow", "--new-uuid"]);
        assert!(a.grow && a.new_uuid);
    }

    #[test]
    fn force_flag() {
        assert!(parse(&["a", "b", "--force"]).force);
        assert!(!parse(&["a", "b"]).force);
    }

    #[test]
    fn yes_flag() {
        assert!(parse(&["a", "b", "--yes"]).yes);
        assert!(parse(&["a", "b", "-y"]).yes);
    }

    #[test]
    fn dry_run_flag() {
        assert!(parse(&["a", "b", "--dry-run"]).dry_run);
        assert!(fails(&["a", "b", "--dry-run", "--resume"]));
    }

    #[test]
    fn resume_and_attach_flags_conflict() {
        assert!(fails(&["--resume", "--attach"]));
        assert!(fails(&["--attach", "--dry-run"]));
    }

    #[test]
    fn state_dir_and_timeouts() {
        let a = parse(&[
            "a",
            "b",
            "--state-dir",
            "/run/x",
            "--confirm-timeout",
            "5",
            "--release-timeout",
            "7",
        ]);
        assert_eq!(a.state_dir, PathBuf::from("/run/x"));
        assert_eq!((a.confirm_timeout, a.release_timeout), (5, 7));
    }

    #[test]
    fn detach_and_answer_flags() {
        assert!(parse(&["a", "b", "--detach"]).detach);
        assert!(fails(&["a", "b", "--detach", "--attach"]));
        assert_eq!(parse(&["--answer", "yes"]).answer.as_deref(), Some("yes"));
        assert_eq!(parse(&["--answer", "no"]).answer.as_deref(), Some("no"));
        assert!(fails(&["--answer", "maybe"]));
        assert!(fails(&["--answer", "yes", "--resume"]));
    }

    #[test]
    fn json_flag() {
        let cli = Cli::try_parse_from(["reroot", "migrate", "a", "b", "--json"]).unwrap();
        assert!(cli.global.json);
    }

    #[test]
    fn hidden_worker_and_test_hooks() {
        let a = parse(&["--worker", "--reason", "reexec", "--state-dir", "/run/x"]);
        assert!(a.worker);
        assert_eq!(a.reason, "reexec");
        let a = parse(&["a", "b", "--inject-failure", "verify"]);
        assert_eq!(a.inject_failure, Some(Stage::Verify));
        assert!(fails(&["a", "b", "--inject-failure", "nope"]));
        assert_eq!(
            parse(&["a", "b", "--inject-crash", "copy"]).inject_crash,
            Some(Stage::Copy)
        );
        let a = parse(&[
            "--attach",
            "--reexeced",
            "--watch-only",
            "--log-offset",
            "10",
            "--events-offset",
            "3",
        ]);
        assert!(a.reexeced && a.watch_only);
        assert_eq!((a.log_offset, a.events_offset), (10, 3));
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("migrate")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("inject-") && !help.contains("--worker"));
        assert!(help.contains("point of no return"));
    }
}
