//! Grouping processes by the service that runs them (systemd unit, OpenRC
//! service), so reports and restarts speak of `rsyslog.service`, not of pids.
//! Pure: takes scanned [`ProcessUse`]s, returns groups in a stable order.

use std::collections::BTreeMap;

use crate::probe::cgroup::Service;
use crate::probe::init::InitSystem;
use crate::probe::process::ProcessUse;

/// The processes of one service (or of no service).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceGroup {
    /// The service; `None` for processes that belong to none.
    pub service: Option<Service>,
    /// Their pids, ascending.
    pub pids: Vec<u32>,
    /// Their distinct command names, sorted.
    pub comms: Vec<String>,
    /// Some of them live in another mount namespace than reroot.
    pub other_mnt_ns: bool,
}

impl ServiceGroup {
    /// `rsyslog.service`, or `pid 12 (foo), pid 13 (bar)` without a service.
    pub fn label(&self) -> String {
        match &self.service {
            Some(s) => s.to_string(),
            None => format!("no service ({})", self.comms.join(", ")),
        }
    }
}

/// Group processes by service: services in name order, then the processes
/// that belong to no service as one last group.
pub fn group_by_service<'a>(procs: impl IntoIterator<Item = &'a ProcessUse>) -> Vec<ServiceGroup> {
    let mut groups: BTreeMap<(bool, Option<&Service>), ServiceGroup> = BTreeMap::new();
    for p in procs {
        let g = groups
            .entry((p.service.is_none(), p.service.as_ref()))
            .or_insert_with(|| ServiceGroup {
                service: p.service.clone(),
                pids: Vec::new(),
                comms: Vec::new(),
                other_mnt_ns: false,
            });
        g.pids.push(p.pid);
        g.comms.push(p.comm.clone());
        g.other_mnt_ns |= p.other_mnt_ns;
    }
    groups
        .into_values()
        .map(|mut g| {
            g.pids.sort_unstable();
            g.pids.dedup();
            g.comms.sort();
            g.comms.dedup();
            g
        })
        .collect()
}

/// Why the pivot cannot restart what runs from the old root under `init`:
/// `(reason, advice)`, or `None` when it can (systemd, OpenRC). Under
/// sysvinit (or another init) no cgroup says which init script started a
/// daemon, so after the pivot reroot could only re-execute init (`telinit
/// u`): sshd, syslog, cron and every other daemon would go on running from
/// the old root, which then could never be released, and the check that
/// sshd listens again from the new root would fail. So the migration (and
/// `reroot pivot --restart auto`) is refused before anything changes.
pub fn restart_refusal(init: &InitSystem) -> Option<(String, String)> {
    match init {
        InitSystem::Systemd | InitSystem::Openrc => None,
        InitSystem::Other(comm) => {
            let what = if comm == "init" {
                "sysvinit".to_owned()
            } else {
                format!("{init}")
            };
            Some((
                format!(
                    "PID 1 is {what}: reroot cannot tell which init script runs each daemon, so \
after the pivot sshd, syslog, cron and the other daemons would keep running from the old root \
(only `telinit u` is possible) and the old root could never be released"
                ),
                "migrate a system run by systemd or OpenRC; here, copy with `reroot copy` and \
reboot onto the copy, or pivot with `reroot pivot --restart list` and restart each \
/etc/init.d script by hand (sshd first) before logging out"
                    .to_owned(),
            ))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::process::ProcessUse;

    /// A process with a name, a pid and maybe a systemd unit.
    pub(crate) fn proc_in(pid: u32, comm: &str, unit: Option<&str>) -> ProcessUse {
        let mut p = ProcessUse::new(pid);
        p.comm = comm.into();
        p.service = unit.map(|u| Service::Systemd {
            unit: u.into(),
            user_unit: None,
        });
        p
    }

    #[test]
    fn groups_by_service_with_unmanaged_last() {
        let mut ns = proc_in(9, "x", Some("b.service"));
        ns.other_mnt_ns = true;
        let procs = vec![
            proc_in(30, "cat", None),
            proc_in(20, "nginx", Some("nginx.service")),
            proc_in(21, "nginx", Some("nginx.service")),
            proc_in(5, "sh", None),
            ns,
            proc_in(7, "a", Some("a.service")),
        ];
        let g = group_by_service(&procs);
        let names: Vec<_> = g.iter().map(ServiceGroup::label).collect();
        assert_eq!(
            names,
            vec![
                "a.service",
                "b.service",
                "nginx.service",
                "no service (cat, sh)"
            ]
        );
        assert_eq!(g[2].pids, vec![20, 21]);
        assert_eq!(g[2].comms, vec!["nginx"]);
        assert!(g[1].other_mnt_ns && !g[0].other_mnt_ns);
        assert_eq!(g[3].pids, vec![5, 30]);
        assert!(group_by_service(&[]).is_empty());
    }

    #[test]
    fn sysvinit_is_refused_up_front_systemd_and_openrc_are_not() {
        assert_eq!(restart_refusal(&InitSystem::Systemd), None);
        assert_eq!(restart_refusal(&InitSystem::Openrc), None);
        let (why, advice) = restart_refusal(&InitSystem::Other("init".into())).unwrap();
        assert!(why.contains("sysvinit") && why.contains("sshd"), "{why}");
        assert!(advice.contains("reroot copy"), "{advice}");
        let (why, _) = restart_refusal(&InitSystem::Other("runit".into())).unwrap();
        assert!(why.contains("runit"), "{why}");
    }
}
