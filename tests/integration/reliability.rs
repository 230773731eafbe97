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

// ---------------------------------------------------------------------
// Copy, verify and delta under faults (tools/faultdev.sh's stack).
// ---------------------------------------------------------------------

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Rng, e2fsck_clean, fill_tree, reroot, run_ok, tree_hash};
use crate::faultdev::{Fault, FaultDev, cmp, ext4_image_with_file};

/// `reroot --json ARGS...`: the exit code and the JSON document on stdout.
fn reroot_json(args: &[&std::ffi::OsStr]) -> (i32, serde_json::Value) {
    let out = reroot()
        .arg("--json")
        .args(args)
        .output()
        .expect("running reroot");
    let text = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

/// The used byte ranges of an image (`reroot map`), as (start, len).
fn used_ranges(img: &Path) -> Vec<(u64, u64)> {
    let (code, doc) = reroot_json(args!("map", img));
    assert_eq!(code, 0, "{doc:#}");
    doc["used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["start"].as_u64().unwrap(), r["len"].as_u64().unwrap()))
        .collect()
}

/// Three used bytes: in the first chunk (past the superblock and the block
/// group descriptors, which the map itself reads), at the middle of the used
/// bytes, and in the last used 4 KiB.
fn positions(used: &[(u64, u64)]) -> [(&'static str, u64); 3] {
    let total: u64 = used.iter().map(|r| r.1).sum();
    let mut half = total / 2;
    let mut middle = 0;
    for &(start, len) in used {
        if half < len {
            middle = start + half;
            break;
        }
        half -= len;
    }
    let (first, last) = (used[0], used[used.len() - 1]);
    assert!(first.1 > 256 << 10, "first used range {first:?}");
    [
        ("start", first.0 + (192 << 10)),
        ("middle", middle & !4095),
        ("last", last.0 + last.1 - 4096),
    ]
}

/// The JSON error is exit 5 on `dev` at an offset whose 1 MiB chunk holds
/// `bad` (the chunk's start, or the failing byte itself).
fn assert_io_error_at(code: i32, doc: &serde_json::Value, dev: &Path, bad: u64, what: &str) {
    assert_eq!(code, 5, "{what}: {doc:#}");
    let e = &doc["error"];
    assert_eq!(e["kind"], "io", "{what}: {doc:#}");
    assert_eq!(e["device"], dev.display().to_string(), "{what}: {doc:#}");
    let off = e["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: no offset: {doc:#}"));
    assert!(
        off <= bad && bad < off + MIB,
        "{what}: offset {off} does not hold the failing byte {bad}: {doc:#}"
    );
}

/// Read EIO on the source and write EIO on the target, in the first, the
/// middle and the last chunk, for copy, verify and delta: every run exits 5
/// naming the failing device and an offset holding the failing byte.
#[test]
fn eio_at_the_start_middle_and_end_for_copy_verify_and_delta() {
    if !crate::faultdev::available() {
        return;
    }
    require_tool!("debugfs");
    let dir = scratch();
    let (img, _) = ext4_image_with_file(dir.path());
    let used = used_ranges(&img);
    let good = LoopDev::attach(&img, &["--read-only"]);
    let tgt_img = dir.path().join("t.img");
    for (at, bad) in positions(&used) {
        let sector = bad / 512;
        // copy: read fault on the source.
        let src = FaultDev::from_raw(&img, &[Fault::Read(sector)]);
        let t = LoopDev::attach(&sparse_file(&tgt_img, 64 * MIB), &[]);
        let (code, doc) = reroot_json(args!("copy", "--force", src.path(), t.path()));
        assert_io_error_at(code, &doc, src.path(), bad, &format!("copy read {at}"));
        // verify: read fault on the source (the target is a good copy).
        drop(t);
        let (code, doc) = reroot_json(args!("verify", src.path(), &img));
        assert_io_error_at(code, &doc, src.path(), bad, &format!("verify read {at}"));
        // delta: read fault on the source.
        let t = LoopDev::attach(&sparse_file(&tgt_img, 64 * MIB), &[]);
        let (code, doc) = reroot_json(args!("copy", "--delta", "--force", src.path(), t.path()));
        assert_io_error_at(code, &doc, src.path(), bad, &format!("delta read {at}"));
        drop((src, t));
        // copy and delta: write fault on the target.
        for delta in [false, true] {
            let t = FaultDev::blank(64 * MIB, &[Fault::Write(sector)]);
            let mut a: Vec<&std::ffi::OsStr> = vec!["copy".as_ref(), "--force".as_ref()];
            if delta {
                a.push("--delta".as_ref());
            }
            a.extend([good.path().as_os_str(), t.path().as_os_str()]);
            let (code, doc) = reroot_json(&a);
            let what = format!("{} write {at}", if delta { "delta" } else { "copy" });
            assert_io_error_at(code, &doc, t.path(), bad, &what);
            eprintln!(
                "MATRIX | eio {what} | 1 | exit 5 at {}",
                doc["error"]["offset"]
            );
        }
    }
}

/// A copy killed with SIGKILL at a random moment, then `copy --resume`:
/// the target is released at once (an O_EXCL open succeeds within the
/// release grace), and after the resume it is identical (`reroot verify`,
/// `e2fsck -fn`, the tree hash of both mounted read-only). `runs` kills.
fn kill_9_then_resume(runs: u64, seed: u64) {
    let dir = scratch();
    let img = sparse_file(&dir.path().join("src.img"), 384 * MIB);
    mkfs("ext4", &img, &["-b", "4096"]);
    let want = {
        let dev = LoopDev::attach(&img, &[]);
        let m = Mounted::new(dev.path(), &dir.path().join("mnt"), None);
        fill_tree(m.dir(), seed, 160 * MIB);
        tree_hash(m.dir())
    };
    let src = LoopDev::attach(&img, &["--direct-io=on", "--read-only"]);
    let tgt_img = dir.path().join("t.img");
    let copy = |extra: &[&str]| {
        let mut c = reroot();
        c.arg("copy").arg("--force").args(extra).arg(src.path());
        c
    };
    // How long an uninterrupted copy takes: the kills land within it.
    let t = LoopDev::attach(&sparse_file(&tgt_img, 384 * MIB), &["--direct-io=on"]);
    let t0 = Instant::now();
    run_ok(copy(&[]).arg(t.path()).stdout(Stdio::null()));
    let full = t0.elapsed();
    drop(t);
    let mut rng = Rng::new(seed);
    let (mut max_release, mut interrupted) = (Duration::ZERO, 0);
    for run in 0..runs {
        std::fs::remove_file(&tgt_img).unwrap();
        let t = LoopDev::attach(&sparse_file(&tgt_img, 384 * MIB), &["--direct-io=on"]);
        let mut child = copy(&[])
            .arg(t.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = Duration::from_micros(rng.below(u64::try_from(full.as_micros()).unwrap().max(1)));
        std::thread::sleep(at);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            interrupted += 1;
        }
        // Never left claimed: an exclusive open succeeds (within the grace
        // io_uring's workers need to put the registered files).
        let killed = Instant::now();
        loop {
            match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_EXCL)
                .open(t.path())
            {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    assert!(
                        killed.elapsed() < Duration::from_secs(10),
                        "run {run}: {} still claimed 10 s after the kill",
                        t.path().display()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("run {run}: {e}"),
            }
        }
        max_release = max_release.max(killed.elapsed());
        let (code, doc) = reroot_json(args!("copy", "--resume", src.path(), t.path()));
        assert_eq!(code, 0, "run {run} (killed at {at:?}): {doc:#}");
        let (code, doc) = reroot_json(args!("verify", src.path(), t.path()));
        assert_eq!(code, 0, "run {run}: verify: {doc:#}");
        assert!(e2fsck_clean(t.path()), "run {run}: e2fsck -fn");
        let m = Mounted::new(t.path(), &dir.path().join("tmnt"), Some("ro"));
        assert_eq!(tree_hash(m.dir()), want, "run {run}: tree hash");
    }
    eprintln!(
        "MATRIX | kill -9 of copy, then --resume | {runs} | identical {runs}/{runs}, \
         {interrupted} killed mid-copy, target free after <= {max_release:?} (copy takes {full:?})"
    );
}

#[test]
fn kill_9_of_copy_then_resume_is_identical() {
    require_root!();
    kill_9_then_resume(1, 0x5eed);
}

/// The long loop (tools/fault-matrix.sh): 20 kills.
#[test]
#[ignore = "long: tools/fault-matrix.sh runs it"]
fn matrix_kill_9_of_copy_20_times() {
    require_root!();
    let runs = std::env::var("REROOT_MATRIX_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    kill_9_then_resume(runs, 0xfa017);
}
