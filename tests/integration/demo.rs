//! `reroot demo`, the README's first command: run the binary as a user
//! would, check its `--json` report (every check passed: new root mounted,
//! old one released and re-identified, services back on the new root, data
//! identical) and that it left no loop device or mount of its own behind
//! on this machine.

use std::path::Path;

use serde_json::Value;

#[test]
fn demo_migrates_the_sandbox_and_leaves_nothing_behind() {
    require_root!();
    if let Err(e) = reroot::exec::demo::requirements() {
        return crate::common::skip(&e.to_string());
    }
    let out = crate::common::reroot()
        .args(["demo", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{r:#}\n{stderr}");
    assert_eq!(r["ok"], true, "{r:#}");
    let checks = r["checks"].as_array().unwrap();
    assert!(checks.len() >= 9, "{checks:#?}");
    for c in checks {
        assert_eq!(c["ok"], true, "{c:#}");
    }
    for name in [
        "the new root is mounted at / read-write",
        "the old root is unmounted and released",
        "every service runs from the new root",
        "the data is identical (tree hash)",
    ] {
        assert!(
            checks.iter().any(|c| c["name"] == name),
            "check {name:?} ran"
        );
    }
    // The migration inside: every stage but identity ran, and the numbers
    // that matter are there.
    let m = &r["migrate"];
    assert_eq!(m["outcome"], "done", "{m:#}");
    for s in m["stages"].as_array().unwrap() {
        let want = if s["stage"] == "identity" {
            "skipped"
        } else {
            "done"
        };
        assert_eq!(s["status"], want, "{s:#}");
    }
    assert!(m["read_only_window_seconds"].as_f64().unwrap() > 0.0);
    assert!(m["bytes_precopied"].as_u64().unwrap() > 16 << 20);
    assert!(m["bytes_verified"].as_u64().unwrap() > 16 << 20);
    // Writes were tracked: the window copied only what changed since the
    // last round, far less than the pre-copy.
    assert_eq!(m["write_tracking"], "tracked", "{m:#}");
    assert!(m["precopy_rounds"].as_u64().unwrap() >= 1);
    assert!(m["window_bytes"].as_u64().unwrap() < m["bytes_precopied"].as_u64().unwrap() / 4);
    // Progress went to stderr, from inside the sandbox.
    assert!(stderr.contains("stage pivot"), "{stderr}");
    // Nothing left on this machine: the loop devices are detached (or
    // attached to something else by now, never to our files) and nothing
    // of ours is mounted here.
    let c = &r["cleanup"];
    assert!(c["left_behind"].as_array().unwrap().is_empty(), "{c:#}");
    let work = c["work_dir"].as_str().unwrap();
    assert!(!Path::new(work).exists(), "{work} removed");
    for dev in c["loop_devices"].as_array().unwrap() {
        let name = Path::new(dev.as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if let Some(b) = reroot::exec::demo::loop_backing(&name) {
            assert!(
                !b.starts_with(work),
                "{name} still backed by {}",
                b.display()
            );
        }
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(work), "nothing mounted under {work}:\n{mi}");
    let losetup = crate::common::sh("losetup -a");
    assert!(!losetup.contains(work), "{losetup}");
}

#[test]
fn demo_explains_what_it_needs_without_root() {
    // As root, drop to nobody for this run (setpriv, util-linux).
    let mut cmd = if crate::common::is_root() {
        if !crate::common::have_tool("setpriv") {
            return crate::common::skip("no setpriv to run the demo as an ordinary user");
        }
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_reroot"));
        c
    } else {
        crate::common::reroot()
    };
    let out = cmd.arg("demo").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
}
