//! The migration report, built from the journal alone (so `reroot status`
//! shows the same report for a running, interrupted or finished migration):
//! time per stage, the read-only window, bytes copied and verified, what was
//! restarted, what failed and what the rollback did, and what the operator
//! still has to do.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Paths;
use crate::exec::journal::{ErrorRecord, Outcome, StageStatus, Summary};
use crate::plan::migrate::{Stage, skipped};

/// One stage in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageLine {
    /// The stage.
    pub stage: Stage,
    /// `pending`, `running`, `done`, `failed`, `skipped`.
    pub status: String,
    /// Wall time of its last run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Times run (more than one after a resume).
    pub runs: u32,
    /// What it did, in a few lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    /// The stage.
    pub stage: Stage,
    /// The error.
    pub error: ErrorRecord,
}

/// What the rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackReport {
    /// The failed stage it undid.
    pub after: Stage,
    /// It ended.
    pub done: bool,
    /// Everything was undone: the system is as it was.
    pub restored: bool,
    /// What was undone.
    pub undone: Vec<String>,
    /// What could not be undone.
    pub failed: Vec<String>,
}

/// The report (`--json` prints it; `migrate-report.json` holds it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrateReport {
    /// The migration reached its goal.
    pub ok: bool,
    /// `running`, `waiting`, `interrupted`, or the outcome.
    pub state: String,
    /// How it ended, when it did.
    pub outcome: Option<Outcome>,
    /// The root's device.
    pub source: PathBuf,
    /// The target.
    pub target: PathBuf,
    /// Every stage.
    pub stages: Vec<StageLine>,
    /// Seconds the root was read-only (so far, while it lasts).
    pub read_only_window_seconds: Option<f64>,
    /// Bytes written by the live pre-copy.
    pub bytes_precopied: u64,
    /// Bytes rewritten by the delta pass.
    pub bytes_delta: u64,
    /// All bytes written to the target.
    pub bytes_copied: u64,
    /// Bytes verified equal (read back in the pre-copy rounds and the
    /// window, and compared by the verify stage).
    pub bytes_verified: u64,
    /// Live pre-copy rounds (round 1 copies every used block).
    pub precopy_rounds: u64,
    /// Bytes the read-only window copied or compared: the final dirty set
    /// when writes were tracked, every used block otherwise.
    pub window_bytes: u64,
    /// `tracked`, or why writes were not tracked (the window then held a
    /// full delta pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_tracking: Option<String>,
    /// What was restarted or started again.
    pub restarted: Vec<String>,
    /// The failure, if any.
    pub failed: Option<Failed>,
    /// The rollback, if any.
    pub rollback: Option<RollbackReport>,
    /// The system is as it was before the migration (after a rollback).
    pub system_restored: Option<bool>,
    /// A question waiting for the operator.
    pub awaiting: Option<String>,
    /// What the operator still has to do.
    pub todo: Vec<String>,
    /// Seconds from start to the last record.
    pub total_seconds: f64,
    /// The worker's pid, while it runs.
    pub worker: Option<u32>,
    /// The journal.
    pub journal: PathBuf,
    /// The log.
    pub log: PathBuf,
    /// Set when this report comes from the copy kept on the root (the
    /// state directory was emptied, by a restart): that directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_copy: Option<PathBuf>,
}

fn status_name(s: StageStatus) -> &'static str {
    match s {
        StageStatus::Pending => "pending",
        StageStatus::Running => "running",
        StageStatus::Done => "done",
        StageStatus::Failed => "failed",
    }
}

/// Build the report from a journal summary. `worker`: the live worker's
/// pid, if any; `now_ms`: for a window still open.
pub fn build(s: &Summary, worker: Option<u32>, now_ms: u64, paths: &Paths) -> MigrateReport {
    let mut stages = Vec::new();
    for st in Stage::ALL {
        let line = match s.stage(st) {
            Some(x) => StageLine {
                stage: st,
                status: status_name(x.status).to_owned(),
                seconds: x.seconds,
                runs: x.runs,
                notes: x
                    .summary
                    .as_ref()
                    .map(|m| m.notes.clone())
                    .unwrap_or_default(),
            },
            None => StageLine {
                stage: st,
                status: if skipped(st, &s.request.choices).is_some() {
                    "skipped"
                } else {
                    "pending"
                }
                .to_owned(),
                seconds: None,
                runs: 0,
                notes: Vec::new(),
            },
        };
        stages.push(line);
    }
    let sum_of = |st: Stage| s.stage(st).and_then(|x| x.summary.as_ref());
    let bytes_precopied = sum_of(Stage::Precopy).map_or(0, |m| m.bytes_copied);
    let bytes_delta = sum_of(Stage::Copy).map_or(0, |m| m.bytes_copied);
    let bytes_verified = [Stage::Precopy, Stage::Copy, Stage::Verify]
        .into_iter()
        .filter_map(sum_of)
        .map(|m| m.bytes_verified)
        .fold(0u64, u64::saturating_add);
    let detail = |st: Stage| sum_of(st).and_then(|m| m.detail.as_ref());
    let precopy_rounds = detail(Stage::Precopy)
        .and_then(|d| d["rounds"].as_array())
        .map_or(0, |r| r.len() as u64);
    let window = detail(Stage::Copy);
    let window_bytes = window
        .and_then(|d| d["final_pass"]["bytes"].as_u64())
        .unwrap_or(bytes_delta_planned(window));
    let write_tracking = window.and_then(|d| {
        let t = &d["tracking"];
        if t["used"].as_bool()? {
            Some("tracked".to_owned())
        } else {
            t["reason"].as_str().map(str::to_owned)
        }
    });
    let mut restarted = Vec::new();
    let mut todo = Vec::new();
    for st in Stage::ALL {
        if let Some(m) = sum_of(st) {
            restarted.extend(m.restarted.iter().cloned());
            todo.extend(m.todo.iter().cloned());
        }
    }
    let failed = s.failed.and_then(|st| {
        s.stage(st)
            .and_then(|x| x.error.clone())
            .map(|error| Failed { stage: st, error })
    });
    let rollback = s.rollback_of.map(|after| {
        let (restored, undone, failed) =
            s.rollback_done
                .clone()
                .unwrap_or((false, Vec::new(), Vec::new()));
        RollbackReport {
            after,
            done: s.rollback_done.is_some(),
            restored,
            undone,
            failed,
        }
    });
    let state = match (s.outcome, &s.awaiting, worker) {
        (Some(o), _, _) => serde_json::to_value(o)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        (None, Some(_), Some(_)) => "waiting".to_owned(),
        (None, _, Some(_)) => "running".to_owned(),
        (None, _, None) => "interrupted".to_owned(),
    };
    match s.outcome {
        Some(Outcome::RolledBack) | Some(Outcome::Cancelled) => {
            todo.clear();
            if let Some(f) = &failed {
                todo.push(format!(
                    "fix what made the {} stage fail, then run `reroot migrate` again",
                    f.stage
                ));
            }
        }
        Some(Outcome::RollbackIncomplete) => {
            todo.clear();
            todo.push(
                "undo what the rollback could not (listed under rollback), e.g. with \
                 `reroot resume-services`"
                    .to_owned(),
            );
        }
        Some(Outcome::FailedAfterPivot) => todo.insert(
            0,
            "the system runs from the new root, but a stage after the pivot failed: see \
             `failed`, and fix forward (`reroot finish` can be run again)"
                .to_owned(),
        ),
        None if worker.is_none() => todo.insert(
            0,
            "the worker is gone: `reroot migrate --resume` continues from the last completed stage"
                .to_owned(),
        ),
        _ => {}
    }
    MigrateReport {
        ok: s.outcome.is_some_and(Outcome::ok),
        state,
        outcome: s.outcome,
        source: s.request.source.clone(),
        target: s.request.target.clone(),
        stages,
        read_only_window_seconds: s.read_only_seconds(now_ms),
        bytes_precopied,
        bytes_delta,
        bytes_copied: bytes_precopied.saturating_add(bytes_delta),
        bytes_verified,
        precopy_rounds,
        window_bytes,
        write_tracking,
        restarted,
        failed,
        system_restored: s.rollback_done.as_ref().map(|r| r.0),
        rollback,
        awaiting: s.awaiting.as_ref().map(|a| a.1.clone()),
        todo,
        total_seconds: s.last_ms.saturating_sub(s.started_ms) as f64 / 1000.0,
        worker,
        journal: paths.journal.clone(),
        log: paths.log.clone(),
        kept_copy: None,
    }
}

/// Turn a report built from the kept copy of the journal (`kept`, on the
/// root) into what it means when the state directory is gone: the machine
/// restarted (or `/run` was emptied) before the migration ended, and no
/// worker can resume it.
pub fn from_kept_copy(mut rep: MigrateReport, kept: &Path) -> MigrateReport {
    rep.kept_copy = Some(kept.to_path_buf());
    rep.worker = None;
    if rep.outcome.is_some() {
        return rep;
    }
    rep.state = "interrupted".to_owned();
    let running: Vec<String> = rep
        .stages
        .iter()
        .filter(|l| l.status == "running")
        .map(|l| l.stage.to_string())
        .collect();
    let pivoted = rep
        .stages
        .iter()
        .any(|l| l.stage == Stage::Pivot && l.status == "done");
    let at = if running.is_empty() {
        "between stages".to_owned()
    } else {
        format!("in the {} stage", running.join(", "))
    };
    rep.todo = vec![
        format!(
            "the migration was cut short {at} and its state directory is gone (the machine \
             restarted?); it cannot be resumed across a restart"
        ),
        if pivoted {
            "the pivot had happened: check which device / is (`findmnt /`); if it is the new \
             one, run `reroot finish` for fstab and the boot loader"
                .to_owned()
        } else {
            "the pivot had not happened, so the system started on its old root: check it \
             (`findmnt /`, `reroot check`), then start again with `reroot migrate SRC DST` \
             (the target holds a partial copy: add --force)"
                .to_owned()
        },
        format!(
            "this report is the copy kept in {}: it ends where the root went read-only, if it did",
            kept.display()
        ),
    ];
    rep
}

/// A delta pass's planned bytes (a copy report's `bytes_planned`), 0 if none.
fn bytes_delta_planned(detail: Option<&serde_json::Value>) -> u64 {
    detail
        .and_then(|d| d["bytes_planned"].as_u64())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::journal::{Entry, Record, Request, StageSummary, VERSION, summarize};
    use crate::plan::migrate::Choices;

    fn rec(seq: u64, at_ms: u64, entry: Entry) -> Record {
        Record { seq, at_ms, entry }
    }

    fn req() -> Request {
        Request {
            source: "/dev/a".into(),
            target: "/dev/b".into(),
            root: "/".into(),
            choices: Choices {
                grow: true,
                new_uuid: false,
                ..Choices::default()
            },
            yes: true,
            force: false,
            state_dir: "/run/reroot".into(),
            put_old: "/mnt/oldroot".into(),
            confirm_timeout_secs: 1,
            release_timeout_secs: 1,
            mnt_ns: "mnt:[1]".into(),
            exe: "/x".into(),
            inject_failure: None,
            inject_crash: None,
        }
    }

    fn done(seq: u64, at: u64, stage: Stage, summary: StageSummary) -> Record {
        rec(
            seq,
            at,
            Entry::StageDone {
                stage,
                seconds: 1.0,
                summary,
            },
        )
    }

    #[test]
    fn a_done_migration() {
        let mut recs = vec![rec(
            1,
            0,
            Entry::Started {
                version: VERSION,
                request: req(),
            },
        )];
        let mut seq = 1;
        let mut push = |at, stage, s: StageSummary| {
            seq += 1;
            recs.push(done(seq, at, stage, s));
        };
        push(1000, Stage::Check, StageSummary::default());
        push(
            2000,
            Stage::Precopy,
            StageSummary {
                bytes_copied: 100,
                ..Default::default()
            },
        );
        push(3000, Stage::Quiesce, StageSummary::default());
        push(
            3500,
            Stage::Copy,
            StageSummary {
                bytes_copied: 7,
                ..Default::default()
            },
        );
        push(
            4000,
            Stage::Verify,
            StageSummary {
                bytes_verified: 107,
                ..Default::default()
            },
        );
        push(4500, Stage::Grow, StageSummary::default());
        push(
            5500,
            Stage::Pivot,
            StageSummary {
                restarted: vec!["ssh.service".into()],
                todo: vec!["log out and in again".into()],
                ..Default::default()
            },
        );
        push(
            6000,
            Stage::Restart,
            StageSummary {
                restarted: vec!["systemctl start logger.service".into()],
                ..Default::default()
            },
        );
        push(
            7000,
            Stage::Finish,
            StageSummary {
                todo: vec!["run: update-initramfs -u".into()],
                ..Default::default()
            },
        );
        let n = recs.len() as u64 + 1;
        recs.push(rec(
            n,
            7001,
            Entry::Finished {
                outcome: Outcome::Done,
            },
        ));
        let s = summarize(&recs).unwrap();
        let r = build(&s, None, 99_999, &Paths::new("/run/reroot".as_ref()));
        assert!(r.ok);
        assert_eq!(r.state, "done");
        assert_eq!(r.read_only_window_seconds, Some(2.5));
        assert_eq!(
            (r.bytes_precopied, r.bytes_delta, r.bytes_copied),
            (100, 7, 107)
        );
        assert_eq!(r.bytes_verified, 107);
        assert_eq!(r.restarted.len(), 2);
        assert_eq!(
            r.todo,
            vec!["log out and in again", "run: update-initramfs -u"]
        );
        assert_eq!(r.stages.len(), 10);
        let id = r
            .stages
            .iter()
            .find(|x| x.stage == Stage::Identity)
            .unwrap();
        assert_eq!(id.status, "skipped");
        assert!((r.total_seconds - 7.001).abs() < 1e-9);
    }

    #[test]
    fn an_interrupted_migration_says_resume() {
        let recs = vec![
            rec(
                1,
                0,
                Entry::Started {
                    version: VERSION,
                    request: req(),
                },
            ),
            rec(
                2,
                5,
                Entry::StageStart {
                    stage: Stage::Check,
                },
            ),
        ];
        let s = summarize(&recs).unwrap();
        let r = build(&s, None, 10, &Paths::new("/r".as_ref()));
        assert_eq!(r.state, "interrupted");
        assert!(r.todo[0].contains("--resume"));
        let r = build(&s, Some(7), 10, &Paths::new("/r".as_ref()));
        assert_eq!(r.state, "running");
        assert!(r.todo.is_empty());
    }

    /// After a restart (the state directory gone), the report from the
    /// kept copy says what happened and does not offer `--resume`.
    #[test]
    fn a_kept_copy_after_a_restart_says_what_happened() {
        let recs = vec![
            rec(
                1,
                0,
                Entry::Started {
                    version: VERSION,
                    request: req(),
                },
            ),
            rec(
                2,
                5,
                Entry::StageStart {
                    stage: Stage::Precopy,
                },
            ),
        ];
        let s = summarize(&recs).unwrap();
        let kept = Paths::new("/run/reroot".as_ref()).kept_copy();
        assert_eq!(kept.journal, Path::new("/var/lib/reroot/migrate.journal"));
        let r = from_kept_copy(build(&s, None, 10, &kept), &kept.dir);
        assert_eq!(r.state, "interrupted");
        assert_eq!(r.kept_copy.as_deref(), Some(Path::new("/var/lib/reroot")));
        let todo = r.todo.join("\n");
        assert!(todo.contains("in the precopy stage"), "{todo}");
        assert!(todo.contains("started on its old root"), "{todo}");
        assert!(!todo.contains("--resume"), "{todo}");
        assert_eq!(r.journal, Path::new("/var/lib/reroot/migrate.journal"));
    }
}
