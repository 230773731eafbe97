//! The preflight verdict: probed [`RootFacts`] in, a [`Report`] of
//! [`Finding`]s out, each a blocker, a warning or information, with the pids
//! and paths involved, the service they belong to, advice in words, and the
//! [`Action`] `reroot quiesce` can take for it. Findings are grouped by
//! service and ordered: blockers first.
//!
//! Pure: no I/O. Other stages add their own findings to a report
//! ([`Report::add`]): target checks, boot configuration (issue 6).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plan::target::Refusal;
use crate::probe::cgroup::Service;
use crate::probe::init::InitSystem;
use crate::probe::loops::LoopDevice;
use crate::probe::mountinfo::Mount;
use crate::probe::process::ProcessUse;
use crate::probe::rootfs::RootFacts;

/// How much a finding matters. Ordered: blockers sort first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The migration cannot go on until this is dealt with.
    Blocker,
    /// The migration can go on, but this needs attention (now or after the pivot).
    Warning,
    /// For the record (what the pivot will restart or move).
    Info,
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Category {
    /// Processes with regular files on the root open for writing.
    OpenForWrite,
    /// Processes holding deleted files open (fds, exe, cwd, root).
    DeletedOpen,
    /// Processes mapping deleted files (libraries replaced by an upgrade).
    DeletedMapped,
    /// Swap files on the root.
    SwapFile,
    /// Loop devices backed by files on the root.
    LoopDevice,
    /// Overlay mounts with layers on the root.
    OverlayMount,
    /// Network and FUSE mounts below the root.
    NetworkMount,
    /// Unix sockets bound to paths on the root.
    UnixSocket,
    /// Other mount namespaces (containers, sandboxed services) with the root mounted.
    OtherNamespace,
    /// Processes reroot could not inspect.
    Unreadable,
    /// The root's filesystem type.
    Filesystem,
    /// The target device (`check --target`).
    Target,
    /// fstab and kernel command line (issue 6).
    BootConfig,
    /// Processes running from the root (restarted after the pivot).
    RunsFromRoot,
    /// The mount tree below the root (moved back after the pivot).
    SubMounts,
    /// The root is already read-only.
    ReadOnly,
}

/// What `reroot quiesce` can do about a finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Stop the service (and start it again on resume).
    StopService {
        /// The service.
        service: Service,
    },
    /// Restart the service (it then lets go of deleted files).
    RestartService {
        /// The service.
        service: Service,
    },
    /// `journalctl --relinquish-var` now, `journalctl --flush` on resume.
    RelinquishJournal,
    /// Unmount (and mount again on resume).
    Unmount {
        /// The mount.
        mount: MountSpec,
    },
    /// Unmount what is mounted from a loop device and detach it (re-attach
    /// and mount again on resume).
    ReleaseLoop {
        /// The loop device.
        loop_device: LoopDevice,
        /// What is mounted from it.
        mounts: Vec<MountSpec>,
    },
    /// `swapoff` the file (`swapon` on resume).
    Swapoff {
        /// The swap file.
        path: PathBuf,
        /// Its priority, restored on resume.
        priority: i32,
    },
}

/// Enough about a mount to unmount it and mount it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountSpec {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// What is mounted (`/dev/loop3`, `server:/export`).
    pub source: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount options (per-mount and per-superblock, `rw` dropped).
    pub options: String,
}

impl MountSpec {
    /// The spec of a mountinfo entry.
    pub fn of(m: &Mount) -> Self {
        let mut opts: Vec<&str> = Vec::new();
        for o in m.mount_options.iter().chain(&m.super_options) {
            if o != "rw" && !opts.contains(&o.as_str()) {
                opts.push(o);
            }
        }
        Self {
            mount_point: m.mount_point.clone(),
            source: m.source.clone(),
            fstype: m.fstype.clone(),
            options: opts.join(","),
        }
    }
}

/// One thing `check` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Blocker, warning or info.
    pub severity: Severity,
    /// What it is about.
    pub category: Category,
    /// One line saying what was found.
    pub summary: String,
    /// The service involved, if any.
    pub service: Option<Service>,
    /// The processes involved.
    pub pids: Vec<u32>,
    /// The files, mount points or devices involved.
    pub paths: Vec<PathBuf>,
    /// What to do about it.
    pub advice: String,
    /// What `reroot quiesce` will do about it, if anything.
    pub action: Option<Action>,
}

impl Finding {
    /// A finding with no pids, paths, service or action.
    pub fn new(
        severity: Severity,
        category: Category,
        summary: impl Into<String>,
        advice: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            category,
            summary: summary.into(),
            service: None,
            pids: Vec::new(),
            paths: Vec::new(),
            advice: advice.into(),
            action: None,
        }
    }

    fn sort_key(&self) -> (Severity, Category, Option<&str>, Option<u32>, Option<&Path>) {
        (
            self.severity,
            self.category,
            self.service.as_ref().map(Service::name),
            self.pids.first().copied(),
            self.paths.first().map(PathBuf::as_path),
        )
    }
}

/// What to do about one service, over all its findings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceSummary {
    /// The service.
    pub service: Service,
    /// Its processes named in findings.
    pub pids: Vec<u32>,
    /// The categories of its findings.
    pub categories: Vec<Category>,
    /// The worst severity among them.
    pub severity: Severity,
    /// `stop`, `restart`, `restart after the pivot`, or `by hand`.
    pub todo: String,
}

/// A mount below the root, as the pivot must move it back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubMount {
    /// Mount point.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Source.
    pub source: String,
    /// `shared`, `slave`, `private` or `unbindable`.
    pub propagation: &'static str,
}

/// The verdict of `check`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The root that was checked.
    pub root: PathBuf,
    /// Its device number, `MAJOR:MINOR`.
    pub device: String,
    /// Its mount source.
    pub source: String,
    /// Its filesystem type.
    pub fstype: String,
    /// The init system (who stops and starts services).
    pub init: InitSystem,
    /// No blockers.
    pub ready: bool,
    /// Number of blockers.
    pub blockers: usize,
    /// Number of warnings.
    pub warnings: usize,
    /// Number of findings for information.
    pub infos: usize,
    /// Processes looked at.
    pub scanned: usize,
    /// All findings, blockers first.
    pub findings: Vec<Finding>,
    /// Per service: what to do.
    pub services: Vec<ServiceSummary>,
    /// The mount tree below the root, parents first.
    pub mounts_under_root: Vec<SubMount>,
}

impl Report {
    /// Add findings (target checks, boot configuration); keeps the order and
    /// the counts right.
    pub fn add(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.findings.extend(findings);
        self.refresh();
    }

    /// The blockers.
    pub fn blockers(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
    }

    fn refresh(&mut self) {
        self.findings
            .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let count = |s| self.findings.iter().filter(|f| f.severity == s).count();
        (self.blockers, self.warnings, self.infos) = (
            count(Severity::Blocker),
            count(Severity::Warning),
            count(Severity::Info),
        );
        self.ready = self.blockers == 0;
        self.services = summarize_services(&self.findings);
    }
}

/// Units reroot never stops: it would cut off the operator or the system
/// (journald is handled with `--relinquish-var` instead).
fn never_stop(s: &Service) -> bool {
    let n = s.name();
    matches!(
        n,
        "ssh.service"
            | "sshd.service"
            | "dbus.service"
            | "dbus-broker.service"
            | "systemd-logind.service"
            | "systemd-journald.service"
            | "systemd-udevd.service"
            | "sshd"
            | "dbus"
            | "udev"
    ) || n.starts_with("user@")
        || !s.is_stoppable()
}

/// Units reroot never restarts either.
fn never_restart(s: &Service) -> bool {
    let n = s.name();
    matches!(n, "dbus.service" | "dbus-broker.service" | "dbus")
        || n.starts_with("user@")
        || !s.is_stoppable()
}

fn is_journald(s: &Service) -> bool {
    s.name() == "systemd-journald.service"
}

/// The processes of a finding, grouped: one key per service, and per pid
/// for processes in no service (all together when `merge_unmanaged`).
fn group_key(
    p: &ProcessUse,
    manages: bool,
    merge_unmanaged: bool,
) -> (Option<Service>, Option<u32>) {
    match (&p.service, manages) {
        (Some(s), true) => (Some(s.clone()), None),
        _ if merge_unmanaged => (None, None),
        _ => (None, Some(p.pid)),
    }
}

fn who(service: Option<&Service>, procs: &[&ProcessUse]) -> String {
    let labels: Vec<String> = procs.iter().map(|p| p.label()).collect();
    let list = shorten(&labels, 4);
    match service {
        Some(s) => format!("{s}: {list}"),
        None => list,
    }
}

/// Join `items`, naming at most `max` and counting the rest.
pub fn shorten(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        let rest = items.len().saturating_sub(max);
        // `max < items.len()` here, so the slice is in bounds.
        format!("{} and {rest} more", items[..max].join(", "))
    }
}

fn path_list(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shorten(&v, 3)
}

/// Findings of one kind of process use, grouped by service.
fn process_findings(
    procs: &[ProcessUse],
    init: &InitSystem,
    category: Category,
    merge_unmanaged: bool,
    paths_of: impl Fn(&ProcessUse) -> Vec<PathBuf>,
    make: impl Fn(Option<&Service>, &str, &str) -> (Severity, String, String, Option<Action>),
) -> Vec<Finding> {
    let manages = init.manages_services();
    let mut groups: BTreeMap<(Option<Service>, Option<u32>), Vec<&ProcessUse>> = BTreeMap::new();
    for p in procs {
        if !paths_of(p).is_empty() {
            groups
                .entry(group_key(p, manages, merge_unmanaged))
                .or_default()
                .push(p);
        }
    }
    groups
        .into_iter()
        .map(|((service, _), ps)| {
            let mut paths: Vec<PathBuf> = ps.iter().flat_map(|p| paths_of(p)).collect();
            paths.sort();
            paths.dedup();
            let mut who = who(service.as_ref(), &ps);
            if ps.iter().any(|p| p.other_mnt_ns) {
                who.push_str(" [in another mount namespace]");
            }
            let (severity, summary, advice, action) =
                make(service.as_ref(), &who, &path_list(&paths));
            Finding {
                severity,
                category,
                summary,
                service,
                pids: ps.iter().map(|p| p.pid).collect(),
                paths,
                advice,
                action,
            }
        })
        .collect()
}

fn by_hand(who: &str) -> String {
    format!("stop or restart {who} by hand (it is in no service reroot can manage)")
}

/// Turn the facts about a root into findings. `init` decides whether services
/// can be stopped and restarted.
pub fn assess(facts: &RootFacts, init: &InitSystem) -> Report {
    let procs = &facts.scan.processes;
    let manages = init.manages_services();
    let mut f = Vec::new();

    f.extend(process_findings(
        procs,
        init,
        Category::OpenForWrite,
        false,
        |p| p.written_files().map(|f| f.path.clone()).collect(),
        |svc, who, paths| {
            let summary = format!("{who} writes {paths}");
            let (advice, action) = match svc {
                Some(s) if manages && is_journald(s) => (
                    "journald keeps its journal on the root: `reroot quiesce` runs \
                     `journalctl --relinquish-var` (and `--flush` on resume)"
                        .to_owned(),
                    Some(Action::RelinquishJournal),
                ),
                Some(s) if manages && !never_stop(s) => (
                    format!(
                        "stop {} before the remount to read-only (`reroot quiesce` does, \
                         `reroot resume-services` starts it again)",
                        s.name()
                    ),
                    Some(Action::StopService { service: s.clone() }),
                ),
                Some(s) if manages => (
                    format!(
                        "reroot will not stop {}: make it close these files (reconfigure \
                         it to write elsewhere), or restart it by hand",
                        s.name()
                    ),
                    None,
                ),
                _ => (by_hand(who), None),
            };
            (Severity::Blocker, summary, advice, action)
        },
    ));

    let deleted = |mapped: bool| {
        move |p: &ProcessUse| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = if mapped {
                p.maps
                    .iter()
                    .filter(|m| m.file.deleted)
                    .map(|m| m.file.path.clone())
                    .collect()
            } else {
                [&p.exe, &p.cwd, &p.root]
                    .into_iter()
                    .flatten()
                    .chain(p.fds.iter().map(|f| &f.file))
                    .filter(|f| f.deleted)
                    .map(|f| f.path.clone())
                    .collect()
            };
            v.dedup();
            v
        }
    };
    for (category, what) in [
        (Category::DeletedOpen, "holds deleted files open"),
        (
            Category::DeletedMapped,
            "maps deleted files (replaced libraries?)",
        ),
    ] {
        f.extend(process_findings(
            procs,
            init,
            category,
            false,
            deleted(category == Category::DeletedMapped),
            |svc, who, paths| {
                let summary = format!("{who} {what}: {paths}");
                let why = "the kernel refuses remount,ro while deleted files are in use";
                let (advice, action) = match svc {
                    Some(s) if manages && !never_restart(s) => (
                        format!(
                            "restart {} so it lets go of them ({why}; `reroot quiesce` does)",
                            s.name()
                        ),
                        Some(Action::RestartService { service: s.clone() }),
                    ),
                    Some(s) if manages => {
                        (format!("reroot will not restart {}: {why}", s.name()), None)
                    }
                    _ => (format!("{}; {why}", by_hand(who)), None),
                };
                (Severity::Blocker, summary, advice, action)
            },
        ));
    }

    f.extend(process_findings(
        procs,
        init,
        Category::UnixSocket,
        false,
        |p| p.sockets.iter().map(|s| s.path.clone()).collect(),
        |svc, who, paths| {
            let target = svc.map_or_else(|| who.to_owned(), |s| s.name().to_owned());
            (
                Severity::Warning,
                format!("{who} has unix sockets bound on the root: {paths}"),
                format!(
                    "restart {target} after the pivot, so its sockets are bound on the new \
                     root (clients would otherwise find a dead socket file)"
                ),
                None,
            )
        },
    ));

    f.extend(process_findings(
        procs,
        init,
        Category::RunsFromRoot,
        true,
        |p| {
            let mut v: Vec<PathBuf> = [&p.exe, &p.cwd, &p.root]
                .into_iter()
                .flatten()
                .map(|f| f.path.clone())
                .collect();
            if v.is_empty() && !p.maps.is_empty() {
                v.extend(p.maps.iter().map(|m| m.file.path.clone()));
            }
            if v.is_empty() && !p.fds.is_empty() {
                v.extend(p.fds.iter().map(|f| f.file.path.clone()));
            }
            v
        },
        |svc, who, _| {
            let target = svc.map_or("them", Service::name);
            (
                Severity::Info,
                format!("running from or using the root: {who}"),
                format!("`reroot pivot` lists {target} for a restart on the new root"),
                None,
            )
        },
    ));

    for s in &facts.swaps {
        let mut x = Finding::new(
            Severity::Blocker,
            Category::SwapFile,
            format!("swap file {} is on the root", s.path.display()),
            "swap it off before the remount (`reroot quiesce` does; `reroot resume-services` \
             swaps it on again)",
        );
        x.paths = vec![s.path.clone()];
        x.action = Some(Action::Swapoff {
            path: s.path.clone(),
            priority: s.priority,
        });
        f.push(x);
    }

    for l in &facts.loops {
        let dev = l.device.node();
        let mps: Vec<PathBuf> = l.mounts.iter().map(|m| m.mount_point.clone()).collect();
        let mounted = if mps.is_empty() {
            String::from("nothing is mounted from it")
        } else {
            format!("mounted at {}", path_list(&mps))
        };
        let (severity, why) = if l.device.read_only {
            (
                Severity::Warning,
                "after the pivot it still reads the old root",
            )
        } else {
            (
                Severity::Blocker,
                "it keeps its backing file open for writing, so remount,ro fails",
            )
        };
        let mut x = Finding::new(
            severity,
            Category::LoopDevice,
            format!(
                "{} is backed by {} on the root; {mounted}",
                dev.display(),
                l.device.backing_file.display()
            ),
            format!(
                "unmount it and detach {} ({why}; `reroot quiesce` does, `reroot \
                 resume-services` re-attaches and re-mounts it)",
                dev.display()
            ),
        );
        x.paths = std::iter::once(l.device.backing_file.clone())
            .chain(mps)
            .collect();
        x.action = Some(Action::ReleaseLoop {
            loop_device: l.device.clone(),
            mounts: l.mounts.iter().map(MountSpec::of).collect(),
        });
        f.push(x);
    }

    for o in &facts.overlays {
        let mp = o.mount.mount_point.display();
        let (severity, advice) = if o.writes {
            (
                Severity::Blocker,
                format!(
                    "the overlay at {mp} writes to the root: stop what uses it (containers) \
                     and unmount it (`reroot quiesce` tries)"
                ),
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "the overlay at {mp} reads layers from the root: unmount it, or restart what uses it after the pivot"
                ),
            )
        };
        let mut x = Finding::new(
            severity,
            Category::OverlayMount,
            format!(
                "overlay mount {mp} has layers on the root: {}",
                path_list(&o.layers)
            ),
            advice,
        );
        x.paths = std::iter::once(o.mount.mount_point.clone())
            .chain(o.layers.iter().cloned())
            .collect();
        x.action = Some(Action::Unmount {
            mount: MountSpec::of(&o.mount),
        });
        f.push(x);
    }

    for m in &facts.network {
        let mut x = Finding::new(
            Severity::Warning,
            Category::NetworkMount,
            format!(
                "{} mount {} ({}) sits below the root",
                m.fstype,
                m.mount_point.display(),
                m.source
            ),
            if crate::plan::quiesce::is_fuse(&m.fstype) {
                "unmount it before the pivot (`reroot quiesce` does); unmounting a FUSE mount ends \
                 its daemon, and `reroot resume-services` cannot start it again: stop the \
                 service that mounted it first and start it afterwards, or mount it again by hand"
            } else {
                "unmount it before the pivot (`reroot quiesce` does and `reroot resume-services` \
                 mounts it again); otherwise the pivot moves it, and its server must stay reachable"
            },
        );
        x.paths = vec![m.mount_point.clone()];
        x.action = Some(Action::Unmount {
            mount: MountSpec::of(m),
        });
        f.push(x);
    }

    for ns in &facts.scan.foreign_namespaces {
        let services: Vec<String> = ns.services.iter().map(ToString::to_string).collect();
        let pids: Vec<String> = ns.pids.iter().map(u32::to_string).collect();
        let mut x = Finding::new(
            Severity::Warning,
            Category::OtherNamespace,
            format!(
                "mount namespace {} (pids {}{}) has the root mounted",
                ns.ns,
                shorten(&pids, 6),
                if services.is_empty() {
                    String::new()
                } else {
                    format!("; {}", shorten(&services, 4))
                }
            ),
            "the pivot does not reach other mount namespaces: restart these services or \
             containers after the pivot, or the old root stays in use",
        );
        x.pids.clone_from(&ns.pids);
        x.paths = ns.mounts.iter().map(|m| m.mount_point.clone()).collect();
        f.push(x);
    }

    if !facts.scan.unreadable.is_empty() {
        let mut x = Finding::new(
            Severity::Warning,
            Category::Unreadable,
            format!(
                "{} process(es) could not be inspected",
                facts.scan.unreadable.len()
            ),
            "run reroot as root to see every process",
        );
        x.pids.clone_from(&facts.scan.unreadable);
        f.push(x);
    }

    if !matches!(facts.root.fstype.as_str(), "ext2" | "ext3" | "ext4") {
        f.push(Finding::new(
            Severity::Warning,
            Category::Filesystem,
            format!("the root is {}, not ext2/3/4", facts.root.fstype),
            "reroot reads used blocks from ext2/3/4 bitmaps only; other filesystems are \
             copied whole (`copy --full`)",
        ));
    }

    if facts.root.is_read_only() {
        f.push(Finding::new(
            Severity::Info,
            Category::ReadOnly,
            "the root is already mounted read-only",
            "nothing to quiesce",
        ));
    }

    if !facts.sub_mounts.is_empty() {
        let mps: Vec<PathBuf> = facts
            .sub_mounts
            .iter()
            .map(|m| m.mount_point.clone())
            .collect();
        let mut x = Finding::new(
            Severity::Info,
            Category::SubMounts,
            format!(
                "{} mounts sit below the root: {}",
                mps.len(),
                path_list(&mps)
            ),
            "the pivot moves them back into place, keeping their propagation",
        );
        x.paths = mps;
        f.push(x);
    }

    let mut report = Report {
        root: facts.root.mount_point.clone(),
        device: format!("{}:{}", facts.root.major, facts.root.minor),
        source: facts.root.source.clone(),
        fstype: facts.root.fstype.clone(),
        init: init.clone(),
        ready: true,
        blockers: 0,
        warnings: 0,
        infos: 0,
        scanned: facts.scan.scanned,
        findings: Vec::new(),
        services: Vec::new(),
        mounts_under_root: facts
            .sub_mounts
            .iter()
            .map(|m| SubMount {
                mount_point: m.mount_point.clone(),
                fstype: m.fstype.clone(),
                source: m.source.clone(),
                propagation: m.propagation.make_flag(),
            })
            .collect(),
    };
    report.add(f);
    report
}

/// Findings for `check --target`: one blocker per refusal of the target
/// rules (`plan::target::check_targets`).
pub fn target_findings(refusals: &[Refusal]) -> Vec<Finding> {
    refusals
        .iter()
        .map(|r| {
            let mut x = Finding::new(
                Severity::Blocker,
                Category::Target,
                format!("target {}: {}", r.device.display(), r.reason),
                r.hint.clone(),
            );
            x.paths = vec![r.device.clone()];
            x
        })
        .collect()
}

/// Per service: its pids, categories, worst severity and what to do.
pub fn summarize_services(findings: &[Finding]) -> Vec<ServiceSummary> {
    let mut by: BTreeMap<&Service, Vec<&Finding>> = BTreeMap::new();
    for x in findings {
        if let Some(s) = &x.service {
            by.entry(s).or_default().push(x);
        }
    }
    by.into_iter()
        .map(|(s, xs)| {
            let mut pids: Vec<u32> = xs.iter().flat_map(|x| x.pids.iter().copied()).collect();
            pids.sort_unstable();
            pids.dedup();
            let mut categories: Vec<Category> = xs.iter().map(|x| x.category).collect();
            categories.dedup();
            let has =
                |pred: fn(&Action) -> bool| xs.iter().any(|x| x.action.as_ref().is_some_and(pred));
            let blocked = xs.iter().any(|x| x.severity == Severity::Blocker);
            let todo = if has(|a| matches!(a, Action::RelinquishJournal)) {
                "relinquish /var (journalctl), flush on resume"
            } else if has(|a| matches!(a, Action::StopService { .. })) {
                "stop before the remount, start on resume"
            } else if has(|a| matches!(a, Action::RestartService { .. })) {
                "restart before the remount"
            } else if blocked {
                "by hand: reroot will not touch it"
            } else {
                "restart after the pivot"
            };
            ServiceSummary {
                service: s.clone(),
                pids,
                categories,
                severity: xs
                    .iter()
                    .map(|x| x.severity)
                    .min()
                    .unwrap_or(Severity::Info),
                todo: todo.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fdinfo::Access;
    use crate::probe::mountinfo;
    use crate::probe::process::{FileKind, FileRef, MappedFile, OpenFile, Scan};
    use crate::probe::rootfs::{LoopUse, OverlayUse};
    use crate::probe::swaps::Swap;

    fn mount(line: &str) -> Mount {
        mountinfo::parse_line(line, 1).unwrap()
    }

    fn file(path: &str, deleted: bool) -> FileRef {
        FileRef {
            path: path.into(),
            dev: 1,
            ino: 2,
            deleted,
        }
    }

    fn proc_(pid: u32, comm: &str, unit: Option<&str>) -> ProcessUse {
        let mut p = ProcessUse::new(pid);
        p.comm = comm.into();
        p.service = unit.map(|u| Service::Systemd {
            unit: u.into(),
            user_unit: None,
        });
        p
    }

    fn fd(n: u32, path: &str, access: Access, deleted: bool) -> OpenFile {
        OpenFile {
            fd: n,
            file: file(path, deleted),
            kind: FileKind::Regular,
            access,
            flags: 0,
        }
    }

    fn facts(procs: Vec<ProcessUse>) -> RootFacts {
        RootFacts {
            root: mount("27 1 7:3 / /mnt/t rw,relatime shared:1 - ext4 /dev/loop3 rw"),
            binds: vec![],
            sub_mounts: vec![],
            loops: vec![],
            swaps: vec![],
            overlays: vec![],
            network: vec![],
            scan: Scan {
                processes: procs,
                scanned: 100,
                ..Scan::default()
            },
        }
    }

    fn cats(r: &Report) -> Vec<(Severity, Category, Vec<u32>)> {
        r.findings
            .iter()
            .map(|f| (f.severity, f.category, f.pids.clone()))
            .collect()
    }

    #[test]
    fn classifies_process_uses_and_groups_by_service() {
        let mut writer = proc_(10, "rsyslogd", Some("rsyslog.service"));
        writer.fds = vec![fd(5, "/var/log/syslog", Access::Write, false)];
        let mut writer2 = proc_(11, "rsyslogd", Some("rsyslog.service"));
        writer2.fds = vec![fd(6, "/var/log/auth.log", Access::ReadWrite, false)];
        let mut reader = proc_(20, "cat", None);
        reader.fds = vec![fd(3, "/etc/passwd", Access::Read, false)];
        let mut holder = proc_(30, "sleep", None);
        holder.fds = vec![fd(3, "/tmp/gone", Access::Read, true)];
        let mut mapper = proc_(40, "sshd", Some("ssh.service"));
        mapper.maps = vec![MappedFile {
            file: file("/usr/lib/libcrypto.so.3", true),
            exec: true,
            writes: false,
        }];
        mapper.exe = Some(file("/usr/sbin/sshd", false));
        let mut journald = proc_(50, "systemd-journal", Some("systemd-journald.service"));
        journald.fds = vec![fd(
            20,
            "/var/log/journal/x/system.journal",
            Access::ReadWrite,
            false,
        )];
        let mut dbus = proc_(60, "dbus-daemon", Some("dbus.service"));
        dbus.maps = vec![MappedFile {
            file: file("/usr/lib/libx.so", true),
            exec: true,
            writes: false,
        }];
        let mut socket = proc_(70, "postfix", Some("postfix.service"));
        socket.sockets = vec![crate::probe::process::BoundSocket {
            fd: 4,
            path: "/var/spool/postfix/private/x".into(),
            inode: 9,
            listening: true,
        }];
        let r = assess(
            &facts(vec![
                writer, writer2, reader, holder, mapper, journald, dbus, socket,
            ]),
            &InitSystem::Systemd,
        );
        assert_eq!(
            cats(&r),
            vec![
                (Severity::Blocker, Category::OpenForWrite, vec![10, 11]),
                (Severity::Blocker, Category::OpenForWrite, vec![50]),
                (Severity::Blocker, Category::DeletedOpen, vec![30]),
                (Severity::Blocker, Category::DeletedMapped, vec![60]),
                (Severity::Blocker, Category::DeletedMapped, vec![40]),
                (Severity::Warning, Category::UnixSocket, vec![70]),
                (Severity::Info, Category::RunsFromRoot, vec![20, 30]),
                (Severity::Info, Category::RunsFromRoot, vec![60]),
                (Severity::Info, Category::RunsFromRoot, vec![10, 11]),
                (Severity::Info, Category::RunsFromRoot, vec![40]),
                (Severity::Info, Category::RunsFromRoot, vec![50]),
            ]
        );
        assert!(!r.ready);
        assert_eq!((r.blockers, r.warnings, r.infos), (5, 1, 5));
        let w = &r.findings[0];
        assert_eq!(
            w.paths,
            vec![PathBuf::from("/var/log/auth.log"), "/var/log/syslog".into()]
        );
        assert!(w.advice.contains("stop rsyslog.service"), "{}", w.advice);
        assert!(
            matches!(&w.action, Some(Action::StopService { service }) if service.name() == "rsyslog.service")
        );
        assert_eq!(r.findings[1].action, Some(Action::RelinquishJournal));
        assert_eq!(r.findings[2].action, None, "no service: by hand");
        assert!(r.findings[2].advice.contains("by hand"));
        assert!(r.findings[2].summary.contains("pid 30 (sleep)"));
        assert_eq!(r.findings[3].action, None, "dbus is never restarted");
        assert!(
            matches!(&r.findings[4].action, Some(Action::RestartService { service }) if service.name() == "ssh.service")
        );
        assert!(
            r.findings[5]
                .advice
                .contains("restart postfix.service after the pivot")
        );
        let todo: Vec<(&str, &str)> = r
            .services
            .iter()
            .map(|s| (s.service.name(), s.todo.as_str()))
            .collect();
        assert_eq!(
            todo,
            vec![
                ("dbus.service", "by hand: reroot will not touch it"),
                ("postfix.service", "restart after the pivot"),
                (
                    "rsyslog.service",
                    "stop before the remount, start on resume"
                ),
                ("ssh.service", "restart before the remount"),
                (
                    "systemd-journald.service",
                    "relinquish /var (journalctl), flush on resume"
                ),
            ]
        );
    }

    #[test]
    fn without_a_service_manager_everything_is_by_hand() {
        let mut writer = proc_(10, "rsyslogd", Some("rsyslog.service"));
        writer.fds = vec![fd(5, "/var/log/syslog", Access::Write, false)];
        let r = assess(&facts(vec![writer]), &InitSystem::Other("init".into()));
        assert_eq!(r.findings[0].service, None);
        assert_eq!(r.findings[0].action, None);
        assert!(r.findings[0].advice.contains("pid 10 (rsyslogd)"));
        assert!(r.services.is_empty());
    }

    #[test]
    fn mounts_swaps_loops_overlays_namespaces() {
        let mut x = facts(vec![]);
        x.swaps = vec![Swap {
            path: "/mnt/t/swap".into(),
            deleted: false,
            kind: "file".into(),
            size_kib: 1,
            used_kib: 0,
            priority: -2,
        }];
        let lp = |ro| LoopDevice {
            name: "loop9".into(),
            major: 7,
            minor: 9,
            backing_file: "/mnt/t/img".into(),
            deleted: false,
            offset: 0,
            sizelimit: 0,
            autoclear: true,
            read_only: ro,
        };
        x.loops = vec![
            LoopUse {
                device: lp(false),
                mounts: vec![mount("40 27 7:9 / /mnt/t/sq ro - squashfs /dev/loop9 ro")],
            },
            LoopUse {
                device: lp(true),
                mounts: vec![],
            },
        ];
        x.overlays = vec![OverlayUse {
            mount: mount("41 1 0:60 / /c rw - overlay overlay rw,upperdir=/mnt/t/u"),
            writes: true,
            layers: vec!["/mnt/t/u".into()],
        }];
        x.network = vec![mount(
            "42 27 0:61 / /mnt/t/nfs rw - nfs4 srv:/x rw,vers=4.2",
        )];
        x.sub_mounts = vec![x.network[0].clone()];
        x.scan.foreign_namespaces = vec![crate::probe::process::ForeignNamespace {
            ns: 4_026_532_000,
            pids: vec![300, 301],
            services: [Service::Systemd {
                unit: "docker.service".into(),
                user_unit: None,
            }]
            .into(),
            mounts: vec![mount("1 1 7:3 / / rw - ext4 /dev/loop3 rw")],
        }];
        x.scan.unreadable = vec![5];
        x.root = mount("27 1 7:3 / /mnt/t ro - xfs /dev/loop3 ro");
        let r = assess(&x, &InitSystem::Systemd);
        let c: Vec<(Severity, Category)> = r
            .findings
            .iter()
            .map(|f| (f.severity, f.category))
            .collect();
        assert_eq!(
            c,
            vec![
                (Severity::Blocker, Category::SwapFile),
                (Severity::Blocker, Category::LoopDevice),
                (Severity::Blocker, Category::OverlayMount),
                (Severity::Warning, Category::LoopDevice),
                (Severity::Warning, Category::NetworkMount),
                (Severity::Warning, Category::OtherNamespace),
                (Severity::Warning, Category::Unreadable),
                (Severity::Warning, Category::Filesystem),
                (Severity::Info, Category::SubMounts),
                (Severity::Info, Category::ReadOnly),
            ]
        );
        assert_eq!(
            r.findings[0].action,
            Some(Action::Swapoff {
                path: "/mnt/t/swap".into(),
                priority: -2
            })
        );
        match &r.findings[1].action {
            Some(Action::ReleaseLoop {
                loop_device,
                mounts,
            }) => {
                assert_eq!(mounts[0].mount_point, Path::new("/mnt/t/sq"));
                assert_eq!(mounts[0].options, "ro");
                assert_eq!(loop_device.name, "loop9");
            }
            a => panic!("{a:?}"),
        }
        assert!(
            matches!(&r.findings[3].action, Some(Action::ReleaseLoop { mounts, .. }) if mounts.is_empty())
        );
        match &r.findings[4].action {
            Some(Action::Unmount { mount, .. }) => assert_eq!(mount.options, "vers=4.2"),
            a => panic!("{a:?}"),
        }
        assert_eq!(r.findings[5].pids, vec![300, 301]);
        assert!(r.findings[5].summary.contains("docker.service"));
        assert_eq!(r.mounts_under_root.len(), 1);
        assert_eq!(r.mounts_under_root[0].propagation, "private");
        assert_eq!(r.device, "7:3");
    }

    #[test]
    fn added_findings_are_ordered_and_counted() {
        let mut r = assess(&facts(vec![]), &InitSystem::Systemd);
        assert!(r.ready);
        assert_eq!((r.blockers, r.warnings), (0, 0));
        r.add([
            Finding::new(
                Severity::Warning,
                Category::BootConfig,
                "fstab names /dev/sda1",
                "use UUID=",
            ),
            Finding::new(
                Severity::Blocker,
                Category::Target,
                "/dev/sdb is mounted",
                "unmount it",
            ),
        ]);
        assert!(!r.ready);
        assert_eq!((r.blockers, r.warnings), (1, 1));
        assert_eq!(r.findings[0].category, Category::Target);
        assert_eq!(r.blockers().count(), 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["findings"][0]["category"], "target");
        assert_eq!(json["findings"][0]["severity"], "blocker");
        assert_eq!(json["init"]["init"], "systemd");
    }

    #[test]
    fn refusals_become_target_blockers() {
        let r = Refusal {
            device: "/dev/sdb".into(),
            rule: crate::plan::target::Rule::Mounted,
            reason: "is mounted at /srv".into(),
            hint: "unmount it".into(),
        };
        let f = target_findings(&[r]);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].severity, f[0].category),
            (Severity::Blocker, Category::Target)
        );
        assert_eq!(f[0].summary, "target /dev/sdb: is mounted at /srv");
        assert_eq!(f[0].advice, "unmount it");
    }

    #[test]
    fn shorten_counts_the_rest() {
        let v: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
        assert_eq!(shorten(&v, 3), "1, 2, 3 and 2 more");
        assert_eq!(shorten(&v[..2], 3), "1, 2");
    }
}
