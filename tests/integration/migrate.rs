//! `reroot migrate` end to end, in the sandbox of `reroot demo`: an old root
//! (busybox, services that hold it busy, a data tree) on a loop device,
//! booted as PID 1 of private mount + PID + network namespaces, migrated
//! onto a second loop device by the scenario (the operator's session).
//!
//! - A failure injected after the work of each stage before the pivot
//!   (hidden `--inject-failure`) is rolled back: `/` is the old device and
//!   writable, every service runs, the data is unchanged, quiesce's state
//!   is undone; and the next migration can start.
//! - A worker that dies in the copy stage (hidden `--inject-crash`) leaves
//!   an interrupted migration that `status` reports and `--resume`
//!   finishes, although the operator's attached command is hung up on and
//!   killed; `status --follow` from another command sees it to the end.
//! - `--dry-run` prints the real plan; refusals on this machine change
//!   nothing (with the namespace interlock set, as everywhere here).
//!
//! Safety: devices are loop devices over sparse files, attached here and
//! detached by name ([`reroot::exec::demo::Rig`]); everything that mounts
//! or pivots runs in the sandbox, whose boot script refuses this process's
//! mount namespace, and `REROOT_FORBID_MNT_NS` makes reroot itself refuse it.

use std::path::Path;
use std::time::Duration;

use reroot::exec::demo::{Facts, Rig, RigOptions, Run, SCENARIO_LIB};
use serde_json::Value;

/// True (after [`crate::common::skip`]) when the sandbox cannot run here.
fn skip() -> bool {
    if let Err(e) = reroot::exec::demo::requirements() {
        crate::common::skip(&e.to_string());
        return true;
    }
    false
}

fn rig(scenario: &str) -> Rig {
    rig_with(scenario, &[])
}

fn rig_with(scenario: &str, tools: &[&str]) -> Rig {
    let o = RigOptions {
        parent: "/var/tmp".into(),
        keep: false,
        reroot_exe: env!("CARGO_BIN_EXE_reroot").into(),
        old_bytes: 256 << 20,
        new_bytes: 320 << 20,
        data_bytes: 8 << 20,
        scenario: format!("{SCENARIO_LIB}{scenario}"),
        extra_tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        churn_bytes_per_s: 0,
    };
    Rig::build(&o, &mut |_| {}).expect("building the sandbox rig")
}

fn boot(rig: &Rig, limit: Duration) -> Run {
    let run = rig
        .boot(&[], limit, &mut |_| {}, &mut || None)
        .expect("booting the sandbox");
    if std::env::var_os("REROOT_TEST_SHOW").is_some() {
        eprintln!("{}\n--- stderr ---\n{}", run.stdout, run.stderr);
    }
    assert_eq!(
        run.code,
        Some(0),
        "the sandbox failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn section<'a>(run: &'a Run, name: &str) -> &'a str {
    run.section(name)
        .unwrap_or_else(|| panic!("no section {name}:\n{}\n{}", run.stdout, run.stderr))
}

fn json(run: &Run, name: &str) -> Value {
    let s = section(run, name);
    serde_json::from_str(s).unwrap_or_else(|e| panic!("section {name} is not JSON ({e}):\n{s}"))
}

fn rc(run: &Run, name: &str) -> i32 {
    section(run, name)
        .lines()
        .find_map(|l| l.strip_prefix("rc "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rc in {name}: {}", section(run, name)))
}

fn stage<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == name)
        .unwrap_or_else(|| panic!("stage {name} in {report:#}"))
}

/// The sandbox as before the migration: on the old device, writable, every
/// unit running (from the old root), the same data.
fn assert_as_before(before: &Facts, now: &Facts, old: (u32, u32), what: &str) {
    assert_eq!(now.root_dev(), Some(old), "{what}: / is the old device");
    assert!(now.root_writable, "{what}: / is writable again");
    assert_eq!(now.units.len(), before.units.len(), "{what}: units");
    for (u, active) in &now.units {
        assert!(active, "{what}: {u} runs again: {:?}", now.units);
    }
    let old_dev = libc::makedev(old.0, old.1).to_string();
    for (u, d) in &now.unit_exe_devs {
        assert_eq!(*d, old_dev, "{what}: {u} runs from the old root");
    }
    assert_eq!(now.tree, before.tree, "{what}: the data is unchanged");
    assert_eq!(now.tree.len(), 16, "{what}: tree hash {}", now.tree);
}

const STAGES_BEFORE_PIVOT: [&str; 8] = [
    "check", "precopy", "quiesce", "copy", "verify", "grow", "identity", "pivot",
];

#[test]
fn a_failure_in_each_stage_before_the_pivot_is_rolled_back() {
    require_root!();
    if skip() {
        return;
    }
    let scenario = format!(
        r#"
sec before; facts
for st in {}; do
    sec "run_$st"
    reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --grow --new-uuid --yes --force --json \
        --inject-failure "$st" >/run/demo/r.json 2>/run/demo/r.err
    echo "rc $?"
    sec "report_$st"; cat /run/demo/r.json
    sec "facts_$st"; facts
    sec "state_$st"; ls /run/reroot/quiesce.json 2>/dev/null; echo "end"
done
sec end
done_rc 0
"#,
        STAGES_BEFORE_PIVOT.join(" ")
    );
    let rig = rig(&scenario);
    let run = boot(&rig, Duration::from_secs(300));
    let before = Facts::parse(section(&run, "before"));
    assert_eq!(before.root_dev(), Some(rig.old.devno()));
    assert_ne!(before.ns, rig.host_ns());
    for st in STAGES_BEFORE_PIVOT {
        let r = json(&run, &format!("report_{st}"));
        let code = rc(&run, &format!("run_{st}"));
        assert_eq!(
            code, 5,
            "{st}: the injected failure is an I/O error (exit 5): {r:#}"
        );
        assert_eq!(r["outcome"], "rolled-back", "{st}: {r:#}");
        assert_eq!(r["ok"], false);
        assert_eq!(r["failed"]["stage"], st, "{r:#}");
        assert!(
            r["failed"]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("injected"),
            "{r:#}"
        );
        assert_eq!(stage(&r, st)["status"], "failed", "{r:#}");
        assert_eq!(r["system_restored"], true, "{st}: {r:#}");
        assert_eq!(
            r["rollback"]["failed"].as_array().unwrap().len(),
            0,
            "{st}: {r:#}"
        );
        // After quiesce the root was read-only for a while, and the
        // rollback remounted it read-write and started what was stopped.
        if !matches!(st, "check" | "precopy") {
            let undone = r["rollback"]["undone"].to_string();
            assert!(undone.contains("remount,rw"), "{st}: {undone}");
            assert!(undone.contains("start logger.service"), "{st}: {undone}");
        }
        // The window is measured from a completed quiesce.
        if !matches!(st, "check" | "precopy" | "quiesce") {
            assert!(r["read_only_window_seconds"].as_f64().is_some(), "{st}");
        }
        // Stages after the failed one never ran.
        let idx = STAGES_BEFORE_PIVOT.iter().position(|s| *s == st).unwrap();
        for later in &STAGES_BEFORE_PIVOT[idx + 1..] {
            assert_eq!(stage(&r, later)["status"], "pending", "{st}: {later}");
        }
        let now = Facts::parse(section(&run, &format!("facts_{st}")));
        assert_as_before(&before, &now, rig.old.devno(), st);
        assert_eq!(
            section(&run, &format!("state_{st}")).trim(),
            "end",
            "{st}: quiesce's state file is gone (everything undone)"
        );
    }
    let cleanup = rig.cleanup();
    assert!(cleanup.left_behind.is_empty(), "{cleanup:?}");
}

#[test]
fn an_interrupted_migration_resumes_after_the_session_dropped() {
    require_root!();
    if skip() {
        return;
    }
    let scenario = r#"
sec before; facts
sec dryrun
reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --dry-run --json >/run/demo/plan.json
echo "rc $?"
sec plan; cat /run/demo/plan.json
sec crash
reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --yes --json --inject-crash copy \
    >/run/demo/c.json 2>/run/demo/c.err
echo "rc $?"
sec crash_report; cat /run/demo/c.json
sec status; reroot status --json
sec resume
# Resume, and drop the operator's attached command at once (hang-up, then
# killed): the detached worker goes on.
reroot migrate --resume --json >/run/demo/res.json 2>/run/demo/res.err &
f=$!
usleep 300000
kill -HUP $f 2>/dev/null; usleep 100000; kill -KILL $f 2>/dev/null
echo "dropped $f"
sec follow
reroot status --follow --json >/run/demo/final.json 2>/run/demo/final.err
echo "rc $?"
sec final; cat /run/demo/final.json
sec follow_err; cat /run/demo/final.err
sec after; facts
sec end
done_rc 0
"#;
    let rig = rig(scenario);
    let run = boot(&rig, Duration::from_secs(300));
    let before = Facts::parse(section(&run, "before"));

    // The dry run: this sandbox's real plan.
    assert_eq!(rc(&run, "dryrun"), 0, "{}", section(&run, "plan"));
    let plan = json(&run, "plan");
    assert!(plan["blockers"].as_array().unwrap().is_empty(), "{plan:#}");
    let cmds = |st: &str| {
        plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == st)
            .unwrap()["commands"]
            .to_string()
    };
    assert!(
        cmds("quiesce").contains("systemctl stop logger.service"),
        "{}",
        cmds("quiesce")
    );
    assert!(cmds("quiesce").contains("mount -o remount,ro /"));
    assert!(
        cmds("pivot").contains("pivot_root . mnt/oldroot"),
        "{}",
        cmds("pivot")
    );
    assert!(cmds("pivot").contains("mount --move /mnt/oldroot/proc /proc"));
    assert!(
        cmds("restart").contains("systemctl restart ssh.service"),
        "{}",
        cmds("restart")
    );
    assert!(
        plan["point_of_no_return"]
            .as_str()
            .unwrap()
            .starts_with("pivot_root")
    );

    // The crash: the attached command sees the worker gone (exit 130).
    let crash = json(&run, "crash_report");
    assert_eq!(rc(&run, "crash"), 130, "{crash:#}");
    assert_eq!(crash["state"], "interrupted", "{crash:#}");
    assert_eq!(stage(&crash, "copy")["status"], "running");
    assert!(crash["todo"][0].as_str().unwrap().contains("--resume"));
    let status = json(&run, "status");
    assert_eq!(status["state"], "interrupted", "{status:#}");
    assert!(!status["log_tail"].as_array().unwrap().is_empty());

    // Resumed and followed to the end from another command.
    let fin = json(&run, "final");
    assert_eq!(
        rc(&run, "follow"),
        0,
        "{fin:#}\n{}",
        section(&run, "follow_err")
    );
    assert_eq!(fin["outcome"], "done", "{fin:#}");
    assert_eq!(
        stage(&fin, "copy")["runs"],
        2,
        "the copy ran again: {fin:#}"
    );
    assert_eq!(stage(&fin, "verify")["status"], "done");
    assert_eq!(stage(&fin, "grow")["status"], "skipped");
    assert!(fin["bytes_verified"].as_u64().unwrap() > 8 << 20);
    let restarted = fin["restarted"].to_string();
    for u in ["ssh.service (restarted)", "logger.service (started again)"] {
        assert!(restarted.contains(u), "{u} in {restarted}");
    }
    let after = Facts::parse(section(&run, "after"));
    assert_eq!(
        after.root_dev(),
        Some(rig.new.devno()),
        "/ is the new device"
    );
    assert!(after.root_writable);
    assert!(after.units.iter().all(|(_, a)| *a), "{:?}", after.units);
    assert_eq!(after.tree, before.tree, "the data survived");
    assert!(
        after
            .mounts
            .iter()
            .all(|m| (m.major, m.minor) != rig.old.devno()),
        "the old root is released"
    );
    let cleanup = rig.cleanup();
    assert!(cleanup.left_behind.is_empty(), "{cleanup:?}");
}

#[test]
fn answers_come_through_the_journal_and_no_before_the_pivot_rolls_back() {
    require_root!();
    if skip() {
        return;
    }
    let scenario = r#"
wait_for() {
    i=0
    while [ $i -lt 300 ]; do
        reroot status --json >/run/demo/st.json 2>/dev/null
        grep -q "$1" /run/demo/st.json && return 0
        usleep 100000; i=$((i + 1))
    done
    return 1
}
sec before; facts
sec start
reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --detach --json --confirm-timeout 60 >/dev/null
echo "rc $?"
wait_for 'Stop the services'; echo "waited $?"
sec status_q; cat /run/demo/st.json
sec answer1; reroot migrate --answer yes --json; echo "rc $?"
wait_for 'Pivot to'; echo "waited $?"
sec status_p; cat /run/demo/st.json
sec answer2; reroot migrate --answer no --json; echo "rc $?"
wait_for '"state": "cancelled"'; echo "waited $?"
sec final; cat /run/demo/st.json
sec answer3; reroot migrate --answer yes; echo "rc $?"
sec after; facts
sec end
done_rc 0
"#;
    let rig = rig(scenario);
    let run = boot(&rig, Duration::from_secs(300));
    let before = Facts::parse(section(&run, "before"));
    assert_eq!(rc(&run, "start"), 0, "{}", run.stdout);
    // Before quiesce: waiting, and nothing changed yet.
    let q = json(&run, "status_q");
    assert_eq!(q["state"], "waiting", "{q:#}");
    assert!(
        q["awaiting"].as_str().unwrap().contains("read-only"),
        "{q:#}"
    );
    assert_eq!(stage(&q, "precopy")["status"], "done");
    assert_eq!(stage(&q, "quiesce")["status"], "pending");
    assert_eq!(rc(&run, "answer1"), 0);
    // Before the pivot: the root is read-only, the question names the point
    // of no return.
    let p = json(&run, "status_p");
    assert_eq!(p["state"], "waiting", "{p:#}");
    assert!(
        p["awaiting"]
            .as_str()
            .unwrap()
            .contains("point of no return")
    );
    assert_eq!(stage(&p, "verify")["status"], "done", "{p:#}");
    assert_eq!(stage(&p, "pivot")["status"], "pending");
    assert_eq!(rc(&run, "answer2"), 0);
    // No: cancelled, rolled back.
    let f = json(&run, "final");
    assert_eq!(f["outcome"], "cancelled", "{f:#}");
    assert_eq!(f["system_restored"], true, "{f:#}");
    assert!(
        f["rollback"]["undone"].to_string().contains("remount,rw"),
        "{f:#}"
    );
    assert!(f["read_only_window_seconds"].as_f64().is_some());
    assert_eq!(stage(&f, "pivot")["status"], "pending");
    // Nothing waits any more.
    assert_eq!(rc(&run, "answer3"), 3);
    let after = Facts::parse(section(&run, "after"));
    assert_as_before(&before, &after, rig.old.devno(), "after no");
    let cleanup = rig.cleanup();
    assert!(cleanup.left_behind.is_empty(), "{cleanup:?}");
}

/// On a terminal (a pty from util-linux `script`), migrate asks before
/// quiesce and before the pivot; answers typed there go on.
#[test]
fn on_a_terminal_it_asks_twice_and_goes_on_with_yes() {
    require_root!();
    if skip() {
        return;
    }
    if !crate::common::have_tool("script") {
        return crate::common::skip("no `script` (util-linux) to give migrate a terminal");
    }
    let scenario = r#"
sec before; facts
sec interactive
( sleep 2; echo y; sleep 3; echo y; sleep 15 ) | SHELL=/bin/sh script -qec "reroot migrate $REROOT_DEMO_OLD $REROOT_DEMO_NEW --grow --release-timeout 3" /dev/null >/run/i.out 2>&1
echo "rc $?"
sec output; cat /run/i.out
# The terminal's session (script, from the old root) has ended: the worker
# releases the old root by itself.
i=0
while [ $i -lt 300 ] && ! reroot status --json 2>/dev/null | grep -q '"outcome": *"done"'; do
    usleep 100000; i=$((i + 1))
done
sec status; reroot status --json
sec after; facts
sec end
done_rc 0
"#;
    let rig = rig_with(scenario, &["script"]);
    let run = boot(&rig, Duration::from_secs(300));
    let out = section(&run, "output");
    // Exit 10 (issue 12): the terminal's own session still holds the old
    // root, so the command says so and ends instead of waiting for itself.
    assert_eq!(rc(&run, "interactive"), 10, "{out}");
    assert!(
        out.contains("Only your own login session still uses the old root"),
        "{out}"
    );
    assert!(
        out.contains("Stop the services above and remount / read-only now?"),
        "{out}"
    );
    assert!(out.contains("This is the point of no return"), "{out}");
    assert!(out.contains("[y/N]"), "{out}");
    let s = json(&run, "status");
    assert_eq!(s["outcome"], "done", "{s:#}");
    let after = Facts::parse(section(&run, "after"));
    assert_eq!(after.root_dev(), Some(rig.new.devno()));
    let cleanup = rig.cleanup();
    assert!(cleanup.left_behind.is_empty(), "{cleanup:?}");
}

/// Issue 12, on loop devices: a real operator's shell runs from the old
/// root. The operator's command (the follower) recognises that only its own
/// session (its parent shell) still holds it, says so and ends with exit 10
/// within seconds, while the worker waits on. After "logging in again"
/// (the shell re-executed from the new root), the worker releases the old
/// root by itself: `reroot status` says done, `reroot finish` says nothing
/// is left and exits 0. The old root was relabelled `oldroot` while still
/// mounted (right after the pivot) and has a new UUID once unmounted
/// (oracle: `tune2fs -l` on the host).
#[test]
fn the_operators_own_session_is_recognised_and_the_worker_finishes_after_logout() {
    require_root!();
    if skip() {
        return;
    }
    let scenario = r#"
if [ "${1:-}" = again ]; then
    # Logged in again (from the new root): the worker finishes by itself.
    i=0
    while [ $i -lt 300 ] && ! reroot status --json 2>/dev/null | grep -q '"outcome": *"done"'; do
        usleep 100000; i=$((i + 1))
    done
    sec status; reroot status --json
    sec finish
    reroot finish --json >/run/f.json 2>/run/f.err
    echo "rc $?"
    sec finish_report; cat /run/f.json
    sec after; facts
    sec end
    done_rc 0
fi
sec before; facts
echo "operator $$"
sec migrate
start=$(date +%s)
reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --yes --json --release-timeout 60 \
    >/run/m.json 2>/run/m.err
echo "rc $?"
sec took; echo $(( $(date +%s) - start ))
sec report; cat /run/m.json
sec report_err; cat /run/m.err
sec pivot_log; cat /run/reroot/pivot.log
# Log out and in again: this shell goes on from the new root.
cd /
exec /bin/busybox sh /etc/sandbox/scenario again
"#;
    let rig = rig(scenario);
    let old_before = tune2fs_identity(rig.old.path());
    let run = rig
        .boot(
            &[("REROOT_SESSION_ON_ROOT", "1".to_owned())],
            Duration::from_secs(300),
            &mut |_| {},
            &mut || None,
        )
        .expect("booting the sandbox");
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let r = json(&run, "report");
    assert_eq!(
        rc(&run, "migrate"),
        10,
        "{r:#}\n{}",
        section(&run, "report_err")
    );
    assert_eq!(r["state"], "pending-release", "{r:#}");
    assert_eq!(r["exit_code"], 10);
    let operator: u64 = section(&run, "before")
        .lines()
        .chain(run.stdout.lines())
        .find_map(|l| l.strip_prefix("operator "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the operator's pid");
    let own: Vec<u64> = r["own_session"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    assert!(own.contains(&operator), "{own:?} has {operator}: {r:#}");
    // It did not wait for itself (the worker waits up to 60 s for others).
    let took: u64 = section(&run, "took").trim().parse().unwrap();
    assert!(took < 60, "the command took {took} s");
    // Right after the pivot, while still mounted, the old root was relabelled.
    let log = section(&run, "pivot_log");
    assert!(
        log.contains("-> \"oldroot\""),
        "relabel after the pivot:\n{log}"
    );
    // The worker finished by itself once the shell had gone.
    let st = json(&run, "status");
    assert_eq!(st["outcome"], "done", "{st:#}");
    let f = json(&run, "finish_report");
    assert_eq!(rc(&run, "finish"), 0, "{f:#}");
    assert_eq!(f["nothing_left"], true, "{f:#}");
    let after = Facts::parse(section(&run, "after"));
    assert_eq!(after.root_dev(), Some(rig.new.devno()));
    assert!(
        after
            .mounts
            .iter()
            .all(|m| (m.major, m.minor) != rig.old.devno()),
        "the old root is released"
    );
    // Oracle: tune2fs on the host. New label and UUID on the old device,
    // the identity it had on the new one.
    let old_now = tune2fs_identity(rig.old.path());
    let new_now = tune2fs_identity(rig.new.path());
    assert_eq!(old_now.1, "oldroot");
    assert_ne!(old_now.0, old_before.0, "the old root has a new UUID");
    assert_eq!(new_now, old_before, "the new root keeps UUID and label");
    let cleanup = rig.cleanup();
    assert!(cleanup.left_behind.is_empty(), "{cleanup:?}");
}

/// (UUID, label) of an ext filesystem, read by `tune2fs -l`.
fn tune2fs_identity(dev: &Path) -> (String, String) {
    let out = std::process::Command::new("tune2fs")
        .arg("-l")
        .arg(dev)
        .output()
        .expect("running tune2fs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    (field("Filesystem UUID:"), field("Filesystem volume name:"))
}

/// On this machine (not in a sandbox) migrate refuses before it changes
/// anything: the namespace interlock, a source that is not the root's
/// device, no terminal to ask on; resume and status without a journal.
#[test]
fn refusals_on_this_machine_change_nothing() {
    let dir = crate::common::scratch();
    let state = dir.path().join("state");
    let here = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let migrate = |args: &[&str], forbid: bool| {
        let mut c = crate::common::reroot();
        c.arg("migrate").args(args).arg("--state-dir").arg(&state);
        if forbid {
            c.env(reroot::exec::pivot::FORBID_NS_ENV, &here);
        } else {
            c.env_remove(reroot::exec::pivot::FORBID_NS_ENV);
        }
        c.stdin(std::process::Stdio::null()).output().unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // Without --yes and without a terminal: refused before anything.
    let o = migrate(&["/dev/null", "/dev/zero"], true);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("no terminal to ask on"), "{}", text(&o));
    // The interlock (as root), or the root requirement (not root).
    let o = migrate(&["/dev/null", "/dev/zero", "--yes"], true);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("forbids changing mount namespace") || t.contains("must run as root"),
        "{t}"
    );
    // Not the root's device.
    if crate::common::is_root() {
        let o = migrate(&["/dev/null", "/dev/zero", "--yes", "--json"], false);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is not the device of /"),
            "{v:#}"
        );
    } else {
        // The rest runs without root; this part cannot.
        crate::common::skip("the not-the-root-device refusal needs root");
    }
    assert!(!Path::new(&state).join("migrate.journal").exists());
    // Nothing to resume or show.
    let o = migrate(&["--resume"], true);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = crate::common::reroot()
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "none");
}
