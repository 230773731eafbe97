//! The work of each stage, as the worker runs it: a call into the stage's
//! own module (`check`, `copy`, `quiesce`, `verify`, `grow`, `identity`,
//! `pivot`, `quiesce::resume`, `finish`) and the [`StageSummary`] it leaves
//! in the journal for the report.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::ensure_root_device;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::check::{self, CheckOptions};
use crate::exec::copy::{self, CopyOptions, VerifyMode};
use crate::exec::finish::{self, FinishOptions};
use crate::exec::journal::StageSummary;
use crate::exec::pivot::{self, PivotOptions, PivotReport, RestartMode};
use crate::exec::precopy::{Live, PrecopyOptions, PrecopyReport};
use crate::exec::quiesce;
use crate::exec::services::Status;
use crate::exec::track::TrackOptions;
use crate::exec::transform::{self, Pass, TransformOptions};
use crate::plan::migrate::{self as plan, ServiceTool, Stage};
use crate::plan::pivot::RestartClass;
use crate::plan::preflight::{Category, Severity};
use crate::plan::target::human_bytes;
use crate::plan::transform::MkfsType;

use super::worker::{Failure, Worker};

impl Worker {
    pub(super) fn run_stage(&mut self, stage: Stage) -> std::result::Result<StageSummary, Failure> {
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

    pub(super) fn stage_check(&mut self) -> Result<StageSummary> {
        ensure_root_device(&self.sys, &self.req.source, &self.req.root)?;
        let opts = CheckOptions {
            root: self.req.root.clone(),
            target: Some(self.req.target.clone()),
            force: self.req.force,
            mkfs: self.req.choices.mkfs,
            new_uuid: self.req.choices.new_uuid,
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

    pub(super) fn stage_copy(&mut self, live: bool) -> Result<StageSummary> {
        if let Some(kind) = self.req.choices.mkfs {
            return self.stage_transform(kind, live);
        }
        if live {
            return self.stage_precopy();
        }
        if let Some(l) = self.live.take() {
            return self.stage_window(l);
        }
        // Without a live pre-copy in this process (tracking off, or the
        // worker restarted): a full delta pass in the window.
        let opts = CopyOptions {
            delta: true,
            verify: VerifyMode::Hash,
            ..CopyOptions::default()
        };
        let r = copy::copy(
            &self.req.source,
            std::slice::from_ref(&self.req.target),
            &opts,
            &self.events,
        )
        .map_err(|e| self.migration_hint(e))?;
        let mut notes = r.warnings.clone();
        notes.push(format!(
            "{}: {} written, {} unchanged, {} of {} used, {:.1} s",
            "delta pass",
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

    /// copy's own hint ("rerun with --delta") is wrong inside a migration:
    /// it rolls back, and the way on is a new migration.
    fn migration_hint(&self, e: crate::Error) -> crate::Error {
        if e.hint_text().is_some_and(|h| h.contains("--delta")) {
            e.hint(format!(
                "the migration rolls back; {} holds a partial copy, so a new \
                 `reroot migrate` needs --force once the device is fixed",
                self.req.target.display()
            ))
        } else {
            e
        }
    }

    /// Track writes and copy in rounds while the system runs.
    fn stage_precopy(&mut self) -> Result<StageSummary> {
        // A pre-copy that runs again (after a crash or a kill) keeps what
        // the interrupted run wrote: its first round is a delta pass that
        // compares every chunk's hash on both sides and writes only those
        // that differ, so nothing is trusted that is not on the target.
        let resumed = self
            .summary
            .stage(Stage::Precopy)
            .is_some_and(|s| s.runs > 1);
        let opts = PrecopyOptions {
            // The target was checked (no signature) by the check stage; a
            // re-run after an interruption finds our own partial copy there.
            copy: CopyOptions {
                live: true,
                delta: resumed,
                force: true,
                ..CopyOptions::default()
            },
            track: !self.req.choices.no_track,
            tracker: TrackOptions::default().with_test_switch_from_env(),
            ..PrecopyOptions::default()
        };
        let l = Live::start(
            &self.req.source,
            std::slice::from_ref(&self.req.target),
            &opts,
            &self.events,
        )
        .map_err(|e| self.migration_hint(e))?;
        let r = l.report();
        let mut notes = r.warnings.clone();
        if resumed {
            notes.push(
                "live pre-copy resumed: round 1 kept the chunks already on the target".into(),
            );
        }
        notes.extend(precopy_notes(r));
        let s = StageSummary {
            bytes_copied: r.rounds.iter().map(|x| x.bytes_written).sum(),
            bytes_verified: r.rounds.iter().map(|x| x.bytes).sum(),
            notes,
            detail: serde_json::to_value(r).ok(),
            ..StageSummary::default()
        };
        self.live = Some(l);
        Ok(s)
    }

    /// Inside the read-only window: drain the tracker, copy and read back
    /// the final dirty set (or a full delta pass without tracking).
    fn stage_window(&mut self, l: Live) -> Result<StageSummary> {
        let r = l.finish(&self.events).map_err(|e| self.migration_hint(e))?;
        let mut notes = r.warnings.clone();
        let fp = r.final_pass.as_ref();
        self.window_tracked = r.tracking.used && fp.is_some_and(|f| f.kind == "dirty");
        if let Some(f) = fp {
            notes.push(if f.kind == "dirty" {
                format!(
                    "read-only window: final dirty pass of {} ({} newly allocated), read back equal, {:.2} s",
                    human_bytes(f.bytes),
                    human_bytes(f.newly_used_bytes),
                    f.seconds
                )
            } else {
                format!(
                    "read-only window: full delta pass over {} ({} written), {:.2} s",
                    human_bytes(f.bytes),
                    human_bytes(f.bytes_written),
                    f.seconds
                )
            });
        }
        let tracking = match &r.tracking.reason {
            None => format!("writes tracked: {} write event(s)", r.tracking.events),
            Some(why) => format!("writes not tracked: {why}"),
        };
        notes.push(tracking);
        Ok(StageSummary {
            bytes_copied: fp.map_or(0, |f| f.bytes_written),
            bytes_verified: fp.map_or(0, |f| f.bytes_verified),
            notes,
            detail: serde_json::to_value(&r).ok(),
            ..StageSummary::default()
        })
    }

    pub(super) fn stage_verify(&mut self) -> Result<StageSummary> {
        if let Some(kind) = self.req.choices.mkfs {
            return self.stage_verify_files(kind);
        }
        if self.window_tracked && !self.req.choices.verify_full {
            return Ok(StageSummary {
                notes: vec![
                    "every tracked write was copied and read back in the window;                      --verify-full compares every used block as well"
                        .into(),
                ],
                ..StageSummary::default()
            });
        }
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

    /// `--mkfs`: the pre-copy makes the filesystem and copies the files
    /// live; the copy stage (after quiesce) copies what changed and
    /// compares digests of both trees.
    fn stage_transform(&mut self, kind: MkfsType, live: bool) -> Result<StageSummary> {
        let opts = TransformOptions {
            kind,
            new_uuid: self.req.choices.new_uuid,
            lossy: self.req.choices.lossy,
            // The check stage judged the target's signature; a re-run finds
            // the filesystem an interrupted pre-copy made.
            force: true,
            verify: !live,
            ..TransformOptions::default()
        };
        let pass = if live { Pass::Live } else { Pass::Delta };
        let r = transform::pass(
            &self.req.source,
            &self.req.target,
            &opts,
            pass,
            &self.events,
        )?;
        if let Some(e) = r.outcome_error() {
            return Err(e);
        }
        let s = r.delta.as_ref().unwrap_or(&r.stats);
        let mut notes = r.notes.clone();
        let what = if live {
            format!("live pre-copy into a new {kind}")
        } else {
            "delta pass".to_owned()
        };
        notes.push(format!(
            "{what}: {} files ({}) written, {} unchanged, {} removed, {} dirs, {} hard links, {:.1} s",
            s.files,
            crate::plan::target::human_bytes(s.bytes),
            s.unchanged,
            s.removed,
            s.dirs,
            s.hard_links,
            r.seconds
        ));
        for l in &r.losses {
            notes.push(format!(
                "not kept by {kind}: {}: {}",
                l.path.display(),
                l.what
            ));
        }
        Ok(StageSummary {
            bytes_copied: s.bytes,
            notes,
            detail: serde_json::to_value(&r).ok(),
            ..StageSummary::default()
        })
    }

    /// `--mkfs`: compare the trees again (unless --lossy: the copy stage
    /// compared them, excusing the reported losses), then give the new
    /// root's fstab the new type.
    fn stage_verify_files(&mut self, kind: MkfsType) -> Result<StageSummary> {
        let mut notes = Vec::new();
        let mut bytes = 0;
        let mut detail = None;
        if !self.req.choices.lossy {
            let r = transform::verify_files(
                &self.req.source,
                &self.req.target,
                transform::tree::default_threads(),
                &self.events,
            )?;
            if let Some(e) = r.mismatch_error() {
                return Err(e);
            }
            notes.push(format!(
                "{} paths and {} of contents verified equal (tree digest {})",
                r.entries,
                crate::plan::target::human_bytes(r.bytes),
                r.source_digest
            ));
            bytes = r.bytes;
            detail = serde_json::to_value(&r).ok();
        }
        let uuid_change = if self.req.choices.new_uuid {
            let old = crate::exec::identity::identity_of(&self.req.source)?.uuid;
            let new = crate::exec::identity::identity_of(&self.req.target)?.uuid;
            Some((old, new))
        } else {
            None
        };
        notes.extend(transform::adapt_fstab(
            &self.req.target,
            kind,
            uuid_change.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        )?);
        Ok(StageSummary {
            bytes_verified: bytes,
            notes,
            todo: vec![crate::plan::transform::boot_needs(kind).to_owned()],
            detail,
            ..StageSummary::default()
        })
    }

    pub(super) fn stage_quiesce(&mut self) -> Result<StageSummary> {
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

    pub(super) fn stage_pivot(&mut self) -> std::result::Result<StageSummary, Failure> {
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
        let mut notes = report.warnings.clone();
        if let Some(id) = &report.old_identity {
            notes.push(format!(
                "old root {}: label {:?} -> {:?}, UUID {} -> {}{}",
                id.device.display(),
                id.label_before,
                id.label_after,
                id.uuid_before,
                id.uuid_after,
                id.uuid_deferred
                    .as_deref()
                    .map(|w| format!(" (a new UUID when it is unmounted: {w})"))
                    .unwrap_or_default()
            ));
        }
        match &report.shutdown_guard {
            Some(Ok(g)) => notes.push(format!("shutdown guard: {g}")),
            Some(Err(why)) => todo.push(why.clone()),
            None => {}
        }
        for n in &report.names {
            notes.push(format!(
                "{} ({}) -> {:?}{}",
                n.name,
                n.used_by,
                n.target,
                n.left
                    .as_deref()
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ));
        }
        Ok(StageSummary {
            restarted,
            todo,
            notes,
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

    pub(super) fn stage_restart(&mut self) -> Result<StageSummary> {
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

    pub(super) fn stage_finish(&mut self) -> Result<StageSummary> {
        let fo = FinishOptions {
            put_old: self.req.put_old.clone(),
            state_dir: self.req.state_dir.clone(),
            keep_old_identity: self.req.choices.new_uuid,
            bootloader: None,
            boot: self.req.choices.boot,
        };
        let deadline = Instant::now() + Duration::from_secs(self.req.release_timeout_secs);
        let mut last_error = String::new();
        let r = loop {
            let r = finish::finish(&fo)?;
            // Login sessions end when their users log out: wait for them
            // as long as it takes (the operator's command has returned by
            // then); --release-timeout bounds the wait for anything else.
            let only_sessions = !r.holders.is_empty()
                && r.namespaces.is_empty()
                && r.submounts.is_empty()
                && r.holders
                    .iter()
                    .all(|g| g.class == crate::plan::pivot::RestartClass::Session);
            match &r.error {
                Some(e) if !r.unmounted && (only_sessions || Instant::now() < deadline) => {
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
        for n in &r.names {
            match &n.left {
                None => s.notes.push(format!(
                    "{} ({}) names the new root only",
                    n.name, n.used_by
                )),
                Some(l) => s.todo.push(format!("{} ({}): {l}", n.name, n.used_by)),
            }
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

/// One line per pre-copy round, and why iterating stopped.
fn precopy_notes(r: &PrecopyReport) -> Vec<String> {
    let mut v: Vec<String> = r
        .rounds
        .iter()
        .map(|x| {
            format!(
                "pre-copy round {}: {} in {:.2} s, {} written meanwhile ({:.2} MB/s)",
                x.round,
                human_bytes(x.bytes),
                x.seconds,
                human_bytes(x.dirty_bytes),
                x.dirty_bytes_per_s / 1e6
            )
        })
        .collect();
    if let Some(s) = r.stopped {
        v.push(format!(
            "pre-copy rounds stopped: {}",
            match s {
                crate::plan::precopy::Stop::Small => "the dirty set is small",
                crate::plan::precopy::Stop::NotShrinking => "the dirty set stopped shrinking",
                crate::plan::precopy::Stop::MaxRounds => "the most rounds were run",
            }
        ));
    }
    v
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
}
