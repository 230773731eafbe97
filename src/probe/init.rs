//! Which init system runs the machine: systemd (`/run/systemd/system` is a
//! directory, as `sd_booted()` checks), OpenRC (`/run/openrc` exists, or PID
//! 1 is `openrc-init`), or something else (named by PID 1's `comm`), in
//! which case reroot cannot stop or start services and says so.

use std::path::Path;

use super::SysRoot;

/// The service manager reroot talks to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "init", content = "pid1", rename_all = "kebab-case")]
pub enum InitSystem {
    /// systemd: `systemctl`.
    Systemd,
    /// OpenRC: `rc-service`.
    Openrc,
    /// Neither; the payload is PID 1's `comm` (empty when unreadable).
    Other(String),
}

impl InitSystem {
    /// True when reroot can stop and start services.
    pub fn manages_services(&self) -> bool {
        !matches!(self, InitSystem::Other(_))
    }
}

impl std::fmt::Display for InitSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitSystem::Systemd => f.write_str("systemd"),
            InitSystem::Openrc => f.write_str("OpenRC"),
            InitSystem::Other(c) if c.is_empty() => f.write_str("an unknown init"),
            InitSystem::Other(c) => write!(f, "{c} (neither systemd nor OpenRC)"),
        }
    }
}

/// Detect the init system. `run_dir` is normally `/run`.
pub fn detect(sys: &SysRoot, run_dir: &Path) -> InitSystem {
    let comm = std::fs::read_to_string(sys.proc("1/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if run_dir.join("systemd/system").is_dir() {
        InitSystem::Systemd
    } else if run_dir.join("openrc").is_dir() || comm == "openrc-init" {
        InitSystem::Openrc
    } else {
        InitSystem::Other(comm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn detects_from_run_and_pid1() {
        let d = tempfile::tempdir().unwrap();
        let (b, run) = (d.path(), d.path().join("run"));
        let sys = SysRoot::under(b);
        assert_eq!(detect(&sys, &run), InitSystem::Other(String::new()));
        fs::create_dir_all(b.join("proc/1")).unwrap();
        fs::write(b.join("proc/1/comm"), "process_api\n").unwrap();
        let other = detect(&sys, &run);
        assert_eq!(other, InitSystem::Other("process_api".into()));
        assert!(!other.manages_services());
        assert!(other.to_string().contains("neither"));
        fs::write(b.join("proc/1/comm"), "openrc-init\n").unwrap();
        assert_eq!(detect(&sys, &run), InitSystem::Openrc);
        fs::create_dir_all(run.join("systemd/system")).unwrap();
        assert_eq!(detect(&sys, &run), InitSystem::Systemd);
        assert!(InitSystem::Systemd.manages_services());
    }
}
