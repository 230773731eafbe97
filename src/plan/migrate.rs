//! The migration, decided from facts: its stages in order (check, live
//! pre-copy, quiesce, delta copy, verify, grow, identity, pivot, restart,
//! finish), every command each one runs on this system, where the operator
//! is asked, where the point of no return is (`pivot_root`), and what a
//! rollback does when a stage before it fails.
//!
//! Pure: probed facts in, a [`MigratePlan`] out. Imports `plan::{pivot,
//! quiesce}` types, `probe::init` and `error`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error;
use crate::plan::pivot::{MountAction, MountPlan, RestartGroup};
use crate::plan::quiesce::Step;
use crate::probe::init::InitSystem;

/// One stage of a migration, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// What keeps the root busy, and is the target fit.
    Check,
    /// Copy the used blocks while the system runs (the root is read-write).
    Precopy,
    /// Stop, unmount, swap off what blocks; remount the root read-only.
    Quiesce,
    /// Delta pass: rewrite only chunks whose hash differs from the source.
    Copy,
    /// Hash the used blocks of both sides and compare.
    Verify,
    /// e2fsck and resize2fs the copy to its device.
    Grow,
    /// Give the copy a new UUID.
    Identity,
    /// `pivot_root` into the copy, move the mounts back: the point of no return.
    Pivot,
    /// Restart what runs from the old root; start what quiesce stopped.
    Restart,
    /// Release and re-identify the old root; fstab and boot advice.
    Finish,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 10] = [
        Stage::Check,
        Stage::Precopy,
        Stage::Quiesce,
        Stage::Copy,
        Stage::Verify,
        Stage::Grow,
        Stage::Identity,
        Stage::Pivot,
        Stage::Restart,
        Stage::Finish,
    ];

    /// The name used in the journal, the report and `--inject-failure`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Check => "check",
            Stage::Precopy => "precopy",
            Stage::Quiesce => "quiesce",
            Stage::Copy => "copy",
            Stage::Verify => "verify",
            Stage::Grow => "grow",
            Stage::Identity => "identity",
            Stage::Pivot => "pivot",
            Stage::Restart => "restart",
            Stage::Finish => "finish",
        }
    }

    /// The stage named `s`.
    pub fn from_name(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s)
    }

    /// One line saying what the stage does.
    pub fn title(self) -> &'static str {
        match self {
            Stage::Check => "check what keeps the root busy and whether the target fits",
            Stage::Precopy => {
                "copy the used blocks while the system runs, tracking writes; re-copy them in rounds"
            }
            Stage::Quiesce => "stop what blocks the remount, then remount the root read-only",
            Stage::Copy => {
                "copy and read back the last tracked writes (without tracking: a full delta pass)"
            }
            Stage::Verify => {
                "hash the used blocks of both devices and compare (after a tracked window: only with --verify-full)"
            }
            Stage::Grow => "check the copy and grow it to fill its device",
            Stage::Identity => "give the copy a new filesystem UUID",
            Stage::Pivot => "pivot_root into the copy and move every mount back",
            Stage::Restart => "restart what runs from the old root; start what quiesce stopped",
            Stage::Finish => "release and re-identify the old root; check fstab and boot",
        }
    }

    /// The error-context stage this one reports as.
    pub fn error_stage(self) -> error::Stage {
        match self {
            Stage::Check => error::Stage::Check,
            Stage::Precopy | Stage::Copy => error::Stage::Copy,
            Stage::Quiesce => error::Stage::Quiesce,
            Stage::Verify => error::Stage::Verify,
            Stage::Grow | Stage::Identity => error::Stage::Grow,
            Stage::Pivot => error::Stage::Pivot,
            Stage::Restart => error::Stage::Restart,
            Stage::Finish => error::Stage::Finish,
        }
    }

    /// A failure in this stage is rolled back (for the pivot: when it failed
    /// before `pivot_root`; the pivot undoes its own steps first).
    pub fn undoable(self) -> bool {
        self <= Stage::Pivot
    }

    /// The operator is asked before this stage starts (unless `--yes`).
    pub fn confirm_before(self) -> bool {
        matches!(self, Stage::Quiesce | Stage::Pivot)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the operator chose on the command line that changes the stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices {
    /// Grow the copy to fill its device.
    pub grow: bool,
    /// Give the copy a new UUID.
    pub new_uuid: bool,
    /// `--mkfs TYPE`: a transform (new filesystem, file copy) instead of a block copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mkfs: Option<crate::plan::transform::MkfsType>,
    /// `--lossy`: a transform may drop what the new type cannot hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossy: bool,
    /// `--verify-full`: after the final dirty pass, compare every used
    /// block of both devices inside the read-only window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_full: bool,
    /// `--no-track`: no write tracking; the window holds a full delta pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_track: bool,
    /// `--boot`: the finish stage does what the next boot needs on an
    /// LVM, md or dm-crypt root (see `plan::boot`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot: bool,
}

/// Why a stage does not run with these choices, if it does not.
pub fn skipped(stage: Stage, c: &Choices) -> Option<&'static str> {
    match stage {
        Stage::Grow if c.mkfs.is_some() => {
            Some("--mkfs makes the new filesystem to the target's size")
        }
        Stage::Identity if c.mkfs.is_some() => Some(
            "--mkfs gives the new filesystem its UUID (the source's, or a new one with --new-uuid)",
        ),
        Stage::Grow if !c.grow => Some("not asked for (--grow)"),
        Stage::Identity if !c.new_uuid => {
            Some("not asked for (--new-uuid): the copy keeps the source's UUID and label")
        }
        _ => None,
    }
}

/// The stages that run, in order.
pub fn stages(c: &Choices) -> Vec<Stage> {
    Stage::ALL
        .into_iter()
        .filter(|s| skipped(*s, c).is_none())
        .collect()
}

/// The first stage that runs and is not in `done`.
pub fn next_stage(done: &[Stage], c: &Choices) -> Option<Stage> {
    stages(c).into_iter().find(|s| !done.contains(s))
}

/// How services are driven on this system (for the commands shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceTool {
    /// `systemctl`.
    Systemctl,
    /// `rc-service`.
    RcService,
    /// Neither: service steps are skipped.
    None,
}

impl ServiceTool {
    /// The tool for an init system.
    pub fn of(init: &InitSystem) -> Self {
        match init {
            InitSystem::Systemd => ServiceTool::Systemctl,
            InitSystem::Openrc => ServiceTool::RcService,
            InitSystem::Other(_) => ServiceTool::None,
        }
    }

    fn service(self, verb: &str, name: &str) -> String {
        match self {
            ServiceTool::Systemctl => format!("systemctl {verb} {name}"),
            ServiceTool::RcService => format!("rc-service {name} {verb}"),
            ServiceTool::None => format!("({verb} {name}: skipped, no service manager)"),
        }
    }

    fn reexec_init(self) -> &'static str {
        match self {
            ServiceTool::Systemctl => "systemctl daemon-reexec",
            ServiceTool::RcService | ServiceTool::None => "telinit u",
        }
    }
}

/// The command a quiesce step runs.
pub fn quiesce_command(step: &Step, tool: ServiceTool) -> String {
    match step {
        Step::Mkdir { path } => format!("mkdir -p {}", path.display()),
        Step::RestartService { service } => tool.service("restart", service.name()),
        Step::StopService { service, .. } => tool.service("stop", service.name()),
        Step::Unmount { mount } => format!("umount {}", mount.mount_point.display()),
        Step::ReleaseLoop {
            loop_device,
            mounts,
        } => {
            let mut cmds: Vec<String> = mounts
                .iter()
                .map(|m| format!("umount {}", m.mount_point.display()))
                .collect();
            cmds.push(format!("losetup -d {}", loop_device.node().display()));
            cmds.join("; ")
        }
        Step::Swapoff { path, .. } => format!("swapoff {}", path.display()),
        Step::RelinquishJournal => "journalctl --relinquish-var".to_owned(),
        Step::RemountReadOnly { mount_point } => {
            format!("mount -o remount,ro {}", mount_point.display())
        }
    }
}

/// The command that undoes a quiesce step, if any (what `resume-services` runs).
pub fn undo_command(step: &Step, tool: ServiceTool) -> Option<String> {
    match step {
        Step::Mkdir { .. } | Step::RestartService { .. } => None,
        Step::StopService { service, units } if units.is_empty() => {
            Some(tool.service("start", service.name()))
        }
        Step::StopService { units, .. } => Some(tool.service("start", &units.join(" "))),
        Step::Unmount { mount } if crate::plan::quiesce::is_fuse(&mount.fstype) => Some(format!(
            "(none: FUSE mount {} stays unmounted until what mounted it runs again)",
            mount.mount_point.display()
        )),
        Step::Unmount { mount } => Some(format!(
            "mount -t {} {} {}",
            mount.fstype,
            mount.source,
            mount.mount_point.display()
        )),
        Step::ReleaseLoop { loop_device, .. } => Some(format!(
            "losetup --find {} and mount it again",
            loop_device.backing_file.display()
        )),
        Step::Swapoff { path, .. } => Some(format!("swapon {}", path.display())),
        Step::RelinquishJournal => Some("journalctl --flush".to_owned()),
        Step::RemountReadOnly { mount_point } => {
            Some(format!("mount -o remount,rw {}", mount_point.display()))
        }
    }
}

/// What a rollback does after a failure in a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollback {
    /// The system can be put back as it was.
    pub possible: bool,
    /// What is done (or, when not possible, what the operator does instead).
    pub actions: Vec<String>,
}

/// The rollback for a failure in `failed`. `quiesced` are the quiesce steps
/// done so far (undone last first); `pivoted`: `pivot_root` happened.
pub fn rollback(
    failed: Stage,
    pivoted: bool,
    quiesced: &[Step],
    tool: ServiceTool,
    target: &Path,
) -> Rollback {
    if !failed.undoable() || pivoted {
        return Rollback {
            possible: false,
            actions: vec![
                format!(
                    "past the point of no return: the system runs from {}; fix forward",
                    target.display()
                ),
                "`reroot status` shows what failed; `reroot pivot` and `reroot finish` can be run \
                 again by hand"
                    .to_owned(),
            ],
        };
    }
    let mut actions = Vec::new();
    if failed == Stage::Pivot {
        actions.push(
            "the pivot unmounts the new root from its staging directory (its own undo)".to_owned(),
        );
    }
    actions.extend(quiesced.iter().rev().filter_map(|s| undo_command(s, tool)));
    if failed >= Stage::Precopy {
        actions.push(format!(
            "{} is left as it is: it holds an incomplete or unverified copy, do not boot from it",
            target.display()
        ));
    }
    if actions.is_empty() {
        actions.push("nothing to undo: nothing was changed".to_owned());
    }
    Rollback {
        possible: true,
        actions,
    }
}

/// Facts about this system that the plan shows.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The root's device, as given.
    pub source: PathBuf,
    /// The target device, as given.
    pub target: PathBuf,
    /// The root's mount point (`/`).
    pub root: PathBuf,
    /// Filesystem type of the root (`ext4`), when known.
    pub fstype: Option<String>,
    /// Filesystem size in bytes.
    pub fs_bytes: Option<u64>,
    /// Bytes the used-block map covers.
    pub used_bytes: Option<u64>,
    /// Target device size.
    pub target_bytes: Option<u64>,
    /// How services are driven.
    pub tool: Option<ServiceTool>,
    /// What quiesce will do.
    pub quiesce_steps: Vec<Step>,
    /// What stops the migration now (unresolvable blockers, target refusals).
    pub blockers: Vec<String>,
    /// What the operator should know.
    pub warnings: Vec<String>,
    /// The mount side of the pivot, or why it cannot be planned now.
    pub mounts: std::result::Result<MountPlan, String>,
    /// What runs from the root now, grouped and ordered for restarting.
    pub restarts: Vec<RestartGroup>,
    /// Where the old root goes (`/mnt/oldroot`).
    pub put_old: PathBuf,
    /// Where the new root is mounted before the pivot.
    pub staging: PathBuf,
}

/// One stage as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStage {
    /// The stage.
    pub stage: Stage,
    /// What it does.
    pub title: String,
    /// Why it does not run, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The operator is asked before it (unless `--yes`).
    pub confirm: bool,
    /// Every command it runs, in order.
    pub commands: Vec<String>,
    /// What happens if it fails.
    pub on_failure: Rollback,
}

/// The whole plan (`migrate --dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigratePlan {
    /// The root's device.
    pub source: PathBuf,
    /// The target.
    pub target: PathBuf,
    /// The stages, in order (skipped ones included, marked).
    pub stages: Vec<PlannedStage>,
    /// Where there is no way back.
    pub point_of_no_return: String,
    /// What stops the migration now; empty when it can start.
    pub blockers: Vec<String>,
    /// What the operator should know.
    pub warnings: Vec<String>,
}

fn human(bytes: u64) -> String {
    crate::plan::target::human_bytes(bytes)
}

fn mount_commands(plan: &MountPlan, staging: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let put_old = plan.put_old.display().to_string();
    let rel = put_old.trim_start_matches('/');
    if plan.root_propagation == "shared" {
        out.push("mount --make-private /  (pivot_root refuses a shared root)".to_owned());
    }
    out.push(format!(
        "cd {}; pivot_root . {rel}   <- point of no return",
        staging.display()
    ));
    for s in &plan.steps {
        out.push(match &s.action {
            MountAction::Move => format!("mount --move {} {}", s.from.display(), s.to.display()),
            MountAction::Rebind { fs_root } | MountAction::ReplaceBind { fs_root } => format!(
                "mount --bind {} {}  (was a bind of the old root's {})",
                fs_root.display(),
                s.to.display(),
                fs_root.display()
            ),
        });
    }
    if plan.root_propagation == "shared" {
        out.push("mount --make-shared /  (as it was, before any restart)".to_owned());
    }
    out
}

fn restart_commands(groups: &[RestartGroup], quiesced: &[Step], tool: ServiceTool) -> Vec<String> {
    let mut out = Vec::new();
    for g in groups {
        if !g.class.restartable() {
            continue;
        }
        match &g.unit {
            None => out.push(tool.reexec_init().to_owned()),
            Some(u) => out.push(tool.service("restart", u)),
        }
        if g.class == crate::plan::pivot::RestartClass::Sshd {
            out.push("wait until sshd listens again on its ports".to_owned());
        }
    }
    out.extend(
        quiesced
            .iter()
            .rev()
            .filter(|s| !matches!(s, Step::RemountReadOnly { .. }))
            .filter_map(|s| undo_command(s, tool)),
    );
    for g in groups.iter().filter(|g| !g.class.restartable()) {
        let who = g.unit.clone().unwrap_or_else(|| g.comms.join(","));
        out.push(format!(
            "not restarted: {who} (pids {:?}): {}",
            g.pids, g.note
        ));
    }
    out
}

/// The plan for these facts and choices.
pub fn plan(f: &Facts, c: &Choices) -> MigratePlan {
    let tool = f.tool.unwrap_or(ServiceTool::None);
    let src = f.source.display().to_string();
    let dst = f.target.display().to_string();
    let ext = f.fstype.as_deref().is_none_or(|t| t.starts_with("ext"));
    let used = match (f.used_bytes, f.fs_bytes) {
        (Some(u), Some(fs)) => format!("{} used of {}", human(u), human(fs)),
        (Some(u), None) => format!("{} used", human(u)),
        _ => "the used blocks".to_owned(),
    };
    let mut stages = Vec::new();
    for stage in Stage::ALL {
        let commands = match stage {
            Stage::Check => vec![format!(
                "scan /proc and /sys for what uses {} and check {dst} (reroot check --target {dst})",
                f.root.display()
            )],
            Stage::Precopy => match c.mkfs {
                Some(k) => vec![format!(
                    "mkfs.{k} {dst} (sized to it; the source's UUID and label unless \
                     --new-uuid); copy the files of {src} while the system runs"
                )],
                None => vec![format!(
                    "copy {used} of {src} to {dst} while the system runs (io_uring, O_DIRECT; a \
                     best-effort live map)"
                )],
            },
            Stage::Quiesce => f
                .quiesce_steps
                .iter()
                .map(|s| quiesce_command(s, tool))
                .collect(),
            Stage::Copy if c.mkfs.is_some() => vec![format!(
                "delta pass: copy the files of {src} that changed (size, mtime, inode) to {dst}, \
                 remove what is gone"
            )],
            Stage::Copy => vec![format!(
                "reroot copy --delta {src} {dst}: hash every used chunk of both, rewrite those \
                 that differ"
            )],
            Stage::Verify if c.mkfs.is_some() => vec![
                format!("reroot verify --files {src} {dst}"),
                format!(
                    "the new root's /etc/fstab: type {}, options valid for it",
                    c.mkfs.map_or("", |k| k.name())
                ),
            ],
            Stage::Verify => vec![format!("reroot verify {src} {dst}")],
            Stage::Grow => match f.fstype.as_deref() {
                Some("xfs") => vec![format!(
                    "mount {dst} on a private temporary mount; xfs_growfs"
                )],
                Some("btrfs") => vec![format!(
                    "mount {dst} on a private temporary mount; btrfs filesystem resize max"
                )],
                _ => vec![format!("e2fsck -f -p {dst}"), format!("resize2fs -p {dst}")],
            },
            Stage::Identity => match f.fstype.as_deref() {
                Some("xfs") => vec![format!("xfs_admin -U generate {dst}")],
                Some("btrfs") => vec![format!("btrfstune -f -u {dst}")],
                _ => vec![format!(
                    "tune2fs -U random {dst} (after e2fsck -f when needed)"
                )],
            },
            Stage::Pivot => {
                let mut v = vec![format!(
                    "mount {dst} {} (on a private tmpfs)",
                    f.staging.display()
                )];
                match &f.mounts {
                    Ok(m) => v.extend(mount_commands(m, &f.staging)),
                    Err(e) => v.push(format!("(the mount moves cannot be planned now: {e})")),
                }
                v
            }
            Stage::Restart => restart_commands(&f.restarts, &f.quiesce_steps, tool),
            Stage::Finish => {
                let old = f.put_old.display();
                let mut v = vec![
                    format!(
                        "wait until nothing uses {old} (log out and in again if your shell does)"
                    ),
                    format!("umount {old}"),
                ];
                if c.new_uuid {
                    v.push(format!(
                        "keep the identity of {src}: {dst} has a new UUID already"
                    ));
                } else if ext {
                    v.push(format!("tune2fs -U random -L oldroot {src}"));
                } else {
                    v.push(format!("give {src} a new UUID and the label oldroot"));
                }
                v.push("check the root entry of /etc/fstab; fix a device path that names the old device".to_owned());
                v.push("print the initramfs and bootloader commands to run".to_owned());
                v
            }
        };
        let on_failure = rollback(
            stage,
            false,
            &f.quiesce_steps_before(stage),
            tool,
            &f.target,
        );
        stages.push(PlannedStage {
            stage,
            title: stage.title().to_owned(),
            skipped: skipped(stage, c).map(str::to_owned),
            confirm: stage.confirm_before(),
            commands,
            on_failure,
        });
    }
    let mut warnings = f.warnings.clone();
    if let Ok(m) = &f.mounts {
        warnings.extend(m.warnings.iter().cloned());
    }
    MigratePlan {
        source: f.source.clone(),
        target: f.target.clone(),
        stages,
        point_of_no_return: format!(
            "pivot_root in the pivot stage: before it, any failure puts the system back as it \
             was (read-write root, services started, swap and mounts restored); after it the \
             system runs from {dst} and failures are fixed forward"
        ),
        blockers: f.blockers.clone(),
        warnings,
    }
}

impl Facts {
    /// The quiesce steps done by the time `stage` fails (all of them from
    /// quiesce on, since quiesce may fail on its last step).
    fn quiesce_steps_before(&self, stage: Stage) -> Vec<Step> {
        if stage >= Stage::Quiesce {
            self.quiesce_steps.clone()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::pivot::{MountStep, RestartClass};
    use crate::probe::cgroup::Service;

    fn svc(u: &str) -> Service {
        Service::Systemd {
            unit: u.into(),
            user_unit: None,
        }
    }

    fn facts() -> Facts {
        Facts {
            source: "/dev/vda1".into(),
            target: "/dev/vg/root".into(),
            root: "/".into(),
            fstype: Some("ext4".into()),
            fs_bytes: Some(10 << 30),
            used_bytes: Some(3 << 30),
            target_bytes: Some(20 << 30),
            tool: Some(ServiceTool::Systemctl),
            quiesce_steps: vec![
                Step::Mkdir {
                    path: "/mnt/oldroot".into(),
                },
                Step::StopService {
                    service: svc("rsyslog.service"),
                    units: vec![],
                },
                Step::Swapoff {
                    path: "/swapfile".into(),
                    priority: -2,
                },
                Step::RemountReadOnly {
                    mount_point: "/".into(),
                },
            ],
            blockers: vec![],
            warnings: vec![],
            mounts: Ok(MountPlan {
                old_root_id: 1,
                old_root_dev: (253, 1),
                old_root_source: "/dev/vda1".into(),
                old_root_fstype: "ext4".into(),
                root_propagation: "shared".into(),
                put_old: "/mnt/oldroot".into(),
                steps: vec![MountStep {
                    action: MountAction::Move,
                    from: "/mnt/oldroot/proc".into(),
                    to: "/proc".into(),
                    mount_id: 2,
                    fstype: "proc".into(),
                    source: "proc".into(),
                    options: vec![],
                    propagation: "shared".into(),
                }],
                warnings: vec![],
            }),
            restarts: vec![
                RestartGroup {
                    class: RestartClass::Init,
                    unit: None,
                    pids: vec![1],
                    comms: vec!["systemd".into()],
                    note: String::new(),
                },
                RestartGroup {
                    class: RestartClass::Sshd,
                    unit: Some("ssh.service".into()),
                    pids: vec![500],
                    comms: vec!["sshd".into()],
                    note: String::new(),
                },
                RestartGroup {
                    class: RestartClass::Session,
                    unit: None,
                    pids: vec![900],
                    comms: vec!["bash".into()],
                    note: "your own session: log out and in again".into(),
                },
            ],
            put_old: "/mnt/oldroot".into(),
            staging: "/run/reroot/stage/newroot".into(),
        }
    }

    #[test]
    fn names_round_trip_and_order_is_the_run_order() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_name(s.name()), Some(s));
        }
        assert_eq!(Stage::from_name("nope"), None);
        assert!(Stage::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(Stage::Pivot.undoable() && !Stage::Restart.undoable());
        let json = serde_json::to_string(&Stage::Precopy).unwrap();
        assert_eq!(json, "\"precopy\"");
    }

    #[test]
    fn choices_select_stages() {
        let none = Choices::default();
        assert_eq!(
            stages(&none),
            vec![
                Stage::Check,
                Stage::Precopy,
                Stage::Quiesce,
                Stage::Copy,
                Stage::Verify,
                Stage::Pivot,
                Stage::Restart,
                Stage::Finish
            ]
        );
        let all = Choices {
            grow: true,
            new_uuid: true,
            ..Choices::default()
        };
        assert_eq!(stages(&all).len(), 10);
        assert_eq!(next_stage(&[], &none), Some(Stage::Check));
        assert_eq!(
            next_stage(
                &[
                    Stage::Check,
                    Stage::Precopy,
                    Stage::Quiesce,
                    Stage::Copy,
                    Stage::Verify
                ],
                &none
            ),
            Some(Stage::Pivot)
        );
        assert_eq!(
            next_stage(
                &[
                    Stage::Check,
                    Stage::Precopy,
                    Stage::Quiesce,
                    Stage::Copy,
                    Stage::Verify
                ],
                &all
            ),
            Some(Stage::Grow)
        );
        assert_eq!(next_stage(&Stage::ALL, &all), None);
    }

    #[test]
    fn confirmations_come_before_quiesce_and_pivot() {
        let asked: Vec<Stage> = Stage::ALL
            .into_iter()
            .filter(|s| s.confirm_before())
            .collect();
        assert_eq!(asked, vec![Stage::Quiesce, Stage::Pivot]);
    }

    #[test]
    fn rollback_undoes_quiesce_in_reverse_before_the_pivot() {
        let f = facts();
        let r = rollback(
            Stage::Copy,
            false,
            &f.quiesce_steps,
            ServiceTool::Systemctl,
            &f.target,
        );
        assert!(r.possible);
        assert_eq!(
            r.actions[..3],
            [
                "mount -o remount,rw /".to_owned(),
                "swapon /swapfile".to_owned(),
                "systemctl start rsyslog.service".to_owned(),
            ]
        );
        assert!(r.actions[3].contains("/dev/vg/root is left as it is"));
        // Before anything changed.
        let r = rollback(Stage::Check, false, &[], ServiceTool::Systemctl, &f.target);
        assert!(r.possible);
        assert_eq!(r.actions, vec!["nothing to undo: nothing was changed"]);
        // The pivot undoes itself, then quiesce is undone.
        let r = rollback(
            Stage::Pivot,
            false,
            &f.quiesce_steps,
            ServiceTool::Systemctl,
            &f.target,
        );
        assert!(r.possible && r.actions[0].contains("staging"));
    }

    #[test]
    fn no_rollback_past_pivot_root() {
        let f = facts();
        for (stage, pivoted) in [
            (Stage::Pivot, true),
            (Stage::Restart, true),
            (Stage::Finish, true),
        ] {
            let r = rollback(
                stage,
                pivoted,
                &f.quiesce_steps,
                ServiceTool::Systemctl,
                &f.target,
            );
            assert!(!r.possible, "{stage}");
            assert!(r.actions[0].contains("point of no return"));
        }
    }

    #[test]
    fn plan_shows_every_command_and_the_point_of_no_return() {
        let f = facts();
        let p = plan(
            &f,
            &Choices {
                grow: true,
                new_uuid: false,
                ..Choices::default()
            },
        );
        assert_eq!(p.stages.len(), Stage::ALL.len());
        let by = |s: Stage| p.stages.iter().find(|x| x.stage == s).unwrap();
        assert_eq!(
            by(Stage::Quiesce).commands,
            vec![
                "mkdir -p /mnt/oldroot",
                "systemctl stop rsyslog.service",
                "swapoff /swapfile",
                "mount -o remount,ro /"
            ]
        );
        assert!(by(Stage::Quiesce).confirm && by(Stage::Pivot).confirm);
        assert!(by(Stage::Precopy).commands[0].contains("3 GiB used of 10 GiB"));
        assert_eq!(
            by(Stage::Grow).commands,
            vec!["e2fsck -f -p /dev/vg/root", "resize2fs -p /dev/vg/root"]
        );
        assert!(by(Stage::Identity).skipped.is_some());
        let pivot = &by(Stage::Pivot).commands;
        assert!(pivot[1].starts_with("mount --make-private /"));
        assert!(pivot.iter().any(|c| c.contains("pivot_root . mnt/oldroot")));
        assert!(pivot.contains(&"mount --move /mnt/oldroot/proc /proc".to_owned()));
        assert!(pivot.last().unwrap().starts_with("mount --make-shared /"));
        let restart = &by(Stage::Restart).commands;
        assert_eq!(restart[0], "systemctl daemon-reexec");
        assert_eq!(restart[1], "systemctl restart ssh.service");
        assert!(restart.contains(&"swapon /swapfile".to_owned()));
        assert!(restart.contains(&"systemctl start rsyslog.service".to_owned()));
        assert!(!restart.iter().any(|c| c.contains("remount,rw")));
        assert!(restart.last().unwrap().contains("log out and in again"));
        assert!(
            by(Stage::Finish)
                .commands
                .contains(&"tune2fs -U random -L oldroot /dev/vda1".to_owned())
        );
        assert!(p.point_of_no_return.starts_with("pivot_root"));
        // Failures before the pivot roll back; after, they do not.
        assert!(by(Stage::Verify).on_failure.possible);
        assert!(!by(Stage::Restart).on_failure.possible);
        assert!(by(Stage::Precopy).on_failure.actions[0].contains("left as it is"));
    }

    #[test]
    fn plan_without_mounts_or_manager_still_says_what_it_would_do() {
        let mut f = facts();
        f.mounts = Err("the target is not a block device".into());
        f.tool = None;
        f.fstype = Some("xfs".into());
        let p = plan(
            &f,
            &Choices {
                grow: true,
                new_uuid: true,
                ..Choices::default()
            },
        );
        let by = |s: Stage| p.stages.iter().find(|x| x.stage == s).unwrap();
        assert!(by(Stage::Pivot).commands[1].contains("cannot be planned"));
        assert!(by(Stage::Quiesce).commands[1].contains("skipped, no service manager"));
        assert!(by(Stage::Grow).commands[0].contains("xfs_growfs"));
        assert!(by(Stage::Identity).commands[0].starts_with("xfs_admin"));
        assert!(by(Stage::Finish).commands[2].contains("keep the identity"));
    }

    #[test]
    fn quiesce_commands_cover_every_step() {
        use crate::plan::preflight::MountSpec;
        use crate::probe::loops::LoopDevice;
        let spec = MountSpec {
            mount_point: "/mnt/nfs".into(),
            fstype: "nfs".into(),
            source: "srv:/x".into(),
            options: String::new(),
        };
        let t = ServiceTool::RcService;
        assert_eq!(
            quiesce_command(
                &Step::Unmount {
                    mount: spec.clone()
                },
                t
            ),
            "umount /mnt/nfs"
        );
        assert_eq!(
            undo_command(&Step::Unmount { mount: spec }, t).unwrap(),
            "mount -t nfs srv:/x /mnt/nfs"
        );
        assert_eq!(
            quiesce_command(
                &Step::StopService {
                    service: Service::Openrc {
                        service: "sshd".into()
                    },
                    units: vec![]
                },
                t
            ),
            "rc-service sshd stop"
        );
        assert_eq!(
            quiesce_command(&Step::RelinquishJournal, t),
            "journalctl --relinquish-var"
        );
        assert_eq!(
            undo_command(&Step::RelinquishJournal, t).unwrap(),
            "journalctl --flush"
        );
        let l = LoopDevice {
            name: "loop3".into(),
            major: 7,
            minor: 3,
            backing_file: "/var/img".into(),
            deleted: false,
            offset: 0,
            sizelimit: 0,
            autoclear: false,
            read_only: false,
        };
        let step = Step::ReleaseLoop {
            loop_device: l,
            mounts: vec![],
        };
        assert_eq!(quiesce_command(&step, t), "losetup -d /dev/loop3");
        assert!(undo_command(&step, t).unwrap().contains("/var/img"));
    }
}
