//! The pivot, decided from facts: which mounts go back to their place after
//! `pivot_root` and in what order ([`plan_mounts`]), which propagation to
//! change and restore, and in which order the processes still running from
//! the old root are restarted ([`plan_restarts`]).
//!
//! Pure: takes parsed mountinfo and a process list, returns plans. Imports
//! only `probe::mountinfo` types and `error`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::probe::mountinfo::Mount;

/// Mount points moved first, within milliseconds of the pivot: until `/run`
/// is back, new logins see an empty `/run`; `/proc` is needed by
/// `daemon-reexec` and by everything that reads `/proc/self`.
pub const API_MOUNTS: [&str; 4] = ["/proc", "/dev", "/run", "/sys"];

/// What happens to one mount after `pivot_root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum MountAction {
    /// `MS_MOVE` from under the old root back to its place; submounts follow.
    Move,
    /// A bind mount of the old root's own filesystem (same device), directly
    /// on the old root: recreated as a bind of the same directory of the new
    /// root (`fs_root`), so it does not keep the old filesystem alive. Its
    /// submounts are moved separately afterwards.
    Rebind {
        /// Directory inside the filesystem that the bind shows (mountinfo `root`).
        fs_root: PathBuf,
    },
    /// A bind mount of the old filesystem nested in a moved mount: after the
    /// move it is at its place already; unmount it and bind the new root's
    /// `fs_root` there instead.
    ReplaceBind {
        /// Directory inside the filesystem that the bind shows.
        fs_root: PathBuf,
    },
}

/// One mount-table change after `pivot_root`, in the order to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountStep {
    /// What to do.
    #[serde(flatten)]
    pub action: MountAction,
    /// Where the mount is before the step (under the old root for moves).
    pub from: PathBuf,
    /// Where it must end up: its mount point before the pivot.
    pub to: PathBuf,
    /// mountinfo id before the pivot.
    pub mount_id: u32,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Per-mount options (for rebinds: `ro`, `nosuid`, ...).
    pub options: Vec<String>,
    /// Propagation before the pivot (`shared`, `slave`, `private`, `unbindable`).
    pub propagation: String,
}

/// The whole mount side of a pivot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// mountinfo id of the current root mount.
    pub old_root_id: u32,
    /// `major:minor` of the old root filesystem.
    pub old_root_dev: (u32, u32),
    /// Source of the old root mount (`/dev/vda1`).
    pub old_root_source: String,
    /// Filesystem type of the old root.
    pub old_root_fstype: String,
    /// Propagation of `/` before: restored on the new `/` right after the moves.
    pub root_propagation: String,
    /// Where the old root is attached by `pivot_root` (path in the new root).
    pub put_old: PathBuf,
    /// After the pivot, in order.
    pub steps: Vec<MountStep>,
    /// Things the operator must know (bind mounts that cannot be replaced, a
    /// slave `/` whose master cannot be rejoined).
    pub warnings: Vec<String>,
}

/// Facts the mount plan needs besides mountinfo.
#[derive(Debug, Clone)]
pub struct MountFacts<'a> {
    /// mountinfo of the process that will pivot, read just before.
    pub mounts: &'a [Mount],
    /// The staging directory: everything at or below it is reroot's own
    /// (the private staging tmpfs and the new root) and is left out.
    pub stage: &'a Path,
    /// `major:minor` of the new root device.
    pub new_dev: (u32, u32),
    /// Where the old root goes (absolute path inside the new root).
    pub put_old: &'a Path,
}

/// The current root mount: the topmost mount at `/`.
pub fn root_mount(mounts: &[Mount]) -> Option<&Mount> {
    let at_root: Vec<&Mount> = mounts
        .iter()
        .filter(|m| m.mount_point == Path::new("/"))
        .collect();
    // Topmost: the one that no other mount at `/` sits on.
    at_root.iter().copied().find(|m| {
        !at_root
            .iter()
            .any(|o| o.parent_id == m.mount_id && o.mount_id != m.mount_id)
    })
}

fn rank(m: &Mount) -> usize {
    API_MOUNTS
        .iter()
        .position(|a| m.mount_point == Path::new(a))
        .unwrap_or(API_MOUNTS.len())
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Siblings in the order to handle them: API filesystems first, the rest in
/// mountinfo order; mounts whose paths overlap (one at or under the other)
/// keep their mountinfo order, so what covered what before still does. A
/// mount that must go before an API one inherits its urgency.
fn order_siblings(mut rest: Vec<(usize, &Mount)>) -> Vec<&Mount> {
    let urgency: Vec<(usize, usize)> = rest
        .iter()
        .map(|(i, m)| {
            let r = rest
                .iter()
                .filter(|(j, o)| j >= i && overlaps(&o.mount_point, &m.mount_point))
                .map(|(_, o)| rank(o))
                .min()
                .unwrap_or(API_MOUNTS.len());
            (*i, r)
        })
        .collect();
    let urgency_of = |i: usize| {
        urgency
            .iter()
            .find(|(j, _)| *j == i)
            .map_or(API_MOUNTS.len(), |(_, r)| *r)
    };
    let mut out = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        // Ready: no earlier (in mountinfo) remaining sibling overlaps it.
        let pick = rest
            .iter()
            .enumerate()
            .filter(|(_, (i, m))| {
                !rest
                    .iter()
                    .any(|(j, o)| j < i && overlaps(&o.mount_point, &m.mount_point))
            })
            .min_by_key(|(_, (i, _))| (urgency_of(*i), *i))
            .map(|(k, _)| k);
        // The earliest remaining entry is always ready, so `pick` is Some;
        // 0 is that entry anyway (entries stay in mountinfo order).
        let k = pick.unwrap_or(0);
        out.push(rest.remove(k).1);
    }
    out
}

fn join_under(base: &Path, abs: &Path) -> PathBuf {
    base.join(abs.strip_prefix("/").unwrap_or(abs))
}

/// Decide the mount moves of a pivot. Errors (all [`ErrorKind::Refused`](crate::ErrorKind))
/// when there is no root mount, when `/` is overmounted, when the new device
/// is the old one or is mounted already, or when `put_old` would be covered
/// by a mount moved back.
pub fn plan_mounts(f: &MountFacts<'_>) -> Result<MountPlan> {
    let root = root_mount(f.mounts).ok_or_else(|| Error::refused("no mount at / in mountinfo"))?;
    let at_root = f
        .mounts
        .iter()
        .filter(|m| m.mount_point == Path::new("/"))
        .count();
    if at_root > 1 {
        return Err(
            Error::refused("more than one mount is stacked on / (an overmounted root)")
                .hint("unmount what is mounted over / first"),
        );
    }
    let old_dev = (root.major, root.minor);
    if old_dev == f.new_dev {
        return Err(Error::refused(format!(
            "the new root device {}:{} is the device of the running root",
            f.new_dev.0, f.new_dev.1
        )));
    }
    if !f.put_old.is_absolute() || f.put_old == Path::new("/") {
        return Err(Error::invalid(format!(
            "--oldroot must be an absolute path below /, not {}",
            f.put_old.display()
        )));
    }
    let ours = |m: &Mount| m.mount_point.starts_with(f.stage);
    if let Some(m) = f
        .mounts
        .iter()
        .find(|m| (m.major, m.minor) == f.new_dev && !ours(m))
    {
        return Err(Error::refused(format!(
            "the new root device is mounted already at {}",
            m.mount_point.display()
        ))
        .hint("unmount it; reroot pivot mounts it itself"));
    }

    let mut children: BTreeMap<u32, Vec<(usize, &Mount)>> = BTreeMap::new();
    for (i, m) in f.mounts.iter().enumerate() {
        if m.mount_id != root.mount_id && !ours(m) {
            children.entry(m.parent_id).or_default().push((i, m));
        }
    }
    let mut plan = MountPlan {
        old_root_id: root.mount_id,
        old_root_dev: old_dev,
        old_root_source: root.source.clone(),
        old_root_fstype: root.fstype.clone(),
        root_propagation: root.propagation.make_flag().to_owned(),
        put_old: f.put_old.to_path_buf(),
        steps: Vec::new(),
        warnings: Vec::new(),
    };
    if root.propagation.master.is_some() {
        plan.warnings.push(
            "/ is a slave mount; the new / cannot rejoin its master and will be private".into(),
        );
    }
    left_behind(f, root.mount_id, &children, old_dev, &mut plan);

    for s in &plan.steps {
        if matches!(s.action, MountAction::Move | MountAction::Rebind { .. })
            && f.put_old.starts_with(&s.to)
        {
            return Err(Error::refused(format!(
                "--oldroot {} is under the mount {} that goes back to its place and would hide it",
                f.put_old.display(),
                s.to.display()
            ))
            .hint("choose an --oldroot outside every mount point, e.g. /oldroot"));
        }
    }
    Ok(plan)
}

fn step(m: &Mount, action: MountAction, from: PathBuf) -> MountStep {
    MountStep {
        action,
        from,
        to: m.mount_point.clone(),
        mount_id: m.mount_id,
        fstype: m.fstype.clone(),
        source: m.source.clone(),
        options: m.mount_options.clone(),
        propagation: m.propagation.make_flag().to_owned(),
    }
}

/// Children of a mount that stays under the old root (the old root itself,
/// or a bind of the old filesystem that is recreated instead of moved).
fn left_behind(
    f: &MountFacts<'_>,
    parent: u32,
    children: &BTreeMap<u32, Vec<(usize, &Mount)>>,
    old_dev: (u32, u32),
    plan: &mut MountPlan,
) {
    let kids = children.get(&parent).cloned().unwrap_or_default();
    for m in order_siblings(kids) {
        let from = join_under(f.put_old, &m.mount_point);
        if (m.major, m.minor) == old_dev {
            plan.steps.push(step(
                m,
                MountAction::Rebind {
                    fs_root: m.root.clone(),
                },
                from,
            ));
            left_behind(f, m.mount_id, children, old_dev, plan);
        } else {
            plan.steps.push(step(m, MountAction::Move, from));
            moved_along(m.mount_id, children, old_dev, plan);
        }
    }
}

/// Inside a moved subtree: binds of the old filesystem are replaced when they
/// are leaves, and reported otherwise.
fn moved_along(
    parent: u32,
    children: &BTreeMap<u32, Vec<(usize, &Mount)>>,
    old_dev: (u32, u32),
    plan: &mut MountPlan,
) {
    for (_, m) in children.get(&parent).cloned().unwrap_or_default() {
        let has_kids = children.get(&m.mount_id).is_some_and(|k| !k.is_empty());
        if (m.major, m.minor) == old_dev {
            if has_kids {
                plan.warnings.push(format!(
                    "{} is a bind mount of the old root with mounts on it; it is moved as it \
                     is and keeps the old filesystem busy: recreate it by hand",
                    m.mount_point.display()
                ));
            } else {
                plan.steps.push(step(
                    m,
                    MountAction::ReplaceBind {
                        fs_root: m.root.clone(),
                    },
                    m.mount_point.clone(),
                ));
                continue;
            }
        }
        moved_along(m.mount_id, children, old_dev, plan);
    }
}

// ---------------------------------------------------------------------------
// Restarts

/// A process that still uses the old root, as the restart plan needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id (in the caller's PID namespace).
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// systemd unit or OpenRC/sysv service, when known.
    pub unit: Option<String>,
    /// Session id (`/proc/PID/stat` field 6).
    pub sid: Option<u32>,
    /// How it uses the old root (`exe`, `cwd`, `root`, `map /lib/...`, `fd 3 /var/log/x`).
    pub uses: Vec<String>,
}

/// Why and in which order a group is restarted (the order of the variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartClass {
    /// PID 1: re-exec it (`systemctl daemon-reexec`, `telinit u`).
    Init,
    /// journald, syslog.
    Logging,
    /// udev.
    Udev,
    /// Network configuration (networkd, NetworkManager, dhcp clients).
    Network,
    /// dbus, then logind (restarting dbus makes logind exit).
    Logind,
    /// sshd: must listen again before the pivot reports success.
    Sshd,
    /// Login prompts.
    Getty,
    /// Every other service.
    Service,
    /// A user manager (`user@UID.service` and its `(sd-pam)`): restarted
    /// after the system services (the user's login sessions survive it; the
    /// user's own services restart). Left alone with `--restart system`.
    UserManager,
    /// A login session, or the operator's own processes: log out and in again.
    Session,
    /// reroot itself: exits when done.
    Reroot,
    /// No service to restart it: restart or stop by hand.
    Unmanaged,
}

impl RestartClass {
    /// True for classes that `--restart auto` restarts.
    pub fn restartable(self) -> bool {
        self <= RestartClass::UserManager
    }
}

/// One restart group: one unit or service, or one process without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartGroup {
    /// Why, and the order.
    pub class: RestartClass,
    /// Unit or service name; `None` for PID 1 and unmanaged processes.
    pub unit: Option<String>,
    /// The processes, by pid.
    pub pids: Vec<u32>,
    /// `comm` of each pid, same order.
    pub comms: Vec<String>,
    /// What the operator should know or do.
    pub note: String,
}

/// Who is running reroot: their processes are never restarted.
#[derive(Debug, Clone, Default)]
pub struct Operator {
    /// reroot's own pids (the worker, the foreground command).
    pub self_pids: Vec<u32>,
    /// Session id of the operator's shell.
    pub sid: Option<u32>,
    /// The foreground command's ancestors (shell, sshd session process, ...).
    pub ancestors: Vec<u32>,
}

fn base_name(unit: &str) -> &str {
    let u = unit
        .strip_suffix(".service")
        .or_else(|| unit.strip_suffix(".scope"))
        .unwrap_or(unit);
    u.split('@').next().unwrap_or(u)
}

/// The class of a service by its name (systemd unit, OpenRC/sysv service or,
/// lacking both, the command name).
pub fn classify_name(name: &str) -> RestartClass {
    let b = base_name(name);
    match b {
        "init" | "systemd" => RestartClass::Init,
        "systemd-journald" | "journald" | "rsyslog" | "rsyslogd" | "syslog-ng" | "syslog"
        | "syslogd" | "sysklogd" | "klogd" | "metalog" | "busybox-syslogd" => RestartClass::Logging,
        "systemd-udevd" | "udev" | "udevd" | "eudev" => RestartClass::Udev,
        "systemd-networkd" | "NetworkManager" | "networking" | "network" | "dhcpcd"
        | "dhclient" | "systemd-resolved" | "wpa_supplicant" | "connman" | "iwd" => {
            RestartClass::Network
        }
        "dbus" | "dbus-broker" | "dbus-daemon" | "messagebus" | "systemd-logind" | "logind"
        | "elogind" => RestartClass::Logind,
        "ssh" | "sshd" | "openssh" | "dropbear" => RestartClass::Sshd,
        "getty" | "serial-getty" | "console-getty" | "container-getty" | "agetty" | "mingetty" => {
            RestartClass::Getty
        }
        "user" => RestartClass::UserManager,
        _ if b.starts_with("session-") && name.ends_with(".scope") => RestartClass::Session,
        _ => RestartClass::Service,
    }
}

/// Within the logind class dbus goes first; elsewhere by name.
fn order_in_class(g: &RestartGroup) -> (u8, String) {
    let name = g.unit.clone().unwrap_or_default();
    let first = u8::from(!matches!(
        base_name(&name),
        "dbus" | "dbus-broker" | "dbus-daemon" | "messagebus"
    ));
    (first, name)
}

/// Group the holders by unit and order the groups for restarting. PID 1,
/// reroot's own processes and the operator's session are named as such;
/// processes without a unit each form an unmanaged group.
pub fn plan_restarts(holders: &[Holder], op: &Operator) -> Vec<RestartGroup> {
    let mut groups: BTreeMap<(RestartClass, String), RestartGroup> = BTreeMap::new();
    let mut add =
        |class: RestartClass, key: String, unit: Option<String>, h: &Holder, note: &str| {
            let g = groups.entry((class, key)).or_insert_with(|| RestartGroup {
                class,
                unit,
                pids: Vec::new(),
                comms: Vec::new(),
                note: note.to_owned(),
            });
            g.pids.push(h.pid);
            g.comms.push(h.comm.clone());
        };
    for h in holders {
        let unit = h.unit.as_deref().filter(|u| !u.is_empty());
        if h.pid == 1 {
            add(
                RestartClass::Init,
                String::new(),
                None,
                h,
                "PID 1: re-execute it (daemon-reexec / telinit u)",
            );
        } else if op.self_pids.contains(&h.pid) || unit.is_some_and(|u| u.starts_with("reroot-")) {
            add(
                RestartClass::Reroot,
                String::new(),
                None,
                h,
                "reroot itself: exits when done",
            );
        } else if op.ancestors.contains(&h.pid) || (op.sid.is_some() && h.sid == op.sid) {
            add(
                RestartClass::Session,
                "operator".into(),
                None,
                h,
                "your own session: log out and in again",
            );
        } else if let Some(u) = unit {
            let class = classify_name(u);
            if class == RestartClass::Init {
                // init.scope: PID 1's own helpers; re-executing PID 1 covers them.
                add(
                    RestartClass::Init,
                    String::new(),
                    None,
                    h,
                    "PID 1: re-execute it (daemon-reexec / telinit u)",
                );
                continue;
            }
            let note = match class {
                RestartClass::UserManager => {
                    "user manager: restart it (its user's sessions stay; the user's services \
                     restart)"
                }
                RestartClass::Session => "login session: log out and in again",
                RestartClass::Sshd => "restart it; it must listen again before you log out",
                RestartClass::Logind => "restart dbus first (logind exits with it), then logind",
                RestartClass::Network => "restart it (a DHCP lease may drop for about a second)",
                _ if u.ends_with(".scope") => "a scope cannot be restarted: restart its owner",
                _ => "restart it",
            };
            let class = if u.ends_with(".scope") && class == RestartClass::Service {
                RestartClass::Unmanaged
            } else {
                class
            };
            add(class, u.to_owned(), Some(u.to_owned()), h, note);
        } else {
            add(
                RestartClass::Unmanaged,
                format!("pid {}", h.pid),
                None,
                h,
                "no service: restart or stop it by hand",
            );
        }
    }
    let mut out: Vec<RestartGroup> = groups.into_values().collect();
    out.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then_with(|| order_in_class(a).cmp(&order_in_class(b)))
    });
    for g in &mut out {
        let mut pairs: Vec<(u32, String)> = g
            .pids
            .iter()
            .copied()
            .zip(g.comms.iter().cloned())
            .collect();
        pairs.sort();
        (g.pids, g.comms) = pairs.into_iter().unzip();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::mountinfo::parse;

    /// A Debian 12 systemd machine, as `/proc/self/mountinfo` showed it, plus
    /// reroot's staging tmpfs and the new root under it.
    const DEBIAN: &str = "\
25 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
26 25 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 25 0:24 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
28 25 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4004712k
29 28 0:25 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5
30 25 0:26 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=804664k
31 26 0:27 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw
32 28 0:28 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw
34 26 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
45 25 254:2 / /boot rw,relatime shared:27 - ext4 /dev/vda2 rw
50 25 254:1 /srv/www /var/www rw,nosuid,relatime shared:30 - ext4 /dev/vda1 rw
51 30 0:40 / /run/user/0 rw,nosuid,nodev,relatime shared:31 - tmpfs tmpfs rw,size=80464k
52 50 0:41 / /var/www/cache rw,relatime shared:32 - tmpfs tmpfs rw
53 30 254:1 /etc /run/etc-copy ro,relatime shared:33 - ext4 /dev/vda1 rw
60 30 0:50 / /run/reroot/stage rw,relatime - tmpfs reroot-stage rw
61 60 253:0 / /run/reroot/stage/newroot rw,relatime - ext4 /dev/mapper/vg-root rw
";

    fn facts<'a>(m: &'a [Mount], put_old: &'a Path) -> MountFacts<'a> {
        MountFacts {
            mounts: m,
            stage: Path::new("/run/reroot/stage"),
            new_dev: (253, 0),
            put_old,
        }
    }

    fn tos(p: &MountPlan) -> Vec<(String, &'static str)> {
        p.steps
            .iter()
            .map(|s| {
                let a = match s.action {
                    MountAction::Move => "move",
                    MountAction::Rebind { .. } => "rebind",
                    MountAction::ReplaceBind { .. } => "replace",
                };
                (s.to.display().to_string(), a)
            })
            .collect()
    }

    #[test]
    fn moves_direct_children_api_first_and_rebinds_old_fs_binds() {
        let m = parse(DEBIAN).unwrap();
        let p = plan_mounts(&facts(&m, Path::new("/mnt/oldroot"))).unwrap();
        assert_eq!(p.old_root_id, 25);
        assert_eq!(p.old_root_dev, (254, 1));
        assert_eq!(p.root_propagation, "shared");
        assert_eq!(
            tos(&p),
            vec![
                ("/proc".into(), "move"),
                ("/dev".into(), "move"),
                ("/run".into(), "move"),
                // Nested in /run: a leaf bind of the old fs, replaced after /run moved.
                ("/run/etc-copy".into(), "replace"),
                ("/sys".into(), "move"),
                ("/boot".into(), "move"),
                // A bind of the old fs on the old root: recreated, then its
                // own child moved onto the new bind.
                ("/var/www".into(), "rebind"),
                ("/var/www/cache".into(), "move"),
            ]
        );
        let www = &p.steps[6];
        assert_eq!(
            www.action,
            MountAction::Rebind {
                fs_root: "/srv/www".into()
            }
        );
        assert_eq!(www.from, Path::new("/mnt/oldroot/var/www"));
        assert_eq!(p.steps[0].from, Path::new("/mnt/oldroot/proc"));
        assert_eq!(p.steps[0].propagation, "shared");
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // The staging tmpfs and the new root are reroot's: never in the plan.
        assert!(p.steps.iter().all(|s| !s.to.starts_with("/run/reroot")));
    }

    #[test]
    fn overlapping_siblings_keep_their_mountinfo_order() {
        // /dev/shm was mounted on the root fs before /dev covered it.
        let text = "\
1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
2 1 0:10 / /srv/data rw - tmpfs t rw
3 1 0:11 / /dev/shm rw - tmpfs shm rw
4 1 0:12 / /dev rw - devtmpfs dev rw
5 1 0:13 / /srv rw - tmpfs srv rw
6 1 0:14 / /proc rw - proc proc rw
";
        let m = parse(text).unwrap();
        let f = MountFacts {
            mounts: &m,
            stage: Path::new("/run/reroot/stage"),
            new_dev: (8, 2),
            put_old: Path::new("/oldroot"),
        };
        let order: Vec<String> = plan_mounts(&f)
            .unwrap()
            .steps
            .iter()
            .map(|s| s.to.display().to_string())
            .collect();
        assert_eq!(order, ["/proc", "/dev/shm", "/dev", "/srv/data", "/srv"]);
    }

    #[test]
    fn nested_old_fs_bind_with_children_is_a_warning() {
        let text = "\
1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
2 1 0:10 / /srv rw shared:2 - tmpfs t rw
3 2 8:1 /data /srv/data rw shared:3 - ext4 /dev/sda1 rw
4 3 0:12 / /srv/data/tmp rw - tmpfs x rw
";
        let m = parse(text).unwrap();
        let f = MountFacts {
            mounts: &m,
            stage: Path::new("/run/reroot/stage"),
            new_dev: (8, 2),
            put_old: Path::new("/mnt/oldroot"),
        };
        let p = plan_mounts(&f).unwrap();
        assert_eq!(tos(&p), vec![("/srv".into(), "move")]);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("/srv/data"));
    }

    #[test]
    fn refusals() {
        let m = parse(DEBIAN).unwrap();
        // put_old under a mount that moves back would be hidden by it.
        let e = plan_mounts(&facts(&m, Path::new("/boot/old"))).unwrap_err();
        assert!(e.to_string().contains("/boot"), "{e}");
        let e = plan_mounts(&facts(&m, Path::new("/run/oldroot"))).unwrap_err();
        assert!(e.to_string().contains("/run"), "{e}");
        assert!(plan_mounts(&facts(&m, Path::new("/"))).is_err());
        assert!(plan_mounts(&facts(&m, Path::new("oldroot"))).is_err());
        // New device = old device.
        let mut f = facts(&m, Path::new("/mnt/oldroot"));
        f.new_dev = (254, 1);
        assert!(plan_mounts(&f).is_err());
        // New device mounted elsewhere already.
        f.new_dev = (254, 2);
        let e = plan_mounts(&f).unwrap_err();
        assert!(e.to_string().contains("/boot"), "{e}");
        // Overmounted root.
        let over =
            parse("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:9 / / rw - tmpfs t rw\n").unwrap();
        let f = MountFacts {
            mounts: &over,
            stage: Path::new("/run/reroot/stage"),
            new_dev: (8, 2),
            put_old: Path::new("/mnt/oldroot"),
        };
        assert!(plan_mounts(&f).is_err());
        assert!(plan_mounts(&MountFacts { mounts: &[], ..f }).is_err());
    }

    #[test]
    fn slave_root_warns() {
        let m = parse("1 0 8:1 / / rw master:4 - ext4 /dev/sda1 rw\n").unwrap();
        let f = MountFacts {
            mounts: &m,
            stage: Path::new("/run/reroot/stage"),
            new_dev: (8, 2),
            put_old: Path::new("/mnt/oldroot"),
        };
        let p = plan_mounts(&f).unwrap();
        assert_eq!(p.root_propagation, "slave");
        assert_eq!(p.warnings.len(), 1);
    }

    fn h(pid: u32, comm: &str, unit: Option<&str>, sid: u32) -> Holder {
        Holder {
            pid,
            comm: comm.into(),
            unit: unit.map(str::to_owned),
            sid: Some(sid),
            uses: vec!["exe".into()],
        }
    }

    /// The processes a Debian 12 machine had on the old root after the pivot.
    fn debian_holders() -> Vec<Holder> {
        vec![
            h(1, "systemd", Some("init.scope"), 1),
            h(2, "systemd-helper", Some("init.scope"), 1),
            h(1020, "bash", Some("session-3.scope"), 1000),
            h(412, "dbus-daemon", Some("dbus.service"), 412),
            h(399, "sshd", Some("ssh.service"), 399),
            h(998, "sshd", Some("session-3.scope"), 998),
            h(
                300,
                "systemd-journal",
                Some("systemd-journald.service"),
                300,
            ),
            h(420, "systemd-logind", Some("systemd-logind.service"), 420),
            h(330, "systemd-udevd", Some("systemd-udevd.service"), 330),
            h(510, "agetty", Some("getty@tty1.service"), 510),
            h(511, "agetty", Some("serial-getty@ttyS0.service"), 511),
            h(
                380,
                "systemd-network",
                Some("systemd-networkd.service"),
                380,
            ),
            h(600, "cron", Some("cron.service"), 600),
            h(700, "nginx", Some("nginx.service"), 700),
            h(701, "nginx", Some("nginx.service"), 700),
            h(900, "systemd", Some("user@0.service"), 900),
            h(1100, "reroot", Some("session-3.scope"), 1000),
            h(1101, "reroot", Some("reroot-pivot.service"), 1101),
            h(1200, "sleep", None, 1200),
            h(1300, "conmon", Some("libpod-abc.scope"), 1300),
        ]
    }

    #[test]
    fn restart_order_matches_the_manual_procedure() {
        let op = Operator {
            self_pids: vec![1100, 1101],
            sid: Some(1000),
            ancestors: vec![998],
        };
        let g = plan_restarts(&debian_holders(), &op);
        let seq: Vec<(RestartClass, String)> = g
            .iter()
            .map(|g| (g.class, g.unit.clone().unwrap_or_default()))
            .collect();
        use RestartClass::*;
        assert_eq!(
            seq,
            vec![
                (Init, String::new()),
                (Logging, "systemd-journald.service".into()),
                (Udev, "systemd-udevd.service".into()),
                (Network, "systemd-networkd.service".into()),
                (Logind, "dbus.service".into()),
                (Logind, "systemd-logind.service".into()),
                (Sshd, "ssh.service".into()),
                (Getty, "getty@tty1.service".into()),
                (Getty, "serial-getty@ttyS0.service".into()),
                (Service, "cron.service".into()),
                (Service, "nginx.service".into()),
                (UserManager, "user@0.service".into()),
                (Session, String::new()),
                (Reroot, String::new()),
                (Unmanaged, String::new()),
                (Unmanaged, "libpod-abc.scope".into()),
            ]
        );
        // Grouping by unit: both nginx processes in one group, sorted by pid.
        let nginx = g
            .iter()
            .find(|g| g.unit.as_deref() == Some("nginx.service"))
            .unwrap();
        assert_eq!(nginx.pids, vec![700, 701]);
        // The operator's shell and its sshd session process, named as such.
        let me = g.iter().find(|g| g.class == Session).unwrap();
        assert_eq!(me.pids, vec![998, 1020]);
        assert!(me.note.contains("log out and in again"));
        let init = &g[0];
        assert_eq!(init.pids, vec![1, 2], "init.scope joins PID 1's group");
        // User managers restart after every system service (issue 12: root's
        // user@0.service otherwise holds the old root as long as root is
        // logged in anywhere); sessions, reroot and unmanaged processes do not.
        let restartable: Vec<RestartClass> = g
            .iter()
            .filter(|g| g.class.restartable())
            .map(|g| g.class)
            .collect();
        assert_eq!(restartable.last(), Some(&UserManager));
        let um = g.iter().find(|g| g.class == UserManager).unwrap();
        assert_eq!(um.pids, vec![900]);
        assert!(um.note.contains("sessions stay"), "{}", um.note);
        assert!(UserManager.restartable());
        assert!(!Session.restartable() && !Reroot.restartable() && !Unmanaged.restartable());
    }

    #[test]
    fn openrc_and_comm_names_classify() {
        assert_eq!(classify_name("sshd"), RestartClass::Sshd);
        assert_eq!(classify_name("syslog-ng"), RestartClass::Logging);
        assert_eq!(classify_name("udev"), RestartClass::Udev);
        assert_eq!(classify_name("dhcpcd"), RestartClass::Network);
        assert_eq!(
            classify_name("user@1000.service"),
            RestartClass::UserManager
        );
        assert_eq!(classify_name("session-c2.scope"), RestartClass::Session);
        assert_eq!(
            classify_name("postgresql@15-main.service"),
            RestartClass::Service
        );
        assert_eq!(
            classify_name("session-manager.service"),
            RestartClass::Service
        );
    }
}
