//! `reroot migrate`: every stage of the move, run by a worker detached from
//! the operator's terminal, journaled, with confirmations and rollback.
//!
//! The operator's command ([`start`], [`resume`]) writes the journal's first
//! record and starts the worker ([`worker::run`]) as a transient systemd unit
//! or in a session of its own with `SIGHUP` ignored, so a dropped SSH
//! connection cannot stop it. The worker runs the stages of
//! [`crate::plan::migrate`], records each in the journal ([`super::journal`]),
//! logs to `migrate.log` and streams progress to `migrate.events`, all under
//! the state directory (`/run/reroot`, a tmpfs that the pivot moves along).
//! Any terminal, now or later, follows it ([`follow::Follower`]) and answers
//! its questions ([`answer`]); [`report::build`] turns the journal into the
//! final report.
//!
//! Files in the state directory: `migrate.journal`, `migrate.log`,
//! `migrate.events`, `migrate.pid`, `migrate.answer` (an answer waiting for
//! the worker), `migrate-report.json`, `quiesce.json` (quiesce's state
//! file, which rollback and the restart stage undo) and the pivot's own.
//!
//! May import `probe`, `plan`, `sys` and the other `exec` stages.

pub mod dry_run;
pub mod follow;
mod pump;
pub mod report;
mod stages;
pub mod worker;

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, Stage as ErrStage};
use crate::exec::journal::{self, Journal, Request};
use crate::plan::migrate::{Choices, Stage};
use crate::probe::SysRoot;
use crate::probe::mountinfo;

/// The default state directory (shared with `pivot` and `quiesce`).
pub const STATE_DIR: &str = crate::exec::pivot::STATE_DIR;

/// Where the old root goes after the pivot.
pub const PUT_OLD: &str = "/mnt/oldroot";

/// Where the default state directory's journal and log are also kept, on
/// the root filesystem, whenever it is writable (see [`Paths::kept`]).
pub const KEPT_DIR: &str = "/var/lib/reroot";

/// The directory that keeps a copy of `state_dir`'s journal and log across
/// a restart: [`KEPT_DIR`] for the default `/run/reroot` (a tmpfs a reboot
/// empties), else `<state_dir>.kept` beside it.
pub fn kept_dir(state_dir: &Path) -> PathBuf {
    if state_dir == Path::new(STATE_DIR) {
        return KEPT_DIR.into();
    }
    let mut name = state_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "reroot".into());
    name.push(".kept");
    state_dir.with_file_name(name)
}

/// The files of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The state directory.
    pub dir: PathBuf,
    /// The journal.
    pub journal: PathBuf,
    /// The human log.
    pub log: PathBuf,
    /// Progress events, one JSON line each.
    pub events: PathBuf,
    /// The worker's pid.
    pub pid: PathBuf,
    /// An answer for the worker.
    pub answer: PathBuf,
    /// The final report.
    pub report: PathBuf,
    /// Quiesce's state file.
    pub quiesce_state: PathBuf,
    /// Where a finished migration's files are moved when a new one starts.
    pub previous: PathBuf,
    /// Where the journal and the log are copied whenever the root is
    /// writable, so `reroot status` can tell after a restart what happened
    /// ([`kept_dir`]).
    pub kept: PathBuf,
}

impl Paths {
    /// The files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            journal: dir.join(journal::JOURNAL_FILE),
            log: dir.join("migrate.log"),
            events: dir.join("migrate.events"),
            pid: dir.join("migrate.pid"),
            answer: dir.join("migrate.answer"),
            report: dir.join("migrate-report.json"),
            quiesce_state: dir.join("quiesce.json"),
            previous: dir.join("previous"),
            kept: kept_dir(dir),
        }
    }

    /// The same files in the kept directory (a copy that survives a restart).
    pub fn kept_copy(&self) -> Paths {
        let mut p = Paths::new(&self.kept);
        p.kept = self.kept.clone();
        p
    }

    /// Copy the journal and the log to the kept directory (each written
    /// aside, then renamed over the old copy). Fails while the root is
    /// read-only (the quiesce window): the next call catches up.
    pub fn keep_copy(&self) -> Result<()> {
        fs::create_dir_all(&self.kept).map_err(|e| Error::io("creating", e).device(&self.kept))?;
        let to = self.kept_copy();
        for (from, to) in [(&self.journal, &to.journal), (&self.log, &to.log)] {
            let Ok(data) = fs::read(from) else { continue };
            let tmp = to.with_extension("tmp");
            fs::write(&tmp, &data)
                .and_then(|()| fs::rename(&tmp, to))
                .map_err(|e| Error::io("keeping a copy", e).device(to))?;
        }
        Ok(())
    }

    fn own_files(&self) -> [&PathBuf; 6] {
        [
            &self.journal,
            &self.log,
            &self.events,
            &self.pid,
            &self.answer,
            &self.report,
        ]
    }
}

/// What the operator asks for (the command line, as library options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOptions {
    /// The root's device.
    pub source: PathBuf,
    /// The target device.
    pub target: PathBuf,
    /// `--grow`, `--new-uuid`.
    pub choices: Choices,
    /// Do not ask.
    pub yes: bool,
    /// Accept a target that carries a signature.
    pub force: bool,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Seconds to wait for an answer (then: no).
    pub confirm_timeout_secs: u64,
    /// Seconds `finish` waits for the old root to be released.
    pub release_timeout_secs: u64,
    /// Test hook: fail this stage (see [`Request::inject_failure`]).
    pub inject_failure: Option<Stage>,
    /// Test hook: crash in this stage (see [`Request::inject_crash`]).
    pub inject_crash: Option<Stage>,
}

impl MigrateOptions {
    /// Defaults for a source and a target.
    pub fn new(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            choices: Choices::default(),
            yes: false,
            force: false,
            state_dir: STATE_DIR.into(),
            confirm_timeout_secs: 600,
            release_timeout_secs: 600,
            inject_failure: None,
            inject_crash: None,
        }
    }
}

/// The mount namespace of `pid` (`mnt:[N]`).
pub fn mnt_ns(sys: &SysRoot, pid: &str) -> Result<String> {
    let p = sys.proc(format!("{pid}/ns/mnt"));
    fs::read_link(&p)
        .map(|l| l.to_string_lossy().into_owned())
        .map_err(|e| Error::io("reading the mount namespace", e).device(&p))
}

/// Refuse when [`crate::exec::pivot::FORBID_NS_ENV`] names this mount
/// namespace (the tests' interlock against touching the machine's root).
pub fn check_forbidden_ns(sys: &SysRoot) -> Result<()> {
    let env = crate::exec::pivot::FORBID_NS_ENV;
    if let Ok(f) = std::env::var(env) {
        if !f.is_empty() && mnt_ns(sys, "self")? == f {
            return Err(Error::refused(format!(
                "{env} forbids changing mount namespace {f}, and this is it"
            ))
            .stage(ErrStage::Migrate)
            .hint("run tests only inside `unshare --mount --pid --fork --propagation private`"));
        }
    }
    Ok(())
}

/// `major:minor` of the filesystem mounted at `root`, and its mount source.
pub fn root_mount_dev(sys: &SysRoot, root: &Path) -> Result<((u32, u32), String)> {
    let mounts = mountinfo::read(sys, "self")?;
    let m = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == root)
        .ok_or_else(|| {
            Error::invalid(format!("{} is not a mount point", root.display()))
                .stage(ErrStage::Migrate)
        })?;
    Ok(((m.major, m.minor), m.source.clone()))
}

/// Refuse unless `source` is the block device mounted at `root`. btrfs
/// shows an anonymous `0:N` in mountinfo: its real device is the member of
/// the btrfs filesystem (sysfs) that the mount's source names, and a btrfs
/// on several devices is refused (one device is copied).
pub fn ensure_root_device(sys: &SysRoot, source: &Path, root: &Path) -> Result<()> {
    let meta = fs::metadata(source)
        .map_err(|e| Error::io("stat", e).device(source).stage(ErrStage::Migrate))?;
    let ((maj, min), msource) = root_mount_dev(sys, root)?;
    let is_blk = std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type());
    let rdev = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    let not_it = |what: String| {
        Error::refused(format!(
            "{} is not the device of {} ({what}, mounted from {msource})",
            source.display(),
            root.display()
        ))
        .device(source)
        .stage(ErrStage::Migrate)
        .hint(format!(
            "give the device mounted at {} (`findmnt -no SOURCE {}`)",
            root.display(),
            root.display()
        ))
    };
    if !is_blk {
        return Err(not_it(format!("{maj}:{min}")));
    }
    if maj != 0 {
        return if rdev == (maj, min) {
            Ok(())
        } else {
            Err(not_it(format!("{maj}:{min}")))
        };
    }
    // An anonymous device number: btrfs (or a filesystem without a device).
    let btrfs = match crate::probe::btrfs::kernel_name(&msource) {
        Some(name) => crate::probe::btrfs::filesystem_with(sys, &name)
            .map_err(|e| e.stage(ErrStage::Migrate))?,
        None => None,
    };
    let Some(btrfs) = btrfs else {
        return Err(not_it(format!("{maj}:{min}, no block device")));
    };
    if btrfs.members.len() > 1 {
        let names: Vec<&str> = btrfs.members.iter().map(|m| m.name.as_str()).collect();
        return Err(Error::refused(format!(
            "{} is a btrfs filesystem on {} devices ({}); reroot moves a filesystem on one device",
            root.display(),
            names.len(),
            names.join(", ")
        ))
        .device(source)
        .stage(ErrStage::Migrate)
        .hint("move a multi-device btrfs online with `btrfs replace start` or `btrfs device add` + `btrfs device remove`"));
    }
    match btrfs.members.first() {
        Some(m) if m.devno == rdev => Ok(()),
        Some(m) => Err(not_it(format!(
            "btrfs {} on {} ({}:{})",
            btrfs.fsid, m.name, m.devno.0, m.devno.1
        ))),
        None => Err(not_it(format!("btrfs {} without devices", btrfs.fsid))),
    }
}

/// The request for these options in this process's context.
pub fn request(o: &MigrateOptions) -> Result<Request> {
    let sys = SysRoot::live();
    let state_dir = if o.state_dir.is_absolute() {
        o.state_dir.clone()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("reading the current directory", e))?
            .join(&o.state_dir)
    };
    Ok(Request {
        source: o.source.clone(),
        target: o.target.clone(),
        root: "/".into(),
        choices: o.choices,
        yes: o.yes,
        force: o.force,
        state_dir,
        put_old: PUT_OLD.into(),
        confirm_timeout_secs: o.confirm_timeout_secs,
        release_timeout_secs: o.release_timeout_secs,
        mnt_ns: mnt_ns(&sys, "self")?,
        exe: fs::read_link(sys.proc("self/exe"))
            .map_err(|e| Error::io("reading /proc/self/exe", e))?,
        inject_failure: o.inject_failure,
        inject_crash: o.inject_crash,
    })
}

/// The worker's pid when one is alive.
pub fn worker_pid(paths: &Paths) -> Option<u32> {
    let pid: u32 = fs::read_to_string(&paths.pid).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_worker =
        words.iter().any(|w| *w == b"migrate") && words.iter().any(|w| *w == b"--worker");
    is_worker.then_some(pid)
}

fn refused(msg: String, hint: &str) -> Error {
    Error::refused(msg)
        .stage(ErrStage::Migrate)
        .hint(hint.to_owned())
}

/// Move a finished migration's files to `previous/`; refuse when one is in
/// progress, or when the last one's rollback is incomplete.
fn archive_previous(paths: &Paths) -> Result<()> {
    let Some(parsed) = journal::read(&paths.journal)? else {
        return Ok(());
    };
    let summary = journal::summarize(&parsed.records)?;
    match summary.outcome {
        None => {
            let state = if worker_pid(paths).is_some() {
                "is running"
            } else {
                "was interrupted"
            };
            return Err(refused(
                format!("a migration {state} (journal {})", paths.journal.display()),
                "`reroot status` shows it; `reroot migrate --attach` follows it, \
                 `reroot migrate --resume` continues an interrupted one",
            ));
        }
        Some(journal::Outcome::RollbackIncomplete) => {
            return Err(refused(
                "the last migration's rollback is incomplete: the system is not as it was".into(),
                "`reroot status` says what is left; `reroot resume-services` undoes the rest",
            ));
        }
        Some(_) => {}
    }
    let _ = fs::remove_dir_all(&paths.previous);
    fs::create_dir_all(&paths.previous)
        .map_err(|e| Error::io("creating", e).device(&paths.previous))?;
    for f in paths.own_files() {
        if f.exists() {
            if let Some(name) = f.file_name() {
                let to = paths.previous.join(name);
                fs::rename(f, &to).map_err(|e| Error::io("moving", e).device(f))?;
            }
        }
    }
    Ok(())
}

/// Start a migration: write the journal's first record and start the
/// detached worker. Returns at once; follow it with [`follow::Follower`].
pub fn start(req: &Request) -> Result<()> {
    let sys = SysRoot::live();
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::refused("reroot migrate must run as root").stage(ErrStage::Migrate));
    }
    check_forbidden_ns(&sys)?;
    ensure_root_device(&sys, &req.source, &req.root)?;
    let paths = Paths::new(&req.state_dir);
    fs::create_dir_all(&paths.dir)
        .map_err(|e| Error::io("creating the state directory", e).device(&paths.dir))?;
    archive_previous(&paths)?;
    if paths.quiesce_state.exists() {
        return Err(refused(
            format!(
                "{} records a quiesce that was not undone",
                paths.quiesce_state.display()
            ),
            "run `reroot resume-services` first (or remove the file if it is stale)",
        ));
    }
    let (j, _) = Journal::create(&paths.journal, req.clone()).map_err(|e| {
        e.stage(ErrStage::Migrate)
            .hint("another `reroot migrate` started at the same moment?")
    })?;
    drop(j);
    spawn_worker(&req.exe, &paths, "start")
}

/// Continue an interrupted migration: start a new worker on its journal.
pub fn resume(state_dir: &Path) -> Result<Request> {
    let paths = Paths::new(state_dir);
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::refused("reroot migrate must run as root").stage(ErrStage::Migrate));
    }
    let parsed = journal::read(&paths.journal)?.ok_or_else(|| {
        refused(
            format!(
                "no migration to resume: {} does not exist",
                paths.journal.display()
            ),
            "start one with `reroot migrate SRC DST`",
        )
    })?;
    let summary = journal::summarize(&parsed.records)?;
    if let Some(o) = summary.outcome {
        return Err(refused(
            format!(
                "the migration has ended ({})",
                serde_json::to_string(&o).unwrap_or_default()
            ),
            "`reroot status` shows its report",
        ));
    }
    if let Some(pid) = worker_pid(&paths) {
        return Err(refused(
            format!("the migration is running (worker pid {pid})"),
            "follow it with `reroot migrate --attach`",
        ));
    }
    let exe =
        fs::read_link("/proc/self/exe").map_err(|e| Error::io("reading /proc/self/exe", e))?;
    spawn_worker(&exe, &paths, "resume")?;
    Ok(summary.request)
}

/// Start the worker detached: a transient systemd unit under systemd (so
/// the end of the operator's login session cannot stop it), else the
/// leader of a new session with `SIGHUP` ignored.
fn spawn_worker(exe: &Path, paths: &Paths, reason: &str) -> Result<()> {
    let _ = fs::remove_file(&paths.pid);
    let pid1 = fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let systemd_run = crate::exec::tools::find("systemd-run");
    if pid1.trim() == "systemd" && Path::new("/run/systemd/system").is_dir() {
        if let Some(run) = systemd_run {
            let unit = format!("reroot-migrate-{}", std::process::id());
            let out = Command::new(run)
                .arg(format!("--unit={unit}"))
                .args(["--collect", "--quiet", "--service-type=exec"])
                .arg(format!(
                    "--property=StandardOutput=append:{}",
                    paths.log.display()
                ))
                .arg(format!(
                    "--property=StandardError=append:{}",
                    paths.log.display()
                ))
                .arg(exe)
                .args(["migrate", "--worker", "--reason", reason, "--state-dir"])
                .arg(&paths.dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Error::io("running systemd-run", e))?;
            if !out.status.success() {
                return Err(Error::tool(format!(
                    "systemd-run failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            return Ok(());
        }
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(|e| Error::io("opening the log", e).device(&paths.log))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("duplicating the log", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["migrate", "--worker", "--reason", reason, "--state-dir"])
        .arg(&paths.dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // The child is reaped by init once we exit; the worker never waits for us.
    crate::sys::process::spawn_detached(&mut cmd).map(drop)
}

/// An answer to the worker's question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The stage the question was about.
    pub stage: Stage,
    /// Go on.
    pub yes: bool,
}

/// Answer the worker's question about `stage` (written atomically).
pub fn answer(state_dir: &Path, stage: Stage, yes: bool) -> Result<()> {
    let paths = Paths::new(state_dir);
    let tmp = paths.answer.with_extension("tmp");
    let text =
        serde_json::to_vec(&Answer { stage, yes }).map_err(|e| Error::invalid(e.to_string()))?;
    fs::write(&tmp, text).map_err(|e| Error::io("writing the answer", e).device(&tmp))?;
    fs::rename(&tmp, &paths.answer)
        .map_err(|e| Error::io("writing the answer", e).device(&paths.answer))
}

/// Write `value` as JSON to `path` atomically.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::invalid(e.to_string()))?;
    fs::write(&tmp, text).map_err(|e| Error::io("writing", e).device(&tmp))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming", e).device(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_the_file() {
        let d = tempfile::tempdir().unwrap();
        answer(d.path(), Stage::Pivot, true).unwrap();
        let p = Paths::new(d.path());
        let a: Answer = serde_json::from_slice(&fs::read(&p.answer).unwrap()).unwrap();
        assert_eq!(
            a,
            Answer {
                stage: Stage::Pivot,
                yes: true
            }
        );
        assert!(!p.answer.with_extension("tmp").exists());
    }

    #[test]
    fn a_finished_journal_is_archived_and_a_running_one_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = Paths::new(d.path());
        let req = Request {
            source: "/dev/a".into(),
            target: "/dev/b".into(),
            root: "/".into(),
            choices: Choices::default(),
            yes: true,
            force: false,
            state_dir: d.path().into(),
            put_old: PUT_OLD.into(),
            confirm_timeout_secs: 1,
            release_timeout_secs: 1,
            mnt_ns: "mnt:[1]".into(),
            exe: "/x".into(),
            inject_failure: None,
            inject_crash: None,
        };
        let (mut j, _) = Journal::create(&p.journal, req).unwrap();
        let e = archive_previous(&p).unwrap_err();
        assert!(e.to_string().contains("was interrupted"), "{e}");
        j.append(journal::Entry::Finished {
            outcome: journal::Outcome::RolledBack,
        })
        .unwrap();
        fs::write(&p.log, "x\n").unwrap();
        archive_previous(&p).unwrap();
        assert!(!p.journal.exists() && !p.log.exists());
        assert!(p.previous.join(journal::JOURNAL_FILE).exists());
        assert!(p.previous.join("migrate.log").exists());
    }

    #[test]
    fn the_journal_is_kept_beside_the_state_directory() {
        assert_eq!(kept_dir(Path::new(STATE_DIR)), Path::new(KEPT_DIR));
        assert_eq!(
            kept_dir(Path::new("/tmp/x/st")),
            Path::new("/tmp/x/st.kept")
        );
        let d = tempfile::tempdir().unwrap();
        let p = Paths::new(&d.path().join("st"));
        fs::create_dir_all(&p.dir).unwrap();
        fs::write(&p.journal, "j1\n").unwrap();
        fs::write(&p.log, "l1\n").unwrap();
        p.keep_copy().unwrap();
        let k = p.kept_copy();
        assert_eq!(k.dir, d.path().join("st.kept"));
        assert_eq!(fs::read_to_string(&k.journal).unwrap(), "j1\n");
        assert_eq!(fs::read_to_string(&k.log).unwrap(), "l1\n");
        fs::write(&p.journal, "j1\nj2\n").unwrap();
        p.keep_copy().unwrap();
        assert_eq!(fs::read_to_string(&k.journal).unwrap(), "j1\nj2\n");
        assert!(!k.journal.with_extension("tmp").exists());
    }

    #[test]
    fn the_root_device_must_be_the_source() {
        let sys = SysRoot::live();
        // A regular file is never the root's device.
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = ensure_root_device(&sys, f.path(), Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("is not the device of /"), "{e}");
    }
}
