//! The fault matrix's cases that fit in CI time (tests/RELIABILITY.md has
//! the whole matrix; `tools/fault-matrix.sh` runs the long loops), and the
//! migrate defects found by trying it (each test named after its defect).

use std::path::Path;

use crate::common::{LoopDev, Mounted, mkfs, scratch, sparse_file};
use reroot::probe::SysRoot;

const MIB: u64 = 1 << 20;

/// Regression: migrate refused a btrfs root, because btrfs shows an
/// anonymous `0:N` in mountinfo, which no block device has. The real
/// device comes from `/sys/fs/btrfs/<fsid>/devices`; another device is
/// still refused, and so is a btrfs on two devices (one is copied).
#[test]
fn migrate_accepts_the_device_of_a_btrfs_root() {
    require_root!();
    require_tool!("mkfs.btrfs");
    let dir = scratch();
    let sys = SysRoot::live();
    let img = sparse_file(&dir.path().join("b.img"), 256 * MIB);
    mkfs("btrfs", &img, &[]);
    let dev = LoopDev::attach(&img, &[]);
    let other = LoopDev::attach(&sparse_file(&dir.path().join("o.img"), 64 * MIB), &[]);
    let mnt = dir.path().join("mnt");
    {
        let m = Mounted::new(dev.path(), &mnt, None);
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(&*m.dir().to_string_lossy()))
            .unwrap();
        assert!(
            line.split(' ').nth(2).unwrap().starts_with("0:"),
            "btrfs shows an anonymous device: {line}"
        );
        reroot::exec::migrate::ensure_root_device(&sys, dev.path(), m.dir())
            .unwrap_or_else(|e| panic!("the btrfs device was refused: {e}"));
        let e = reroot::exec::migrate::ensure_root_device(&sys, other.path(), m.dir()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("is not the device of"), "{msg}");
        let name = dev.path().file_name().unwrap().to_string_lossy();
        assert!(msg.contains("btrfs ") && msg.contains(&*name), "{msg}");
    }
    // Two devices: refused, naming both.
    let img2 = sparse_file(&dir.path().join("b2.img"), 256 * MIB);
    let dev2 = LoopDev::attach(&img2, &[]);
    let img1 = sparse_file(&dir.path().join("b1.img"), 256 * MIB);
    let dev1 = LoopDev::attach(&img1, &[]);
    mkfs(
        "btrfs",
        dev1.path(),
        &[
            "-d",
            "single",
            "-m",
            "single",
            &dev2.path().to_string_lossy(),
        ],
    );
    let opt = format!(
        "device={},device={}",
        dev1.path().display(),
        dev2.path().display()
    );
    let m = Mounted::new(dev1.path(), &mnt, Some(&opt));
    let e = reroot::exec::migrate::ensure_root_device(&sys, dev1.path(), m.dir()).unwrap_err();
    let msg = format!("{e}");
    assert!(msg.contains("on 2 devices"), "{msg}");
    assert!(msg.contains("btrfs replace"), "{msg}");
    drop(m);
    assert!(Path::new(&mnt).exists());
}

/// The sandbox rig of the migrate tests (tests/integration/migrate.rs).
mod sandbox {
    use std::time::Duration;

    use reroot::exec::demo::{Rig, RigOptions, Run, SCENARIO_LIB};
    use serde_json::Value;

    pub fn skip() -> bool {
        if let Err(e) = reroot::exec::demo::requirements() {
            eprintln!("SKIP: {e}");
            return true;
        }
        false
    }

    pub fn rig(scenario: &str) -> Rig {
        let o = RigOptions {
            parent: "/var/tmp".into(),
            keep: false,
            reroot_exe: env!("CARGO_BIN_EXE_reroot").into(),
            old_bytes: 256 << 20,
            new_bytes: 320 << 20,
            data_bytes: 8 << 20,
            scenario: format!("{SCENARIO_LIB}{scenario}"),
            extra_tools: Vec::new(),
        };
        Rig::build(&o, &mut |_| {}).expect("building the sandbox rig")
    }

    pub fn boot(rig: &Rig, limit: Duration) -> Run {
        let run = rig
            .boot(&[], limit, &mut |_| {}, &mut || None)
            .expect("booting the sandbox");
        assert_eq!(
            run.code,
            Some(0),
            "the sandbox failed\nstdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
        run
    }

    pub fn section<'a>(run: &'a Run, name: &str) -> &'a str {
        run.section(name)
            .unwrap_or_else(|| panic!("no section {name}:\n{}\n{}", run.stdout, run.stderr))
    }

    pub fn json(run: &Run, name: &str) -> Value {
        let s = section(run, name);
        serde_json::from_str(s).unwrap_or_else(|e| panic!("section {name} is not JSON ({e}):\n{s}"))
    }

    pub fn rc(run: &Run, name: &str) -> i32 {
        section(run, name)
            .lines()
            .find_map(|l| l.strip_prefix("rc "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no rc in {name}: {}", section(run, name)))
    }

    pub fn stage<'a>(report: &'a Value, name: &str) -> &'a Value {
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap_or_else(|| panic!("stage {name} in {report:#}"))
    }
}

/// Regressions: (1) the journal lived only in /run, so after a restart
/// `reroot status` knew nothing: a copy kept on the root
/// (/var/lib/reroot) now says what happened; (2) an interrupted pre-copy
/// started again from zero on `--resume`: the re-run keeps what is on the
/// target (a delta pass, writing only chunks that differ).
#[test]
fn a_restart_is_reported_from_the_kept_journal_and_a_resumed_precopy_keeps_its_progress() {
    require_root!();
    if sandbox::skip() {
        return;
    }
    use sandbox::{json, rc, section, stage};
    let scenario = r#"
sec before; facts
sec crash
reroot migrate "$REROOT_DEMO_OLD" "$REROOT_DEMO_NEW" --yes --json --inject-crash precopy \
    >/run/demo/c.json 2>/run/demo/c.err
echo "rc $?"
sec crash_report; cat /run/demo/c.json
# A restart empties /run: only the copy kept on the root is left.
mv /run/reroot /run/reroot.away
sec after_restart; reroot status --json
mv /run/reroot.away /run/reroot
sec resume
reroot migrate --resume --json >/run/demo/res.json 2>/run/demo/res.err
echo "rc $?"
sec final; cat /run/demo/res.json
sec final_err; tail -5 /run/demo/res.err
mv /run/reroot /run/reroot.away
sec kept_done; reroot status --json
sec after; facts
sec end
done_rc 0
"#;
    let rig = sandbox::rig(scenario);
    let run = sandbox::boot(&rig, std::time::Duration::from_secs(300));
    let crash = json(&run, "crash_report");
    assert_eq!(rc(&run, "crash"), 130, "{crash:#}");
    assert_eq!(stage(&crash, "precopy")["status"], "running", "{crash:#}");

    let r = json(&run, "after_restart");
    assert_eq!(r["state"], "interrupted", "{r:#}");
    assert_eq!(r["kept_copy"], "/var/lib/reroot", "{r:#}");
    assert_eq!(stage(&r, "precopy")["status"], "running", "{r:#}");
    let todo = r["todo"].to_string();
    assert!(
        todo.contains("in the precopy stage") && todo.contains("started on its old root"),
        "{todo}"
    );

    let fin = json(&run, "final");
    assert_eq!(
        rc(&run, "resume"),
        0,
        "{fin:#}\n{}",
        section(&run, "final_err")
    );
    assert_eq!(fin["outcome"], "done", "{fin:#}");
    let pre = stage(&fin, "precopy");
    assert_eq!(pre["runs"], 2, "{fin:#}");
    assert!(pre["notes"].to_string().contains("resumed"), "{pre:#}");
    let rewritten = fin["bytes_precopied"].as_u64().unwrap();
    let used = fin["bytes_verified"].as_u64().unwrap();
    eprintln!("resumed pre-copy rewrote {rewritten} of {used} bytes");
    assert!(
        rewritten * 4 < used,
        "the resumed pre-copy rewrote {rewritten} of {used} bytes: {fin:#}"
    );

    // The copy kept on the new root has the end.
    let k = json(&run, "kept_done");
    assert_eq!(k["state"], "done", "{k:#}");
    assert_eq!(k["kept_copy"], "/var/lib/reroot");
    let cleanup = rig.cleanup();
    assert!(cleanup.left_behind.is_empty(), "{cleanup:?}");
}
