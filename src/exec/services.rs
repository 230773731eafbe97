//! Restarting what still runs from the old root, through the machine's
//! service manager: systemd (`systemctl daemon-reexec`, `systemctl restart
//! UNIT`), OpenRC (`telinit u` or `openrc-shutdown --reexec`, `rc-service
//! NAME restart`) or plain sysvinit (`telinit u`); with no known manager each
//! step is skipped with a message saying what to do by hand.
//!
//! After restarting sshd, waits until every TCP port the old sshd listened
//! on is listened on again by a process that no longer runs from the old
//! root ([`wait_listening`]). May import `probe`, `plan` and `error`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::pivot::{RestartClass, RestartGroup};
use crate::probe::SysRoot;
use crate::probe::init::InitSystem;

/// The service manager that restarts things.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "manager", content = "pid1")]
pub enum Manager {
    /// `systemctl`.
    Systemd,
    /// `rc-service`; PID 1 is sysvinit or `openrc-init`.
    Openrc,
    /// sysvinit without a service manager reroot can drive (`telinit u` only).
    Sysv,
    /// Nothing reroot can drive; PID 1's `comm`.
    None(String),
}

impl Manager {
    /// Detect with [`probe::init::detect`](crate::probe::init::detect)
    /// (`/run/systemd/system`, `/run/openrc`, PID 1's name); a PID 1 named
    /// `init` with `telinit` on PATH is sysvinit.
    pub fn detect(sys: &SysRoot, run: &Path) -> Self {
        match crate::probe::init::detect(sys, run) {
            InitSystem::Systemd => Manager::Systemd,
            InitSystem::Openrc => Manager::Openrc,
            InitSystem::Other(comm) if comm == "init" && on_path("telinit") => Manager::Sysv,
            InitSystem::Other(comm) => Manager::None(comm),
        }
    }

    /// The argv that re-executes PID 1, if there is one.
    pub fn reexec_init(&self, pid1_comm: &str) -> Option<Vec<String>> {
        let v = |a: &[&str]| Some(a.iter().map(|s| (*s).to_owned()).collect());
        match self {
            Manager::Systemd => v(&["systemctl", "daemon-reexec"]),
            Manager::Openrc if pid1_comm == "openrc-init" => v(&["openrc-shutdown", "--reexec"]),
            Manager::Openrc | Manager::Sysv => v(&["telinit", "u"]),
            Manager::None(_) => None,
        }
    }

    /// The argv that restarts `unit`, if this manager can.
    pub fn restart(&self, unit: &str) -> Option<Vec<String>> {
        match self {
            Manager::Systemd => Some(vec!["systemctl".into(), "restart".into(), unit.into()]),
            Manager::Openrc => Some(vec!["rc-service".into(), unit.into(), "restart".into()]),
            Manager::Sysv | Manager::None(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Manager::Systemd => "systemd".into(),
            Manager::Openrc => "OpenRC".into(),
            Manager::Sysv => "sysvinit".into(),
            Manager::None(c) if c.is_empty() => "an unknown init".into(),
            Manager::None(c) => format!("{c} (neither systemd, OpenRC nor sysvinit)"),
        }
    }
}

fn on_path(tool: &str) -> bool {
    crate::exec::tools::find(tool).is_some()
}

/// How one restart step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "message")]
pub enum Status {
    /// The command succeeded.
    Done,
    /// The command failed (its output).
    Failed(String),
    /// Not attempted: why, and what to do by hand.
    Skipped(String),
}

/// One restart step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The group's class.
    pub class: RestartClass,
    /// The unit, or `None` for PID 1.
    pub unit: Option<String>,
    /// The old processes.
    pub pids: Vec<u32>,
    /// The command run, as a shell-like string.
    pub command: Option<String>,
    /// Result.
    #[serde(flatten)]
    pub status: Status,
    /// Wall time of the step, milliseconds.
    pub millis: u64,
}

/// Run `argv` with a time limit; output (stdout and stderr) returned either way.
pub fn run_with_timeout(argv: &[String], limit: Duration) -> Result<String, String> {
    let Some((prog, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    // Output is read on a thread: a daemon started by the command may keep
    // the pipes open for ever, so the output is waited for only briefly.
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        let _ = tx.send(s);
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for {prog}: {e}")),
        }
    };
    let text = rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default()
        .trim()
        .to_owned();
    match status {
        Some(st) if st.success() => Ok(text),
        Some(st) => Err(format!("{} failed ({st}): {text}", argv.join(" "))),
        None => Err(format!(
            "{} did not finish within {}s: {text}",
            argv.join(" "),
            limit.as_secs()
        )),
    }
}

/// LISTEN sockets in a `/proc/net/tcp` or `tcp6` table: (local port, inode).
pub fn parse_tcp_listen(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.get(3) != Some(&"0A") {
                return None;
            }
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some((port, inode))
        })
        .collect()
}

fn listen_table(sys: &SysRoot) -> Vec<(u16, u64)> {
    ["net/tcp", "net/tcp6"]
        .iter()
        .filter_map(|t| fs::read_to_string(sys.proc(t)).ok())
        .flat_map(|t| parse_tcp_listen(&t))
        .collect()
}

fn socket_inodes(sys: &SysRoot, pid: u32) -> BTreeSet<u64> {
    let Ok(rd) = fs::read_dir(sys.proc(format!("{pid}/fd"))) else {
        return BTreeSet::new();
    };
    rd.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let s = l.to_string_lossy().into_owned();
            s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// TCP ports the processes `pids` listen on.
pub fn listening_ports(sys: &SysRoot, pids: &[u32]) -> BTreeSet<u16> {
    let table = listen_table(sys);
    let mine: BTreeSet<u64> = pids.iter().flat_map(|p| socket_inodes(sys, *p)).collect();
    table
        .into_iter()
        .filter(|(_, ino)| mine.contains(ino))
        .map(|(port, _)| port)
        .collect()
}

/// For each port, the pids listening on it whose executable is not on the
/// filesystem `old_dev` (`st_dev`).
fn fresh_listeners(sys: &SysRoot, ports: &BTreeSet<u16>, old_dev: u64) -> BTreeMap<u16, Vec<u32>> {
    let by_inode: BTreeMap<u64, u16> = listen_table(sys)
        .into_iter()
        .filter(|(p, _)| ports.contains(p))
        .map(|(p, i)| (i, p))
        .collect();
    let mut out: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
    if by_inode.is_empty() {
        return out;
    }
    let Ok(rd) = fs::read_dir(&sys.proc_dir) else {
        return out;
    };
    for pid in rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let on_old = fs::metadata(sys.proc(format!("{pid}/exe")))
            .map(|m| m.dev() == old_dev)
            .unwrap_or(true);
        if on_old {
            continue;
        }
        for ino in socket_inodes(sys, pid) {
            if let Some(port) = by_inode.get(&ino) {
                out.entry(*port).or_default().push(pid);
            }
        }
    }
    out
}

/// The sshd check: which ports had to come back, and did they.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenCheck {
    /// The unit checked.
    pub unit: String,
    /// TCP ports its old processes listened on.
    pub ports: Vec<u16>,
    /// Every port is listened on again by a process running from the new root.
    pub listening: bool,
    /// Who listens now, per port.
    pub listeners: BTreeMap<u16, Vec<u32>>,
    /// How long it took, milliseconds.
    pub millis: u64,
}

/// Wait (at most `limit`) until every port in `ports` is listened on by a
/// process whose executable is not on `old_dev`.
pub fn wait_listening(
    sys: &SysRoot,
    unit: &str,
    ports: &BTreeSet<u16>,
    old_dev: u64,
    limit: Duration,
) -> ListenCheck {
    let start = Instant::now();
    loop {
        let l = fresh_listeners(sys, ports, old_dev);
        let all = ports.iter().all(|p| l.contains_key(p));
        if all || start.elapsed() > limit {
            return ListenCheck {
                unit: unit.to_owned(),
                ports: ports.iter().copied().collect(),
                listening: all,
                listeners: l,
                millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What [`restart_all`] needs.
#[derive(Debug, Clone)]
pub struct RestartCtx<'a> {
    /// `/proc`.
    pub sys: &'a SysRoot,
    /// The manager.
    pub manager: &'a Manager,
    /// `st_dev` of the old root (for the sshd check).
    pub old_dev: u64,
    /// Time limit per command.
    pub command_limit: Duration,
    /// How long sshd may take to listen again.
    pub sshd_limit: Duration,
}

/// Restart every restartable group in order; `log` gets a line per action.
/// Returns the outcomes and the sshd checks.
pub fn restart_all(
    groups: &[RestartGroup],
    ctx: &RestartCtx<'_>,
    log: &mut dyn FnMut(&str),
) -> (Vec<Outcome>, Vec<ListenCheck>) {
    let pid1 = fs::read_to_string(ctx.sys.proc("1/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut outcomes = Vec::new();
    let mut checks = Vec::new();
    for g in groups.iter().filter(|g| g.class.restartable()) {
        let argv = match (g.class, &g.unit) {
            (RestartClass::Init, _) => ctx.manager.reexec_init(&pid1),
            (_, Some(u)) => ctx.manager.restart(u),
            (_, None) => None,
        };
        let start = Instant::now();
        // Ports to come back, read before the old sshd goes away.
        let ports = if g.class == RestartClass::Sshd {
            listening_ports(ctx.sys, &g.pids)
        } else {
            BTreeSet::new()
        };
        let status = match &argv {
            None => Status::Skipped(format!(
                "{} cannot do this: {}",
                ctx.manager.describe(),
                if g.class == RestartClass::Init {
                    "PID 1 keeps running from the old root until a reboot".to_owned()
                } else {
                    format!("restart {} by hand", g.unit.as_deref().unwrap_or("it"))
                }
            )),
            Some(a) => {
                log(&format!("restart: {}", a.join(" ")));
                match run_with_timeout(a, ctx.command_limit) {
                    Ok(_) => Status::Done,
                    Err(e) => Status::Failed(e),
                }
            }
        };
        if let Status::Failed(e) | Status::Skipped(e) = &status {
            log(&format!(
                "restart: {}: {e}",
                g.unit.as_deref().unwrap_or("PID 1")
            ));
        }
        if g.class == RestartClass::Sshd {
            let unit = g.unit.clone().unwrap_or_default();
            log(&format!(
                "sshd: waiting for {unit} to listen again on {:?}",
                ports
            ));
            let c = wait_listening(ctx.sys, &unit, &ports, ctx.old_dev, ctx.sshd_limit);
            log(&format!(
                "sshd: {unit} {} ({} ms)",
                if c.listening {
                    "listens again"
                } else {
                    "is NOT listening"
                },
                c.millis
            ));
            checks.push(c);
        }
        outcomes.push(Outcome {
            class: g.class,
            unit: g.unit.clone(),
            pids: g.pids.clone(),
            command: argv.map(|a| a.join(" ")),
            status,
            millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    (outcomes, checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_sockets() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:0016 0100007F:B0B2 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(parse_tcp_listen(t), vec![(2222, 31337)]);
        let t6 = "header\n   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1\n";
        assert_eq!(parse_tcp_listen(t6), vec![(22, 555)]);
        assert!(parse_tcp_listen("x\n garbage\n").is_empty());
    }

    #[test]
    fn commands_per_manager() {
        assert_eq!(
            Manager::Systemd.reexec_init("systemd").unwrap(),
            ["systemctl", "daemon-reexec"]
        );
        assert_eq!(
            Manager::Openrc.reexec_init("init").unwrap(),
            ["telinit", "u"]
        );
        assert_eq!(
            Manager::Openrc.reexec_init("openrc-init").unwrap(),
            ["openrc-shutdown", "--reexec"]
        );
        assert_eq!(
            Manager::Openrc.restart("sshd").unwrap(),
            ["rc-service", "sshd", "restart"]
        );
        assert_eq!(Manager::Sysv.restart("x"), None);
        assert_eq!(Manager::None("process_api".into()).reexec_init("x"), None);
    }

    #[test]
    fn detects_manager_from_run_and_pid1() {
        let d = tempfile::tempdir().unwrap();
        let sys = SysRoot::under(d.path());
        let run = d.path().join("run");
        fs::create_dir_all(d.path().join("proc/1")).unwrap();
        fs::write(d.path().join("proc/1/comm"), "process_api\n").unwrap();
        assert_eq!(
            Manager::detect(&sys, &run),
            Manager::None("process_api".into())
        );
        fs::create_dir_all(run.join("openrc")).unwrap();
        assert_eq!(Manager::detect(&sys, &run), Manager::Openrc);
        fs::create_dir_all(run.join("systemd/system")).unwrap();
        assert_eq!(Manager::detect(&sys, &run), Manager::Systemd);
    }

    #[test]
    fn timeouts_and_failures_are_reported() {
        let sh = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
        assert_eq!(
            run_with_timeout(&sh("echo hi"), Duration::from_secs(5)).unwrap(),
            "hi"
        );
        let e = run_with_timeout(&sh("echo no >&2; exit 3"), Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("no") && e.contains('3'), "{e}");
        let e = run_with_timeout(&sh("sleep 5"), Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(run_with_timeout(&[], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn skips_with_a_message_without_a_manager() {
        let d = tempfile::tempdir().unwrap();
        let sys = SysRoot::under(d.path());
        let groups = vec![
            RestartGroup {
                class: RestartClass::Init,
                unit: None,
                pids: vec![1],
                comms: vec!["init".into()],
                note: String::new(),
            },
            RestartGroup {
                class: RestartClass::Service,
                unit: Some("cron.service".into()),
                pids: vec![7],
                comms: vec!["cron".into()],
                note: String::new(),
            },
            RestartGroup {
                class: RestartClass::Session,
                unit: None,
                pids: vec![9],
                comms: vec!["bash".into()],
                note: String::new(),
            },
        ];
        let m = Manager::None("weird".into());
        let ctx = RestartCtx {
            sys: &sys,
            manager: &m,
            old_dev: 0,
            command_limit: Duration::from_secs(1),
            sshd_limit: Duration::from_secs(1),
        };
        let mut lines = Vec::new();
        let (o, c) = restart_all(&groups, &ctx, &mut |l| lines.push(l.to_owned()));
        assert_eq!(o.len(), 2, "the session is not restarted");
        assert!(c.is_empty());
        assert!(matches!(&o[0].status, Status::Skipped(m) if m.contains("PID 1")));
        assert!(matches!(&o[1].status, Status::Skipped(m) if m.contains("cron.service")));
        assert_eq!(lines.len(), 2);
    }
}
