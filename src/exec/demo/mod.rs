//! `reroot demo`: a whole migration in a sandbox. A small "server" root
//! ([`crate::exec::sandbox`]: busybox, services that hold the root busy, a
//! data tree) is written into an ext4 image with `mkfs.ext4 -d` (no mount),
//! attached to a loop device, and booted as PID 1 of private mount, PID
//! and network namespaces; inside it `reroot migrate` moves it onto a second,
//! larger loop device. Then the result is checked (new root mounted, old one
//! released and re-identified, services back and running from the new root,
//! the data tree identical) and everything is cleaned up, also on failure
//! or Ctrl-C.
//!
//! Safety: the only changes made outside the namespace are two sparse files
//! under a fresh directory in `/var/tmp` and the two loop devices attached
//! to them ([`LoopGuard`], detached by name, checked by backing file). The
//! boot script refuses to run unless its mount namespace differs from this
//! process's and from PID 1's, before it mounts anything, and
//! [`FORBID_NS_ENV`](crate::exec::pivot::FORBID_NS_ENV) makes `migrate` and
//! `pivot` refuse to run in this process's namespace as well.
//!
//! [`Rig`] ([`rig`]: build, boot with a scenario script, read its
//! `=== section ===` output) is what the demo and the integration tests
//! share; [`data`] makes and hashes the data tree.
//!
//! May import `error`, `probe`, `plan` and `exec::{sandbox, pivot, identity}`.

pub mod data;
pub mod rig;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result, Stage};

pub use data::{fill_data, tree_hash};
pub use rig::{
    Cleanup, DATA_DIR, Facts, LoopGuard, Rig, RigOptions, Run, SCENARIO_LIB, WorkDir, loop_backing,
    requirements,
};

/// The demo's scenario: facts, `reroot migrate --grow --yes --json`, facts.
pub const DEMO_SCENARIO: &str = r#"
sec before; facts
sec migrate
reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --grow --yes --json $REROOT_DEMO_FLAGS >/run/demo/report.json
echo "rc $?"
sec report; cat /run/demo/report.json
sec after; facts
sec end
done_rc 0
"#;

pub use crate::exec::interrupt::Interrupts;

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The rig.
    pub rig: RigOptions,
    /// Extra flags for `reroot migrate` inside (tests: `--inject-failure`).
    pub migrate_flags: String,
    /// Time limit for the sandbox.
    pub limit: Duration,
}

impl DemoOptions {
    /// The defaults: a 256 MiB old root with 24 MiB of data onto a 384 MiB
    /// target, `reroot_exe` in the sandbox, 4 minutes at most.
    pub fn new(reroot_exe: PathBuf) -> Self {
        Self {
            rig: RigOptions {
                parent: "/var/tmp".into(),
                keep: false,
                reroot_exe,
                old_bytes: 256 << 20,
                new_bytes: 384 << 20,
                data_bytes: 24 << 20,
                churn_bytes_per_s: 0,
                scenario: format!("{SCENARIO_LIB}{DEMO_SCENARIO}"),
                extra_tools: Vec::new(),
            },
            migrate_flags: String::new(),
            limit: Duration::from_secs(240),
        }
    }
}

/// Image sizes (old root, target) for a data tree of `data` bytes: the
/// old root holds it 1.5 times plus 232 MiB for the system and the churn,
/// rounded up to 64 MiB; the target is a quarter larger.
pub fn image_sizes(data: u64) -> (u64, u64) {
    const ROUND: u64 = 64 << 20;
    let old = data
        .saturating_add(data / 2)
        .saturating_add(232 << 20)
        .div_ceil(ROUND)
        .saturating_mul(ROUND);
    (old, old.saturating_add(old / 4))
}

/// One check of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// It holds.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// The demo's report (`reroot demo --json`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Every check passed and cleanup left nothing behind.
    pub ok: bool,
    /// The old root's device (a loop device).
    pub old_device: String,
    /// The target (a loop device).
    pub new_device: String,
    /// `reroot migrate`'s exit code inside the sandbox.
    pub migrate_exit: Option<i32>,
    /// `reroot migrate --json`'s report.
    pub migrate: Option<serde_json::Value>,
    /// The sandbox's output when something went wrong (for a bug report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_output: Option<String>,
    /// The checks.
    pub checks: Vec<Check>,
    /// The sandbox before and after.
    pub before: Facts,
    /// After.
    pub after: Facts,
    /// Why the sandbox was stopped early, if it was.
    pub interrupted: Option<String>,
    /// Cleanup.
    pub cleanup: Cleanup,
    /// Wall time.
    pub seconds: f64,
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}

fn dev_string(d: (u32, u32)) -> String {
    format!("{}:{}", d.0, d.1)
}

/// Checks of a demo run: the migration succeeded, `/` is the new device and
/// writable, the old one is released and re-identified, every service runs
/// (from the new root), the data is identical, and it all happened in a
/// namespace that is not ours.
fn checks(
    rig: &Rig,
    run: &Run,
    before: &Facts,
    after: &Facts,
    rc: Option<i32>,
    rep: Option<&serde_json::Value>,
) -> Vec<Check> {
    let old = rig.old.devno();
    let new = rig.new.devno();
    let mut c = vec![check(
        "sandbox in a mount namespace of its own",
        !before.ns.is_empty() && before.ns != rig.host_ns(),
        format!("sandbox {}, here {}", before.ns, rig.host_ns()),
    )];
    c.push(check(
        "the sandbox booted from the old root",
        before.root_dev() == Some(old),
        format!(
            "/ was {}, the old device is {}",
            before.root_dev().map_or_else(|| "?".to_owned(), dev_string),
            dev_string(old)
        ),
    ));
    let outcome = rep
        .and_then(|r| r["outcome"].as_str())
        .unwrap_or("none")
        .to_owned();
    c.push(check(
        "reroot migrate succeeded",
        rc == Some(0) && outcome == "done",
        format!("exit {rc:?}, outcome {outcome}"),
    ));
    c.push(check(
        "the new root is mounted at / read-write",
        after.root_dev() == Some(new) && after.root_writable,
        format!(
            "/ is {} (new device {}), writable: {}",
            after.root_dev().map_or_else(|| "?".to_owned(), dev_string),
            dev_string(new),
            after.root_writable
        ),
    ));
    let old_mounted: Vec<String> = after
        .mounts
        .iter()
        .filter(|m| (m.major, m.minor) == old)
        .map(|m| m.mount_point.display().to_string())
        .collect();
    let old_name = rig::loop_name(rig.old.path());
    let in_sysfs = after.ext4.contains(&old_name);
    c.push(check(
        "the old root is unmounted and released",
        old_mounted.is_empty() && !in_sysfs && !after.mounts.is_empty(),
        format!(
            "mounted at {old_mounted:?}; /sys/fs/ext4/{old_name} {}",
            if in_sysfs { "exists" } else { "is gone" }
        ),
    ));
    let old_id = crate::exec::identity::identity_of(rig.old.path());
    let new_id = crate::exec::identity::identity_of(rig.new.path());
    match (old_id, new_id) {
        (Ok(o), Ok(n)) => c.push(check(
            "the old root has a new UUID and the label oldroot; the new one kept the identity",
            o.label == "oldroot" && o.uuid != n.uuid && n.label == "sandbox-root",
            format!("old {} {:?}, new {} {:?}", o.uuid, o.label, n.uuid, n.label),
        )),
        (o, n) => c.push(check(
            "the old root has a new UUID and the label oldroot; the new one kept the identity",
            false,
            format!("cannot read identities: {:?} {:?}", o.err(), n.err()),
        )),
    }
    let inactive: Vec<&str> = after
        .units
        .iter()
        .filter(|(_, a)| !a)
        .map(|(u, _)| u.as_str())
        .collect();
    c.push(check(
        "every service runs again",
        !after.units.is_empty() && inactive.is_empty() && after.units.len() == before.units.len(),
        format!("{} units, inactive: {inactive:?}", after.units.len()),
    ));
    let new_dev_num = libc::makedev(new.0, new.1).to_string();
    let stale: Vec<&str> = after
        .unit_exe_devs
        .iter()
        .filter(|(_, d)| *d != new_dev_num)
        .map(|(u, _)| u.as_str())
        .collect();
    c.push(check(
        "every service runs from the new root",
        !after.unit_exe_devs.is_empty() && stale.is_empty(),
        format!("not from the new root: {stale:?}"),
    ));
    c.push(check(
        "the data is identical (tree hash)",
        !before.tree.is_empty() && before.tree == after.tree && before.tree.len() == 16,
        format!("before {}, after {}", before.tree, after.tree),
    ));
    let window = rep.and_then(|r| r["read_only_window_seconds"].as_f64());
    c.push(check(
        "the read-only window was measured",
        window.is_some(),
        window.map_or_else(|| "none".to_owned(), |w| format!("{w:.1} s")),
    ));
    if run.code != Some(0) {
        c.push(check(
            "the sandbox ended normally",
            false,
            format!("exit {:?}", run.code),
        ));
    }
    c
}

/// Run the demo. `progress` gets every line to show; `stop` is polled
/// (Ctrl-C). Errors only when it cannot start; a failed check is in the
/// report (`ok: false`).
pub fn run(
    o: &DemoOptions,
    progress: &mut dyn FnMut(&str),
    stop: &mut dyn FnMut() -> Option<String>,
) -> Result<DemoReport> {
    requirements()?;
    let t0 = Instant::now();
    let rig = Rig::build(&o.rig, progress)?;
    progress(&format!(
        "booting the sandbox: PID 1 of private mount + PID + network namespaces (this shell's is {})",
        rig.host_ns()
    ));
    progress("inside: reroot migrate OLD NEW --grow --yes (progress below)");
    let run = rig.boot(
        &[("REROOT_DEMO_FLAGS", o.migrate_flags.clone())],
        o.limit,
        &mut |l| progress(&format!("  | {l}")),
        stop,
    );
    let old_device = rig.old.path().display().to_string();
    let new_device = rig.new.path().display().to_string();
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            let cleanup = rig.cleanup();
            return Err(e.hint(format!("cleanup left behind: {:?}", cleanup.left_behind)));
        }
    };
    let before = run.section("before").map(Facts::parse).unwrap_or_default();
    let after = run.section("after").map(Facts::parse).unwrap_or_default();
    let rc = run
        .section("migrate")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("rc ")))
        .and_then(|s| s.trim().parse().ok());
    let migrate: Option<serde_json::Value> = run
        .section("report")
        .and_then(|s| serde_json::from_str(s).ok());
    let checks = if run.interrupted.is_some() {
        Vec::new()
    } else {
        checks(&rig, &run, &before, &after, rc, migrate.as_ref())
    };
    progress("cleaning up: the sandbox is gone; detaching the loop devices");
    let interrupted = run.interrupted.clone();
    let cleanup = rig.cleanup();
    let ok = interrupted.is_none()
        && !checks.is_empty()
        && checks.iter().all(|c| c.ok)
        && cleanup.left_behind.is_empty();
    if interrupted.is_none() && checks.is_empty() {
        return Err(
            Error::new(ErrorKind::Io("the sandbox produced no result".into())).stage(Stage::Demo),
        );
    }
    let sandbox_output = (!ok && interrupted.is_none())
        .then(|| format!("{}\n--- stderr ---\n{}", run.stdout, run.stderr));
    Ok(DemoReport {
        ok,
        sandbox_output,
        old_device,
        new_device,
        migrate_exit: rc,
        migrate,
        checks,
        before,
        after,
        interrupted,
        cleanup,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_fit_the_data_with_room() {
        let (old, new) = image_sizes(256 << 20);
        assert_eq!(old, 640 << 20);
        assert_eq!(new, 800 << 20);
        let (old, new) = image_sizes(2 << 30);
        assert!(old >= (3 << 30) + (232 << 20) && old % (64 << 20) == 0);
        assert!(new > old);
        assert!(image_sizes(u64::MAX).0 > 0);
    }

    #[test]
    fn scenario_scripts_parse() {
        let script = format!("{SCENARIO_LIB}{DEMO_SCENARIO}");
        let st = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(st.success());
    }
}
