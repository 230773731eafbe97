//! The quiesce plan: from a `check` [`Report`], the ordered [`Step`]s that
//! make the root read-only (create what later stages need, restart and stop
//! services, unmount, detach loops, swap off, let journald go, remount
//! read-only), and the blockers no step resolves. The same `Step`s, as done,
//! are the state file that `resume-services` undoes in reverse.
//!
//! Pure: no I/O.

use std::path::{Path, PathBuf};

use super::preflight::{Action, Finding, MountSpec, Report, Severity};
use crate::probe::cgroup::Service;
use crate::probe::loops::LoopDevice;

/// What later stages need on the root, created before it goes read-only
/// (relative to the root): the pivot's `put_old` inside the copy.
pub const DEFAULT_PREPARE_DIRS: &[&str] = &["mnt/oldroot"];

/// One step of quiesce; once done, one record of the state file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Create a directory on the root (kept on resume).
    Mkdir {
        /// The directory (absolute).
        path: PathBuf,
    },
    /// Restart a service so it lets go of deleted files (nothing to undo).
    RestartService {
        /// The service.
        service: Service,
    },
    /// Stop a service; resume starts `units` again.
    StopService {
        /// The service.
        service: Service,
        /// Every unit that went down with it (its sockets, dependents),
        /// filled in when done.
        #[serde(default)]
        units: Vec<String>,
    },
    /// Unmount a network, FUSE or overlay mount; resume mounts it again,
    /// except a FUSE mount: its daemon ended with the unmount and a plain
    /// `mount` does not start it again, so resume only says so.
    Unmount {
        /// The mount.
        mount: MountSpec,
    },
    /// Unmount what is mounted from a loop device and detach it; resume
    /// re-attaches the backing file and mounts again.
    ReleaseLoop {
        /// The loop device as it was.
        loop_device: LoopDevice,
        /// Its mounts, unmounted deepest first.
        mounts: Vec<MountSpec>,
    },
    /// Swap a file off; resume swaps it on with its priority.
    Swapoff {
        /// The swap file.
        path: PathBuf,
        /// Its priority.
        priority: i32,
    },
    /// `journalctl --relinquish-var`; resume runs `journalctl --flush`.
    RelinquishJournal,
    /// `mount -o remount,ro`; resume remounts read-write.
    RemountReadOnly {
        /// The root.
        mount_point: PathBuf,
    },
}

impl Step {
    /// One line for the operator.
    pub fn describe(&self) -> String {
        match self {
            Step::Mkdir { path } => format!("create {}", path.display()),
            Step::RestartService { service } => format!("restart {service}"),
            Step::StopService { service, units } if units.len() > 1 => {
                format!("stop {service} (with {})", units.join(", "))
            }
            Step::StopService { service, .. } => format!("stop {service}"),
            Step::Unmount { mount } => format!(
                "unmount {} ({} {})",
                mount.mount_point.display(),
                mount.fstype,
                mount.source
            ),
            Step::ReleaseLoop {
                loop_device,
                mounts,
            } => {
                let mps: Vec<String> = mounts
                    .iter()
                    .map(|m| m.mount_point.display().to_string())
                    .collect();
                if mps.is_empty() {
                    format!(
                        "detach {} ({})",
                        loop_device.node().display(),
                        loop_device.backing_file.display()
                    )
                } else {
                    format!(
                        "unmount {} and detach {} ({})",
                        mps.join(", "),
                        loop_device.node().display(),
                        loop_device.backing_file.display()
                    )
                }
            }
            Step::Swapoff { path, .. } => format!("swapoff {}", path.display()),
            Step::RelinquishJournal => {
                "journalctl --relinquish-var (journald writes to /run until resumed)".to_owned()
            }
            Step::RemountReadOnly { mount_point } => {
                format!("mount -o remount,ro {}", mount_point.display())
            }
        }
    }

    /// What resume does to undo it, if anything.
    pub fn undo_description(&self) -> Option<String> {
        match self {
            Step::Mkdir { .. } | Step::RestartService { .. } => None,
            Step::StopService { service, units } if units.is_empty() => {
                Some(format!("start {service}"))
            }
            Step::StopService { units, .. } => Some(format!("start {}", units.join(", "))),
            Step::Unmount { mount } if is_fuse(&mount.fstype) => Some(format!(
                "leave {} unmounted (FUSE: its daemon must mount it again)",
                mount.mount_point.display()
            )),
            Step::Unmount { mount } => Some(format!("mount {}", mount.mount_point.display())),
            Step::ReleaseLoop { loop_device, .. } => Some(format!(
                "re-attach {} and mount it again",
                loop_device.backing_file.display()
            )),
            Step::Swapoff { path, .. } => Some(format!("swapon {}", path.display())),
            Step::RelinquishJournal => Some("journalctl --flush".to_owned()),
            Step::RemountReadOnly { mount_point } => {
                Some(format!("mount -o remount,rw {}", mount_point.display()))
            }
        }
    }
}

/// What quiesce will do, and what it cannot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuiescePlan {
    /// The root.
    pub root: PathBuf,
    /// The steps, in order; the last remounts read-only.
    pub steps: Vec<Step>,
    /// Blockers no step resolves: the remount will fail while they remain.
    pub unresolved: Vec<Finding>,
    /// Things the operator should know (service steps skipped, ...).
    pub notes: Vec<String>,
}

/// Plan quiesce from a check report. `prepare_dirs` are relative to the root.
pub fn plan(report: &Report, prepare_dirs: &[PathBuf]) -> QuiescePlan {
    let root = report.root.clone();
    let mut steps: Vec<Step> = prepare_dirs
        .iter()
        .map(|d| Step::Mkdir {
            path: root.join(d.strip_prefix("/").unwrap_or(d)),
        })
        .collect();
    let (mut restarts, mut stops, mut unmounts, mut loops, mut swaps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut journal = false;
    let mut unresolved = Vec::new();
    for f in report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
    {
        match &f.action {
            Some(Action::StopService { service }) => stops.push(service.clone()),
            Some(Action::RestartService { service }) => restarts.push(service.clone()),
            Some(Action::RelinquishJournal) => journal = true,
            Some(Action::Unmount { mount }) => unmounts.push(mount.clone()),
            Some(Action::ReleaseLoop {
                loop_device,
                mounts,
            }) => loops.push((loop_device.clone(), mounts.clone())),
            Some(Action::Swapoff { path, priority }) => swaps.push((path.clone(), *priority)),
            None if f.severity == Severity::Blocker => unresolved.push(f.clone()),
            None => {}
        }
    }
    stops.sort();
    stops.dedup();
    // A service that is stopped need not be restarted first.
    restarts.sort();
    restarts.dedup();
    restarts.retain(|s| !stops.contains(s));
    // Deepest mount points first, so nested mounts come off before their parents.
    unmounts.sort_by_key(|m| std::cmp::Reverse(depth(&m.mount_point)));
    unmounts.dedup();
    steps.extend(
        restarts
            .into_iter()
            .map(|service| Step::RestartService { service }),
    );
    steps.extend(stops.into_iter().map(|service| Step::StopService {
        service,
        units: Vec::new(),
    }));
    steps.extend(unmounts.into_iter().map(|mount| Step::Unmount { mount }));
    steps.extend(loops.into_iter().map(|(loop_device, mut mounts)| {
        mounts.sort_by_key(|m| std::cmp::Reverse(depth(&m.mount_point)));
        Step::ReleaseLoop {
            loop_device,
            mounts,
        }
    }));
    steps.extend(
        swaps
            .into_iter()
            .map(|(path, priority)| Step::Swapoff { path, priority }),
    );
    if journal {
        steps.push(Step::RelinquishJournal);
    }
    steps.push(Step::RemountReadOnly {
        mount_point: root.clone(),
    });
    let mut notes: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Unmount { mount } if is_fuse(&mount.fstype) => Some(fuse_note(mount)),
            _ => None,
        })
        .collect();
    if !report.init.manages_services() {
        notes.push(format!(
            "PID 1 is {}: reroot cannot stop or restart services; stop what is listed by hand",
            report.init
        ));
    }
    QuiescePlan {
        root,
        steps,
        unresolved,
        notes,
    }
}

/// True for a FUSE filesystem type (`fuse`, `fuseblk`, `fuse.sshfs`).
pub fn is_fuse(fstype: &str) -> bool {
    fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.")
}

/// What the operator must know before a FUSE mount is unmounted.
pub fn fuse_note(mount: &MountSpec) -> String {
    format!(
        "{} ({} {}) is a FUSE mount: unmounting it ends its daemon, and reroot cannot start \
         that daemon again (a plain `mount` does not); afterwards, start again what mounted it \
         (its service, or `mount {}` when /etc/fstab has it)",
        mount.mount_point.display(),
        mount.fstype,
        mount.source,
        mount.mount_point.display()
    )
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::preflight::{Category, assess};
    use crate::probe::init::InitSystem;
    use crate::probe::mountinfo;
    use crate::probe::process::Scan;
    use crate::probe::rootfs::RootFacts;

    fn spec(mp: &str) -> MountSpec {
        MountSpec {
            mount_point: mp.into(),
            source: "s".into(),
            fstype: "nfs".into(),
            options: String::new(),
        }
    }

    fn svc(u: &str) -> Service {
        Service::Systemd {
            unit: u.into(),
            user_unit: None,
        }
    }

    fn report(findings: Vec<Finding>, init: InitSystem) -> Report {
        let facts = RootFacts {
            root: mountinfo::parse_line("1 0 7:3 / /r rw - ext4 /dev/loop3 rw", 1).unwrap(),
            binds: vec![],
            sub_mounts: vec![],
            loops: vec![],
            swaps: vec![],
            overlays: vec![],
            network: vec![],
            scan: Scan::default(),
        };
        let mut r = assess(&facts, &init);
        r.add(findings);
        r
    }

    fn with(sev: Severity, cat: Category, action: Option<Action>) -> Finding {
        let mut f = Finding::new(sev, cat, "x", "y");
        f.action = action;
        f
    }

    /// Said up front: a FUSE mount that quiesce unmounts does not come back
    /// by itself (the plan's notes, the undo description and command).
    #[test]
    fn a_fuse_unmount_is_announced_as_not_coming_back() {
        let mut fuse = spec("/r/mnt/remote");
        fuse.fstype = "fuse.sshfs".into();
        let r = report(
            vec![
                with(
                    Severity::Warning,
                    Category::NetworkMount,
                    Some(Action::Unmount {
                        mount: fuse.clone(),
                    }),
                ),
                with(
                    Severity::Warning,
                    Category::NetworkMount,
                    Some(Action::Unmount {
                        mount: spec("/r/nfs"),
                    }),
                ),
            ],
            InitSystem::Systemd,
        );
        let p = plan(&r, &[]);
        let notes = p.notes.join("\n");
        assert!(
            notes.contains("/r/mnt/remote (fuse.sshfs s) is a FUSE mount")
                && notes.contains("reroot cannot start that daemon again"),
            "{notes}"
        );
        assert!(!notes.contains("/r/nfs"), "{notes}");
        let undo = Step::Unmount {
            mount: fuse.clone(),
        }
        .undo_description()
        .unwrap();
        assert!(undo.starts_with("leave /r/mnt/remote unmounted"), "{undo}");
        let cmd = crate::plan::migrate::undo_command(
            &Step::Unmount { mount: fuse },
            crate::plan::migrate::ServiceTool::Systemctl,
        )
        .unwrap();
        assert!(!cmd.starts_with("mount"), "{cmd}");
        assert!(is_fuse("fuse") && is_fuse("fuseblk") && !is_fuse("fusectl"));
    }

    #[test]
    fn orders_steps_and_collects_unresolved() {
        let lp = LoopDevice {
            name: "loop9".into(),
            major: 7,
            minor: 9,
            backing_file: "/r/img".into(),
            deleted: false,
            offset: 0,
            sizelimit: 0,
            autoclear: false,
            read_only: false,
        };
        let findings = vec![
            with(
                Severity::Blocker,
                Category::SwapFile,
                Some(Action::Swapoff {
                    path: "/r/swap".into(),
                    priority: 3,
                }),
            ),
            with(
                Severity::Warning,
                Category::NetworkMount,
                Some(Action::Unmount {
                    mount: spec("/r/a"),
                }),
            ),
            with(
                Severity::Warning,
                Category::NetworkMount,
                Some(Action::Unmount {
                    mount: spec("/r/a/b/c"),
                }),
            ),
            with(
                Severity::Blocker,
                Category::LoopDevice,
                Some(Action::ReleaseLoop {
                    loop_device: lp.clone(),
                    mounts: vec![spec("/r/m"), spec("/r/m/n")],
                }),
            ),
            with(
                Severity::Blocker,
                Category::DeletedMapped,
                Some(Action::RestartService {
                    service: svc("a.service"),
                }),
            ),
            with(
                Severity::Blocker,
                Category::DeletedOpen,
                Some(Action::RestartService {
                    service: svc("b.service"),
                }),
            ),
            with(
                Severity::Blocker,
                Category::OpenForWrite,
                Some(Action::StopService {
                    service: svc("b.service"),
                }),
            ),
            with(
                Severity::Blocker,
                Category::OpenForWrite,
                Some(Action::RelinquishJournal),
            ),
            with(Severity::Blocker, Category::OpenForWrite, None),
            with(Severity::Warning, Category::UnixSocket, None),
        ];
        let p = plan(
            &report(findings, InitSystem::Systemd),
            &[
                PathBuf::from("mnt/oldroot"),
                PathBuf::from("/var/lib/reroot"),
            ],
        );
        let d: Vec<String> = p.steps.iter().map(Step::describe).collect();
        assert_eq!(
            d,
            vec![
                "create /r/mnt/oldroot",
                "create /r/var/lib/reroot",
                "restart a.service",
                "stop b.service",
                "unmount /r/a/b/c (nfs s)",
                "unmount /r/a (nfs s)",
                "unmount /r/m/n, /r/m and detach /dev/loop9 (/r/img)",
                "swapoff /r/swap",
                "journalctl --relinquish-var (journald writes to /run until resumed)",
                "mount -o remount,ro /r",
            ]
        );
        assert_eq!(p.unresolved.len(), 1);
        assert!(p.notes.is_empty());
        let undo: Vec<Option<String>> = p.steps.iter().map(Step::undo_description).collect();
        assert_eq!(undo[0], None);
        assert_eq!(undo[3].as_deref(), Some("start b.service"));
        assert_eq!(undo[7].as_deref(), Some("swapon /r/swap"));
        assert_eq!(undo[9].as_deref(), Some("mount -o remount,rw /r"));
    }

    #[test]
    fn without_a_service_manager_says_so() {
        let p = plan(&report(vec![], InitSystem::Other("init".into())), &[]);
        assert_eq!(
            p.steps,
            vec![Step::RemountReadOnly {
                mount_point: "/r".into()
            }]
        );
        assert!(
            p.notes[0].contains("cannot stop or restart services"),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn steps_round_trip_through_json() {
        let steps = vec![
            Step::StopService {
                service: svc("rsyslog.service"),
                units: vec!["rsyslog.service".into(), "syslog.socket".into()],
            },
            Step::Swapoff {
                path: "/swap".into(),
                priority: -2,
            },
            Step::RelinquishJournal,
        ];
        let text = serde_json::to_string(&steps).unwrap();
        assert!(text.contains(r#""step":"stop-service""#), "{text}");
        let back: Vec<Step> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, steps);
        assert_eq!(
            back[0].describe(),
            "stop rsyslog.service (with rsyslog.service, syslog.socket)"
        );
    }
}
