//! The migration worker (`reroot migrate --worker`): runs the stages in
//! order from where the journal says the migration stands, asks before
//! quiesce and before the pivot (through the journal and an answer file),
//! rolls back on a failure before the pivot, re-executes itself from the
//! new root after it, and writes the final report.
//!
//! Each stage's work is a call into its own module: `check`, `copy` (live,
//! then `--delta`), `quiesce`, `verify`, `grow`, `identity`, `pivot`
//! (whose own detached worker does the pivot and the restarts),
//! `quiesce::resume` (start again what quiesce stopped, on the new root),
//! `finish` (in `stages.rs`). Events go to the log and the events
//! file through the pump (`pump.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pump::spawn_pump;
use super::{Answer, Paths, check_forbidden_ns, mnt_ns, write_json};
use crate::error::{Error, ErrorKind, Result};
use crate::exec::check::{self, CheckOptions};
use crate::exec::event::EventSink;
use crate::exec::journal::{
    self, Entry, ErrorRecord, Journal, Outcome, Request, StageStatus, Summary,
};
use crate::exec::quiesce::{self, QuiesceOptions};
use crate::plan::migrate::{self as plan, ServiceTool, Stage};
use crate::plan::quiesce::DEFAULT_PREPARE_DIRS;
use crate::probe::SysRoot;

/// A stage failed: the error, and whether `pivot_root` had happened.
pub(super) struct Failure {
    pub(super) error: Box<Error>,
    pub(super) pivoted: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            error: Box::new(error),
            pivoted: false,
        }
    }
}

impl Failure {
    pub(super) fn after_pivot(error: Error) -> Self {
        Self {
            error: Box::new(error),
            pivoted: true,
        }
    }
}

pub(super) struct Worker {
    pub(super) sys: SysRoot,
    pub(super) paths: Paths,
    pub(super) req: Request,
    pub(super) journal: Journal,
    pub(super) events: EventSink,
    pub(super) pump: Option<JoinHandle<()>>,
    pub(super) summary: Summary,
    pub(super) reason: String,
    /// Stages done that run again (verify, on resume).
    pub(super) rerun: Vec<Stage>,
    /// The live pre-copy between its rounds and the read-only window (held
    /// in memory only: after a crash the window falls back to a full delta).
    pub(super) live: Option<crate::exec::precopy::Live>,
    /// The final pass copied and read back the tracked dirty set.
    pub(super) window_tracked: bool,
}

/// Run the worker on the journal in `state_dir`. `reason`: `start`,
/// `resume` or `reexec` (after the pivot, from the new root).
pub fn run(state_dir: &Path, reason: &str) -> Result<Outcome> {
    let _ = crate::sys::process::ignore_sighup();
    let paths = Paths::new(state_dir);
    let (journal, parsed) = Journal::open(&paths.journal)?;
    let summary = journal::summarize(&parsed.records)?;
    let (events, pump) = spawn_pump(&paths);
    let mut w = Worker {
        sys: SysRoot::live(),
        req: summary.request.clone(),
        paths,
        journal,
        events,
        pump,
        summary,
        reason: reason.to_owned(),
        rerun: Vec::new(),
        live: None,
        window_tracked: false,
    };
    // A crashed or killed run (this migration's, on --resume, or another's)
    // leaves its tracefs instance behind: remove those whose process is gone.
    for name in crate::exec::track::remove_stale(&w.sys) {
        w.say(&format!("removed the stale write-tracking instance {name}"));
    }
    if parsed.torn_tail {
        w.say("the journal's last line was cut short (a crash?): it was dropped");
    }
    let r = w.run();
    if let Err(e) = &r {
        w.say(&format!("worker stopped: {e}"));
    }
    w.close();
    r
}

impl Worker {
    pub(super) fn say(&self, msg: &str) {
        self.events.info(msg);
    }

    pub(super) fn close(&mut self) {
        self.events = EventSink::none();
        if let Some(t) = self.pump.take() {
            let _ = t.join();
        }
    }

    pub(super) fn append(&mut self, entry: Entry) -> Result<()> {
        let rec = self.journal.append(entry)?;
        // A copy on the root, which a restart does not empty as it does
        // /run; refused while the root is read-only, caught up afterwards.
        let _ = self.paths.keep_copy();
        // Keep the in-memory summary in step with the file.
        let parsed = journal::read(self.journal.path())?;
        if let Some(p) = parsed {
            self.summary = journal::summarize(&p.records)?;
        } else {
            let _ = rec;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Outcome> {
        if let Some(o) = self.summary.outcome {
            return Ok(o);
        }
        let ns = mnt_ns(&self.sys, "self")?;
        if ns != self.req.mnt_ns {
            return Err(Error::refused(format!(
                "this worker runs in mount namespace {ns}, the migration was started in {}",
                self.req.mnt_ns
            ))
            .hint("resume it from where it was started"));
        }
        check_forbidden_ns(&self.sys)?;
        let me = std::process::id();
        fs::write(&self.paths.pid, me.to_string())
            .map_err(|e| Error::io("writing the pid file", e).device(&self.paths.pid))?;
        self.append(Entry::Worker {
            pid: me,
            reason: self.reason.clone(),
        })?;
        self.say(&format!(
            "reroot migrate {} -> {}: worker {me} ({}), in its own session, SIGHUP ignored",
            self.req.source.display(),
            self.req.target.display(),
            self.reason
        ));
        // A failure recorded before an interruption: finish handling it.
        if let Some(failed) = self.summary.failed {
            if self.summary.rollback_done.is_none() {
                let o = self.after_failure(failed, self.summary.pivoted, false)?;
                return self.end(o);
            }
        }
        if self.reason == "resume" {
            self.prepare_resume();
        }
        loop {
            let mut done = self.summary.done();
            done.retain(|s| !self.rerun.contains(s));
            let Some(stage) = plan::next_stage(&done, &self.req.choices) else {
                return self.end(Outcome::Done);
            };
            if stage.confirm_before() && !self.confirm(stage)? {
                let o = self.after_failure(stage, false, true)?;
                return self.end(o);
            }
            if self.summary.stage(stage).map(|s| s.status) == Some(StageStatus::Running) {
                self.say(&format!("{stage}: it was interrupted; running it again"));
            }
            self.append(Entry::StageStart { stage })?;
            self.say(&format!("stage {stage}: {}", stage.title()));
            let t0 = Instant::now();
            let first_run = self.summary.stage(stage).is_some_and(|s| s.runs == 1);
            let result = self.run_stage(stage).and_then(|s| {
                if self.req.inject_crash == Some(stage) && first_run {
                    // Test hook (hidden `--inject-crash`): die as a crash
                    // would, the stage's work done but not journaled.
                    self.say(&format!("crash injected in the {stage} stage (test hook)"));
                    self.close();
                    std::process::exit(99);
                }
                if self.req.inject_failure == Some(stage) {
                    // Test hook (hidden `--inject-failure`): the stage's work
                    // is done; fail now so the rollback has it all to undo.
                    Err(Failure::from(Error::new(ErrorKind::Io(format!(
                        "failure injected after the {stage} stage (test hook --inject-failure)"
                    )))))
                } else {
                    Ok(s)
                }
            });
            let seconds = t0.elapsed().as_secs_f64();
            match result {
                Ok(summary) => {
                    self.rerun.retain(|s| *s != stage);
                    self.say(&format!("stage {stage}: done in {seconds:.1} s"));
                    self.append(Entry::StageDone {
                        stage,
                        seconds,
                        summary,
                    })?;
                    if stage == Stage::Pivot {
                        self.reexec_from_new_root();
                    }
                }
                Err(f) => {
                    let err = (*f.error).stage(stage.error_stage());
                    self.say(&format!("stage {stage}: FAILED: {err}"));
                    self.append(Entry::StageFailed {
                        stage,
                        seconds,
                        pivoted: f.pivoted,
                        error: ErrorRecord::of(&err),
                    })?;
                    let o = self.after_failure(stage, f.pivoted, false)?;
                    return self.end(o);
                }
            }
        }
    }

    /// On resume: re-verify what was copied when the copy is done but the
    /// copy has not been changed since (grow not started); find out what
    /// became of an interrupted pivot.
    fn prepare_resume(&mut self) {
        let started = |st: Stage, s: &Summary| {
            s.stage(st)
                .is_some_and(|x| x.status != StageStatus::Pending)
        };
        if self.summary.done().contains(&Stage::Copy)
            && !started(Stage::Grow, &self.summary)
            && !started(Stage::Identity, &self.summary)
            && !started(Stage::Pivot, &self.summary)
        {
            self.say("resume: the copy will be verified again before going on");
            self.rerun.push(Stage::Verify);
        }
    }

    fn end(&mut self, outcome: Outcome) -> Result<Outcome> {
        self.append(Entry::Finished { outcome })?;
        let report = super::report::build(&self.summary, None, journal::now_ms(), &self.paths);
        if let Err(e) = write_json(&self.paths.report, &report) {
            self.say(&format!("cannot write the report: {e}"));
        }
        self.say(&format!(
            "migration {}: report in {}",
            serde_json::to_string(&outcome)
                .unwrap_or_default()
                .trim_matches('"'),
            self.paths.report.display()
        ));
        let _ = fs::remove_file(&self.paths.pid);
        Ok(outcome)
    }

    /// Ask the operator before `stage`, unless `--yes` or already answered.
    fn confirm(&mut self, stage: Stage) -> Result<bool> {
        if let Some((_, yes, _)) = self.summary.answers.iter().rev().find(|a| a.0 == stage) {
            if *yes {
                return Ok(true);
            }
        }
        if self.req.yes {
            self.append(Entry::Answer {
                stage,
                yes: true,
                by: "--yes".into(),
            })?;
            return Ok(true);
        }
        let question = match stage {
            Stage::Quiesce => {
                self.show_quiesce_plan();
                format!(
                    "Stop the services above and remount {} read-only now? It stays read-only \
                     until the pivot (a failure before it puts everything back).",
                    self.req.root.display()
                )
            }
            _ => format!(
                "Pivot to {} now? This is the point of no return: afterwards the system runs \
                 from the copy and nothing is rolled back.",
                self.req.target.display()
            ),
        };
        let _ = fs::remove_file(&self.paths.answer);
        self.say(&format!(
            "waiting for confirmation ({stage}): answer on the terminal that started the \
             migration, or with `reroot migrate --attach` or `--answer yes|no`"
        ));
        // The lines above go through the pump: let them reach the log and
        // the events file before the question shows up in the journal.
        std::thread::sleep(Duration::from_millis(200));
        self.append(Entry::Await {
            stage,
            question: question.clone(),
        })?;
        let limit = Duration::from_secs(self.req.confirm_timeout_secs);
        let t0 = Instant::now();
        loop {
            if let Ok(b) = fs::read(&self.paths.answer) {
                let _ = fs::remove_file(&self.paths.answer);
                match serde_json::from_slice::<Answer>(&b) {
                    Ok(a) if a.stage == stage => {
                        self.append(Entry::Answer {
                            stage,
                            yes: a.yes,
                            by: "operator".into(),
                        })?;
                        self.say(&format!(
                            "{stage}: the operator said {}",
                            if a.yes { "yes" } else { "no" }
                        ));
                        return Ok(a.yes);
                    }
                    _ => self.say("ignored an answer to another question"),
                }
            }
            if t0.elapsed() >= limit {
                self.append(Entry::Answer {
                    stage,
                    yes: false,
                    by: "timeout".into(),
                })?;
                self.say(&format!(
                    "{stage}: no answer within {} s: not going on",
                    limit.as_secs()
                ));
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(super) fn quiesce_options(&self) -> QuiesceOptions {
        let mut prepare: Vec<PathBuf> = DEFAULT_PREPARE_DIRS.iter().map(PathBuf::from).collect();
        let put_old = self
            .req
            .put_old
            .strip_prefix("/")
            .unwrap_or(&self.req.put_old)
            .to_path_buf();
        if !prepare.contains(&put_old) {
            prepare.push(put_old);
        }
        QuiesceOptions {
            check: CheckOptions {
                root: self.req.root.clone(),
                ..CheckOptions::default()
            },
            state_file: self.paths.quiesce_state.clone(),
            force: false,
            prepare_dirs: prepare,
        }
    }

    pub(super) fn show_quiesce_plan(&self) {
        match quiesce::prepare(&self.sys, &self.quiesce_options()) {
            Ok((report, qplan)) => {
                let tool = ServiceTool::of(&report.init);
                self.say("quiesce will run:");
                for s in &qplan.steps {
                    self.say(&format!("  {}", plan::quiesce_command(s, tool)));
                }
                for f in &qplan.unresolved {
                    self.say(&format!("  still blocking: {}", f.summary));
                }
            }
            Err(e) => self.say(&format!("cannot plan quiesce now: {e}")),
        }
    }

    /// After the pivot, continue from the new root's copy of reroot, so
    /// the worker does not keep the old root busy. Returns only on failure.
    pub(super) fn reexec_from_new_root(&mut self) {
        let exe = self.req.exe.clone();
        if !exe.is_file() {
            self.say(&format!(
                "{} is not on the new root: the worker goes on from the old one",
                exe.display()
            ));
            return;
        }
        self.say(&format!("re-executing {} from the new root", exe.display()));
        self.close();
        let _ = std::env::set_current_dir("/");
        let err = reexec(&exe, &self.paths.dir);
        let (events, pump) = spawn_pump(&self.paths);
        self.events = events;
        self.pump = pump;
        self.say(&format!(
            "re-exec failed ({err}): going on from the old root"
        ));
    }
    /// Roll back (before the pivot) or record a failure after it.
    /// `cancelled`: the operator said no.
    fn after_failure(&mut self, stage: Stage, pivoted: bool, cancelled: bool) -> Result<Outcome> {
        if pivoted || !stage.undoable() {
            self.say(
                "past the point of no return: nothing is rolled back; the system runs from the \
                 new root",
            );
            return Ok(Outcome::FailedAfterPivot);
        }
        self.append(Entry::RollbackStart { stage })?;
        self.say(&format!("rolling back after the {stage} stage"));
        let mut undone = Vec::new();
        let mut failed = Vec::new();
        if self.paths.quiesce_state.exists() {
            match quiesce::State::load(&self.paths.quiesce_state) {
                Ok(state) => {
                    let init = state.map_or_else(
                        || check::init_of(&self.sys, &CheckOptions::default()),
                        |s| s.init,
                    );
                    let tool = ServiceTool::of(&init);
                    let mgr = quiesce::manager_for(&init);
                    match quiesce::resume(
                        &self.sys,
                        &self.paths.quiesce_state,
                        mgr.as_ref(),
                        &self.events,
                    ) {
                        Ok(out) => {
                            undone.extend(
                                out.undone
                                    .iter()
                                    .filter_map(|s| plan::undo_command(s, tool)),
                            );
                            failed.extend(out.failed);
                        }
                        Err(e) => failed.push(format!("undoing quiesce: {e}")),
                    }
                }
                Err(e) => failed.push(format!(
                    "reading {}: {e}",
                    self.paths.quiesce_state.display()
                )),
            }
        }
        match crate::probe::mountinfo::read(&self.sys, "self") {
            Ok(ms) => {
                if let Some(m) = ms.iter().rev().find(|m| m.mount_point == self.req.root) {
                    if m.is_read_only() {
                        failed.push(format!("{} is still read-only", self.req.root.display()));
                    }
                }
            }
            Err(e) => failed.push(format!("reading mountinfo: {e}")),
        }
        let restored = failed.is_empty();
        for u in &undone {
            self.say(&format!("rollback: done: {u}"));
        }
        for f in &failed {
            self.say(&format!("rollback: FAILED: {f}"));
        }
        self.append(Entry::RollbackDone {
            restored,
            undone,
            failed,
        })?;
        Ok(if !restored {
            Outcome::RollbackIncomplete
        } else if cancelled {
            Outcome::Cancelled
        } else {
            Outcome::RolledBack
        })
    }
}

fn reexec(exe: &Path, state_dir: &Path) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &std::ffi::OsStr| CString::new(p.as_bytes()).ok();
    let (Some(prog), Some(dir)) = (c(exe.as_os_str()), c(state_dir.as_os_str())) else {
        return "path with a NUL byte".into();
    };
    let word = |w: &str| CString::new(w).unwrap_or_default();
    let args = [
        prog.clone(),
        word("migrate"),
        word("--worker"),
        word("--reason"),
        word("reexec"),
        word("--state-dir"),
        dir,
    ];
    match nix::unistd::execv(&prog, &args) {
        Ok(never) => match never {},
        Err(e) => e.desc().to_owned(),
    }
}
