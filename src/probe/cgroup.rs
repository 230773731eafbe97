//! Parser for `/proc/PID/cgroup` (cgroups(7)), v1 and v2 lines, and the
//! service a process belongs to: the systemd unit (and user unit) from the
//! `name=systemd` or unified hierarchy, or the OpenRC service from its
//! `name=openrc` hierarchy or its `openrc.<service>` cgroup.
//!
//! Pure text in, data out; malformed lines are skipped, never a panic.

/// One line: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    /// Hierarchy id; 0 for the unified (v2) hierarchy.
    pub hierarchy: u32,
    /// Comma-separated controllers (`cpu,cpuacct`, `name=systemd`, empty for v2).
    pub controllers: &'a str,
    /// Path of the cgroup, relative to the hierarchy's mount.
    pub path: &'a str,
}

/// Parse one line; `None` when malformed.
pub fn parse_line(line: &str) -> Option<CgroupLine<'_>> {
    let (id, rest) = line.split_once(':')?;
    let (controllers, path) = rest.split_once(':')?;
    Some(CgroupLine {
        hierarchy: id.parse().ok()?,
        controllers,
        path: path.strip_suffix('\n').unwrap_or(path),
    })
}

/// Parse a whole cgroup file, skipping malformed lines.
pub fn parse(text: &str) -> Vec<CgroupLine<'_>> {
    text.lines().filter_map(parse_line).collect()
}

/// The service manager's idea of which service a process belongs to.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "manager", rename_all = "kebab-case")]
pub enum Service {
    /// A systemd unit (`rsyslog.service`, `session-3.scope`, `init.scope`).
    Systemd {
        /// The system unit.
        unit: String,
        /// Under `user@UID.service`: the unit of the user's manager.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        user_unit: Option<String>,
    },
    /// An OpenRC service (`sshd`).
    Openrc {
        /// The service name, as `rc-service` takes it.
        service: String,
    },
}

impl Service {
    /// The name an operator types: the unit, or the OpenRC service.
    pub fn name(&self) -> &str {
        match self {
            Service::Systemd { unit, .. } => unit,
            Service::Openrc { service } => service,
        }
    }

    /// True for a systemd `.service` unit or an OpenRC service: something a
    /// service manager can stop and start. Scopes (login sessions, `init.scope`,
    /// container scopes) are not.
    pub fn is_stoppable(&self) -> bool {
        match self {
            Service::Systemd { unit, .. } => unit.ends_with(".service"),
            Service::Openrc { .. } => true,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Service::Systemd {
                unit,
                user_unit: Some(u),
            } => write!(f, "{unit} ({u})"),
            Service::Systemd { unit, .. } => f.write_str(unit),
            Service::Openrc { service } => write!(f, "openrc:{service}"),
        }
    }
}

/// Unit types that can contain processes.
const UNIT_SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];

/// systemd escapes cgroup names that would clash with kernel files by
/// prefixing `_` (`cg_escape`); undo that.
fn cg_unescape(name: &str) -> &str {
    name.strip_prefix('_').unwrap_or(name)
}

fn is_unit(name: &str) -> bool {
    let n = cg_unescape(name);
    UNIT_SUFFIXES
        .iter()
        .any(|s| n.len() > s.len() && n.ends_with(s))
}

/// The first unit in a systemd cgroup path after its slices, like systemd's
/// `cg_path_get_unit`; and below `user@UID.service`, the user's unit.
pub fn systemd_unit(path: &str) -> Option<Service> {
    let mut parts = path
        .split('/')
        .filter(|p| !p.is_empty())
        .skip_while(|p| cg_unescape(p).ends_with(".slice"));
    let unit = cg_unescape(parts.next().filter(|p| is_unit(p))?).to_owned();
    let user_unit = if unit.starts_with("user@") && unit.ends_with(".service") {
        parts
            .find(|p| !cg_unescape(p).ends_with(".slice"))
            .filter(|p| is_unit(p))
            .map(|p| cg_unescape(p).to_owned())
    } else {
        None
    };
    Some(Service::Systemd { unit, user_unit })
}

/// The OpenRC service in a cgroup path: `/openrc.sshd` (unified layout) or,
/// in the `name=openrc` v1 hierarchy, `/sshd`.
fn openrc_service(path: &str, named_hierarchy: bool) -> Option<Service> {
    let first = path.split('/').find(|p| !p.is_empty())?;
    let service = match first.strip_prefix("openrc.") {
        Some(s) => s,
        None if named_hierarchy => first,
        None => return None,
    };
    (!service.is_empty()).then(|| Service::Openrc {
        service: service.to_owned(),
    })
}

/// The service of a process from its cgroup lines: the `name=systemd` v1
/// hierarchy first, then the unified one; then OpenRC's. `None` when the
/// process is in no recognisable service (a container's root cgroup, a
/// system without either manager).
pub fn service_of(lines: &[CgroupLine<'_>]) -> Option<Service> {
    let named = |n: &str| {
        lines
            .iter()
            .find(|l| l.controllers.split(',').any(|c| c == n))
    };
    let unified = lines
        .iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty());
    if let Some(s) = named("name=systemd").and_then(|l| systemd_unit(l.path)) {
        return Some(s);
    }
    if let Some(l) = named("name=openrc") {
        if let Some(s) = openrc_service(l.path, true) {
            return Some(s);
        }
    }
    let path = unified?.path;
    openrc_service(path, false).or_else(|| systemd_unit(path))
}

/// The cgroup path worth showing: the unified one, else `name=systemd`'s,
/// else the first line's.
pub fn display_path<'a>(lines: &[CgroupLine<'a>]) -> Option<&'a str> {
    lines
        .iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty())
        .or_else(|| lines.iter().find(|l| l.controllers == "name=systemd"))
        .or_else(|| lines.first())
        .map(|l| l.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd(unit: &str, user: Option<&str>) -> Option<Service> {
        Some(Service::Systemd {
            unit: unit.into(),
            user_unit: user.map(Into::into),
        })
    }

    fn svc(text: &str) -> Option<Service> {
        service_of(&parse(text))
    }

    #[test]
    fn unified_systemd_paths() {
        assert_eq!(
            svc("0::/system.slice/rsyslog.service\n"),
            sd("rsyslog.service", None)
        );
        assert_eq!(
            svc("0::/system.slice/system-getty.slice/getty@tty1.service"),
            sd("getty@tty1.service", None)
        );
        assert_eq!(
            svc("0::/user.slice/user-1000.slice/session-4.scope"),
            sd("session-4.scope", None)
        );
        assert_eq!(
            svc("0::/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service"),
            sd("user@1000.service", Some("dbus.service"))
        );
        assert_eq!(
            svc("0::/user.slice/user-1000.slice/user@1000.service/init.scope"),
            sd("user@1000.service", Some("init.scope"))
        );
        assert_eq!(svc("0::/init.scope"), sd("init.scope", None));
        assert_eq!(
            svc("0::/system.slice/_cpu.service"),
            sd("cpu.service", None)
        );
        assert_eq!(svc("0::/"), None);
        assert_eq!(svc("0::/system.slice"), None);
        assert_eq!(svc("0::/docker/abc123"), None);
        assert_eq!(svc("0::/.service"), None);
    }

    #[test]
    fn v1_and_hybrid_layouts() {
        let hybrid = "\
12:pids:/system.slice/ssh.service
11:cpu,cpuacct:/system.slice/ssh.service
1:name=systemd:/system.slice/ssh.service
0::/system.slice/ssh.service
";
        assert_eq!(svc(hybrid), sd("ssh.service", None));
        assert_eq!(
            display_path(&parse(hybrid)),
            Some("/system.slice/ssh.service")
        );
        let v1 = "3:memory:/\n1:name=systemd:/system.slice/cron.service\n";
        assert_eq!(svc(v1), sd("cron.service", None));
        assert_eq!(display_path(&parse(v1)), Some("/system.slice/cron.service"));
    }

    #[test]
    fn openrc_layouts() {
        let o = |s: &str| Some(Service::Openrc { service: s.into() });
        assert_eq!(svc("0::/openrc.sshd\n"), o("sshd"));
        assert_eq!(svc("0::/openrc.nginx/worker\n"), o("nginx"));
        assert_eq!(
            svc("2:cpuset:/\n1:name=openrc:/syslog-ng\n"),
            o("syslog-ng")
        );
        assert_eq!(svc("1:name=openrc:/\n0::/\n"), None);
        assert_eq!(svc("0::/openrc.\n"), None);
        assert_eq!(o("sshd").unwrap().name(), "sshd");
        assert!(o("sshd").unwrap().is_stoppable());
        assert!(sd("a.service", None).unwrap().is_stoppable());
        assert!(!sd("session-1.scope", None).unwrap().is_stoppable());
    }

    #[test]
    fn malformed_lines_are_skipped_not_panics() {
        assert!(parse_line("").is_none());
        assert!(parse_line("x").is_none());
        assert!(parse_line("0:").is_none());
        assert!(parse_line("a::/x").is_none());
        assert!(parse_line("-1::/x").is_none());
        assert_eq!(parse_line("0::").unwrap().path, "");
        // The path may itself contain colons.
        assert_eq!(parse_line("0::/a:b").unwrap().path, "/a:b");
        assert_eq!(
            svc("junk\n\n0::/system.slice/x.service\n"),
            sd("x.service", None)
        );
        assert_eq!(display_path(&[]), None);
    }
}
