//! `reroot pivot`: switch the running system to the new root.
//!
//! [`launch`] (the operator's command) checks, writes a request under the
//! state directory (`/run/reroot`), starts the worker detached from the
//! terminal (a transient systemd unit, or its own session with `SIGHUP`
//! ignored) and follows its log. The worker ([`worker`]) does the dangerous
//! part as one step: mount the new root on a private staging tmpfs, then
//! `pivot_root`, move the API filesystems back within milliseconds and every
//! other mount after them, restore `/`'s shared propagation, re-execute
//! itself from the new root, list what still runs from the old root and
//! restart it in order (init, logging, udev, network, dbus/logind, sshd —
//! which must listen again — gettys, the rest). Every action goes to
//! `pivot.log`; the result to `result.json`.
//!
//! Before `pivot_root` nothing is changed that cannot be undone: the staging
//! tmpfs and the new root's mount are reroot's own and are unmounted again on
//! any failure; `/`'s propagation is not touched before the pivot.
//!
//! May import `probe`, `plan`, `sys`, `error` and `exec::services`.

use std::fs;
use std::io::{BufRead, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::exec::services::{self, ListenCheck, Manager, Outcome};
use crate::plan::pivot::{self as plan, Holder, MountAction, MountPlan, Operator, RestartGroup};
use crate::probe::SysRoot;
use crate::probe::mountinfo::{self, Mount};
use crate::probe::process::{self, ForeignNamespace};
use crate::sys::mount::{self as sysmount, PropagationType};

/// The default state directory: on `/run`, a tmpfs that is moved back to
/// its place with the other API filesystems, so the log survives the pivot.
pub const STATE_DIR: &str = "/run/reroot";

/// Test interlock: when this variable holds a mount namespace link
/// (`mnt:[N]`) and reroot runs in that namespace, `pivot` refuses.
pub const FORBID_NS_ENV: &str = "REROOT_FORBID_MNT_NS";

/// What `--restart` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Restart everything restartable, in order, user managers included.
    Auto,
    /// Like `Auto`, but leave user managers (`user@UID.service`) alone.
    System,
    /// Only list what still runs from the old root and the restart plan.
    List,
    /// Neither list nor restart.
    None,
}

/// The pivot as the operator asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PivotOptions {
    /// The new root device.
    pub new_dev: PathBuf,
    /// Where the old root goes (`/mnt/oldroot`).
    pub put_old: PathBuf,
    /// Restart mode.
    pub restart: RestartMode,
    /// State directory (`/run/reroot`).
    pub state_dir: PathBuf,
    /// How long sshd may take to listen again.
    pub sshd_timeout_secs: u64,
    /// Time limit for each restart command.
    pub command_timeout_secs: u64,
}

impl PivotOptions {
    /// Defaults: `--oldroot /mnt/oldroot --restart auto`, state in `/run/reroot`.
    pub fn new(new_dev: impl Into<PathBuf>) -> Self {
        Self {
            new_dev: new_dev.into(),
            put_old: "/mnt/oldroot".into(),
            restart: RestartMode::Auto,
            state_dir: STATE_DIR.into(),
            sshd_timeout_secs: 30,
            command_timeout_secs: 120,
        }
    }
}

/// The request the worker reads (`request.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// What to do.
    pub options: PivotOptions,
    /// The mount namespace the operator checked (`mnt:[N]`): the worker
    /// refuses to pivot any other.
    pub mnt_ns: String,
    /// The operator's command: pid, session and ancestors.
    pub operator_pid: u32,
    /// Session of the operator's command.
    pub operator_sid: Option<u32>,
    /// Its ancestors up to (not including) PID 1.
    pub operator_ancestors: Vec<u32>,
    /// reroot's executable path before the pivot (re-executed from the new root).
    pub exe: PathBuf,
    /// The `--forbid` namespace, passed on to the worker.
    pub forbid_ns: Option<String>,
}

/// What happened to one mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountOutcome {
    /// Its place.
    pub to: PathBuf,
    /// `move`, `rebind` or `replace-bind`.
    pub action: String,
    /// Filesystem type.
    pub fstype: String,
    /// The step succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Propagation before the pivot.
    pub propagation_before: String,
    /// Propagation now (after the restore), when it is mounted there.
    pub propagation_after: Option<String>,
}

/// The worker's state between the pivot and its re-exec (`state.json`);
/// `finish` reads it too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The request.
    pub request: Request,
    /// The mount plan.
    pub plan: MountPlan,
    /// `/proc/self/mountinfo` just before the pivot.
    pub mountinfo_before: String,
    /// Filesystem type of the new root.
    pub new_fstype: String,
    /// `major:minor` of the new root.
    pub new_devno: (u32, u32),
    /// Mount outcomes.
    pub mounts: Vec<MountOutcome>,
    /// Propagation of `/` after the restore.
    pub root_propagation_after: Option<String>,
    /// Milliseconds from `pivot_root` to the last API filesystem moved.
    pub api_moved_ms: Option<u64>,
    /// Milliseconds from `pivot_root` to the last mount step.
    pub all_moved_ms: Option<u64>,
    /// Warnings so far.
    pub warnings: Vec<String>,
}

/// The result of a pivot (`result.json`, and what `launch` returns).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PivotReport {
    /// Everything succeeded (pivot, mounts, sshd listening, restarts).
    pub ok: bool,
    /// `pivot_root` happened.
    pub pivoted: bool,
    /// A failure before the pivot, and everything was undone.
    pub rolled_back: bool,
    /// The error, if any.
    pub error: Option<String>,
    /// Its kind (`refused`, `busy`, `io`, `tool`, ...), for the exit code.
    pub error_kind: Option<String>,
    /// What to do next.
    pub hint: Option<String>,
    /// The new root device.
    pub new_device: PathBuf,
    /// Its filesystem type.
    pub new_fstype: Option<String>,
    /// Source of the old root mount.
    pub old_source: Option<String>,
    /// `major:minor` of the old root.
    pub old_devno: Option<(u32, u32)>,
    /// Where the old root is now.
    pub old_root_at: PathBuf,
    /// Every mount step.
    pub mounts: Vec<MountOutcome>,
    /// Propagation of `/` before and after.
    pub root_propagation: Option<(String, String)>,
    /// Milliseconds from `pivot_root` until the API filesystems were back.
    pub api_moved_ms: Option<u64>,
    /// Milliseconds from `pivot_root` until every mount was back.
    pub all_moved_ms: Option<u64>,
    /// How the worker continued after the pivot (re-exec path or why not).
    pub reexec: Option<String>,
    /// The service manager found.
    pub manager: Option<Manager>,
    /// Restart mode.
    pub restart: RestartMode,
    /// What ran from the old root right after the pivot, grouped and ordered.
    pub groups: Vec<RestartGroup>,
    /// Restart steps.
    pub restarts: Vec<Outcome>,
    /// sshd listening checks.
    pub sshd: Vec<ListenCheck>,
    /// What still runs from the old root after the restarts.
    pub remaining: Vec<RestartGroup>,
    /// Things to know.
    pub warnings: Vec<String>,
    /// The log file.
    pub log: PathBuf,
    /// What was done to the old root's identity right after the pivot
    /// (label `oldroot` at once; a new UUID when possible while mounted).
    #[serde(default)]
    pub old_identity: Option<crate::exec::identity::OnlineReidentify>,
    /// The shutdown guard: what was installed (`Ok`), or why none was.
    #[serde(default)]
    pub shutdown_guard: Option<std::result::Result<String, String>>,
    /// Where each name of the root leads after the pivot.
    #[serde(default)]
    pub names: Vec<crate::plan::identity::NameStatus>,
}

impl PivotReport {
    fn empty(o: &PivotOptions) -> Self {
        Self {
            ok: false,
            pivoted: false,
            rolled_back: false,
            error: None,
            error_kind: None,
            hint: None,
            new_device: o.new_dev.clone(),
            new_fstype: None,
            old_source: None,
            old_devno: None,
            old_root_at: o.put_old.clone(),
            mounts: Vec::new(),
            root_propagation: None,
            api_moved_ms: None,
            all_moved_ms: None,
            reexec: None,
            manager: None,
            restart: o.restart,
            groups: Vec::new(),
            restarts: Vec::new(),
            sshd: Vec::new(),
            remaining: Vec::new(),
            warnings: Vec::new(),
            log: o.state_dir.join("pivot.log"),
            old_identity: None,
            shutdown_guard: None,
            names: Vec::new(),
        }
    }

    /// The report's error as a library [`Error`] (for the exit code).
    pub fn to_error(&self) -> Option<Error> {
        let msg = self.error.clone()?;
        let kind = match self.error_kind.as_deref() {
            Some("refused") => ErrorKind::Refused(msg),
            Some("busy") => ErrorKind::Busy(msg),
            Some("tool") => ErrorKind::Tool(msg),
            Some("invalid") => ErrorKind::InvalidInput(msg),
            Some("interrupted") => ErrorKind::Interrupted(msg),
            _ => ErrorKind::Io(msg),
        };
        let e = Error::new(kind).stage(Stage::Pivot);
        Some(match &self.hint {
            Some(h) => e.hint(h.clone()),
            None => e,
        })
    }
}

fn kind_name(k: &ErrorKind) -> &'static str {
    match k {
        ErrorKind::Refused(_) => "refused",
        ErrorKind::Busy(_) => "busy",
        ErrorKind::Tool(_) => "tool",
        ErrorKind::InvalidInput(_) => "invalid",
        ErrorKind::Interrupted(_) => "interrupted",
        _ => "io",
    }
}

/// An append-only action log with millisecond timestamps.
#[derive(Debug)]
pub struct ActionLog {
    file: Option<fs::File>,
    path: PathBuf,
}

impl ActionLog {
    /// Open (create, append) `path`.
    pub fn open(path: &Path) -> Self {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .ok();
        Self {
            file,
            path: path.to_path_buf(),
        }
    }

    /// Write one line.
    pub fn line(&mut self, msg: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if let Some(f) = self.file.as_mut() {
            let _ = writeln!(
                f,
                "[{}.{:03}] [{}] {msg}",
                now.as_secs(),
                now.subsec_millis(),
                std::process::id()
            );
        }
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn mnt_ns(sys: &SysRoot, pid: &str) -> Result<String> {
    let p = sys.proc(format!("{pid}/ns/mnt"));
    fs::read_link(&p)
        .map(|l| l.to_string_lossy().into_owned())
        .map_err(|e| Error::io("reading the mount namespace", e).device(&p))
}

fn check_forbidden_ns(sys: &SysRoot, forbid: Option<&str>) -> Result<()> {
    if let Some(f) = forbid.filter(|f| !f.is_empty()) {
        if mnt_ns(sys, "self")? == f {
            return Err(Error::refused(format!(
                "{FORBID_NS_ENV} forbids pivoting mount namespace {f}, and this is it"
            ))
            .hint("run tests only inside `unshare --mount --pid --fork --propagation private`"));
        }
    }
    Ok(())
}

fn stat_field(sys: &SysRoot, pid: u32, idx: usize) -> Option<u32> {
    let s = fs::read_to_string(sys.proc(format!("{pid}/stat"))).ok()?;
    // Fields after the `(comm)`: state is index 0, ppid 1, pgrp 2, session 3.
    s.rsplit_once(") ")?.1.split(' ').nth(idx)?.parse().ok()
}

pub(crate) fn ancestors(sys: &SysRoot, pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut p = pid;
    while let Some(pp) = stat_field(sys, p, 1) {
        if pp <= 1 || out.contains(&pp) || out.len() > 64 {
            break;
        }
        out.push(pp);
        p = pp;
    }
    out
}

fn devno_of(path: &Path) -> Result<(u32, u32)> {
    let m = fs::metadata(path).map_err(|e| Error::io("stat", e).device(path))?;
    if !m.file_type().is_block_device() {
        return Err(Error::invalid("not a block device").device(path));
    }
    let r = m.rdev();
    Ok((libc::major(r), libc::minor(r)))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::io("encoding JSON", std::io::Error::other(e)))?;
    fs::write(&tmp, text).map_err(|e| Error::io("writing", e).device(&tmp))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming", e).device(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("reading", e).device(path))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())).device(path))
}

/// The filesystem type to mount `dev` with, from its superblock.
fn fstype_of(dev: &Path) -> Result<String> {
    let id = crate::exec::identity::identity_of(dev)
        .map_err(|e| e.hint("the new root device must hold a copy of the root (`reroot copy`)"))?;
    // The ext4 driver mounts ext2 and ext3 too, and is always there when ext2/3 are.
    Ok(if id.fstype.is_ext() {
        "ext4"
    } else {
        id.fstype.name()
    }
    .to_owned())
}

/// The stage directory under the state directory.
fn stage_of(state_dir: &Path) -> PathBuf {
    state_dir.join("stage")
}

fn newroot_of(state_dir: &Path) -> PathBuf {
    stage_of(state_dir).join("newroot")
}

/// Check what can be checked without changing anything; returns the
/// mountinfo and a dry-run plan.
fn precheck(sys: &SysRoot, o: &PivotOptions) -> Result<MountPlan> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::refused("reroot pivot must run as root"));
    }
    if matches!(o.restart, RestartMode::Auto | RestartMode::System) {
        let init = crate::probe::init::detect(sys, Path::new("/run"));
        if let Some((why, advice)) = crate::plan::services::restart_refusal(&init) {
            return Err(Error::refused(why).hint(advice).stage(Stage::Pivot));
        }
    }
    let new_devno = devno_of(&o.new_dev)?;
    let mounts = mountinfo::read(sys, "self")?;
    plan::plan_mounts(&plan::MountFacts {
        mounts: &mounts,
        stage: &stage_of(&o.state_dir),
        new_dev: new_devno,
        put_old: &o.put_old,
    })
    .map_err(|e| e.stage(Stage::Pivot))
}

/// Callback for the lines of the worker's log as they come.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Start a pivot and follow it until the worker reports: the operator's
/// entry point. The worker survives the operator's terminal going away.
pub fn launch(o: &PivotOptions, progress: Progress<'_>) -> Result<PivotReport> {
    let sys = SysRoot::live();
    let forbid = std::env::var(FORBID_NS_ENV).ok();
    check_forbidden_ns(&sys, forbid.as_deref())?;
    precheck(&sys, o)?;
    fs::create_dir_all(&o.state_dir)
        .map_err(|e| Error::io("creating the state directory", e).device(&o.state_dir))?;
    let result_path = o.state_dir.join("result.json");
    let _ = fs::remove_file(&result_path);
    let me = std::process::id();
    let req = Request {
        options: o.clone(),
        mnt_ns: mnt_ns(&sys, "self")?,
        operator_pid: me,
        operator_sid: stat_field(&sys, me, 3),
        operator_ancestors: ancestors(&sys, me),
        exe: fs::read_link(sys.proc("self/exe"))
            .map_err(|e| Error::io("reading /proc/self/exe", e))?,
        forbid_ns: forbid,
    };
    let req_path = o.state_dir.join("request.json");
    write_json(&req_path, &req)?;
    let log_path = o.state_dir.join("pivot.log");
    let mut log = ActionLog::open(&log_path);
    log.line(&format!(
        "pivot requested: {} -> {}, old root at {}",
        req.exe.display(),
        o.new_dev.display(),
        o.put_old.display()
    ));
    let start_len = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut child = spawn_worker(&req, &req_path, &log_path)?;

    // Follow the log until the result appears.
    let mut reader = fs::File::open(&log_path)
        .map(std::io::BufReader::new)
        .map_err(|e| Error::io("opening the log", e).device(&log_path))?;
    let _ = std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(start_len));
    let mut line = String::new();
    let mut gone_since: Option<Instant> = None;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => {
                progress(line.trim_end());
                continue;
            }
            _ => {}
        }
        if result_path.exists() {
            // Drain what is left of the log.
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                progress(line.trim_end());
                line.clear();
            }
            break;
        }
        let alive = match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => worker_alive(&o.state_dir),
        };
        if !alive {
            // Give a last write a moment to land.
            let since = *gone_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                return Err(Error::new(ErrorKind::Io(
                    "the pivot worker ended without a result".into(),
                ))
                .stage(Stage::Pivot)
                .hint(format!("read {}", log_path.display())));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(mut c) = child {
        let _ = c.wait();
    }
    read_json(&result_path)
}

fn worker_alive(state_dir: &Path) -> bool {
    fs::read_to_string(state_dir.join("worker.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Start the worker: as a transient systemd unit when systemd is PID 1 (so
/// logging out, which stops the session's scope, cannot stop it), else in a
/// session of its own with SIGHUP ignored. Returns the child when it is ours.
fn spawn_worker(
    req: &Request,
    req_path: &Path,
    log_path: &Path,
) -> Result<Option<std::process::Child>> {
    let pid1 = fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let _ = fs::remove_file(req.options.state_dir.join("worker.pid"));
    if pid1.trim() == "systemd"
        && Path::new("/run/systemd/system").is_dir()
        && crate::exec::tools::find("systemd-run").is_some()
    {
        let unit = format!("reroot-pivot-{}", std::process::id());
        let out = Command::new("systemd-run")
            .arg(format!("--unit={unit}"))
            .args(["--collect", "--quiet", "--service-type=exec"])
            .arg(format!(
                "--property=StandardOutput=append:{}",
                log_path.display()
            ))
            .arg(format!(
                "--property=StandardError=append:{}",
                log_path.display()
            ))
            .arg(&req.exe)
            .args(["pivot", "--worker"])
            .arg(req_path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running systemd-run", e))?;
        if !out.status.success() {
            return Err(Error::tool(format!(
                "systemd-run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        return Ok(None);
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| Error::io("opening the log", e).device(log_path))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("duplicating the log", e))?;
    let mut cmd = Command::new(&req.exe);
    cmd.args(["pivot", "--worker"])
        .arg(req_path)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    crate::sys::process::spawn_detached(&mut cmd).map(Some)
}

/// Things made before the pivot, undone in reverse on failure.
#[derive(Debug, Default)]
struct Undo {
    steps: Vec<(String, PathBuf)>,
}

impl Undo {
    fn push(&mut self, what: &str, p: &Path) {
        self.steps.push((what.to_owned(), p.to_path_buf()));
    }

    fn run(&mut self, log: &mut ActionLog) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some((what, p)) = self.steps.pop() {
            let r = match what.as_str() {
                "umount" => sysmount::umount(&p),
                _ => fs::remove_dir(&p).map_err(|e| Error::io("rmdir", e).device(&p)),
            };
            match r {
                Ok(()) => log.line(&format!("undo: {what} {}", p.display())),
                Err(e) => {
                    log.line(&format!("undo FAILED: {what} {}: {e}", p.display()));
                    errors.push(format!("{what} {}: {e}", p.display()));
                }
            }
        }
        errors
    }
}

fn mkdir_p(p: &Path, undo: Option<&mut Undo>) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = p.to_path_buf();
    while !cur.exists() {
        missing.push(cur.clone());
        if !cur.pop() {
            break;
        }
    }
    fs::create_dir_all(p).map_err(|e| Error::io("mkdir", e).device(p))?;
    if let Some(u) = undo {
        for m in missing.iter().rev() {
            u.push("rmdir", m);
        }
    }
    Ok(())
}

fn looks_like_a_root(dir: &Path) -> bool {
    let has = |p: &str| dir.join(p).symlink_metadata().is_ok();
    dir.join("etc").is_dir() && (has("sbin/init") || has("bin/sh") || has("usr/bin/sh"))
}

/// The worker: `reroot pivot --worker REQUEST`. Writes `result.json` and
/// returns its report (the CLI ignores it: the operator's command reads the
/// file). After the pivot it re-executes itself from the new root, so this
/// call may not return in the first process image; the re-executed worker
/// calls [`worker_after_pivot`].
pub fn worker(req_path: &Path) -> Result<PivotReport> {
    let req: Request = read_json(req_path)?;
    let o = req.options.clone();
    let _ = crate::sys::process::ignore_sighup();
    let mut log = ActionLog::open(&o.state_dir.join("pivot.log"));
    let _ = fs::write(
        o.state_dir.join("worker.pid"),
        std::process::id().to_string(),
    );
    log.line(&format!(
        "worker started (pid {}, session {:?})",
        std::process::id(),
        stat_field(&SysRoot::live(), std::process::id(), 3)
    ));
    let mut report = PivotReport::empty(&o);
    match pivot_phase(&req, &mut log, &mut report) {
        Ok(state) => {
            // Continue from the new root's copy of reroot, so that reroot
            // itself does not keep the old root busy.
            let state_path = o.state_dir.join("state.json");
            if let Err(e) = write_json(&state_path, &state) {
                log.line(&format!("cannot save state: {e}"));
            }
            if req.exe.is_file() {
                log.line(&format!(
                    "re-executing {} from the new root",
                    req.exe.display()
                ));
                let err = reexec(&req.exe, req_path);
                log.line(&format!(
                    "re-exec failed ({err}); continuing from the old root"
                ));
                report.warnings.push(format!("re-exec failed: {err}"));
            } else {
                let w = format!(
                    "{} is not on the new root: the worker continues from the old root",
                    req.exe.display()
                );
                log.line(&w);
                report.warnings.push(w);
            }
            worker_continue(&req, state, report, log)
        }
        Err(e) => {
            log.line(&format!("FAILED: {e}"));
            report.error = Some(e.to_string());
            report.error_kind = Some(kind_name(e.kind()).to_owned());
            report.hint = e.hint_text().map(str::to_owned);
            let _ = write_json(&o.state_dir.join("result.json"), &report);
            Ok(report)
        }
    }
}

fn reexec(exe: &Path, req_path: &Path) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &std::ffi::OsStr| CString::new(p.as_bytes()).ok();
    let (Some(prog), Some(req)) = (c(exe.as_os_str()), c(req_path.as_os_str())) else {
        return "path with a NUL byte".into();
    };
    let word = |w: &str| CString::new(w).unwrap_or_default();
    let args = [
        prog.clone(),
        word("pivot"),
        word("--worker"),
        req,
        word("--after-pivot"),
    ];
    match nix::unistd::execv(&prog, &args) {
        Ok(never) => match never {},
        Err(e) => e.desc().to_owned(),
    }
}

/// The re-executed worker: `reroot pivot --worker REQUEST --after-pivot`.
pub fn worker_after_pivot(req_path: &Path) -> Result<PivotReport> {
    let req: Request = read_json(req_path)?;
    let _ = crate::sys::process::ignore_sighup();
    let mut log = ActionLog::open(&req.options.state_dir.join("pivot.log"));
    let state: State = read_json(&req.options.state_dir.join("state.json"))?;
    log.line(&format!(
        "worker running from the new root: {}",
        fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    ));
    let mut report = PivotReport::empty(&req.options);
    report.reexec = Some(format!("re-executed {}", req.exe.display()));
    worker_continue(&req, state, report, log)
}

/// Before and including the pivot and the mount moves.
fn pivot_phase(req: &Request, log: &mut ActionLog, report: &mut PivotReport) -> Result<State> {
    let o = &req.options;
    let sys = SysRoot::live();
    check_forbidden_ns(&sys, req.forbid_ns.as_deref())?;
    let ns = mnt_ns(&sys, "self")?;
    if ns != req.mnt_ns {
        return Err(Error::refused(format!(
            "the worker runs in mount namespace {ns}, not in {} where the pivot was asked for",
            req.mnt_ns
        )));
    }
    let new_devno = devno_of(&o.new_dev)?;
    let fstype = fstype_of(&o.new_dev)?;
    report.new_fstype = Some(fstype.clone());
    let _ = nix::unistd::chdir("/");

    // --- Reversible preparation -------------------------------------------
    let mut undo = Undo::default();
    let stage = stage_of(&o.state_dir);
    let newroot = newroot_of(&o.state_dir);
    let prep = (|| -> Result<(MountPlan, String)> {
        mkdir_p(&stage, Some(&mut undo))?;
        sysmount::mount(
            Path::new("reroot-stage"),
            &stage,
            "tmpfs",
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0700,size=64k"),
        )?;
        undo.push("umount", &stage);
        log.line(&format!("mounted the staging tmpfs at {}", stage.display()));
        // Private, so the new root under it is private too and nothing
        // mounted here propagates to other namespaces.
        sysmount::set_propagation(&stage, PropagationType::Private, false)?;
        fs::create_dir(&newroot).map_err(|e| Error::io("mkdir", e).device(&newroot))?;
        sysmount::mount(
            &o.new_dev,
            &newroot,
            &fstype,
            nix::mount::MsFlags::empty(),
            None,
        )?;
        undo.push("umount", &newroot);
        log.line(&format!(
            "mounted {} ({fstype}) at {}",
            o.new_dev.display(),
            newroot.display()
        ));
        if !looks_like_a_root(&newroot) {
            return Err(Error::refused(
                "the new root device has no /etc and no /sbin/init or /bin/sh: not a root filesystem",
            )
            .device(&o.new_dev));
        }
        let mi_text = fs::read_to_string(sys.proc("self/mountinfo"))
            .map_err(|e| Error::io("reading mountinfo", e))?;
        let mounts = mountinfo::parse(&mi_text)?;
        let plan = plan::plan_mounts(&plan::MountFacts {
            mounts: &mounts,
            stage: &stage,
            new_dev: new_devno,
            put_old: &o.put_old,
        })?;
        for w in &plan.warnings {
            log.line(&format!("warning: {w}"));
        }
        let put_old_in_new = join_under(&newroot, &o.put_old);
        if let Ok(rd) = fs::read_dir(&put_old_in_new) {
            if rd.count() > 0 {
                return Err(Error::refused(format!(
                    "{} is not empty on the new root",
                    o.put_old.display()
                ))
                .hint("choose another --oldroot"));
            }
        }
        mkdir_p(&put_old_in_new, None)?;
        Ok((plan, mi_text))
    })();
    let (plan, mi_text) = match prep {
        Ok(p) => p,
        Err(e) => {
            let errs = undo.run(log);
            report.rolled_back = errs.is_empty();
            let e = if errs.is_empty() {
                e.hint("nothing was changed: the preparation was undone")
            } else {
                e.hint(format!("undo failed too: {}", errs.join("; ")))
            };
            return Err(e);
        }
    };
    report.old_source = Some(plan.old_root_source.clone());
    report.old_devno = Some(plan.old_root_dev);
    let mut state = State {
        request: req.clone(),
        plan: plan.clone(),
        mountinfo_before: mi_text,
        new_fstype: fstype,
        new_devno,
        mounts: Vec::new(),
        root_propagation_after: None,
        api_moved_ms: None,
        all_moved_ms: None,
        warnings: plan.warnings.clone(),
    };

    // --- The pivot ----------------------------------------------------------
    log.line(&format!(
        "pivot_root {} {}",
        newroot.display(),
        join_under(&newroot, &o.put_old).display()
    ));
    let put_old_rel = o.put_old.strip_prefix("/").unwrap_or(&o.put_old);
    let pivoted = nix::unistd::chdir(&newroot)
        .map_err(|e| Error::io("chdir to the new root", std::io::Error::from(e)))
        .and_then(|()| sysmount::pivot_root(Path::new("."), put_old_rel));
    if let Err(e) = pivoted {
        let _ = nix::unistd::chdir("/");
        let errs = undo.run(log);
        report.rolled_back = errs.is_empty();
        return Err(e.stage(Stage::Pivot).hint(if errs.is_empty() {
            "nothing was changed: the preparation was undone".to_owned()
        } else {
            format!("undo failed too: {}", errs.join("; "))
        }));
    }
    let t0 = Instant::now();
    let _ = nix::unistd::chdir("/");
    report.pivoted = true;
    log.line("pivoted: / is the new root");

    // The old root must not be shared for mounts to be moved off it.
    if let Err(e) = sysmount::set_propagation(&o.put_old, PropagationType::Private, false) {
        log.line(&format!(
            "making {} private failed: {e}",
            o.put_old.display()
        ));
    }
    let api_count = plan
        .steps
        .iter()
        .filter(|s| plan::API_MOUNTS.iter().any(|a| s.to == Path::new(a)))
        .count();
    let mut api_done = 0;
    for s in &plan.steps {
        let r = apply_step(s);
        let action = match &s.action {
            MountAction::Move => "move",
            MountAction::Rebind { .. } => "rebind",
            MountAction::ReplaceBind { .. } => "replace-bind",
        };
        match &r {
            Ok(()) => log.line(&format!(
                "{action} {} -> {} ({}, +{} ms)",
                s.from.display(),
                s.to.display(),
                s.fstype,
                t0.elapsed().as_millis()
            )),
            Err(e) => log.line(&format!("{action} {} FAILED: {e}", s.to.display())),
        }
        state.mounts.push(MountOutcome {
            to: s.to.clone(),
            action: action.into(),
            fstype: s.fstype.clone(),
            ok: r.is_ok(),
            error: r.err().map(|e| e.to_string()),
            propagation_before: s.propagation.clone(),
            propagation_after: None,
        });
        if plan::API_MOUNTS.iter().any(|a| s.to == Path::new(a)) {
            api_done += 1;
            if api_done == api_count {
                state.api_moved_ms = Some(ms(t0));
            }
        }
    }
    state.all_moved_ms = Some(ms(t0));
    // The old binds that were recreated from the new root: their submounts
    // have moved, so they can go (a busy one stays for `finish`).
    for s in plan.steps.iter().rev() {
        if matches!(s.action, MountAction::Rebind { .. }) {
            match sysmount::umount(&s.from) {
                Ok(()) => log.line(&format!("unmounted the old bind {}", s.from.display())),
                Err(e) => log.line(&format!("old bind {} stays: {e}", s.from.display())),
            }
        }
    }
    // Shared again right away, before any service restarts: a service
    // started now with a private mount namespace gets a slave of the new
    // root, not a copy of the old one.
    if let Some(kind) = PropagationType::from_word(&plan.root_propagation) {
        if kind != PropagationType::Private && kind != PropagationType::Slave {
            match sysmount::set_propagation(Path::new("/"), kind, false) {
                Ok(()) => log.line(&format!("made / {} again", kind.word())),
                Err(e) => log.line(&format!("making / {} FAILED: {e}", kind.word())),
            }
        }
    }
    // The old root joins a peer group of its own: mount namespaces made
    // from now on (restarted services with PrivateTmp and the like) get a
    // slave copy of it, which the unmount in `finish` reaches. A private
    // old root would stay alive in each of them.
    if plan.root_propagation == "shared" {
        match sysmount::set_propagation(&o.put_old, PropagationType::Shared, false) {
            Ok(()) => log.line(&format!("made {} shared", o.put_old.display())),
            Err(e) => log.line(&format!(
                "making {} shared FAILED: {e}",
                o.put_old.display()
            )),
        }
    }
    log.line(&format!(
        "mounts back in place: API filesystems after {} ms, all after {} ms",
        state.api_moved_ms.unwrap_or(0),
        state.all_moved_ms.unwrap_or(0)
    ));
    // The staging tmpfs came along with /run (or stayed under the old
    // root); it is empty now.
    let stage_now = [stage.clone(), join_under(&o.put_old, &stage)];
    for p in stage_now {
        if sysmount::umount(&p).is_ok() {
            log.line(&format!("unmounted the staging tmpfs at {}", p.display()));
            let _ = fs::remove_dir(&p);
            break;
        }
    }
    verify_mounts(&sys, &mut state, log);
    Ok(state)
}

fn ms(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn join_under(base: &Path, abs: &Path) -> PathBuf {
    base.join(abs.strip_prefix("/").unwrap_or(abs))
}

fn apply_step(s: &plan::MountStep) -> Result<()> {
    match &s.action {
        MountAction::Move => {
            mkdir_p(&s.to, None)?;
            sysmount::ms_move(&s.from, &s.to)
        }
        MountAction::Rebind { fs_root } => {
            mkdir_p(&s.to, None)?;
            rebind(fs_root, s)
        }
        MountAction::ReplaceBind { fs_root } => {
            sysmount::umount(&s.to)?;
            rebind(fs_root, s)
        }
    }
}

/// Bind the new root's `fs_root` at the step's place with its flags and propagation.
fn rebind(fs_root: &Path, s: &plan::MountStep) -> Result<()> {
    sysmount::bind(fs_root, &s.to, false)?;
    let flags = sysmount::flags_from_options(&s.options);
    if !flags.is_empty() {
        sysmount::remount_bind(&s.to, flags)?;
    }
    if let Some(k) = PropagationType::from_word(&s.propagation) {
        if k != PropagationType::Slave {
            sysmount::set_propagation(&s.to, k, false)?;
        }
    }
    Ok(())
}

/// Compare the mounts now with the plan: each in place, same type, same propagation.
fn verify_mounts(sys: &SysRoot, state: &mut State, log: &mut ActionLog) {
    let Ok(now) = mountinfo::read(sys, "self") else {
        log.line("cannot re-read mountinfo to verify the mounts");
        return;
    };
    let top = |p: &Path| -> Option<&Mount> {
        now.iter().filter(|m| m.mount_point == p).find(|m| {
            !now.iter()
                .any(|c| c.parent_id == m.mount_id && c.mount_point == p)
        })
    };
    if let Some(r) = top(Path::new("/")) {
        state.root_propagation_after = Some(r.propagation.make_flag().to_owned());
        if (r.major, r.minor) != state.new_devno {
            state.warnings.push("/ is not the new root device".into());
        }
    }
    for m in &mut state.mounts {
        match top(&m.to) {
            Some(cur) if cur.fstype == m.fstype => {
                m.propagation_after = Some(cur.propagation.make_flag().to_owned());
                if m.propagation_after.as_deref() != Some(m.propagation_before.as_str()) {
                    let w = format!(
                        "{} was {} and is {} now",
                        m.to.display(),
                        m.propagation_before,
                        cur.propagation.make_flag()
                    );
                    log.line(&format!("warning: {w}"));
                    state.warnings.push(w);
                }
            }
            _ if m.ok => {
                m.ok = false;
                m.error = Some("not found at its place afterwards".into());
            }
            _ => {}
        }
    }
}

/// After the mount moves (in the re-executed worker or, failing that, in
/// the first one): list, restart, check sshd, report.
fn worker_continue(
    req: &Request,
    state: State,
    mut report: PivotReport,
    mut log: ActionLog,
) -> Result<PivotReport> {
    let o = &req.options;
    let sys = SysRoot::live();
    report.pivoted = true;
    report.new_fstype = Some(state.new_fstype.clone());
    report.old_source = Some(state.plan.old_root_source.clone());
    report.old_devno = Some(state.plan.old_root_dev);
    report.mounts = state.mounts.clone();
    report.root_propagation = Some((
        state.plan.root_propagation.clone(),
        state.root_propagation_after.clone().unwrap_or_default(),
    ));
    report.api_moved_ms = state.api_moved_ms;
    report.all_moved_ms = state.all_moved_ms;
    report.warnings.extend(state.warnings.iter().cloned());
    let old_dev = libc::makedev(state.plan.old_root_dev.0, state.plan.old_root_dev.1);
    reidentify_old_root(req, &state, &mut report, &mut log);
    let op = Operator {
        self_pids: vec![std::process::id(), req.operator_pid],
        sid: req.operator_sid,
        ancestors: req.operator_ancestors.clone(),
    };
    let mut problems: Vec<String> = report
        .mounts
        .iter()
        .filter(|m| !m.ok)
        .map(|m| format!("{} not back in place", m.to.display()))
        .collect();
    if o.restart != RestartMode::None {
        let holders = holders_on(&sys, old_dev, &mut log);
        report.groups = plan::plan_restarts(&holders, &op);
        for g in &report.groups {
            log.line(&format!(
                "on the old root: {:?} {} pids {:?} ({})",
                g.class,
                g.unit.as_deref().unwrap_or("-"),
                g.pids,
                g.note
            ));
        }
    }
    if matches!(o.restart, RestartMode::Auto | RestartMode::System) {
        let manager = Manager::detect(&sys, Path::new("/run"));
        log.line(&format!("service manager: {manager:?}"));
        let ctx = services::RestartCtx {
            sys: &sys,
            manager: &manager,
            old_dev,
            command_limit: Duration::from_secs(o.command_timeout_secs),
            sshd_limit: Duration::from_secs(o.sshd_timeout_secs),
        };
        let to_restart: Vec<RestartGroup> = report
            .groups
            .iter()
            .filter(|g| {
                o.restart == RestartMode::Auto || g.class != plan::RestartClass::UserManager
            })
            .cloned()
            .collect();
        let (outcomes, checks) =
            services::restart_all(&to_restart, &ctx, &mut |l: &str| log.line(l));
        report.manager = Some(manager);
        for c in &checks {
            if !c.listening {
                problems.push(format!(
                    "{} is not listening again on {:?}: do NOT log out; restart it by hand",
                    c.unit, c.ports
                ));
            }
        }
        for oc in &outcomes {
            if let services::Status::Failed(e) = &oc.status {
                problems.push(format!(
                    "restarting {} failed: {e}",
                    oc.unit.as_deref().unwrap_or("PID 1")
                ));
            }
        }
        report.restarts = outcomes;
        report.sshd = checks;
        let after = holders_on(&sys, old_dev, &mut log);
        report.remaining = plan::plan_restarts(&after, &op)
            .into_iter()
            .filter(|g| g.class != plan::RestartClass::Reroot)
            .collect();
        for g in &report.remaining {
            log.line(&format!(
                "still on the old root: {} pids {:?} ({})",
                g.unit.as_deref().unwrap_or("-"),
                g.pids,
                g.note
            ));
        }
    } else if o.restart == RestartMode::None {
        log.line(
            "--restart none: nothing listed or restarted; restart sshd yourself before logging out",
        );
    }
    report.ok = problems.is_empty();
    if !problems.is_empty() {
        report.error = Some(problems.join("; "));
        report.error_kind = Some("io".into());
        report.hint = Some(format!("see {}", log.path().display()));
    }
    log.line(&format!(
        "pivot {}",
        if report.ok {
            "done"
        } else {
            "done with problems"
        }
    ));
    write_json(&o.state_dir.join("result.json"), &report)?;
    Ok(report)
}

/// Right after the pivot: no reboot may land on the old root. Relabel it
/// (and give it a new UUID when that is possible while it is mounted), then
/// install the shutdown guard for what must wait until it is unmounted.
fn reidentify_old_root(
    req: &Request,
    state: &State,
    report: &mut PivotReport,
    log: &mut ActionLog,
) {
    let sys = SysRoot::live();
    let old = crate::exec::finish::device_node(
        &sys,
        state.plan.old_root_dev,
        Some(Path::new(&state.plan.old_root_source)),
    );
    let new = crate::exec::finish::device_node(&sys, state.new_devno, Some(&req.options.new_dev));
    let Some(old) = old else {
        let w = format!(
            "the old root's device {}:{} has no device node: it was not relabelled; run `reroot \
             finish` before rebooting",
            state.plan.old_root_dev.0, state.plan.old_root_dev.1
        );
        log.line(&w);
        report.warnings.push(w);
        return;
    };
    match crate::exec::identity::reidentify_mounted(&old) {
        Ok(r) => {
            for c in &r.commands {
                log.line(&format!("old root identity: {c}"));
            }
            log.line(&format!(
                "old root {}: label {:?} -> {:?}, UUID {} -> {}{}",
                old.display(),
                r.label_before,
                r.label_after,
                r.uuid_before,
                r.uuid_after,
                r.uuid_deferred
                    .as_deref()
                    .map(|w| format!(" (new UUID when unmounted: {w})"))
                    .unwrap_or_default()
            ));
            let deferred = r.uuid_deferred.is_some();
            report.old_identity = Some(r);
            if deferred {
                let exe = if req.exe.is_file() {
                    Ok(req.exe.clone())
                } else {
                    Err(format!(
                        "{} is not on the new root: no shutdown guard; run `reroot finish` \
                         before rebooting",
                        req.exe.display()
                    ))
                };
                let g = exe.and_then(|exe| {
                    crate::exec::finish::install_shutdown_guard(
                        &exe,
                        &req.options.put_old,
                        &req.options.state_dir,
                    )
                });
                log.line(&format!("shutdown guard: {g:?}"));
                report.shutdown_guard = Some(g);
            }
        }
        Err(e) => {
            let w = format!("the old root {} was not relabelled: {e}", old.display());
            log.line(&w);
            report.warnings.push(w);
        }
    }
    if let Some(new) = new {
        let guard = matches!(report.shutdown_guard, Some(Ok(_)));
        report.names = crate::exec::identity::names_now(&sys, &old, &new, guard);
        for n in &report.names {
            log.line(&format!(
                "name {} ({}): {:?}{}",
                n.name,
                n.used_by,
                n.target,
                n.left
                    .as_deref()
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ));
        }
    }
}

/// Processes that still use the filesystem `dev` (`st_dev`): executable,
/// cwd, root, open files, mapped files, bound sockets (from
/// [`probe::process::scan`](crate::probe::process::scan)), as restart-plan
/// holders; and the other mount namespaces that still have it mounted.
pub(crate) fn scan_old_root(
    sys: &SysRoot,
    dev: u64,
) -> Result<(Vec<Holder>, Vec<ForeignNamespace>)> {
    let scan = process::scan(sys, &process::Filter::devices([dev]).skip_self())?;
    let holders = scan
        .processes
        .iter()
        .map(|p| {
            let mut uses = Vec::new();
            for (what, f) in [("exe", &p.exe), ("cwd", &p.cwd), ("root", &p.root)] {
                if let Some(f) = f {
                    uses.push(format!("{what} {}", f.path.display()));
                }
            }
            uses.extend(
                p.fds
                    .iter()
                    .map(|f| format!("fd {} {}", f.fd, f.file.path.display())),
            );
            uses.extend(
                p.maps
                    .iter()
                    .map(|m| format!("map {}", m.file.path.display())),
            );
            uses.extend(
                p.sockets
                    .iter()
                    .map(|s| format!("socket {}", s.path.display())),
            );
            Holder {
                pid: p.pid,
                comm: p.comm.clone(),
                unit: p.service.as_ref().map(|s| s.name().to_owned()),
                sid: stat_field(sys, p.pid, 3),
                uses,
            }
        })
        .collect();
    Ok((holders, scan.foreign_namespaces))
}

fn holders_on(sys: &SysRoot, dev: u64, log: &mut ActionLog) -> Vec<Holder> {
    match scan_old_root(sys, dev) {
        Ok((h, _)) => h,
        Err(e) => {
            log.line(&format!("listing processes failed: {e}"));
            Vec::new()
        }
    }
}

/// Read a finished pivot's state (`state.json` under `state_dir`), for `finish`.
pub fn read_state(state_dir: &Path) -> Result<State> {
    read_json(&state_dir.join("state.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_errors_map_back_to_kinds() {
        let mut r = PivotReport::empty(&PivotOptions::new("/dev/x"));
        assert!(r.to_error().is_none());
        r.error = Some("sshd is not listening".into());
        r.error_kind = Some("busy".into());
        r.hint = Some("do not log out".into());
        let e = r.to_error().unwrap();
        assert!(matches!(e.kind(), ErrorKind::Busy(_)));
        assert_eq!(e.hint_text(), Some("do not log out"));
        assert_eq!(kind_name(&ErrorKind::Refused(String::new())), "refused");
    }

    #[test]
    fn forbidden_namespace_refuses() {
        let sys = SysRoot::live();
        let here = mnt_ns(&sys, "self").unwrap();
        assert!(check_forbidden_ns(&sys, Some(&here)).is_err());
        assert!(check_forbidden_ns(&sys, Some("mnt:[1]")).is_ok());
        assert!(check_forbidden_ns(&sys, None).is_ok());
    }

    #[test]
    fn undo_runs_in_reverse_and_reports() {
        let d = tempfile::tempdir().unwrap();
        let mut log = ActionLog::open(&d.path().join("log"));
        let mut u = Undo::default();
        mkdir_p(&d.path().join("a/b/c"), Some(&mut u)).unwrap();
        assert_eq!(u.steps.len(), 3);
        assert!(u.run(&mut log).is_empty());
        assert!(!d.path().join("a").exists());
        let text = fs::read_to_string(d.path().join("log")).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().next().unwrap().contains("a/b/c"));
    }

    #[test]
    fn root_detection_and_ancestors() {
        let d = tempfile::tempdir().unwrap();
        assert!(!looks_like_a_root(d.path()));
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::create_dir_all(d.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("busybox", d.path().join("bin/sh")).unwrap();
        assert!(looks_like_a_root(d.path()));
        let sys = SysRoot::live();
        let a = ancestors(&sys, std::process::id());
        assert!(!a.contains(&1) && !a.contains(&std::process::id()));
        assert_eq!(
            stat_field(&sys, std::process::id(), 3),
            Some(nix::unistd::getsid(None).unwrap().as_raw() as u32)
        );
    }
}
