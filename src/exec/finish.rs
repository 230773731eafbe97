//! `reroot finish`: release the old root and make sure the machine boots
//! from the new one.
//!
//! 1. List what still holds the old root: processes (files, maps, cwd,
//!    root), other mount namespaces that still have it mounted, mounts left
//!    under it. Anything there: stop with [`ErrorKind::Busy`] and the list.
//! 2. Unmount it (never lazily), then check that the kernel released the
//!    filesystem (`/sys/fs/ext4/<dev>` is gone): a mount in a namespace no
//!    process shows would keep it alive although `umount` succeeded.
//! 3. Give it a new UUID ([`crate::exec::identity::set_new_uuid`]: `tune2fs
//!    -U random` after `e2fsck` when needed, `xfs_admin`, `btrfstune`) and the
//!    label `oldroot`, unless `--keep-old-identity`: a block copy carries
//!    both, so `root=UUID=` or `LABEL=` would otherwise pick either disk.
//! 4. Check the root entry of `/etc/fstab` and fix a device path that points
//!    at the old device (a backup is kept).
//! 5. Find the initramfs generator and GRUB, and print (or, with
//!    `--bootloader DEV`, run) what must be regenerated.
//!
//! May import `probe`, `plan`, `sys`, `error` and `exec::{pivot, services,
//! identity, event}`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::exec::event::EventSink;
use crate::exec::pivot;
use crate::exec::services::run_with_timeout;
use crate::plan::finish::{
    self as plan, BootFacts, BootPlan, FstabVerdict, RootIdentity, RootKind,
};
use crate::plan::pivot::{Operator, RestartGroup, plan_restarts};
use crate::probe::SysRoot;
use crate::probe::device::{DevNo, kernel_name};
use crate::probe::mountinfo::{self, Mount};
use crate::probe::process::ForeignNamespace;
use crate::sys::mount as sysmount;

/// The label given to the old root.
pub const OLD_LABEL: &str = "oldroot";

/// What `reroot finish` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishOptions {
    /// Where the old root is mounted (`/mnt/oldroot`).
    pub put_old: PathBuf,
    /// The pivot's state directory (`/run/reroot`).
    pub state_dir: PathBuf,
    /// Do not change the old root's UUID and label.
    pub keep_old_identity: bool,
    /// Run the boot regeneration and install GRUB on this disk.
    pub bootloader: Option<PathBuf>,
    /// `--boot`: for a new root on LVM, md or dm-crypt, do everything the
    /// next boot needs (`exec::boot::actions`); without it they are listed.
    pub boot: bool,
}

impl Default for FinishOptions {
    fn default() -> Self {
        Self {
            put_old: "/mnt/oldroot".into(),
            state_dir: pivot::STATE_DIR.into(),
            keep_old_identity: false,
            bootloader: None,
            boot: false,
        }
    }
}

/// A filesystem identity before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Type (`ext4`, `xfs`, `btrfs`).
    pub fstype: Option<String>,
    /// UUID.
    pub uuid: Option<String>,
    /// Label.
    pub label: Option<String>,
}

/// A command run by finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRun {
    /// The command line.
    pub command: String,
    /// It succeeded.
    pub ok: bool,
    /// Its output or error.
    pub output: String,
}

/// The result of `reroot finish`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinishReport {
    /// Everything done (unmounted, released, re-identified, fstab fine).
    pub ok: bool,
    /// The old root's device node.
    pub old_device: Option<PathBuf>,
    /// Its `major:minor`.
    pub old_devno: Option<(u32, u32)>,
    /// The new root's device node.
    pub new_device: Option<PathBuf>,
    /// Processes still using the old root, grouped.
    pub holders: Vec<RestartGroup>,
    /// Other mount namespaces with the old root mounted where the unmount
    /// cannot reach (private copies): they keep it alive.
    pub namespaces: Vec<ForeignNamespace>,
    /// Other mount namespaces whose copies are slaves (or peers) of the old
    /// root's mount: the unmount propagates to them.
    pub following_namespaces: Vec<u64>,
    /// Mounts left under the old root (not binds of it).
    pub submounts: Vec<PathBuf>,
    /// The old root was unmounted (now or by an earlier run).
    pub unmounted: bool,
    /// The kernel released the filesystem (`/sys/fs/ext4/<dev>` is gone);
    /// `None` when that cannot be told (not ext*).
    pub released: Option<bool>,
    /// The old root's identity before.
    pub old_identity_before: Identity,
    /// And after.
    pub old_identity_after: Identity,
    /// The new root's identity.
    pub new_identity: Identity,
    /// Commands run (tune2fs, e2fsck, boot regeneration).
    pub commands: Vec<CommandRun>,
    /// The verdict on `/etc/fstab`'s root entry.
    pub fstab: Option<FstabVerdict>,
    /// The fix was written (the backup's path).
    pub fstab_backup: Option<PathBuf>,
    /// What to regenerate to boot from the new root.
    pub boot: BootPlan,
    /// `--bootloader` or `--boot` given: the boot commands were run.
    pub boot_ran: bool,
    /// For a new root on LVM, md or dm-crypt: what the next boot needs, in
    /// order (run with `--boot`, else listed in `boot.commands`).
    pub boot_actions: Vec<crate::plan::boot::BootAction>,
    /// Things to know.
    pub warnings: Vec<String>,
    /// The error, if any.
    pub error: Option<String>,
    /// Nothing was left to do: the old root was unmounted, released and
    /// re-identified already (by the migration's worker, an earlier
    /// `finish`, or the shutdown guard).
    pub nothing_left: bool,
    /// Where each name of the root leads now (label, UUID, root=, fstab).
    pub names: Vec<crate::plan::identity::NameStatus>,
}

fn identity_of(dev: &Path) -> Identity {
    match crate::exec::identity::identity_of(dev) {
        Ok(id) => Identity {
            fstype: Some(id.fstype.name().to_owned()),
            uuid: Some(id.uuid.to_ascii_lowercase()),
            label: Some(id.label),
        },
        Err(_) => Identity::default(),
    }
}

/// The device node for `major:minor`: `preferred` if it is that device, else
/// `/dev/<kernel name>`.
pub(crate) fn device_node(
    sys: &SysRoot,
    devno: (u32, u32),
    preferred: Option<&Path>,
) -> Option<PathBuf> {
    let is_it = |p: &Path| {
        fs::metadata(p)
            .map(|m| {
                m.file_type().is_block_device()
                    && (libc::major(m.rdev()), libc::minor(m.rdev())) == devno
            })
            .unwrap_or(false)
    };
    if let Some(p) = preferred.filter(|p| is_it(p)) {
        return Some(p.to_path_buf());
    }
    let name = kernel_name(
        sys,
        DevNo {
            major: devno.0,
            minor: devno.1,
        },
    )?;
    let p = sys.dev_dir.join(name);
    is_it(&p).then_some(p)
}

fn top_mount_at<'a>(mounts: &'a [Mount], p: &Path) -> Option<&'a Mount> {
    mounts.iter().filter(|m| m.mount_point == p).find(|m| {
        !mounts
            .iter()
            .any(|c| c.parent_id == m.mount_id && c.mount_point == p)
    })
}

fn run(cmd: &[&str], report: &mut FinishReport) -> bool {
    let argv: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
    let r = run_with_timeout(&argv, Duration::from_secs(600));
    let ok = r.is_ok();
    report.commands.push(CommandRun {
        command: argv.join(" "),
        ok,
        output: r.unwrap_or_else(|e| e),
    });
    ok
}

fn on_path(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

/// Run `reroot finish`. Errors with [`ErrorKind::Busy`] (and the report in
/// the error's hint) while something still holds the old root.
pub fn finish(o: &FinishOptions) -> Result<FinishReport> {
    let sys = SysRoot::live();
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::refused("reroot finish must run as root").stage(Stage::Finish));
    }
    let mut report = FinishReport::default();
    let state = pivot::read_state(&o.state_dir).ok();
    let mounts = mountinfo::read(&sys, "self")?;
    let at_put_old = top_mount_at(&mounts, &o.put_old).cloned();
    let devno = match (&at_put_old, &state) {
        (Some(m), _) => (m.major, m.minor),
        (None, Some(s)) => s.plan.old_root_dev,
        (None, None) => {
            return Err(Error::refused(format!(
                "nothing is mounted at {} and there is no pivot state in {}",
                o.put_old.display(),
                o.state_dir.display()
            ))
            .stage(Stage::Finish)
            .hint("run `reroot pivot` first, or give --oldroot"));
        }
    };
    if let (Some(m), Some(s)) = (&at_put_old, &state) {
        if (m.major, m.minor) != s.plan.old_root_dev {
            return Err(Error::refused(format!(
                "{} holds {}:{}, but the pivot left the old root {}:{} there",
                o.put_old.display(),
                m.major,
                m.minor,
                s.plan.old_root_dev.0,
                s.plan.old_root_dev.1
            ))
            .stage(Stage::Finish));
        }
    }
    let root = top_mount_at(&mounts, Path::new("/"))
        .ok_or_else(|| Error::refused("no mount at /").stage(Stage::Finish))?;
    if (root.major, root.minor) == devno {
        return Err(Error::refused("the old root is still the running root")
            .stage(Stage::Finish)
            .hint("run `reroot pivot NEWDEV` first"));
    }
    report.old_devno = Some(devno);
    let preferred = state
        .as_ref()
        .map(|s| PathBuf::from(&s.plan.old_root_source))
        .or_else(|| at_put_old.as_ref().map(|m| PathBuf::from(&m.source)));
    report.old_device = device_node(&sys, devno, preferred.as_deref());
    report.new_device = device_node(
        &sys,
        (root.major, root.minor),
        state
            .as_ref()
            .map(|s| s.request.options.new_dev.as_path())
            .or(Some(Path::new(&root.source))),
    );
    if let Some(d) = &report.old_device {
        report.old_identity_before = identity_of(d);
    }
    if let Some(d) = &report.new_device {
        report.new_identity = identity_of(d);
    }
    let raw = libc::makedev(devno.0, devno.1);
    let (old_id, new_id) = (&report.old_identity_before, &report.new_identity);
    let reidentified = old_id.uuid.is_some()
        && old_id.uuid != new_id.uuid
        && (old_id.label != new_id.label || new_id.label.as_deref() == Some(""));
    if at_put_old.is_none() && (reidentified || o.keep_old_identity) {
        // Done before (the worker, an earlier finish, the shutdown guard).
        let (_, left) = pivot::scan_old_root(&sys, raw).map_err(|e| e.stage(Stage::Finish))?;
        if left.is_empty() {
            report.unmounted = true;
            report.nothing_left = true;
            report.old_identity_after = report.old_identity_before.clone();
            if let (Some(old), Some(new)) = (&report.old_device, &report.new_device) {
                report.names = crate::exec::identity::names_now(&sys, old, new, guard_active());
            }
            report.ok = true;
            return Ok(report);
        }
    }

    // 1. What still holds it.
    if let Some(m) = &at_put_old {
        let (holders, namespaces) =
            pivot::scan_old_root(&sys, raw).map_err(|e| e.stage(Stage::Finish))?;
        report.holders = plan_restarts(&holders, &Operator::default());
        // A copy that is a slave or peer of our old-root mount receives the
        // unmount; any other copy keeps the filesystem alive.
        let group = m.propagation.shared;
        let follows = |x: &Mount| {
            group.is_some() && (x.propagation.master == group || x.propagation.shared == group)
        };
        for n in namespaces {
            if n.mounts.iter().all(follows) {
                report.following_namespaces.push(n.ns);
            } else {
                report.namespaces.push(n);
            }
        }
        let under: Vec<&Mount> = mounts
            .iter()
            .filter(|x| x.mount_point.starts_with(&o.put_old) && x.mount_id != m.mount_id)
            .collect();
        report.submounts = under
            .iter()
            .filter(|x| (x.major, x.minor) != devno)
            .map(|x| x.mount_point.clone())
            .collect();
        if !report.holders.is_empty()
            || !report.namespaces.is_empty()
            || !report.submounts.is_empty()
        {
            let mut what = Vec::new();
            for g in &report.holders {
                what.push(format!(
                    "{} (pids {:?}: {})",
                    g.unit.clone().unwrap_or_else(|| g.comms.join(",")),
                    g.pids,
                    g.note
                ));
            }
            for n in &report.namespaces {
                let at: Vec<String> = n
                    .mounts
                    .iter()
                    .map(|x| x.mount_point.display().to_string())
                    .collect();
                let units: Vec<String> = n.services.iter().map(|s| s.to_string()).collect();
                what.push(format!(
                    "mount namespace mnt:[{}] of pids {:?} ({}) has it at {}",
                    n.ns,
                    n.pids,
                    units.join(", "),
                    at.join(", ")
                ));
            }
            for s in &report.submounts {
                what.push(format!("{} is mounted under it", s.display()));
            }
            report.error = Some(format!("the old root is still in use: {}", what.join("; ")));
            return Ok(report);
        }
        // Binds of the old root itself under it go first, deepest first.
        let mut binds: Vec<&Mount> = under
            .into_iter()
            .filter(|x| (x.major, x.minor) == devno)
            .collect();
        binds.sort_by_key(|x| std::cmp::Reverse(x.mount_point.components().count()));
        for b in binds {
            sysmount::umount(&b.mount_point).map_err(|e| e.stage(Stage::Finish))?;
        }
        // 2. Unmount, never lazily.
        match sysmount::umount(&o.put_old) {
            Ok(()) => {}
            Err(e) => {
                report.error = Some(format!(
                    "{e}: something not visible as a process holds it (a loop device or swap \
                     file on it, a bind mount elsewhere)"
                ));
                return Ok(report);
            }
        }
    }
    report.unmounted = true;
    // The unmount should have reached every namespace that followed.
    let (_, left) = pivot::scan_old_root(&sys, raw).map_err(|e| e.stage(Stage::Finish))?;
    if !left.is_empty() {
        let names: Vec<String> = left
            .iter()
            .map(|n| format!("mnt:[{}] (pids {:?})", n.ns, n.pids))
            .collect();
        report.namespaces = left;
        report.error = Some(format!(
            "unmounted here, but still mounted in mount namespace {}",
            names.join(", ")
        ));
        report.released = Some(false);
        return Ok(report);
    }
    // The kernel keeps the superblock while any mount anywhere uses it.
    let fstype = report
        .old_identity_before
        .fstype
        .clone()
        .unwrap_or_default();
    if fstype.starts_with("ext") {
        let name = kernel_name(
            &sys,
            DevNo {
                major: devno.0,
                minor: devno.1,
            },
        );
        if let Some(name) = name {
            let p = sys.sys("fs/ext4").join(&name);
            let start = Instant::now();
            while p.exists() && start.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(100));
            }
            report.released = Some(!p.exists());
            if p.exists() {
                report.error = Some(format!(
                    "unmounted, but {} still exists: the filesystem is mounted somewhere else \
                     (another mount namespace, a bind mount) or used by the kernel",
                    p.display()
                ));
                return Ok(report);
            }
        }
    }

    // 3. A new identity for the old root: a new UUID (exec::identity runs
    // e2fsck first when tune2fs needs it), then the label `oldroot`.
    let mut id_changed = false;
    if let Some(dev) = report.old_device.clone().filter(|_| !o.keep_old_identity) {
        match crate::exec::identity::set_new_uuid(&dev, None, &EventSink::none()) {
            Ok(c) => report.commands.push(CommandRun {
                command: format!("{} {}", c.method, dev.display()),
                ok: true,
                output: format!("UUID {} -> {}", c.old_uuid, c.new_uuid),
            }),
            Err(e) => report.commands.push(CommandRun {
                command: format!("new UUID for {}", dev.display()),
                ok: false,
                output: e.to_string(),
            }),
        }
        let d = dev.to_string_lossy().into_owned();
        match fstype.as_str() {
            f if f.starts_with("ext") => {
                run(&["tune2fs", "-L", OLD_LABEL, d.as_str()], &mut report);
            }
            "xfs" => {
                run(&["xfs_admin", "-L", OLD_LABEL, d.as_str()], &mut report);
            }
            "btrfs" => {
                run(
                    &["btrfs", "filesystem", "label", d.as_str(), OLD_LABEL],
                    &mut report,
                );
            }
            other => report.warnings.push(format!(
                "cannot relabel a {other:?} filesystem: do it by hand"
            )),
        }
        report.old_identity_after = identity_of(&dev);
        id_changed = report.old_identity_after.uuid != report.old_identity_before.uuid
            && report.old_identity_after.uuid.is_some();
        if !id_changed {
            report.warnings.push(
                "the old root's UUID did not change: both disks may carry the same UUID and label"
                    .into(),
            );
        }
    } else if o.keep_old_identity {
        report.old_identity_after = report.old_identity_before.clone();
    }

    // 4. fstab.
    let fstab = Path::new("/etc/fstab");
    if let Ok(text) = fs::read_to_string(fstab) {
        let resolve = |spec: &str| -> Option<(u32, u32)> {
            match plan::parse_spec(spec) {
                plan::Spec::Path(p) => fs::metadata(p)
                    .ok()
                    .filter(|m| m.file_type().is_block_device())
                    .map(|m| (libc::major(m.rdev()), libc::minor(m.rdev()))),
                _ => None,
            }
        };
        let root_spec = plan::parse_fstab(&text)
            .into_iter()
            .rev()
            .find(|e| e.file == "/")
            .map(|e| e.spec);
        let resolved = root_spec.as_deref().and_then(resolve);
        let id = RootIdentity {
            old_uuid: report.old_identity_before.uuid.clone(),
            old_label: report.old_identity_before.label.clone(),
            new_uuid: report.new_identity.uuid.clone(),
            new_label: report.new_identity.label.clone(),
            old_reidentified: id_changed,
            new_device: report.new_device.clone().unwrap_or_default(),
            spec_is_old_device: resolved.map(|r| r == devno),
            spec_is_new_device: resolved.map(|r| r == (root.major, root.minor)),
        };
        let verdict = plan::check_fstab(&text, &id);
        if let FstabVerdict::Fix { new_text, .. } = &verdict {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let backup = PathBuf::from(format!("/etc/fstab.reroot-{secs}"));
            fs::copy(fstab, &backup)
                .map_err(|e| Error::io("backing up /etc/fstab", e).stage(Stage::Finish))?;
            let tmp = Path::new("/etc/fstab.reroot-new");
            fs::write(tmp, new_text)
                .and_then(|()| fs::rename(tmp, fstab))
                .map_err(|e| Error::io("writing /etc/fstab", e).stage(Stage::Finish))?;
            report.fstab_backup = Some(backup);
        }
        if let FstabVerdict::Warn { why } = &verdict {
            report.warnings.push(format!("/etc/fstab: {why}"));
        }
        report.fstab = Some(verdict);
    } else {
        report.warnings.push("no /etc/fstab on the new root".into());
    }

    // 5. Boot.
    let facts = boot_facts(&sys, o, devno, (root.major, root.minor), &report);
    report.boot = plan::plan_boot(&facts);
    let stacked_on = kernel_name(
        &sys,
        DevNo {
            major: root.major,
            minor: root.minor,
        },
    )
    .filter(|n| !crate::probe::boot::target_layers(&sys, n).is_empty());
    if let Some(name) = stacked_on {
        // LVM, md or dm-crypt: the stack's own list (mdadm.conf, every
        // initramfs, GRUB on every boot disk) replaces the generic one.
        let acts = crate::exec::boot::actions(&sys, Path::new("/"), &name);
        report.boot.commands = acts.iter().map(|a| vec![a.shell()]).collect();
        if o.boot {
            report.boot_ran = true;
            match crate::exec::boot::apply(&acts) {
                Ok(done) => report
                    .commands
                    .extend(done.into_iter().map(|command| CommandRun {
                        command,
                        ok: true,
                        output: String::new(),
                    })),
                Err(e) => report.commands.push(CommandRun {
                    command: "boot (--boot)".into(),
                    ok: false,
                    output: e.to_string(),
                }),
            }
        }
        report.boot_actions = acts;
    } else if o.bootloader.is_some() || o.boot {
        report.boot_ran = true;
        for c in report.boot.commands.clone() {
            let argv: Vec<&str> = c.iter().map(String::as_str).collect();
            if !run(&argv, &mut report) {
                break;
            }
        }
    }
    let failed: Vec<String> = report
        .commands
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.command.clone())
        .collect();
    let boot_failed = report.boot_ran && report.commands.iter().rev().any(|c| !c.ok);
    if let (Some(old), Some(new)) = (&report.old_device, &report.new_device) {
        report.names = crate::exec::identity::names_now(&sys, old, new, guard_active());
    }
    report.ok = report.unmounted
        && report.released != Some(false)
        && (id_changed || o.keep_old_identity)
        && !boot_failed;
    if !report.ok && report.error.is_none() {
        report.error = Some(if failed.is_empty() {
            "the old root could not be re-identified".into()
        } else {
            format!("failed: {}", failed.join("; "))
        });
    }
    Ok(report)
}

/// The login-session marks of `pid` (cgroup v2 path, audit session).
pub fn session_mark(sys: &SysRoot, pid: u32) -> plan::SessionMark {
    let cgroup = fs::read_to_string(sys.proc(format!("{pid}/cgroup")))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        });
    let audit_session = fs::read_to_string(sys.proc(format!("{pid}/sessionid")))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    plan::SessionMark {
        pid,
        cgroup,
        audit_session,
    }
}

/// Who holds the old root at `put_old` (left by the pivot recorded in
/// `state_dir`), split into the login session of process `me` and the rest.
/// `None` when the old root is not mounted there any more.
pub fn release_wait(
    put_old: &Path,
    state_dir: &Path,
    me: u32,
) -> Result<Option<plan::ReleaseWait>> {
    let sys = SysRoot::live();
    let mounts = mountinfo::read(&sys, "self")?;
    let Some(m) = top_mount_at(&mounts, put_old) else {
        return Ok(None);
    };
    if let Ok(st) = pivot::read_state(state_dir) {
        if (m.major, m.minor) != st.plan.old_root_dev {
            return Ok(None);
        }
    }
    let (holders, _) = pivot::scan_old_root(&sys, libc::makedev(m.major, m.minor))?;
    let marks: Vec<(plan::SessionMark, String)> = holders
        .iter()
        .map(|h| (session_mark(&sys, h.pid), h.comm.clone()))
        .collect();
    let ancestors = pivot::ancestors(&sys, me);
    Ok(Some(plan::split_holders(
        &session_mark(&sys, me),
        &ancestors,
        &marks,
    )))
}

/// The transient unit that re-identifies the old root at shutdown at the
/// latest (installed by the pivot when the UUID cannot change while mounted).
pub const GUARD_UNIT: &str = "reroot-oldroot-guard.service";

/// `systemd-escape --path --suffix=mount`: the mount unit of `p`.
pub fn mount_unit(p: &Path) -> String {
    let s = p.to_string_lossy();
    let trimmed = s.trim_matches('/');
    if trimmed.is_empty() {
        return "-.mount".to_owned();
    }
    let mut out = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b':' => {
                out.push(char::from(b));
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push_str(".mount");
    out
}

fn systemd_is_pid1() -> bool {
    fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
        && Path::new("/run/systemd/system").is_dir()
}

/// The shutdown guard is active.
pub fn guard_active() -> bool {
    systemd_is_pid1()
        && run_with_timeout(
            &[
                "systemctl".to_owned(),
                "is-active".to_owned(),
                "--quiet".to_owned(),
                GUARD_UNIT.to_owned(),
            ],
            Duration::from_secs(10),
        )
        .is_ok()
}

/// The `systemd-run` argv of the shutdown guard: a oneshot unit that stays
/// active and whose stop runs `reroot finish`. It is stopped at shutdown
/// (`Conflicts=umount.target`) after the old root's mount unit
/// (`Before=` it, so stopped after it): the old root is unmounted by then
/// and `finish` gives it a new UUID. `DefaultDependencies=no` keeps it out of
/// the ordinary service shutdown, which runs before the unmounts.
pub fn guard_command(exe: &Path, put_old: &Path, state_dir: &Path) -> Vec<String> {
    let stop = format!(
        "{} finish --oldroot {} --state-dir {}",
        exe.display(),
        put_old.display(),
        state_dir.display()
    );
    [
        "systemd-run".to_owned(),
        format!("--unit={GUARD_UNIT}"),
        "--description=reroot: re-identify the old root when it is unmounted".to_owned(),
        "--quiet".to_owned(),
        "--service-type=oneshot".to_owned(),
        "--property=RemainAfterExit=yes".to_owned(),
        "--property=DefaultDependencies=no".to_owned(),
        "--property=Conflicts=umount.target".to_owned(),
        "--property=Before=umount.target".to_owned(),
        format!("--property=Before={}", mount_unit(put_old)),
        "--property=TimeoutStopSec=600".to_owned(),
        format!("--property=ExecStop={stop}"),
        "/bin/true".to_owned(),
    ]
    .into()
}

/// Install the shutdown guard ([`guard_command`]). `Ok(what)` says what was
/// done; `Err(why)` why there is none (no systemd as PID 1, systemd-run
/// failed): then `finish` must run before the next reboot.
pub fn install_shutdown_guard(
    exe: &Path,
    put_old: &Path,
    state_dir: &Path,
) -> std::result::Result<String, String> {
    if !systemd_is_pid1() {
        return Err(
            "PID 1 is not systemd: nothing re-identifies the old root at shutdown; \
run `reroot finish` before rebooting"
                .to_owned(),
        );
    }
    if guard_active() {
        return Ok(format!("{GUARD_UNIT} is active already"));
    }
    run_with_timeout(
        &guard_command(exe, put_old, state_dir),
        Duration::from_secs(30),
    )
    .map(|_| {
        format!(
            "{GUARD_UNIT}: gives the old root a new UUID once it is unmounted, at shutdown at the \
latest"
        )
    })
}

fn boot_facts(
    sys: &SysRoot,
    o: &FinishOptions,
    old: (u32, u32),
    new: (u32, u32),
    report: &FinishReport,
) -> BootFacts {
    let tools = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| on_path(n))
            .map(|n| (*n).to_owned())
            .collect()
    };
    let first = |names: &[&str]| tools(names).into_iter().next();
    let kname = kernel_name(
        sys,
        DevNo {
            major: new.0,
            minor: new.1,
        },
    );
    let root_kind = kname.as_deref().map(|n| {
        if n.starts_with("md") {
            RootKind::Md
        } else if n.starts_with("dm-") {
            let uuid =
                fs::read_to_string(sys.sys(format!("block/{n}/dm/uuid"))).unwrap_or_default();
            if uuid.starts_with("LVM-") {
                RootKind::Lvm
            } else {
                RootKind::DeviceMapper
            }
        } else {
            RootKind::Plain
        }
    });
    let cmdline = fs::read_to_string(sys.proc("cmdline")).unwrap_or_default();
    let cmdline_root = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .map(str::to_owned);
    let cmdline_root_is_old = cmdline_root
        .as_deref()
        .is_some_and(|r| match plan::parse_spec(r) {
            plan::Spec::Path(p) => fs::metadata(p)
                .map(|m| (libc::major(m.rdev()), libc::minor(m.rdev())) == old)
                .unwrap_or(false),
            plan::Spec::Uuid(u) => report.old_identity_after.uuid.as_deref() == Some(u.as_str()),
            plan::Spec::Label(l) => report.old_identity_after.label.as_deref() == Some(l.as_str()),
            _ => false,
        });
    BootFacts {
        initramfs_tools: tools(&["update-initramfs", "dracut", "mkinitcpio"]),
        grub_mkconfig: first(&["update-grub", "grub-mkconfig", "grub2-mkconfig"]),
        grub_install: first(&["grub-install", "grub2-install"]),
        grub_cfg: ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
        root_kind,
        has_lvm: on_path("lvm"),
        has_mdadm: on_path("mdadm"),
        cmdline_root,
        cmdline_root_is_old,
        bootloader: o.bootloader.clone(),
    }
}

impl FinishReport {
    /// The report's error as a library [`Error`] (for the exit code): busy
    /// while something holds the old root, a tool error otherwise.
    pub fn to_error(&self) -> Option<Error> {
        let msg = self.error.clone()?;
        let busy = !self.unmounted || self.released == Some(false);
        let kind = if busy {
            ErrorKind::Busy(msg)
        } else {
            ErrorKind::Tool(msg)
        };
        let hint = if busy {
            "restart or stop what holds it (reroot pivot --restart auto does), log out and in \
             again, then run reroot finish again"
        } else {
            "see the commands in the report"
        };
        Some(Error::new(kind).stage(Stage::Finish).hint(hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_tool_errors() {
        let mut r = FinishReport {
            error: Some("in use".into()),
            ..FinishReport::default()
        };
        assert!(matches!(r.to_error().unwrap().kind(), ErrorKind::Busy(_)));
        r.unmounted = true;
        assert!(matches!(r.to_error().unwrap().kind(), ErrorKind::Tool(_)));
        r.released = Some(false);
        assert!(matches!(r.to_error().unwrap().kind(), ErrorKind::Busy(_)));
        r.error = None;
        assert!(r.to_error().is_none());
    }

    #[test]
    fn device_node_checks_the_number() {
        let sys = SysRoot::live();
        let me = fs::metadata("/proc/self/exe").unwrap();
        // A regular file is never "the device".
        assert_eq!(
            device_node(&sys, (9999, 9999), Some(Path::new("/proc/self/exe"))),
            None
        );
        let _ = me;
    }

    #[test]
    fn identity_of_a_fresh_ext4_image() {
        if !on_path("mkfs.ext4") {
            return crate::test_skip::skip(
                "`mkfs.ext4` is not installed (.ci/run installs e2fsprogs)",
            );
        }
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("i");
        fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let st = std::process::Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-L",
                "x1",
                "-U",
                "0a1b2c3d-0000-4000-8000-00000000abcd",
            ])
            .arg(&img)
            .status()
            .unwrap();
        assert!(st.success());
        let id = identity_of(&img);
        assert_eq!(id.label.as_deref(), Some("x1"));
        assert_eq!(
            id.uuid.as_deref(),
            Some("0a1b2c3d-0000-4000-8000-00000000abcd")
        );
        assert!(id.fstype.unwrap().starts_with("ext"));
    }

    #[test]
    fn mount_units_are_escaped_like_systemd_escape() {
        assert_eq!(mount_unit(Path::new("/mnt/oldroot")), "mnt-oldroot.mount");
        assert_eq!(mount_unit(Path::new("/")), "-.mount");
        assert_eq!(mount_unit(Path::new("/old root/")), "old\\x20root.mount");
        assert_eq!(mount_unit(Path::new("/.old")), "\\x2eold.mount");
        assert_eq!(mount_unit(Path::new("/a-b")), "a\\x2db.mount");
    }

    #[test]
    fn the_guard_stops_after_the_old_root_is_unmounted() {
        let c = guard_command(
            Path::new("/usr/local/sbin/reroot"),
            Path::new("/mnt/oldroot"),
            Path::new("/run/reroot"),
        );
        let has = |a: &str| c.iter().any(|x| x == a);
        assert_eq!(c[0], "systemd-run");
        assert!(has("--unit=reroot-oldroot-guard.service"));
        assert!(has("--property=RemainAfterExit=yes"));
        assert!(has("--property=DefaultDependencies=no"));
        assert!(has("--property=Conflicts=umount.target"));
        // Before= the mount: stopped after it at shutdown.
        assert!(has("--property=Before=mnt-oldroot.mount"));
        assert!(has(
            "--property=ExecStop=/usr/local/sbin/reroot finish --oldroot /mnt/oldroot \
             --state-dir /run/reroot"
        ));
    }
}
