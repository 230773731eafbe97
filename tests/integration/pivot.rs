//! `reroot pivot` and `reroot finish` in a sandbox: an "old root" ext4 on a
//! loop device with a busybox userland and real services, booted as PID 1 of
//! a private mount + PID + network (+ cgroup) namespace, pivoted onto a copy
//! on a second loop device.
//!
//! Safety: loop devices are attached here, outside the namespace, with RAII
//! guards; everything is mounted only inside the namespace, whose boot
//! script refuses to run in this process's mount namespace (and whose
//! mounts vanish with it). The scenario inside checks again before pivoting.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reroot::exec::sandbox::{self, Boot, CgroupDir, SandboxOptions};
use reroot::probe::mountinfo::{self, Mount};

use crate::common::{LoopDev, mkfs, run_ok, scratch, sparse_file};

/// A sandbox image on a loop device plus an empty target of the same size.
struct Rig {
    dir: tempfile::TempDir,
    old: LoopDev,
    new: LoopDev,
    cgroup: Option<CgroupDir>,
}

/// Output of one boot: the scenario's stdout split into `=== name ===` sections.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn section(&self, name: &str) -> &str {
        let tag = format!("=== {name} ===\n");
        let Some(start) = self.stdout.find(&tag) else {
            panic!(
                "no section {name} in output:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        };
        let rest = &self.stdout[start + tag.len()..];
        &rest[..rest.find("=== ").unwrap_or(rest.len())]
    }

    fn mounts(&self, name: &str) -> Vec<Mount> {
        mountinfo::parse(self.section(name)).expect("mountinfo parses")
    }

    fn json(&self, name: &str) -> serde_json::Value {
        let s = self.section(name);
        serde_json::from_str(s).unwrap_or_else(|e| panic!("section {name} is not JSON ({e}):\n{s}"))
    }

    fn assert_ok(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "sandbox failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

impl Rig {
    /// Old root: 192 MiB ext4 labelled `sandbox-root` with the sandbox
    /// userland, `reroot` and `scenario`; new: an empty device as big.
    fn new(scenario: &str) -> Rig {
        Self::new_with(scenario, |_| None)
    }

    /// Like [`Rig::new`]; `fstab_root` may name the fstab root spec once the
    /// old device's path is known.
    fn new_with(scenario: &str, fstab_root: impl FnOnce(&Path) -> Option<String>) -> Rig {
        Self::new_custom(scenario, fstab_root, |_| {})
    }

    /// Like [`Rig::new_with`]; `tweak` changes the sandbox's options (more
    /// services, ...) before it is built.
    fn new_custom(
        scenario: &str,
        fstab_root: impl FnOnce(&Path) -> Option<String>,
        tweak: impl FnOnce(&mut SandboxOptions),
    ) -> Rig {
        let dir = scratch();
        let old = LoopDev::attach(&sparse_file(&dir.path().join("old.img"), 192 << 20), &[]);
        let new = LoopDev::attach(&sparse_file(&dir.path().join("new.img"), 192 << 20), &[]);
        // Built in a directory and put on the filesystem by mke2fs -d: the
        // image is never mounted on the machine.
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        let mut opts = SandboxOptions::for_migration(Path::new(env!("CARGO_BIN_EXE_reroot")));
        opts.scenario = Some(scenario.to_owned());
        if let Some(f) = fstab_root(old.path()) {
            opts.fstab_root = f;
        }
        tweak(&mut opts);
        sandbox::build(&tree, &opts).expect("building the sandbox root");
        let tree_arg = tree.display().to_string();
        mkfs("ext4", old.path(), &["-L", "sandbox-root", "-d", &tree_arg]);
        fs::create_dir_all(dir.path().join("nsroot")).unwrap();
        let name = format!(
            "reroot-pivot-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let cgroup = CgroupDir::create(&name);
        Rig {
            dir,
            old,
            new,
            cgroup,
        }
    }

    /// Copy the old root to the new device (the filesystem is not mounted
    /// anywhere at this point): `reroot copy` when built, else `dd`.
    fn copy(&self) {
        let out = crate::common::reroot()
            .arg("copy")
            .arg(self.old.path())
            .arg(self.new.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("not built"),
            "reroot copy failed: {err}"
        );
        if !out.status.success() {
            run_ok(
                Command::new("dd")
                    .arg(format!("if={}", self.old.path().display()))
                    .arg(format!("of={}", self.new.path().display()))
                    .args(["bs=4M", "conv=fsync", "status=none"]),
            );
        }
    }

    /// Boot the sandbox and wait (at most `limit`) for the scenario to end.
    fn boot(&self, limit: Duration) -> Run {
        let b = Boot {
            device: self.old.path(),
            mount_dir: &self.dir.path().join("nsroot"),
            blockdevs: vec![self.old.path().to_path_buf(), self.new.path().to_path_buf()],
            cgroup: self.cgroup.as_ref(),
        };
        let out_path = self.dir.path().join("stdout");
        let err_path = self.dir.path().join("stderr");
        let mut cmd = sandbox::boot_command(&b).unwrap();
        let here = fs::read_link("/proc/self/ns/mnt").unwrap();
        cmd.env(reroot::exec::pivot::FORBID_NS_ENV, here)
            .env("SANDBOX_OLD", self.old.path())
            .env("SANDBOX_NEW", self.new.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap());
        let mut child = cmd.spawn().expect("spawning the sandbox");
        let start = Instant::now();
        let code = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st.code();
            }
            if start.elapsed() > limit {
                // The unshare process we started; --kill-child takes the
                // namespace's PID 1, and so the whole namespace, with it.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        fs::File::open(&out_path)
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        fs::File::open(&err_path)
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        // REROOT_TEST_SHOW=1 prints what the sandbox said, for debugging.
        if std::env::var_os("REROOT_TEST_SHOW").is_some() {
            eprintln!("{stdout}");
        }
        Run {
            code,
            stdout,
            stderr,
        }
    }

    fn uuid(dev: &Path) -> String {
        let out = run_ok(Command::new("tune2fs").arg("-l").arg(dev));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        format!(
            "{} {}",
            field("Filesystem UUID:"),
            field("Filesystem volume name:")
        )
    }
}

/// Common scenario prelude: a section helper and the in-namespace safety check.
const PRELUDE: &str = r#"set -u
sec() { echo "=== $1 ==="; }
done_rc() { echo "$1" >/run/sandbox/poweroff; exit "$1"; }
# Services are up (init starts us after them); give the logger a tick.
sleep 1
"#;

/// True (after [`crate::common::skip`], which fails the test under
/// `REROOT_TEST_STRICT=1`) when a tool the sandbox needs is missing.
fn skip_without_tools() -> bool {
    for t in ["unshare", "losetup", "mkfs.ext4", "tune2fs", "ldd"] {
        if !crate::common::have_tool(t) {
            crate::common::skip(&format!("`{t}` is not installed"));
            return true;
        }
    }
    if sandbox::find_busybox().is_err() {
        crate::common::skip("no static busybox (apt-get install busybox-static)");
        return true;
    }
    false
}

fn by_point<'a>(m: &'a [Mount], p: &str) -> Option<&'a Mount> {
    mountinfo::mount_of(m, Path::new(p)).filter(|x| x.mount_point == Path::new(p))
}

#[test]
fn sandbox_boots_with_services_mounts_and_units() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let scenario = format!(
        "{PRELUDE}
sec mountinfo; cat /proc/self/mountinfo
sec units; systemctl list-units
sec cgroup; cat /proc/$(cat /run/sandbox/logger.service.pgid)/cgroup
sec ns; readlink /proc/self/ns/mnt
sec end
done_rc 0
"
    );
    let rig = Rig::new(&scenario);
    let run = rig.boot(Duration::from_secs(60));
    run.assert_ok();
    let m = run.mounts("mountinfo");
    let root = by_point(&m, "/").unwrap();
    let old_rdev = fs::metadata(rig.old.path()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(root.dev(), old_rdev.rdev(), "/ is the old device");
    assert_eq!(root.propagation.make_flag(), "shared");
    for p in [
        "/proc",
        "/sys",
        "/dev",
        "/dev/pts",
        "/run",
        "/srv",
        "/home/shared",
    ] {
        assert!(by_point(&m, p).is_some(), "{p} mounted: {m:#?}");
    }
    let units = run.section("units");
    for u in [
        "syslog", "logger", "app", "holder", "mapper", "ssh", "nsholder",
    ] {
        assert!(
            units.contains(&format!("{u}.service active")),
            "{u} runs:\n{units}\n{}",
            run.stderr
        );
    }
    if rig.cgroup.is_some() {
        assert!(
            run.section("cgroup")
                .contains("0::/system.slice/logger.service"),
            "{}",
            run.section("cgroup")
        );
    }
    let here = fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(run.section("ns").trim(), here.to_string_lossy());
}

/// Main pid per unit, from the scenario's `unit pid` lines.
fn unit_pids(text: &str) -> Vec<(String, Vec<u32>)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let u = w.next()?.to_owned();
            Some((u, w.filter_map(|p| p.parse().ok()).collect()))
        })
        .collect()
}

const PIVOT_SCENARIO: &str = r#"
if [ "${1:-}" != phase2 ]; then
    sec before; cat /proc/self/mountinfo
    sec pids
    while read -r u; do
        echo "$u $(cat /run/sandbox/$u.pgid)"
    done </etc/sandbox/order
    echo "operator $$"
    reroot pivot "$SANDBOX_NEW" --json PIVOTFLAGS >/run/pivot.json 2>/run/pivot.err
    rc=$?
    sec pivot_rc; echo $rc
    sec pivot; cat /run/pivot.json
    sec pivot_err; cat /run/pivot.err
    sec after; cat /proc/self/mountinfo
    sec log; cat /run/reroot/pivot.log
    # Log out and in again: this shell re-executes from the new root.
    cd /
    exec /bin/busybox sh /etc/sandbox/scenario phase2
fi
sec phase2; readlink /proc/self/exe
FINISH
sec end
done_rc 0
"#;

/// A rig whose scenario pivots with `flags`, then (re-executed from the
/// new root, as after logging in again) runs `finish`. `old_dev_in_fstab`:
/// whether /etc/fstab names the root by the old loop device's path (else
/// `LABEL=sandbox-root`). Returns the rig, the run, and the old
/// root's `UUID label` before the boot.
fn pivot_rig(flags: &str, finish: &str, old_dev_in_fstab: bool) -> (Rig, Run, String) {
    let scenario = format!(
        "{PRELUDE}{}",
        PIVOT_SCENARIO
            .replace("PIVOTFLAGS", flags)
            .replace("FINISH", finish)
    );
    let rig = Rig::new_with(&scenario, |old| {
        old_dev_in_fstab.then(|| old.display().to_string())
    });
    rig.copy();
    let identity = Rig::uuid(rig.old.path());
    let run = rig.boot(Duration::from_secs(180));
    (rig, run, identity)
}

#[test]
fn pivot_moves_mounts_back_and_restarts_services() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let (rig, run, _) = pivot_rig("", "", false);
    run.assert_ok();
    assert_eq!(
        run.section("pivot_rc").trim(),
        "0",
        "pivot failed:\n{}\nlog:\n{}\nstderr:\n{}",
        run.section("pivot"),
        run.section("log"),
        run.section("pivot_err")
    );
    use std::os::unix::fs::MetadataExt;
    let old_rdev = fs::metadata(rig.old.path()).unwrap().rdev();
    let new_rdev = fs::metadata(rig.new.path()).unwrap().rdev();
    let before = run.mounts("before");
    let after = run.mounts("after");
    // `/` is the new device, shared again.
    let root = by_point(&after, "/").unwrap();
    assert_eq!(root.dev(), new_rdev, "/ is the new device");
    assert_eq!(root.propagation.make_flag(), "shared");
    // Every mount is back in place with its type and propagation; the bind
    // of the old root's own directory now shows the new root.
    for m in before.iter().filter(|m| m.mount_point != Path::new("/")) {
        let p = m.mount_point.to_str().unwrap();
        let now = by_point(&after, p).unwrap_or_else(|| panic!("{p} is back: {after:#?}"));
        assert_eq!(now.fstype, m.fstype, "{p}");
        assert_eq!(
            now.propagation.make_flag(),
            m.propagation.make_flag(),
            "{p} propagation"
        );
        if m.dev() == old_rdev {
            assert_eq!(now.dev(), new_rdev, "{p} now binds the new root");
        } else {
            assert_eq!(now.dev(), m.dev(), "{p} is the same filesystem");
        }
    }
    assert!(by_point(&after, "/home/shared").is_some());
    // The old root sits at /mnt/oldroot, alone.
    let old = by_point(&after, "/mnt/oldroot").expect("old root at /mnt/oldroot");
    assert_eq!(old.dev(), old_rdev);
    assert!(
        after
            .iter()
            .all(|m| m.mount_point == Path::new("/mnt/oldroot")
                || !m.mount_point.starts_with("/mnt/oldroot")),
        "nothing left under the old root: {after:#?}"
    );

    let rep = run.json("pivot");
    assert_eq!(rep["ok"], true, "{rep:#}");
    assert!(rep["api_moved_ms"].as_u64().unwrap() < 1000);
    // The processes are listed with their pids and units.
    let pids = unit_pids(run.section("pids"));
    let groups = rep["groups"].as_array().unwrap();
    let group = |unit: &str| {
        groups
            .iter()
            .find(|g| g["unit"] == unit)
            .unwrap_or_else(|| panic!("group {unit} in {groups:#?}"))
    };
    let class_of = |unit: &str| group(unit)["class"].as_str().unwrap().to_owned();
    for (unit, ps) in &pids {
        if unit == "operator" {
            continue;
        }
        if rig.cgroup.is_some() {
            let listed: Vec<u64> = group(unit)["pids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
                .collect();
            for p in ps {
                assert!(
                    listed.contains(&u64::from(*p)),
                    "{unit}: pid {p} in {listed:?}"
                );
            }
        }
    }
    if rig.cgroup.is_some() {
        assert_eq!(class_of("syslog.service"), "logging");
        assert_eq!(class_of("ssh.service"), "sshd");
        assert_eq!(class_of("logger.service"), "service");
    }
    let init = groups
        .iter()
        .find(|g| g["class"] == "init")
        .expect("PID 1 listed");
    assert_eq!(init["pids"][0], 1);
    let operator: u64 = pids.iter().find(|(u, _)| u == "operator").unwrap().1[0].into();
    let session = groups
        .iter()
        .find(|g| g["class"] == "session")
        .expect("the operator's session is named");
    assert!(
        session["pids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_u64() == Some(operator)),
        "{session:#}"
    );
    // Restarts: init first, all done; sshd listens again on 2222.
    let restarts = rep["restarts"].as_array().unwrap();
    assert_eq!(restarts[0]["class"], "init");
    assert!(
        restarts.iter().all(|r| r["status"] == "done"),
        "{restarts:#?}\n{}",
        run.section("log")
    );
    let sshd = &rep["sshd"][0];
    assert_eq!(sshd["listening"], true, "{sshd:#}");
    assert_eq!(sshd["ports"][0], 2222);
    // Only the operator's own session still runs from the old root.
    for g in rep["remaining"].as_array().unwrap() {
        assert_eq!(g["class"], "session", "still on the old root: {g:#}");
    }
    assert!(run.section("log").contains("pivot_root"));
    // The worker re-executed itself from the new root.
    assert!(rep["reexec"].is_string(), "{rep:#}");
    assert!(
        run.section("log")
            .contains("worker running from the new root")
    );
}

/// Issue 12 on loop devices: right after `pivot_root`, while the old root
/// is still mounted, it is relabelled `oldroot` (its UUID waits for the
/// unmount: the sandbox's ext4 has metadata_csum without
/// metadata_csum_seed), and a user manager (`user@0.service`) is restarted
/// like the other services, after them. Oracle for the label and UUID:
/// `tune2fs -l` on the host after the run (nothing unmounted the old root
/// but the namespace's end, so the label was changed while mounted).
#[test]
fn pivot_relabels_the_old_root_at_once_and_restarts_user_managers() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let scenario = format!(
        "{PRELUDE}{}",
        PIVOT_SCENARIO
            .replace("PIVOTFLAGS", "")
            .replace("FINISH", "")
    );
    let rig = Rig::new_custom(
        &scenario,
        |_| None,
        |o| {
            o.services.push(sandbox::Service::new(
                "user@0.service",
                "cd /root\nwhile :; do sleep 1; done\n",
            ));
        },
    );
    rig.copy();
    let before = Rig::uuid(rig.old.path());
    let run = rig.boot(Duration::from_secs(180));
    run.assert_ok();
    assert_eq!(
        run.section("pivot_rc").trim(),
        "0",
        "{}\n{}",
        run.section("pivot_err"),
        run.section("log")
    );
    let rep = run.json("pivot");
    // Still mounted after the pivot (finish never ran).
    assert!(by_point(&run.mounts("after"), "/mnt/oldroot").is_some());
    let id = &rep["old_identity"];
    assert_eq!(id["label_before"], "sandbox-root", "{rep:#}");
    assert_eq!(id["label_after"], "oldroot", "{rep:#}");
    assert!(
        id["uuid_deferred"]
            .as_str()
            .is_some_and(|w| w.contains("metadata_csum")),
        "{id:#}"
    );
    // No systemd as PID 1 here: no shutdown guard, and the report says so.
    assert!(
        rep["shutdown_guard"]["Err"]
            .as_str()
            .is_some_and(|w| w.contains("reroot finish")),
        "{rep:#}"
    );
    let (uuid_before, _) = before.split_once(' ').unwrap();
    let names: Vec<(String, String)> = rep["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        names.contains(&("LABEL=sandbox-root".into(), "new-only".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&(format!("UUID={uuid_before}"), "both".into())),
        "{names:?}"
    );
    // Oracle: the old device, as tune2fs reads it.
    let old_now = Rig::uuid(rig.old.path());
    assert_eq!(old_now, format!("{uuid_before} oldroot"));
    assert_eq!(Rig::uuid(rig.new.path()), before);
    // The user manager was restarted, after the system services.
    if rig.cgroup.is_some() {
        let groups = rep["groups"].as_array().unwrap();
        let um = groups
            .iter()
            .find(|g| g["unit"] == "user@0.service")
            .unwrap_or_else(|| panic!("user@0.service listed: {groups:#?}"));
        assert_eq!(um["class"], "user-manager");
        let restarts = rep["restarts"].as_array().unwrap();
        let pos = |u: &str| restarts.iter().position(|r| r["unit"] == u);
        let um_at = pos("user@0.service").expect("user@0.service restarted");
        assert_eq!(restarts[um_at]["status"], "done", "{restarts:#?}");
        assert!(pos("logger.service").unwrap() < um_at, "{restarts:#?}");
        assert!(
            rep["remaining"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["class"] != "user-manager"),
            "{rep:#}"
        );
    }
}

const HANGUP_SCENARIO: &str = r#"
reroot pivot "$SANDBOX_NEW" >/run/pivot.out 2>/run/pivot.err &
fg=$!
# This shell survives to report; its child must not inherit that.
trap '' HUP
i=0
while [ ! -s /run/reroot/worker.pid ] && [ $i -lt 100 ]; do usleep 50000; i=$((i + 1)); done
# The SSH connection drops: the whole login session gets SIGHUP.
kill -HUP -- -$$
usleep 200000
sec fg_alive; if [ -d /proc/$fg ] && ! grep -q '^State:.*Z' /proc/$fg/status; then echo yes; else echo no; fi
i=0
while [ ! -f /run/reroot/result.json ] && [ $i -lt 600 ]; do usleep 100000; i=$((i + 1)); done
sec result; cat /run/reroot/result.json
sec log; cat /run/reroot/pivot.log
cd /
sec end
done_rc 0
"#;

#[test]
fn pivot_survives_the_operator_session_hanging_up() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let rig = Rig::new(&format!("{PRELUDE}{HANGUP_SCENARIO}"));
    rig.copy();
    let run = rig.boot(Duration::from_secs(180));
    run.assert_ok();
    // The operator's command died of the hangup...
    assert_eq!(
        run.section("fg_alive").trim(),
        "no",
        "{}",
        run.section("log")
    );
    // ...and the detached worker finished the pivot and the restarts.
    let rep = run.json("result");
    assert_eq!(rep["pivoted"], true, "{rep:#}");
    assert_eq!(rep["ok"], true, "{rep:#}\n{}", run.section("log"));
    assert_eq!(rep["sshd"][0]["listening"], true);
}

const HUMAN_SCENARIO: &str = r#"
reroot pivot "$SANDBOX_NEW" --oldroot /oldroot --restart list >/run/pivot.out 2>/run/pivot.err
rc=$?
sec pivot_rc; echo $rc
sec out; cat /run/pivot.out
sec err; cat /run/pivot.err
sec after; cat /proc/self/mountinfo
cd /
sec end
done_rc 0
"#;

#[test]
fn pivot_lists_without_restarting_and_prints_a_summary() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let rig = Rig::new(&format!("{PRELUDE}{HUMAN_SCENARIO}"));
    rig.copy();
    let run = rig.boot(Duration::from_secs(180));
    run.assert_ok();
    assert_eq!(
        run.section("pivot_rc").trim(),
        "0",
        "{}",
        run.section("err")
    );
    let out = run.section("out");
    assert!(out.contains("/ is now /dev/loop"), "{out}");
    assert!(out.contains("the old root (/dev/loop"), "{out}");
    assert!(
        out.contains("ran from the old root after the pivot:"),
        "{out}"
    );
    assert!(
        out.contains("logger.service") || rig.cgroup.is_none(),
        "{out}"
    );
    assert!(
        !out.contains("restart ssh.service"),
        "--restart list restarts nothing: {out}"
    );
    // The log lines were followed on stderr while the worker ran.
    assert!(run.section("err").contains("pivot_root"));
    let after = run.mounts("after");
    assert!(by_point(&after, "/oldroot").is_some(), "--oldroot honoured");
    // --restart list: the services still run from the old root.
    assert!(!out.contains("nothing runs from the old root"), "{out}");
}

const FINISH_AUTO: &str = r#"
sec finish_rc
reroot finish --json >/run/finish.json 2>/run/finish.err
echo $?
sec finish; cat /run/finish.json
sec finish_err; cat /run/finish.err
sec fstab; cat /etc/fstab
sec final; cat /proc/self/mountinfo
"#;

#[test]
fn finish_unmounts_and_reidentifies_the_old_root_and_fixes_fstab() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let (rig, run, before) = pivot_rig("", FINISH_AUTO, true);
    run.assert_ok();
    assert_eq!(
        run.section("pivot_rc").trim(),
        "0",
        "{}",
        run.section("log")
    );
    let rep = run.json("finish");
    assert_eq!(
        run.section("finish_rc").trim(),
        "0",
        "{rep:#}\n{}",
        run.section("finish_err")
    );
    assert_eq!(rep["ok"], true, "{rep:#}");
    assert_eq!(rep["unmounted"], true);
    assert_eq!(rep["released"], true, "/sys/fs/ext4/<dev> is gone");
    assert!(rep["holders"].as_array().unwrap().is_empty());
    // The restarted nsholder's namespace has a slave copy of the old root,
    // which the unmount reached.
    assert!(
        !rep["following_namespaces"].as_array().unwrap().is_empty(),
        "{rep:#}"
    );
    let fin = run.mounts("final");
    assert!(by_point(&fin, "/mnt/oldroot").is_none(), "{fin:#?}");
    // The old root has a new UUID and the label `oldroot`; the new root
    // keeps the identity both had.
    let old_now = Rig::uuid(rig.old.path());
    let new_now = Rig::uuid(rig.new.path());
    let (uuid_before, label_before) = before.split_once(' ').unwrap();
    assert_eq!(label_before, "sandbox-root");
    assert_eq!(new_now, before, "the new root keeps UUID and label");
    let (old_uuid, old_label) = old_now.split_once(' ').unwrap();
    assert_ne!(old_uuid, uuid_before, "the old root has a new UUID");
    assert_eq!(old_label, "oldroot");
    // fstab named the old device: now the (unique) UUID.
    let fstab = run.section("fstab");
    assert!(
        fstab.contains(&format!("UUID={uuid_before} / ext4 defaults 0 1")),
        "{fstab}"
    );
    assert!(
        !fstab.contains(&rig.old.path().display().to_string()),
        "{fstab}"
    );
    assert_eq!(rep["fstab"]["verdict"], "fix");
    // No initramfs generator or GRUB in the sandbox: said so.
    let notes = rep["boot"]["notes"].to_string();
    assert!(
        notes.contains("no initramfs generator") && notes.contains("no GRUB"),
        "{notes}"
    );
}

const FINISH_BY_HAND: &str = r#"
sec finish1_rc
reroot finish --json >/run/finish1.json 2>/run/finish1.err
echo $?
sec finish1; cat /run/finish1.json
# The operator restarts by hand what finish listed.
systemctl daemon-reexec
while read -r u; do systemctl restart "$u"; done </etc/sandbox/order
sec finish2_rc
reroot finish --json --keep-old-identity >/run/finish2.json 2>/run/finish2.err
echo $?
sec finish2; cat /run/finish2.json
sec finish2_err; cat /run/finish2.err
"#;

#[test]
fn finish_refuses_while_processes_and_namespaces_hold_the_old_root() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let (rig, run, before) = pivot_rig("--restart none", FINISH_BY_HAND, false);
    run.assert_ok();
    assert_eq!(
        run.section("pivot_rc").trim(),
        "0",
        "{}",
        run.section("log")
    );
    let pivot = run.json("pivot");
    assert!(pivot["restarts"].as_array().unwrap().is_empty());
    // First finish: busy (exit 8), naming the holders.
    let f1 = run.json("finish1");
    assert_eq!(run.section("finish1_rc").trim(), "8", "{f1:#}");
    assert_eq!(f1["unmounted"], false);
    let holders = f1["holders"].to_string();
    for u in [
        "logger.service",
        "holder.service",
        "app.service",
        "mapper.service",
    ] {
        if rig.cgroup.is_some() {
            assert!(holders.contains(u), "{u} listed: {holders}");
        }
    }
    assert!(holders.contains("\"init\""), "PID 1 listed: {holders}");
    // The old nsholder's namespace has a private copy of the old root.
    let ns = f1["namespaces"].as_array().unwrap();
    assert!(!ns.is_empty(), "{f1:#}");
    assert!(ns[0]["mounts"][0]["mount_point"] == "/", "{ns:#?}");
    // After the restarts by hand: released; identity kept on request.
    let f2 = run.json("finish2");
    assert_eq!(
        run.section("finish2_rc").trim(),
        "0",
        "{f2:#}\n{}",
        run.section("finish2_err")
    );
    assert_eq!(f2["released"], true);
    assert_eq!(Rig::uuid(rig.old.path()), before, "--keep-old-identity");
    // Both roots carry LABEL=sandbox-root: the fstab entry is flagged.
    assert_eq!(f2["fstab"]["verdict"], "warn", "{f2:#}");
}

const ROLLBACK_SCENARIO: &str = r#"
sec before; cat /proc/self/mountinfo
reroot pivot "$SANDBOX_NEW" --json >/run/pivot.json 2>/run/pivot.err
rc=$?
sec pivot_rc; echo $rc
sec pivot; cat /run/pivot.json
sec after; cat /proc/self/mountinfo
sec stage; ls -a /run/reroot/
sec log; cat /run/reroot/pivot.log
sec end
done_rc 0
"#;

#[test]
fn pivot_onto_a_non_root_filesystem_is_undone() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let rig = Rig::new(&format!("{PRELUDE}{ROLLBACK_SCENARIO}"));
    // An empty ext4, not a copy of the root: refused after mounting it.
    mkfs("ext4", rig.new.path(), &[]);
    let run = rig.boot(Duration::from_secs(120));
    run.assert_ok();
    assert_eq!(
        run.section("pivot_rc").trim(),
        "3",
        "{}\n{}",
        run.section("log"),
        run.section("pivot")
    );
    let rep = run.json("pivot");
    assert_eq!(rep["pivoted"], false);
    assert_eq!(rep["rolled_back"], true, "{rep:#}");
    assert_eq!(rep["error_kind"], "refused");
    assert!(
        rep["hint"]
            .as_str()
            .unwrap()
            .contains("nothing was changed")
    );
    // The mount table is exactly as before: the staging tmpfs and the new
    // root were unmounted again, nothing else was touched.
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(strip(run.section("before")), strip(run.section("after")));
    assert!(
        !run.section("stage").contains("stage"),
        "{}",
        run.section("stage")
    );
    assert!(run.section("log").contains("undo: umount"));
}
