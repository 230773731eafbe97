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
//! `finish`. Events go to the log and the events file through a pump thread.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::follow::WireEvent;
use super::{Answer, Paths, check_forbidden_ns, ensure_root_device, mnt_ns, write_json};
use crate::error::{Error, ErrorKind, Result};
use crate::exec::check::{self, CheckOptions};
use crate::exec::copy::{self, CopyOptions, VerifyMode};
use crate::exec::event::{Event, EventSink, Unit};
use crate::exec::finish::{self, FinishOptions};
use crate::exec::journal::{
    self, Entry, ErrorRecord, Journal, Outcome, Request, StageStatus, StageSummary, Summary,
};
use crate::exec::pivot::{self, ActionLog, PivotOptions, PivotReport, RestartMode};
use crate::exec::quiesce::{self, QuiesceOptions};
use crate::exec::services::Status;
use crate::plan::migrate::{self as plan, ServiceTool, Stage};
use crate::plan::pivot::RestartClass;
use crate::plan::preflight::{Category, Severity};
use crate::plan::quiesce::DEFAULT_PREPARE_DIRS;
use crate::probe::SysRoot;

/// The pump: events from the stages to the log (human lines) and to the
/// events file (JSON lines, progress at most 5 per second).
fn spawn_pump(paths: &Paths) -> (EventSink, Option<JoinHandle<()>>) {
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    let ev_path = paths.events.clone();
    let log_path = paths.log.clone();
    let thread = std::thread::Builder::new()
        .name("reroot-migrate-pump".into())
        .spawn(move || {
            let mut out = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&ev_path)
                .ok();
            let mut log = ActionLog::open(&log_path);
            let mut phase: Option<(String, Option<u64>, Unit)> = None;
            let mut last_event = Instant::now();
            let mut last_line = Instant::now();
            for ev in rx {
                let write = match &ev {
                    Event::PhaseStart { name, total, unit } => {
                        let size = match (total, unit) {
                            (Some(t), Unit::Bytes) => {
                                format!(" ({})", crate::plan::target::human_bytes(*t))
                            }
                            _ => String::new(),
                        };
                        log.line(&format!("{name}: started{size}"));
                        phase = Some((name.clone(), *total, *unit));
                        last_line = Instant::now();
                        true
                    }
                    Event::Progress { done } => {
                        if last_line.elapsed() >= Duration::from_secs(5) {
                            if let Some((name, total, unit)) = &phase {
                                log.line(&progress_line(name, *done, *total, *unit));
                            }
                            last_line = Instant::now();
                        }
                        let due = last_event.elapsed() >= Duration::from_millis(200);
                        if due {
                            last_event = Instant::now();
                        }
                        due
                    }
                    Event::PhaseEnd {
                        name,
                        done,
                        elapsed,
                    } => {
                        let unit = phase.as_ref().map_or(Unit::Items, |p| p.2);
                        log.line(&format!(
                            "{name}: done, {} in {:.1} s",
                            amount(*done, unit),
                            elapsed.as_secs_f64()
                        ));
                        phase = None;
                        true
                    }
                    Event::Info(m) => {
                        log.line(m);
                        true
                    }
                    Event::Warning(m) => {
                        log.line(&format!("warning: {m}"));
                        true
                    }
                };
                if write {
                    if let (Some(f), Ok(line)) =
                        (out.as_mut(), serde_json::to_string(&WireEvent::from(&ev)))
                    {
                        let _ = writeln!(f, "{line}");
                    }
                }
            }
        })
        .ok();
    (EventSink::new(tx), thread)
}

fn amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => crate::plan::target::human_bytes(n),
        Unit::Percent => format!("{n}%"),
        Unit::Items => n.to_string(),
    }
}

fn progress_line(name: &str, done: u64, total: Option<u64>, unit: Unit) -> String {
    match total {
        Some(t) if t > 0 && unit != Unit::Percent => format!(
            "{name}: {} of {} ({}%)",
            amount(done, unit),
            amount(t, unit),
            done.saturating_mul(100) / t
        ),
        _ => format!("{name}: {}", amount(done, unit)),
    }
}

/// A stage failed: the error, and whether `pivot_root` had happened.
struct Failure {
    error: Box<Error>,
    pivoted: bool,
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
    fn after_pivot(error: Error) -> Self {
        Self {
            error: Box::new(error),
            pivoted: true,
        }
    }
}

struct Worker {
    sys: SysRoot,
    paths: Paths,
    req: Request,
    journal: Journal,
    events: EventSink,
    pump: Option<JoinHandle<()>>,
    summary: Summary,
    reason: String,
    /// Stages done that run again (verify, on resume).
    rerun: Vec<Stage>,
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
    };
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
    fn say(&self, msg: &str) {
        self.events.info(msg);
    }

    fn close(&mut self) {
        self.events = EventSink::none();
        if let Some(t) = self.pump.take() {
            let _ = t.join();
        }
    }

    fn append(&mut self, entry: Entry) -> Result<()> {
        let rec = self.journal.append(entry)?;
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
        self.append(Entry::Await {
            stage,
            question: question.clone(),
        })?;
        self.say(&format!(
            "waiting for confirmation ({stage}): {question} (answer with `reroot migrate --attach`)"
        ));
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

    fn quiesce_options(&self) -> QuiesceOptions {
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

    fn show_quiesce_plan(&self) {
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

    fn run_stage(&mut self, stage: Stage) -> std::result::Result<StageSummary, Failure> {
        match stage {
            Stage::Check => self.stage_check().map_err(Failure::from),
            Stage::Precopy => self.stage_copy(true).map_err(Failure::from),
            Stage::Quiesce => self.stage_quiesce().map_err(Failure::from),
            Stage::Copy => self.stage_copy(false).map_err(Failure::from),
            Stage::Verify => self.stage_verify().map_err(Failure::from),
            Stage::Grow => {
                let r = crate::exec::grow::grow(
                    &self.req.target,
                    &crate::exec::grow::GrowOptions::default(),
                    &self.events,
                )?;
                Ok(StageSummary {
                    notes: vec![format!(
                        "{} grown from {} to {}",
                        self.req.target.display(),
                        crate::plan::target::human_bytes(r.old_bytes),
                        crate::plan::target::human_bytes(r.new_bytes)
                    )],
                    detail: serde_json::to_value(&r).ok(),
                    ..StageSummary::default()
                })
            }
            Stage::Identity => {
                let r = crate::exec::identity::set_new_uuid(&self.req.target, None, &self.events)?;
                Ok(StageSummary {
                    notes: vec![format!(
                        "{} has the new UUID {} (was {})",
                        self.req.target.display(),
                        r.new_uuid,
                        r.old_uuid
                    )],
                    todo: vec![format!(
                        "the new root has a new UUID ({}): make sure /etc/fstab and the \
                         bootloader name it (finish checks fstab)",
                        r.new_uuid
                    )],
                    detail: serde_json::to_value(&r).ok(),
                    ..StageSummary::default()
                })
            }
            Stage::Pivot => self.stage_pivot(),
            Stage::Restart => self.stage_restart().map_err(Failure::after_pivot),
            Stage::Finish => self.stage_finish().map_err(Failure::after_pivot),
        }
    }

    fn stage_check(&mut self) -> Result<StageSummary> {
        ensure_root_device(&self.sys, &self.req.source, &self.req.root)?;
        let opts = CheckOptions {
            root: self.req.root.clone(),
            target: Some(self.req.target.clone()),
            force: self.req.force,
            ..CheckOptions::default()
        };
        let report = check::check(&self.sys, &opts)?;
        let qplan = crate::plan::quiesce::plan(&report, &self.quiesce_options().prepare_dirs);
        let mut problems: Vec<String> = report
            .blockers()
            .filter(|f| f.category == Category::Target)
            .map(|f| format!("{} ({})", f.summary, f.advice))
            .collect();
        problems.extend(
            qplan
                .unresolved
                .iter()
                .filter(|f| f.category != Category::Target)
                .map(|f| format!("{} ({})", f.summary, f.advice)),
        );
        if !problems.is_empty() {
            return Err(Error::refused(format!(
                "the migration cannot start: {}",
                problems.join("; ")
            ))
            .hint(format!(
                "`reroot check --target {}` explains each; nothing was changed",
                self.req.target.display()
            )));
        }
        let mut notes = Vec::new();
        for f in report
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Info)
        {
            notes.push(format!("{}: {}", f.summary, f.advice));
        }
        self.say(&format!(
            "check: {} process(es) scanned, {} finding(s) that quiesce resolves, {} warning(s)",
            report.scanned, report.blockers, report.warnings
        ));
        Ok(StageSummary {
            notes,
            detail: serde_json::to_value(&report).ok(),
            ..StageSummary::default()
        })
    }

    fn stage_copy(&mut self, live: bool) -> Result<StageSummary> {
        let opts = if live {
            // The target was checked (no signature) by the check stage; a
            // re-run after an interruption finds our own partial copy there.
            CopyOptions {
                live: true,
                verify: VerifyMode::None,
                force: true,
                ..CopyOptions::default()
            }
        } else {
            CopyOptions {
                delta: true,
                verify: VerifyMode::Hash,
                ..CopyOptions::default()
            }
        };
        let r = copy::copy(
            &self.req.source,
            std::slice::from_ref(&self.req.target),
            &opts,
            &self.events,
        )?;
        let mut notes = r.warnings.clone();
        notes.push(format!(
            "{}: {} written, {} unchanged, {} of {} used, {:.1} s",
            if live { "live pre-copy" } else { "delta pass" },
            crate::plan::target::human_bytes(r.bytes_written),
            crate::plan::target::human_bytes(r.bytes_unchanged),
            crate::plan::target::human_bytes(r.map.used_bytes),
            crate::plan::target::human_bytes(r.map.device_bytes),
            r.seconds
        ));
        Ok(StageSummary {
            bytes_copied: r.bytes_written,
            notes,
            detail: serde_json::to_value(&r).ok(),
            ..StageSummary::default()
        })
    }

    fn stage_verify(&mut self) -> Result<StageSummary> {
        let r = copy::verify(
            &self.req.source,
            &self.req.target,
            &CopyOptions::default(),
            &self.events,
        )?;
        if let Some(e) = r.mismatch_error() {
            return Err(e);
        }
        Ok(StageSummary {
            bytes_verified: r.bytes_verified,
            notes: vec![format!(
                "{} verified equal (xxh3 digest {})",
                crate::plan::target::human_bytes(r.bytes_verified),
                r.digest
            )],
            detail: serde_json::to_value(&r).ok(),
            ..StageSummary::default()
        })
    }

    fn stage_quiesce(&mut self) -> Result<StageSummary> {
        let opts = self.quiesce_options();
        let (report, qplan) = quiesce::prepare(&self.sys, &opts)?;
        let mgr = quiesce::manager_for(&report.init);
        let out = quiesce::quiesce(&self.sys, &opts, &qplan, mgr.as_ref(), &self.events)?;
        if !out.read_only {
            let who: Vec<String> = out
                .holders
                .iter()
                .map(|f| format!("{} ({})", f.summary, f.advice))
                .collect();
            return Err(Error::new(ErrorKind::Busy(format!(
                "the remount of {} read-only was refused; still in use: {}",
                self.req.root.display(),
                who.join("; ")
            ))));
        }
        self.say(&format!(
            "{} is read-only: the read-only window starts",
            self.req.root.display()
        ));
        let tool = ServiceTool::of(&report.init);
        Ok(StageSummary {
            notes: out
                .done
                .iter()
                .map(|s| plan::quiesce_command(s, tool))
                .chain(out.notes.iter().cloned())
                .collect(),
            detail: serde_json::to_value(&out).ok(),
            ..StageSummary::default()
        })
    }

    fn pivot_options(&self) -> PivotOptions {
        let mut o = PivotOptions::new(&self.req.target);
        o.put_old = self.req.put_old.clone();
        o.state_dir = self.req.state_dir.clone();
        o.restart = RestartMode::Auto;
        o
    }

    fn stage_pivot(&mut self) -> std::result::Result<StageSummary, Failure> {
        if self.req.inject_failure == Some(Stage::Pivot) {
            // Test hook: the last moment before the point of no return.
            return Err(Failure::from(Error::new(ErrorKind::Io(
                "failure injected before pivot_root (test hook --inject-failure)".into(),
            ))));
        }
        let o = self.pivot_options();
        let mut moment_ms = None;
        let report = match self.interrupted_pivot_result() {
            Some(r) => r,
            None => {
                let events = self.events.clone();
                pivot::launch(&o, &mut |line: &str| {
                    let text = strip_log_prefix(line);
                    if text.starts_with("pivoted:") {
                        moment_ms = log_time_ms(line);
                    }
                    events.info(format!("pivot: {text}"));
                })?
            }
        };
        if !report.pivoted {
            let e = report
                .to_error()
                .unwrap_or_else(|| Error::new(ErrorKind::Io("the pivot did not happen".into())));
            let e = if report.rolled_back {
                e.hint("the pivot undid its own steps; the rollback undoes quiesce")
            } else {
                e
            };
            return Err(Failure::from(e));
        }
        self.say(&format!(
            "pivoted: / is {} now; the read-only window ends",
            self.req.target.display()
        ));
        let restarted: Vec<String> = report
            .restarts
            .iter()
            .filter(|r| r.status == Status::Done)
            .map(|r| match &r.unit {
                Some(u) => format!("{u} (restarted)"),
                None => "init (re-executed)".to_owned(),
            })
            .collect();
        let mut todo = Vec::new();
        for g in &report.remaining {
            let who = g.unit.clone().unwrap_or_else(|| g.comms.join(", "));
            match g.class {
                RestartClass::Session => todo.push(format!(
                    "log out and in again: {who} (pids {:?}) still runs from the old root",
                    g.pids
                )),
                RestartClass::Reroot => {}
                _ => todo.push(format!(
                    "{who} (pids {:?}) still runs from the old root: {}",
                    g.pids, g.note
                )),
            }
        }
        Ok(StageSummary {
            restarted,
            todo,
            notes: report.warnings.clone(),
            detail: serde_json::to_value(&report).ok(),
            moment_ms,
            ..StageSummary::default()
        })
    }

    /// After an interruption in the pivot stage: the pivot's own result, or
    /// (when `/` is the target already) a note that it happened.
    fn interrupted_pivot_result(&self) -> Option<PivotReport> {
        let st = self.summary.stage(Stage::Pivot)?;
        if st.runs < 2 {
            return None;
        }
        let path = self.req.state_dir.join("result.json");
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(text) = fs::read_to_string(&path) {
                if let Ok(r) = serde_json::from_str::<PivotReport>(&text) {
                    return Some(r);
                }
            }
            let alive = fs::read_to_string(self.req.state_dir.join("worker.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// After the pivot, continue from the new root's copy of reroot, so
    /// the worker does not keep the old root busy. Returns only on failure.
    fn reexec_from_new_root(&mut self) {
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

    fn stage_restart(&mut self) -> Result<StageSummary> {
        let mut summary = StageSummary::default();
        let mut problems = Vec::new();
        let pivot: Option<PivotReport> = self
            .summary
            .stage(Stage::Pivot)
            .and_then(|s| s.summary.as_ref())
            .and_then(|s| s.detail.clone())
            .and_then(|v| serde_json::from_value(v).ok());
        if let Some(p) = &pivot {
            for r in &p.restarts {
                if let Status::Failed(why) = &r.status {
                    problems.push(format!(
                        "restart of {} failed: {why}",
                        r.unit.as_deref().unwrap_or("init")
                    ));
                }
            }
            for c in p.sshd.iter().filter(|c| !c.listening) {
                problems.push(format!(
                    "{} does not listen again on {:?}: do not log out",
                    c.unit, c.ports
                ));
            }
        }
        // Start again, on the new root, what quiesce stopped; swap on,
        // mount again. `/` is the new root now, read-write: the remount
        // step's undo finds nothing to do.
        if self.paths.quiesce_state.exists() {
            let init = quiesce::State::load(&self.paths.quiesce_state)?.map_or_else(
                || check::init_of(&self.sys, &CheckOptions::default()),
                |s| s.init,
            );
            let mgr = quiesce::manager_for(&init);
            let out = quiesce::resume(
                &self.sys,
                &self.paths.quiesce_state,
                mgr.as_ref(),
                &self.events,
            )?;
            for s in &out.undone {
                match s {
                    crate::plan::quiesce::Step::RemountReadOnly { .. } => {}
                    crate::plan::quiesce::Step::StopService { service, units } => {
                        if units.is_empty() {
                            summary
                                .restarted
                                .push(format!("{} (started again)", service.name()));
                        }
                        summary
                            .restarted
                            .extend(units.iter().map(|u| format!("{u} (started again)")));
                    }
                    other => summary.restarted.extend(other.undo_description()),
                }
            }
            summary.notes.extend(out.notes);
            problems.extend(out.failed);
        }
        if !problems.is_empty() {
            return Err(Error::tool(problems.join("; ")).hint(
                "the system runs from the new root; restart these by hand (`reroot status` lists them)",
            ));
        }
        Ok(summary)
    }

    fn stage_finish(&mut self) -> Result<StageSummary> {
        let fo = FinishOptions {
            put_old: self.req.put_old.clone(),
            state_dir: self.req.state_dir.clone(),
            keep_old_identity: self.req.choices.new_uuid,
            bootloader: None,
        };
        let deadline = Instant::now() + Duration::from_secs(self.req.release_timeout_secs);
        let mut last_error = String::new();
        let r = loop {
            let r = finish::finish(&fo)?;
            match &r.error {
                Some(e) if !r.unmounted && Instant::now() < deadline => {
                    if *e != last_error {
                        self.say(&format!(
                            "finish: waiting for the old root to be released: {e}"
                        ));
                        self.say(
                            "finish: if your own session is listed, log out and in again; \
                             `reroot status` shows where the migration is",
                        );
                        last_error.clone_from(e);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                _ => break r,
            }
        };
        let mut s = StageSummary {
            detail: serde_json::to_value(&r).ok(),
            notes: r.warnings.clone(),
            ..StageSummary::default()
        };
        if let Some(e) = &r.error {
            if r.unmounted {
                return Err(r.to_error().unwrap_or_else(|| Error::tool(e.clone())));
            }
            s.todo.push(format!(
                "the old root is still mounted at {} ({e}): log out and in again, then run \
                 `reroot finish`",
                self.req.put_old.display()
            ));
        } else {
            s.notes.push(format!(
                "the old root was unmounted and released{}",
                if self.req.choices.new_uuid {
                    String::new()
                } else {
                    format!(
                        "; it is now UUID {} LABEL {}",
                        r.old_identity_after.uuid.as_deref().unwrap_or("?"),
                        r.old_identity_after.label.as_deref().unwrap_or("?")
                    )
                }
            ));
        }
        for c in &r.boot.commands {
            s.todo.push(format!("run: {}", c.join(" ")));
        }
        for n in &r.boot.notes {
            s.todo.push(n.clone());
        }
        if let Some(crate::plan::finish::FstabVerdict::Warn { why }) = &r.fstab {
            s.todo.push(format!("check /etc/fstab: {why}"));
        }
        Ok(s)
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

/// The time of a pivot log line (`[secs.ms] ...`), ms since the epoch.
fn log_time_ms(line: &str) -> Option<u64> {
    let stamp = line.strip_prefix('[')?.split_once(']')?.0;
    let (s, ms) = stamp.split_once('.')?;
    s.parse::<u64>()
        .ok()?
        .checked_mul(1000)?
        .checked_add(ms.parse().ok()?)
}

/// Remove the `[secs.ms] [pid] ` prefix of a pivot log line.
fn strip_log_prefix(line: &str) -> &str {
    let mut rest = line;
    for _ in 0..2 {
        if let Some(r) = rest.strip_prefix('[') {
            if let Some((_, after)) = r.split_once("] ") {
                rest = after;
            }
        }
    }
    rest
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivot_log_prefixes_are_stripped() {
        assert_eq!(
            strip_log_prefix("[1700.123] [42] pivot_root done"),
            "pivot_root done"
        );
        assert_eq!(strip_log_prefix("plain"), "plain");
        assert_eq!(strip_log_prefix("[x"), "[x");
        assert_eq!(log_time_ms("[1700.123] [42] pivoted: x"), Some(1_700_123));
        assert_eq!(log_time_ms("pivoted"), None);
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line("copy", 1 << 20, Some(4 << 20), Unit::Bytes),
            "copy: 1 MiB of 4 MiB (25%)"
        );
        assert_eq!(
            progress_line("fsck", 40, Some(100), Unit::Percent),
            "fsck: 40%"
        );
    }
}
