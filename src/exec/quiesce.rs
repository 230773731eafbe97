//! The quiesce stage and its undo: run a [`QuiescePlan`] (create what later
//! stages need, restart and stop services, unmount, detach loops, swap off,
//! let journald go, `remount,ro`), recording every step done in a JSON state
//! file; when the remount fails with EBUSY, re-scan and name who holds the
//! root. [`resume`] undoes the recorded steps in reverse order.
//!
//! Services go through a [`ServiceManager`]: systemd (`systemctl`,
//! `journalctl`), OpenRC (`rc-service`), or none (service steps are skipped
//! with a note). Mounts and remounts use mount(2) directly (errno tells EBUSY
//! apart); swap and loop devices use util-linux.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::check::{self, CheckOptions};
use super::event::EventSink;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::plan::preflight::{Finding, MountSpec, Report};
use crate::plan::quiesce::{self, QuiescePlan, Step};
use crate::probe::SysRoot;
use crate::probe::cgroup::Service;
use crate::probe::init::InitSystem;
use crate::probe::loops::LoopDevice;
use crate::probe::mountinfo;

/// Where the state file goes unless told otherwise (tmpfs, not the root).
pub const DEFAULT_STATE_FILE: &str = "/run/reroot/quiesce.json";

/// How to quiesce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuiesceOptions {
    /// The check to run first (root, run dir, pids to leave out).
    pub check: CheckOptions,
    /// The state file recording what was done.
    pub state_file: PathBuf,
    /// Go on although blockers remain that no step resolves.
    pub force: bool,
    /// Directories to create on the root before it goes read-only, relative to it.
    pub prepare_dirs: Vec<PathBuf>,
}

impl Default for QuiesceOptions {
    fn default() -> Self {
        Self {
            check: CheckOptions::default(),
            state_file: PathBuf::from(DEFAULT_STATE_FILE),
            force: false,
            prepare_dirs: quiesce::DEFAULT_PREPARE_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// The state file: what quiesce did, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// The root.
    pub root: PathBuf,
    /// The root's device, `MAJOR:MINOR`.
    pub device: String,
    /// The init system that stopped the services.
    pub init: InitSystem,
    /// The steps done, in order; resume undoes them last to first.
    pub steps: Vec<Step>,
}

impl State {
    /// Read a state file; `None` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::corrupt(format!("state file: {e}"))
                    .device(path)
                    .hint("it is JSON written by `reroot quiesce`; fix or remove it")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading the state file", e).device(path)),
        }
    }

    /// Write atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |what: &str, e| Error::io(format!("{what} the state file"), e).device(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        let mut f = fs::File::create(&tmp).map_err(|e| io("creating", e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("writing", e))?;
        fs::rename(&tmp, path).map_err(|e| io("renaming", e))
    }
}

/// What quiesce did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuiesceOutcome {
    /// The root.
    pub root: PathBuf,
    /// The root is read-only now.
    pub read_only: bool,
    /// Steps done in this run.
    pub done: Vec<Step>,
    /// When the remount failed: the blockers a re-scan found.
    pub holders: Vec<Finding>,
    /// Notes (skipped service steps, ...).
    pub notes: Vec<String>,
    /// The state file.
    pub state_file: PathBuf,
}

/// Stops and starts services.
pub trait ServiceManager {
    /// Stop a service; returns every unit that went down with it.
    fn stop(&self, service: &Service) -> Result<Vec<String>>;
    /// Start units (as returned by `stop`).
    fn start(&self, units: &[String]) -> Result<()>;
    /// Restart a service.
    fn restart(&self, service: &Service) -> Result<()>;
    /// Let journald move its journal off `/var` (`journalctl --relinquish-var`).
    fn relinquish_journal(&self) -> Result<()>;
    /// Let journald write to `/var` again (`journalctl --flush`).
    fn flush_journal(&self) -> Result<()>;
}

/// Run a program; its stdout, or a `Tool` error with its stderr.
fn run_tool(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        Error::tool(format!("cannot run {program}: {e}"))
            .hint(format!("is {program} installed and on PATH?"))
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::tool(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// systemd, through `systemctl` and `journalctl`.
#[derive(Debug, Clone)]
pub struct Systemd {
    /// The `systemctl` program.
    pub systemctl: String,
    /// The `journalctl` program.
    pub journalctl: String,
}

impl Default for Systemd {
    fn default() -> Self {
        Self {
            systemctl: "systemctl".into(),
            journalctl: "journalctl".into(),
        }
    }
}

/// Units in `systemctl list-units --plain --no-legend` output (first column).
pub fn parse_unit_list(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.contains('.'))
        .map(str::to_owned)
        .collect()
}

impl Systemd {
    fn active_units(&self) -> Result<BTreeSet<String>> {
        run_tool(
            &self.systemctl,
            &[
                "list-units",
                "--state=active",
                "--plain",
                "--no-legend",
                "--no-pager",
                "--type=service,socket",
            ],
        )
        .map(|t| parse_unit_list(&t))
    }
}

impl ServiceManager for Systemd {
    fn stop(&self, service: &Service) -> Result<Vec<String>> {
        let unit = service.name();
        // Its sockets go too, or socket activation starts it again
        // (rsyslog.service and syslog.socket).
        let triggers =
            run_tool(&self.systemctl, &["show", "-P", "TriggeredBy", unit]).unwrap_or_default();
        let before = self.active_units()?;
        let mut args = vec!["stop", unit];
        args.extend(triggers.split_whitespace());
        run_tool(&self.systemctl, &args)?;
        let after = self.active_units()?;
        let mut gone: Vec<String> = before.difference(&after).cloned().collect();
        if !gone.iter().any(|u| u == unit) {
            gone.push(unit.to_owned());
        }
        // Sockets last, so resume starts services before their sockets.
        gone.sort_by_key(|u| (u.ends_with(".socket"), u.clone()));
        Ok(gone)
    }

    fn start(&self, units: &[String]) -> Result<()> {
        let mut args = vec!["start"];
        args.extend(units.iter().map(String::as_str));
        run_tool(&self.systemctl, &args).map(drop)
    }

    fn restart(&self, service: &Service) -> Result<()> {
        run_tool(&self.systemctl, &["restart", service.name()]).map(drop)
    }

    fn relinquish_journal(&self) -> Result<()> {
        run_tool(&self.journalctl, &["--relinquish-var"]).map(drop)
    }

    fn flush_journal(&self) -> Result<()> {
        run_tool(&self.journalctl, &["--flush"]).map(drop)
    }
}

/// OpenRC, through `rc-service`.
#[derive(Debug, Clone, Default)]
pub struct Openrc;

impl ServiceManager for Openrc {
    fn stop(&self, service: &Service) -> Result<Vec<String>> {
        run_tool("rc-service", &[service.name(), "stop"])?;
        Ok(vec![service.name().to_owned()])
    }

    fn start(&self, units: &[String]) -> Result<()> {
        for u in units {
            run_tool("rc-service", &[u, "start"])?;
        }
        Ok(())
    }

    fn restart(&self, service: &Service) -> Result<()> {
        run_tool("rc-service", &[service.name(), "restart"]).map(drop)
    }

    fn relinquish_journal(&self) -> Result<()> {
        Ok(()) // no journald
    }

    fn flush_journal(&self) -> Result<()> {
        Ok(())
    }
}

/// No service manager reroot knows: every service step fails.
#[derive(Debug, Clone)]
pub struct NoManager(pub InitSystem);

impl NoManager {
    fn refuse(&self) -> Error {
        Error::tool(format!(
            "PID 1 is {}: reroot cannot manage services",
            self.0
        ))
    }
}

impl ServiceManager for NoManager {
    fn stop(&self, _: &Service) -> Result<Vec<String>> {
        Err(self.refuse())
    }
    fn start(&self, _: &[String]) -> Result<()> {
        Err(self.refuse())
    }
    fn restart(&self, _: &Service) -> Result<()> {
        Err(self.refuse())
    }
    fn relinquish_journal(&self) -> Result<()> {
        Err(self.refuse())
    }
    fn flush_journal(&self) -> Result<()> {
        Err(self.refuse())
    }
}

/// The service manager for an init system.
pub fn manager_for(init: &InitSystem) -> Box<dyn ServiceManager> {
    match init {
        InitSystem::Systemd => Box::new(Systemd::default()),
        InitSystem::Openrc => Box::new(Openrc),
        other => Box::new(NoManager(other.clone())),
    }
}

/// Check and plan: what quiesce would do (for the confirmation).
pub fn prepare(sys: &SysRoot, opts: &QuiesceOptions) -> Result<(Report, QuiescePlan)> {
    let report = check::check(sys, &opts.check)?;
    let plan = quiesce::plan(&report, &opts.prepare_dirs);
    Ok((report, plan))
}

/// `MS_*` flags that keep a mount's per-mount options across a remount.
fn kept_flags(mount_options: &[String]) -> MsFlags {
    let mut f = MsFlags::empty();
    for o in mount_options {
        f |= match o.as_str() {
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            "sync" => MsFlags::MS_SYNCHRONOUS,
            "dirsync" => MsFlags::MS_DIRSYNC,
            "lazytime" => MsFlags::MS_LAZYTIME,
            _ => MsFlags::empty(),
        };
    }
    f
}

/// `mount -o remount,ro|rw` of `mp`, keeping its other per-mount options.
fn remount(sys: &SysRoot, mp: &Path, read_only: bool) -> std::result::Result<(), Errno> {
    let mounts = mountinfo::read(sys, "self").map_err(|_| Errno::EIO)?;
    let m = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == mp)
        .ok_or(Errno::EINVAL)?;
    let mut flags = MsFlags::MS_REMOUNT | kept_flags(&m.mount_options);
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(None::<&str>, mp, None::<&str>, flags, None::<&str>)
}

fn is_read_only(sys: &SysRoot, mp: &Path) -> bool {
    mountinfo::read(sys, "self")
        .ok()
        .and_then(|ms| ms.into_iter().rev().find(|m| m.mount_point == mp))
        .is_some_and(|m| m.is_read_only())
}

fn umount(mp: &Path) -> Result<()> {
    nix::mount::umount2(mp, MntFlags::empty()).map_err(|e| {
        let err = Error::io(
            format!("unmounting {}", mp.display()),
            std::io::Error::from(e),
        )
        .device(mp);
        if e == Errno::EBUSY {
            err.hint("something still uses it: `reroot check` names it")
        } else {
            err
        }
    })
}

fn mount_spec(spec: &MountSpec, source: &str) -> Result<()> {
    let mut args = vec!["-t", spec.fstype.as_str()];
    if !spec.options.is_empty() {
        args.extend(["-o", spec.options.as_str()]);
    }
    let mp = spec.mount_point.to_string_lossy();
    args.extend([source, mp.as_ref()]);
    run_tool("mount", &args).map(drop)
}

fn loop_attached(sys: &SysRoot, l: &LoopDevice) -> bool {
    crate::probe::loops::read_one(sys, &l.name)
        .is_some_and(|now| now.backing_file == l.backing_file)
}

/// Re-attach a loop device as it was; returns the new node.
fn attach_loop(l: &LoopDevice) -> Result<String> {
    let (off, lim) = (l.offset.to_string(), l.sizelimit.to_string());
    let mut args = vec!["--find", "--show"];
    if l.read_only {
        args.push("--read-only");
    }
    if l.offset > 0 {
        args.extend(["--offset", off.as_str()]);
    }
    if l.sizelimit > 0 {
        args.extend(["--sizelimit", lim.as_str()]);
    }
    let file = l.backing_file.to_string_lossy();
    args.push(file.as_ref());
    Ok(run_tool("losetup", &args)?.trim().to_owned())
}

/// Do one step; returns the step as done (with the units a stop took down).
fn do_step(
    sys: &SysRoot,
    step: &Step,
    mgr: &dyn ServiceManager,
    events: &EventSink,
) -> Result<Step> {
    match step {
        Step::Mkdir { path } => fs::create_dir_all(path)
            .map(|()| step.clone())
            .map_err(|e| Error::io("creating a directory on the root", e).device(path)),
        Step::RestartService { service } => mgr.restart(service).map(|()| step.clone()),
        Step::StopService { service, .. } => mgr.stop(service).map(|units| Step::StopService {
            service: service.clone(),
            units,
        }),
        Step::Unmount { mount } => umount(&mount.mount_point).map(|()| step.clone()),
        Step::ReleaseLoop {
            loop_device,
            mounts,
        } => {
            for m in mounts {
                umount(&m.mount_point)?;
            }
            // Autoclear devices go away with their last mount.
            if loop_attached(sys, loop_device) {
                run_tool("losetup", &["-d", &loop_device.node().to_string_lossy()])?;
            }
            Ok(step.clone())
        }
        Step::Swapoff { path, .. } => {
            run_tool("swapoff", &[&path.to_string_lossy()]).map(|_| step.clone())
        }
        Step::RelinquishJournal => mgr.relinquish_journal().map(|()| step.clone()),
        Step::RemountReadOnly { mount_point } => {
            events.info(format!("remounting {} read-only", mount_point.display()));
            remount(sys, mount_point, true)
                .map(|()| step.clone())
                .map_err(|e| {
                    let kind = if e == Errno::EBUSY {
                        ErrorKind::Busy(format!(
                            "remount of {} read-only refused: it is in use",
                            mount_point.display()
                        ))
                    } else {
                        ErrorKind::Io(format!(
                            "remount of {} read-only: {e}",
                            mount_point.display()
                        ))
                    };
                    Error::new(kind).device(mount_point)
                })
        }
    }
}

fn is_service_step(s: &Step) -> bool {
    matches!(
        s,
        Step::RestartService { .. } | Step::StopService { .. } | Step::RelinquishJournal
    )
}

/// Run a plan. Refuses (nothing done) when blockers remain that no step
/// resolves, unless `opts.force`. On EBUSY at the remount, re-scans and
/// returns the holders with `read_only: false` (the steps done stay done and
/// recorded: fix the holders and run quiesce again, or resume).
pub fn quiesce(
    sys: &SysRoot,
    opts: &QuiesceOptions,
    plan: &QuiescePlan,
    mgr: &dyn ServiceManager,
    events: &EventSink,
) -> Result<QuiesceOutcome> {
    if !plan.unresolved.is_empty() && !opts.force {
        return Err(unresolved_error(&plan.unresolved));
    }
    let init = check::init_of(sys, &opts.check);
    let mut state = match State::load(&opts.state_file)? {
        Some(s) if s.root == plan.root => s,
        Some(s) => {
            return Err(Error::refused(format!(
                "the state file records a quiesce of {}, not {}",
                s.root.display(),
                plan.root.display()
            ))
            .device(&opts.state_file)
            .stage(Stage::Quiesce)
            .hint(
                "run `reroot resume-services` for that root first, or give another --state-file",
            ));
        }
        None => State {
            version: 1,
            root: plan.root.clone(),
            device: root_device(sys, &plan.root),
            init: init.clone(),
            steps: Vec::new(),
        },
    };
    let mut out = QuiesceOutcome {
        root: plan.root.clone(),
        read_only: false,
        done: Vec::new(),
        holders: Vec::new(),
        notes: plan.notes.clone(),
        state_file: opts.state_file.clone(),
    };
    // The state file must be writable before anything changes.
    state.save(&opts.state_file)?;
    for step in &plan.steps {
        if is_service_step(step) && !init.manages_services() {
            let note = format!("skipped `{}`: PID 1 is {init}", step.describe());
            events.warn(note.clone());
            out.notes.push(note);
            continue;
        }
        if let Step::RemountReadOnly { mount_point } = step {
            if is_read_only(sys, mount_point) {
                out.notes
                    .push(format!("{} was already read-only", mount_point.display()));
                out.read_only = true;
                continue;
            }
            // Recorded before it happens: once read-only, the state file may
            // not be writable (when it lives on the root).
            state.steps.push(step.clone());
            state.save(&opts.state_file)?;
        }
        events.info(step.describe());
        match do_step(sys, step, mgr, events) {
            Ok(done) => {
                if let Step::RemountReadOnly { .. } = done {
                    out.read_only = true;
                } else {
                    state.steps.push(done.clone());
                    state.save(&opts.state_file)?;
                }
                out.done.push(done);
            }
            Err(e) if matches!(e.kind(), ErrorKind::Busy(_)) => {
                state.steps.pop();
                state.save(&opts.state_file)?;
                let again = check::check(sys, &opts.check)?;
                out.holders = again.blockers().cloned().collect();
                return Ok(out);
            }
            Err(e) => {
                if let Step::RemountReadOnly { .. } = step {
                    state.steps.pop();
                    let _ = state.save(&opts.state_file);
                }
                return Err(e.stage(Stage::Quiesce).hint(format!(
                    "steps done so far are recorded in {}; `reroot resume-services` undoes them",
                    opts.state_file.display()
                )));
            }
        }
    }
    Ok(out)
}

fn root_device(sys: &SysRoot, root: &Path) -> String {
    mountinfo::read(sys, "self")
        .ok()
        .and_then(|ms| ms.into_iter().rev().find(|m| m.mount_point == root))
        .map(|m| format!("{}:{}", m.major, m.minor))
        .unwrap_or_default()
}

/// The error for blockers that no quiesce step resolves.
pub fn unresolved_error(unresolved: &[Finding]) -> Error {
    let what: Vec<&str> = unresolved.iter().map(|f| f.summary.as_str()).collect();
    Error::refused(format!(
        "{} blocker(s) that reroot cannot resolve: {}",
        unresolved.len(),
        what.join("; ")
    ))
    .stage(Stage::Quiesce)
    .hint("deal with them (see `reroot check`), or pass --force to try the remount anyway")
}

/// What resume did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResumeOutcome {
    /// The root.
    pub root: PathBuf,
    /// Steps undone, in the order undone.
    pub undone: Vec<Step>,
    /// Notes (loop devices re-attached under a new name, skipped steps).
    pub notes: Vec<String>,
    /// Steps whose undo failed (they stay in the state file).
    pub failed: Vec<String>,
}

/// Undo what the state file records, last step first. Steps undone leave the
/// file; when all are undone the file is removed. Undo failures are
/// collected (the rest still runs) and leave their steps in the file.
pub fn resume(
    sys: &SysRoot,
    state_file: &Path,
    mgr: &dyn ServiceManager,
    events: &EventSink,
) -> Result<ResumeOutcome> {
    let Some(mut state) = State::load(state_file)? else {
        return Err(
            Error::invalid("no quiesce to undo: the state file does not exist")
                .device(state_file)
                .stage(Stage::Quiesce)
                .hint("give the --state-file that `reroot quiesce` wrote"),
        );
    };
    let mut out = ResumeOutcome {
        root: state.root.clone(),
        undone: Vec::new(),
        notes: Vec::new(),
        failed: Vec::new(),
    };
    let mut kept = Vec::new();
    while let Some(step) = state.steps.pop() {
        let Some(what) = step.undo_description() else {
            continue;
        };
        events.info(what.clone());
        match undo_step(sys, &step, mgr, &mut out.notes) {
            Ok(()) => out.undone.push(step),
            Err(e) => {
                let msg = format!("{what}: {e}");
                events.warn(msg.clone());
                out.failed.push(msg);
                kept.push(step);
            }
        }
        // The root is writable again after the first undo; record progress.
        let mut rest = state.clone();
        rest.steps.extend(kept.iter().rev().cloned());
        let _ = rest.save(state_file);
    }
    if kept.is_empty() {
        fs::remove_file(state_file)
            .map_err(|e| Error::io("removing the state file", e).device(state_file))?;
    }
    Ok(out)
}

fn undo_step(
    sys: &SysRoot,
    step: &Step,
    mgr: &dyn ServiceManager,
    notes: &mut Vec<String>,
) -> Result<()> {
    match step {
        Step::Mkdir { .. } | Step::RestartService { .. } => Ok(()),
        Step::StopService { service, units } => {
            if units.is_empty() {
                mgr.start(&[service.name().to_owned()])
            } else {
                mgr.start(units)
            }
        }
        Step::Unmount { mount } if crate::plan::quiesce::is_fuse(&mount.fstype) => {
            // Its daemon ended with the unmount; `mount -t fuse.X` would
            // fail or mount a dead connection. Said up front in the plan.
            notes.push(format!(
                "{} not mounted again: {}",
                mount.mount_point.display(),
                crate::plan::quiesce::fuse_note(mount)
            ));
            Ok(())
        }
        Step::Unmount { mount } => mount_spec(mount, &mount.source),
        Step::ReleaseLoop {
            loop_device,
            mounts,
        } => {
            let node = if loop_attached(sys, loop_device) {
                loop_device.node().to_string_lossy().into_owned()
            } else {
                let node = attach_loop(loop_device)?;
                notes.push(format!(
                    "{} re-attached as {node}",
                    loop_device.backing_file.display()
                ));
                node
            };
            // Parents first (they were unmounted deepest first).
            for m in mounts.iter().rev() {
                mount_spec(m, &node)?;
            }
            Ok(())
        }
        Step::Swapoff { path, priority } => {
            let prio = priority.to_string();
            let p = path.to_string_lossy();
            if *priority >= 0 {
                run_tool("swapon", &["-p", &prio, &p]).map(drop)
            } else {
                run_tool("swapon", &[&p]).map(drop)
            }
        }
        Step::RelinquishJournal => mgr.flush_journal(),
        Step::RemountReadOnly { mount_point } => {
            if !is_read_only(sys, mount_point) {
                notes.push(format!("{} was already read-write", mount_point.display()));
                return Ok(());
            }
            remount(sys, mount_point, false).map_err(|e| {
                Error::io(
                    format!("remounting {} read-write", mount_point.display()),
                    std::io::Error::from(e),
                )
                .device(mount_point)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_lists_parse() {
        let t = "rsyslog.service loaded active running System Logging Service\n\
                 syslog.socket   loaded active running Syslog Socket\n\
                 \n● bad\n";
        let u = parse_unit_list(t);
        assert_eq!(
            u.into_iter().collect::<Vec<_>>(),
            vec!["rsyslog.service", "syslog.socket"]
        );
    }

    #[test]
    fn kept_flags_map_options() {
        let o: Vec<String> = ["rw", "nosuid", "nodev", "relatime", "x"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            kept_flags(&o),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RELATIME
        );
    }

    #[test]
    fn state_file_round_trips_and_refuses_garbage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/state.json");
        assert_eq!(State::load(&p).unwrap(), None);
        let s = State {
            version: 1,
            root: "/r".into(),
            device: "7:3".into(),
            init: InitSystem::Other("x".into()),
            steps: vec![
                Step::Swapoff {
                    path: "/r/swap".into(),
                    priority: -2,
                },
                Step::RemountReadOnly {
                    mount_point: "/r".into(),
                },
            ],
        };
        s.save(&p).unwrap();
        assert_eq!(State::load(&p).unwrap(), Some(s));
        fs::write(&p, b"{not json").unwrap();
        let e = State::load(&p).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Corrupt(_)), "{e}");
    }

    /// A service manager that records calls, for the plan runner.
    #[derive(Default)]
    struct Fake(std::cell::RefCell<Vec<String>>);

    impl ServiceManager for Fake {
        fn stop(&self, s: &Service) -> Result<Vec<String>> {
            self.0.borrow_mut().push(format!("stop {}", s.name()));
            Ok(vec![s.name().to_owned(), "x.socket".into()])
        }
        fn start(&self, u: &[String]) -> Result<()> {
            self.0.borrow_mut().push(format!("start {}", u.join(" ")));
            Ok(())
        }
        fn restart(&self, s: &Service) -> Result<()> {
            self.0.borrow_mut().push(format!("restart {}", s.name()));
            Ok(())
        }
        fn relinquish_journal(&self) -> Result<()> {
            self.0.borrow_mut().push("relinquish".into());
            Ok(())
        }
        fn flush_journal(&self) -> Result<()> {
            self.0.borrow_mut().push("flush".into());
            Ok(())
        }
    }

    #[test]
    fn resume_undoes_in_reverse_and_removes_the_state_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        let svc = Service::Systemd {
            unit: "a.service".into(),
            user_unit: None,
        };
        State {
            version: 1,
            root: "/r".into(),
            device: "7:3".into(),
            init: InitSystem::Systemd,
            steps: vec![
                Step::Mkdir {
                    path: d.path().join("m"),
                },
                Step::RestartService {
                    service: svc.clone(),
                },
                Step::StopService {
                    service: svc,
                    units: vec!["a.service".into(), "a.socket".into()],
                },
                Step::RelinquishJournal,
            ],
        }
        .save(&p)
        .unwrap();
        let fake = Fake::default();
        let out = resume(&SysRoot::live(), &p, &fake, &EventSink::none()).unwrap();
        assert_eq!(*fake.0.borrow(), vec!["flush", "start a.service a.socket"]);
        assert_eq!(out.undone.len(), 2);
        assert!(out.failed.is_empty());
        assert!(!p.exists());
        let e = resume(&SysRoot::live(), &p, &fake, &EventSink::none()).unwrap_err();
        assert!(e.to_string().contains("no quiesce to undo"), "{e}");
    }

    /// Regression: resume "re-mounted" a FUSE mount with a plain `mount`,
    /// which cannot start its daemon. Now it leaves it and says so (here
    /// `mount` would have failed: the mount point does not exist).
    #[test]
    fn resume_leaves_a_fuse_mount_to_its_daemon_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        let mp = d.path().join("no-such-dir/sshfs");
        State {
            version: 1,
            root: "/r".into(),
            device: "7:3".into(),
            init: InitSystem::Systemd,
            steps: vec![Step::Unmount {
                mount: MountSpec {
                    mount_point: mp.clone(),
                    source: "me@host:/srv".into(),
                    fstype: "fuse.sshfs".into(),
                    options: "user_id=0,group_id=0".into(),
                },
            }],
        }
        .save(&p)
        .unwrap();
        let fake = Fake::default();
        let out = resume(&SysRoot::live(), &p, &fake, &EventSink::none()).unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        assert_eq!(out.undone.len(), 1);
        let notes = out.notes.join("\n");
        assert!(
            notes.contains(&format!("{} not mounted again", mp.display()))
                && notes.contains("start again what mounted it"),
            "{notes}"
        );
        assert!(!mp.exists(), "nothing was mounted or created");
        assert!(!p.exists());
    }

    #[test]
    fn no_manager_refuses_service_steps() {
        let m = manager_for(&InitSystem::Other("process_api".into()));
        let svc = Service::Openrc {
            service: "x".into(),
        };
        let e = m.stop(&svc).unwrap_err();
        assert!(e.to_string().contains("process_api"), "{e}");
        assert!(m.flush_journal().is_err());
    }
}
