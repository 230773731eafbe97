//! The migration journal: an append-only file of checksummed JSON lines
//! under the state directory (`/run/reroot/migrate.journal`), one
//! [`Record`] per event (started, stage start/done/failed, confirmation
//! asked/answered, rollback, finished). Only the migration worker writes
//! it, one `write(2)` and `fdatasync(2)` per record; `reroot status`, the
//! attached operator command and `--resume` read it.
//!
//! Line format: `<xxh3-64 of JSON, 16 lowercase hex> <JSON>\n`, where JSON
//! is the record exactly as [`encode`] writes it. [`parse`] is strict:
//! a bad checksum, a non-canonical or unknown JSON form, a sequence number
//! out of order or a missing `started` record is [`ErrorKind::Corrupt`]
//! naming the line; only an unterminated last line (a write cut short by a
//! crash) is tolerated, reported, and cut off before the next append.
//! [`summarize`] folds the records into where the migration stands.
//!
//! May import `error`, `plan::migrate` and serde.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::plan::migrate::{Choices, Stage};

/// The journal's file name in the state directory.
pub const JOURNAL_FILE: &str = "migrate.journal";
/// Format version, in the `started` record.
pub const VERSION: u32 = 1;
/// Longest line accepted (a record with a stage report in it stays far below).
pub const MAX_LINE: usize = 4 << 20;

/// What the operator asked for: the `started` record, read again on resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The root's device.
    pub source: PathBuf,
    /// The target device.
    pub target: PathBuf,
    /// The root's mount point (`/`).
    pub root: PathBuf,
    /// `--grow`, `--new-uuid`.
    pub choices: Choices,
    /// `--yes`: do not ask before quiesce and pivot.
    pub yes: bool,
    /// `--force`: accept a target that carries a signature.
    pub force: bool,
    /// The state directory (journal, log, quiesce and pivot state).
    pub state_dir: PathBuf,
    /// Where the old root goes after the pivot.
    pub put_old: PathBuf,
    /// How long to wait for an answer before giving up (and rolling back).
    pub confirm_timeout_secs: u64,
    /// How long `finish` waits for the old root to be released.
    pub release_timeout_secs: u64,
    /// The mount namespace the migration was started in (`mnt:[N]`): the
    /// worker refuses to run in any other.
    pub mnt_ns: String,
    /// reroot's executable (re-executed from the new root after the pivot).
    pub exe: PathBuf,
    /// Test hook (hidden `--inject-failure STAGE`): fail this stage after
    /// its work is done, to exercise the rollback. Never set in normal use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_failure: Option<Stage>,
    /// Test hook (hidden `--inject-crash STAGE`): the worker exits abruptly
    /// after this stage's work, before it is journaled as done (first run
    /// only), to exercise `--resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_crash: Option<Stage>,
}

/// A failure, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRecord {
    /// `refused`, `io`, `busy`, ... (see [`kind_name`]).
    pub kind: String,
    /// The message.
    pub message: String,
    /// What to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The short name of an error kind (stable: journaled and in `--json`).
pub fn kind_name(k: &ErrorKind) -> &'static str {
    match k {
        ErrorKind::Corrupt(_) => "corrupt",
        ErrorKind::Incompatible(_) => "incompatible",
        ErrorKind::NeedsRecovery(_) => "needs-recovery",
        ErrorKind::Refused(_) => "refused",
        ErrorKind::Mismatch(_) => "mismatch",
        ErrorKind::Io(_) => "io",
        ErrorKind::Tool(_) => "tool",
        ErrorKind::InvalidInput(_) => "invalid",
        ErrorKind::Busy(_) => "busy",
        ErrorKind::Interrupted(_) => "interrupted",
    }
}

impl ErrorRecord {
    /// Record an error.
    pub fn of(e: &Error) -> Self {
        Self {
            kind: kind_name(e.kind()).to_owned(),
            message: e.to_string(),
            hint: e.hint_text().map(str::to_owned),
        }
    }

    /// Back to an [`Error`] of the same kind (for the exit code).
    pub fn to_error(&self) -> Error {
        let m = self.message.clone();
        let kind = match self.kind.as_str() {
            "corrupt" => ErrorKind::Corrupt(m),
            "incompatible" => ErrorKind::Incompatible(m),
            "needs-recovery" => ErrorKind::NeedsRecovery(m),
            "refused" => ErrorKind::Refused(m),
            "mismatch" => ErrorKind::Mismatch(m),
            "tool" => ErrorKind::Tool(m),
            "invalid" => ErrorKind::InvalidInput(m),
            "busy" => ErrorKind::Busy(m),
            "interrupted" => ErrorKind::Interrupted(m),
            _ => ErrorKind::Io(m),
        };
        let e = Error::new(kind);
        match &self.hint {
            Some(h) => e.hint(h.clone()),
            None => e,
        }
    }
}

/// What a finished stage left for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSummary {
    /// Bytes written to the target.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_copied: u64,
    /// Bytes compared (or read back) and found equal.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_verified: u64,
    /// Units and services restarted or started again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<String>,
    /// What the operator still has to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub todo: Vec<String>,
    /// Things to know.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The stage's own report (copy report, quiesce outcome, pivot report, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// When the stage's decisive moment happened, ms since the epoch (the
    /// pivot: `pivot_root`, which ends the read-only window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moment_ms: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every stage done: the system runs from the target.
    Done,
    /// A stage before the pivot failed and the system is as it was.
    RolledBack,
    /// The operator said no (or did not answer) and the system is as it was.
    Cancelled,
    /// A rollback step failed: the system is not entirely as it was.
    RollbackIncomplete,
    /// A stage after the pivot failed: the system runs from the target; fix forward.
    FailedAfterPivot,
}

impl Outcome {
    /// The migration reached its goal.
    pub fn ok(self) -> bool {
        self == Outcome::Done
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Entry {
    /// The first record: what was asked.
    Started {
        /// Format version.
        version: u32,
        /// The request.
        request: Request,
    },
    /// A worker process took over (the first, a resumed one, or the one
    /// re-executed from the new root).
    Worker {
        /// Its pid.
        pid: u32,
        /// Why it started: `start`, `resume`, `reexec`.
        reason: String,
    },
    /// A stage started.
    StageStart {
        /// The stage.
        stage: Stage,
    },
    /// A stage ended well.
    StageDone {
        /// The stage.
        stage: Stage,
        /// Its wall time in seconds.
        seconds: f64,
        /// What it left for the report.
        summary: StageSummary,
    },
    /// A stage failed.
    StageFailed {
        /// The stage.
        stage: Stage,
        /// Its wall time in seconds.
        seconds: f64,
        /// `pivot_root` happened (pivot stage only): no rollback.
        pivoted: bool,
        /// The failure.
        error: ErrorRecord,
    },
    /// The worker waits for the operator's answer before `stage`.
    Await {
        /// The stage about to start.
        stage: Stage,
        /// The question.
        question: String,
    },
    /// The operator answered (or the wait timed out: `yes` false).
    Answer {
        /// The stage.
        stage: Stage,
        /// Go on.
        yes: bool,
        /// Who: `operator`, `--yes`, `timeout`.
        by: String,
    },
    /// A rollback started after a failure in `stage`.
    RollbackStart {
        /// The failed stage.
        stage: Stage,
    },
    /// A rollback ended.
    RollbackDone {
        /// Everything was undone.
        restored: bool,
        /// What was undone.
        undone: Vec<String>,
        /// What could not be undone.
        failed: Vec<String>,
    },
    /// The last record.
    Finished {
        /// How it ended.
        outcome: Outcome,
    },
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// 1, 2, 3, ... in file order.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub entry: Entry,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The line for a record, newline included.
pub fn encode(rec: &Record) -> Result<String> {
    let json = serde_json::to_string(rec)
        .map_err(|e| Error::invalid(format!("encoding a journal record: {e}")))?;
    let sum = xxhash_rust::xxh3::xxh3_64(json.as_bytes());
    Ok(format!("{sum:016x} {json}\n"))
}

/// A parsed journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The records, in order.
    pub records: Vec<Record>,
    /// Bytes of whole, valid lines (where the next record goes).
    pub valid_len: usize,
    /// An unterminated last line was ignored (a write cut short).
    pub torn_tail: bool,
}

fn corrupt(line: usize, offset: usize, what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("journal line {line}: {what}"))
        .offset(u64::try_from(offset).unwrap_or(u64::MAX))
        .hint("the journal is written only by reroot; do not edit it. `reroot status` reads it")
}

fn parse_line(line: &[u8], n: usize, offset: usize) -> Result<Record> {
    if line.len() > MAX_LINE {
        return Err(corrupt(n, offset, "line too long"));
    }
    let (sum, rest) = match line.split_at_checked(16) {
        Some((s, r)) if r.first() == Some(&b' ') => (s, &r[1..]),
        _ => return Err(corrupt(n, offset, "no checksum")),
    };
    if !sum.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(corrupt(
            n,
            offset,
            "the checksum is not 16 lowercase hex digits",
        ));
    }
    // 16 lowercase hex digits (checked above) always parse; no fallback is used.
    let want = u64::from_str_radix(std::str::from_utf8(sum).unwrap_or("0"), 16).unwrap_or(0);
    if xxhash_rust::xxh3::xxh3_64(rest) != want {
        return Err(corrupt(n, offset, "checksum mismatch"));
    }
    let rec: Record =
        serde_json::from_slice(rest).map_err(|e| corrupt(n, offset, format!("bad record: {e}")))?;
    // Strict: only what `encode` writes is accepted, byte for byte.
    let again = serde_json::to_string(&rec).map_err(|e| corrupt(n, offset, e))?;
    if again.as_bytes() != rest {
        let at = again
            .bytes()
            .zip(rest.iter())
            .position(|(a, b)| a != *b)
            .unwrap_or(again.len().min(rest.len()));
        let near = String::from_utf8_lossy(&rest[at.saturating_sub(20)..rest.len().min(at + 20)])
            .into_owned();
        return Err(corrupt(
            n,
            offset,
            format!("record not in canonical form (at byte {at}: {near:?})"),
        ));
    }
    Ok(rec)
}

/// Parse a journal's bytes.
pub fn parse(data: &[u8]) -> Result<Parsed> {
    let mut records: Vec<Record> = Vec::new();
    let mut pos = 0usize;
    let mut torn_tail = false;
    while pos < data.len() {
        let rest = &data[pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            torn_tail = true;
            break;
        };
        let n = records.len().saturating_add(1);
        let rec = parse_line(&rest[..end], n, pos)?;
        if rec.seq != n as u64 {
            return Err(corrupt(
                n,
                pos,
                format!("sequence number {} where {n} was expected", rec.seq),
            ));
        }
        let is_start = matches!(rec.entry, Entry::Started { .. });
        if is_start != (n == 1) {
            return Err(corrupt(
                n,
                pos,
                if is_start {
                    "a second `started` record"
                } else {
                    "the first record is not `started`"
                },
            ));
        }
        if let Entry::Started { version, .. } = &rec.entry {
            if *version != VERSION {
                return Err(Error::incompatible(format!(
                    "journal format version {version}; this reroot reads version {VERSION}"
                )));
            }
        }
        records.push(rec);
        pos = pos.saturating_add(end).saturating_add(1);
    }
    if records.is_empty() && !torn_tail && !data.is_empty() {
        return Err(corrupt(1, 0, "empty"));
    }
    Ok(Parsed {
        records,
        valid_len: pos,
        torn_tail,
    })
}

/// Read and parse the journal at `path`; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Parsed>> {
    match fs::read(path) {
        Ok(b) => parse(&b).map(Some).map_err(|e| e.device(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading the journal", e).device(path)),
    }
}

/// The journal, open for appending. Only the worker holds one.
#[derive(Debug)]
pub struct Journal {
    file: fs::File,
    path: PathBuf,
    next_seq: u64,
}

impl Journal {
    /// Create a new journal (it must not exist) with its `started` record.
    pub fn create(path: &Path, request: Request) -> Result<(Journal, Record)> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("creating the journal", e).device(path))?;
        let mut j = Journal {
            file,
            path: path.to_path_buf(),
            next_seq: 1,
        };
        let rec = j.append(Entry::Started {
            version: VERSION,
            request,
        })?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok((j, rec))
    }

    /// Open an existing journal to continue it; returns its records. A torn
    /// last line is cut off first.
    pub fn open(path: &Path) -> Result<(Journal, Parsed)> {
        let parsed = read(path)?.ok_or_else(|| {
            Error::invalid("there is no migration journal")
                .device(path)
                .hint("start a migration with `reroot migrate SRC DST`")
        })?;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io("opening the journal", e).device(path))?;
        if parsed.torn_tail {
            file.set_len(parsed.valid_len as u64)
                .map_err(|e| Error::io("cutting a torn line off the journal", e).device(path))?;
        }
        let file = fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io("opening the journal", e).device(path))?;
        let next_seq = (parsed.records.len() as u64).saturating_add(1);
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
                next_seq,
            },
            parsed,
        ))
    }

    /// Append one record (one write, then fdatasync).
    pub fn append(&mut self, entry: Entry) -> Result<Record> {
        let rec = Record {
            seq: self.next_seq,
            at_ms: now_ms(),
            entry,
        };
        let line = encode(&rec)?;
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("appending to the journal", e).device(&self.path))?;
        self.next_seq = self.next_seq.saturating_add(1);
        Ok(rec)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where one stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    /// Not started.
    Pending,
    /// Started, not ended (running, or interrupted).
    Running,
    /// Ended well.
    Done,
    /// Failed.
    Failed,
}

/// One stage in the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageState {
    /// The stage.
    pub stage: Stage,
    /// Where it stands.
    pub status: StageStatus,
    /// When it (last) started.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// Wall time of its last run.
    pub seconds: Option<f64>,
    /// Times started (more than one after a resume).
    pub runs: u32,
    /// What it left (when done).
    pub summary: Option<StageSummary>,
    /// Why it failed.
    pub error: Option<ErrorRecord>,
}

/// Where a migration stands, from its journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// What was asked.
    pub request: Request,
    /// When it started.
    pub started_ms: u64,
    /// The last record's time.
    pub last_ms: u64,
    /// Every stage that ran or will run, in order.
    pub stages: Vec<StageState>,
    /// A question waiting for the operator.
    pub awaiting: Option<(Stage, String)>,
    /// Answers given.
    pub answers: Vec<(Stage, bool, String)>,
    /// The failed stage, if one failed.
    pub failed: Option<Stage>,
    /// `pivot_root` happened.
    pub pivoted: bool,
    /// A rollback started after a failure in this stage.
    pub rollback_of: Option<Stage>,
    /// The rollback ended: restored, undone, failed.
    pub rollback_done: Option<(bool, Vec<String>, Vec<String>)>,
    /// How it ended, when it did.
    pub outcome: Option<Outcome>,
    /// Worker processes so far (pid, reason).
    pub workers: Vec<(u32, String)>,
    /// When the root went read-only (quiesce done).
    pub read_only_since_ms: Option<u64>,
    /// When it stopped being the read-only root (pivot done, or rolled back).
    pub read_only_until_ms: Option<u64>,
}

impl Summary {
    /// Stages done, in order.
    pub fn done(&self) -> Vec<Stage> {
        self.stages
            .iter()
            .filter(|s| s.status == StageStatus::Done)
            .map(|s| s.stage)
            .collect()
    }

    /// The stage running (or interrupted), if any.
    pub fn running(&self) -> Option<Stage> {
        self.stages
            .iter()
            .find(|s| s.status == StageStatus::Running)
            .map(|s| s.stage)
    }

    /// One stage's state.
    pub fn stage(&self, st: Stage) -> Option<&StageState> {
        self.stages.iter().find(|s| s.stage == st)
    }

    /// The read-only window in seconds: from quiesce done to the pivot (or
    /// the rollback), or to `now_ms` while it lasts.
    pub fn read_only_seconds(&self, now_ms: u64) -> Option<f64> {
        let since = self.read_only_since_ms?;
        let until = self.read_only_until_ms.unwrap_or(now_ms);
        Some(until.saturating_sub(since) as f64 / 1000.0)
    }
}

/// Fold the records into a [`Summary`]. The first record must be `started`
/// (as [`parse`] guarantees).
pub fn summarize(records: &[Record]) -> Result<Summary> {
    let Some(Record {
        at_ms: started_ms,
        entry: Entry::Started { request, .. },
        ..
    }) = records.first()
    else {
        return Err(Error::corrupt("the journal does not begin with `started`"));
    };
    let mut states: BTreeMap<Stage, StageState> = BTreeMap::new();
    let mut s = Summary {
        request: request.clone(),
        started_ms: *started_ms,
        last_ms: *started_ms,
        stages: Vec::new(),
        awaiting: None,
        answers: Vec::new(),
        failed: None,
        pivoted: false,
        rollback_of: None,
        rollback_done: None,
        outcome: None,
        workers: Vec::new(),
        read_only_since_ms: None,
        read_only_until_ms: None,
    };
    let blank = |stage| StageState {
        stage,
        status: StageStatus::Pending,
        started_ms: None,
        ended_ms: None,
        seconds: None,
        runs: 0,
        summary: None,
        error: None,
    };
    for r in &records[1..] {
        s.last_ms = r.at_ms;
        match &r.entry {
            Entry::Started { .. } => {}
            Entry::Worker { pid, reason } => s.workers.push((*pid, reason.clone())),
            Entry::StageStart { stage } => {
                let st = states.entry(*stage).or_insert_with(|| blank(*stage));
                st.status = StageStatus::Running;
                st.started_ms = Some(r.at_ms);
                st.ended_ms = None;
                st.runs = st.runs.saturating_add(1);
                st.error = None;
            }
            Entry::StageDone {
                stage,
                seconds,
                summary,
            } => {
                let st = states.entry(*stage).or_insert_with(|| blank(*stage));
                st.status = StageStatus::Done;
                st.ended_ms = Some(r.at_ms);
                st.seconds = Some(*seconds);
                st.summary = Some(summary.clone());
                match stage {
                    Stage::Quiesce => s.read_only_since_ms = Some(r.at_ms),
                    Stage::Pivot => {
                        s.pivoted = true;
                        s.read_only_until_ms = Some(summary.moment_ms.unwrap_or(r.at_ms));
                    }
                    _ => {}
                }
            }
            Entry::StageFailed {
                stage,
                seconds,
                pivoted,
                error,
            } => {
                let st = states.entry(*stage).or_insert_with(|| blank(*stage));
                st.status = StageStatus::Failed;
                st.ended_ms = Some(r.at_ms);
                st.seconds = Some(*seconds);
                st.error = Some(error.clone());
                s.failed = Some(*stage);
                if *pivoted {
                    s.pivoted = true;
                    s.read_only_until_ms.get_or_insert(r.at_ms);
                }
            }
            Entry::Await { stage, question } => s.awaiting = Some((*stage, question.clone())),
            Entry::Answer { stage, yes, by } => {
                if s.awaiting.as_ref().is_some_and(|(a, _)| a == stage) {
                    s.awaiting = None;
                }
                s.answers.push((*stage, *yes, by.clone()));
            }
            Entry::RollbackStart { stage } => {
                s.rollback_of = Some(*stage);
                s.awaiting = None;
            }
            Entry::RollbackDone {
                restored,
                undone,
                failed,
            } => {
                s.rollback_done = Some((*restored, undone.clone(), failed.clone()));
                if s.read_only_since_ms.is_some() {
                    s.read_only_until_ms.get_or_insert(r.at_ms);
                }
            }
            Entry::Finished { outcome } => s.outcome = Some(*outcome),
        }
    }
    for stage in crate::plan::migrate::stages(&request.choices) {
        states.entry(stage).or_insert_with(|| blank(stage));
    }
    s.stages = states.into_values().collect();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            source: "/dev/loop1".into(),
            target: "/dev/loop2".into(),
            root: "/".into(),
            choices: Choices {
                grow: true,
                new_uuid: false,
                ..Choices::default()
            },
            yes: false,
            force: false,
            state_dir: "/run/reroot".into(),
            put_old: "/mnt/oldroot".into(),
            confirm_timeout_secs: 600,
            release_timeout_secs: 600,
            mnt_ns: "mnt:[4026531840]".into(),
            exe: "/usr/sbin/reroot".into(),
            inject_failure: None,
            inject_crash: None,
        }
    }

    fn sample(dir: &Path) -> PathBuf {
        let p = dir.join(JOURNAL_FILE);
        let (mut j, _) = Journal::create(&p, request()).unwrap();
        j.append(Entry::Worker {
            pid: 42,
            reason: "start".into(),
        })
        .unwrap();
        for st in [Stage::Check, Stage::Precopy] {
            j.append(Entry::StageStart { stage: st }).unwrap();
            j.append(Entry::StageDone {
                stage: st,
                seconds: 1.5,
                summary: StageSummary {
                    bytes_copied: 1 << 20,
                    detail: Some(serde_json::json!({"x": [1, 2.5, "é\n"]})),
                    ..StageSummary::default()
                },
            })
            .unwrap();
        }
        j.append(Entry::Await {
            stage: Stage::Quiesce,
            question: "stop services?".into(),
        })
        .unwrap();
        p
    }

    #[test]
    fn round_trip_and_summary() {
        let d = tempfile::tempdir().unwrap();
        let p = sample(d.path());
        let parsed = read(&p).unwrap().unwrap();
        assert_eq!(parsed.records.len(), 7);
        assert!(!parsed.torn_tail);
        let text = fs::read_to_string(&p).unwrap();
        let again: String = parsed.records.iter().map(|r| encode(r).unwrap()).collect();
        assert_eq!(again, text, "re-encoding gives the same bytes");
        let s = summarize(&parsed.records).unwrap();
        assert_eq!(s.done(), vec![Stage::Check, Stage::Precopy]);
        assert_eq!(s.awaiting.as_ref().unwrap().0, Stage::Quiesce);
        assert_eq!(s.running(), None);
        assert_eq!(s.workers, vec![(42, "start".to_owned())]);
        // Every stage of the request is listed, pending ones too.
        assert_eq!(s.stages.len(), 9);
        assert_eq!(s.stage(Stage::Grow).unwrap().status, StageStatus::Pending);
        // Creating over an existing journal is refused.
        assert!(Journal::create(&p, request()).is_err());
    }

    #[test]
    fn torn_tail_is_tolerated_and_cut_before_the_next_append() {
        let d = tempfile::tempdir().unwrap();
        let p = sample(d.path());
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"0123456789abcdef {\"seq\":8,\"at_").unwrap();
        drop(f);
        let parsed = read(&p).unwrap().unwrap();
        assert!(parsed.torn_tail);
        assert_eq!(parsed.records.len(), 7);
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(Entry::Answer {
            stage: Stage::Quiesce,
            yes: true,
            by: "operator".into(),
        })
        .unwrap();
        let parsed = read(&p).unwrap().unwrap();
        assert!(!parsed.torn_tail);
        assert_eq!(parsed.records.len(), 8);
        let s = summarize(&parsed.records).unwrap();
        assert!(s.awaiting.is_none());
        assert_eq!(s.answers, vec![(Stage::Quiesce, true, "operator".into())]);
    }

    #[test]
    fn corruption_is_an_error_naming_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = sample(d.path());
        let good = fs::read(&p).unwrap();
        let lines: Vec<&[u8]> = good.split_inclusive(|&b| b == b'\n').collect();
        let join = |ls: &[&[u8]]| ls.concat();
        let err_of = |data: &[u8]| {
            let e = parse(data).unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Corrupt(_)), "{e}");
            e.to_string()
        };
        // A flipped byte in line 3's JSON.
        let mut bad = good.clone();
        let at = lines[0].len() + lines[1].len() + 30;
        bad[at] ^= 1;
        assert!(err_of(&bad).contains("line 3: checksum mismatch"));
        // A line dropped: sequence out of order.
        let mut ls = lines.clone();
        ls.remove(2);
        assert!(err_of(&join(&ls)).contains("sequence number 4 where 3"));
        // Not starting with `started`.
        assert!(err_of(&join(&lines[1..])).contains("line 1"));
        // A valid checksum over JSON that is not canonical (extra space).
        let json = "{\"seq\": 1}";
        let line = format!(
            "{:016x} {json}\n",
            xxhash_rust::xxh3::xxh3_64(json.as_bytes())
        );
        assert!(err_of(line.as_bytes()).contains("line 1"));
        // Canonical JSON with an unknown field is refused too.
        let rec = &parse(&good).unwrap().records[1];
        let mut v = serde_json::to_value(rec).unwrap();
        v["extra"] = serde_json::json!(1);
        let json = serde_json::to_string(&v).unwrap();
        let line = format!(
            "{:016x} {json}\n",
            xxhash_rust::xxh3::xxh3_64(json.as_bytes())
        );
        let data = [lines[0], line.as_bytes()].concat();
        assert!(err_of(&data).contains("line 2: bad record"));
        // Uppercase checksum, missing checksum.
        let up = String::from_utf8(good.clone()).unwrap();
        let up = format!("{}{}", up[..16].to_uppercase(), &up[16..]);
        if up.as_bytes() != good.as_slice() {
            assert!(err_of(up.as_bytes()).contains("lowercase"));
        }
        assert!(err_of(b"{}\n").contains("no checksum"));
        // Garbage never panics; empty input is an empty journal.
        assert_eq!(parse(b"").unwrap().records.len(), 0);
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
    }

    /// Regression: without serde_json's `float_roundtrip`, a parsed float
    /// could be one ULP off and re-encode differently, so a valid journal
    /// was now and then "not in canonical form".
    #[test]
    fn floats_re_encode_exactly() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seconds = (x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0;
            let rec = Record {
                seq: 2,
                at_ms: 1,
                entry: Entry::StageDone {
                    stage: Stage::Copy,
                    seconds,
                    summary: StageSummary {
                        detail: Some(serde_json::json!({ "mb_per_s": seconds / 3.0 })),
                        ..StageSummary::default()
                    },
                },
            };
            let line = encode(&rec).unwrap();
            let back = parse_line(line.trim_end().as_bytes(), 2, 0).unwrap();
            assert_eq!(back, rec);
        }
    }

    #[test]
    fn read_only_window_and_rollback_in_the_summary() {
        let mut recs = vec![Record {
            seq: 1,
            at_ms: 1000,
            entry: Entry::Started {
                version: VERSION,
                request: request(),
            },
        }];
        let mut push = |at_ms, entry| {
            let seq = recs.len() as u64 + 1;
            recs.push(Record { seq, at_ms, entry });
        };
        push(
            2000,
            Entry::StageDone {
                stage: Stage::Quiesce,
                seconds: 1.0,
                summary: StageSummary::default(),
            },
        );
        push(2500, Entry::StageStart { stage: Stage::Copy });
        push(
            4000,
            Entry::StageFailed {
                stage: Stage::Copy,
                seconds: 1.5,
                pivoted: false,
                error: ErrorRecord::of(&Error::new(ErrorKind::Io("boom".into()))),
            },
        );
        push(4100, Entry::RollbackStart { stage: Stage::Copy });
        push(
            5000,
            Entry::RollbackDone {
                restored: true,
                undone: vec!["mount -o remount,rw /".into()],
                failed: vec![],
            },
        );
        push(
            5001,
            Entry::Finished {
                outcome: Outcome::RolledBack,
            },
        );
        let s = summarize(&recs).unwrap();
        assert_eq!(s.failed, Some(Stage::Copy));
        assert_eq!(s.read_only_seconds(9999), Some(3.0));
        assert_eq!(s.outcome, Some(Outcome::RolledBack));
        assert!(!s.pivoted);
        let e = s.stage(Stage::Copy).unwrap().error.as_ref().unwrap();
        assert!(matches!(e.to_error().kind(), ErrorKind::Io(_)));
        // The records re-encode to lines that parse back.
        let text: String = recs.iter().map(|r| encode(r).unwrap()).collect();
        assert_eq!(parse(text.as_bytes()).unwrap().records, recs);
    }
}
