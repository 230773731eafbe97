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

    /// True (after [`crate::common::skip`]) when the sandbox cannot run here.
    pub fn skip() -> bool {
        if let Err(e) = reroot::exec::demo::requirements() {
            crate::common::skip(&e.to_string());
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
            churn_bytes_per_s: 0,
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
use crate::faultdev::{Fault, FaultDev, ext4_image_with_file};

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

/// The used byte ranges of an image whose content a copy reads (`reroot
/// map`: the used ranges less the inode-table tails, which are zeroed or
/// skipped, not read), as (start, len).
fn used_ranges(img: &Path) -> Vec<(u64, u64)> {
    let (code, doc) = reroot_json(args!("map", img));
    assert_eq!(code, 0, "{doc:#}");
    let ranges = |v: &serde_json::Value| -> Vec<(u64, u64)> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|r| (r["start"].as_u64().unwrap(), r["len"].as_u64().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut holes = ranges(&doc["itable_tails"]["zeroed"]);
    holes.extend(ranges(&doc["itable_tails"]["lazy"]));
    holes.sort_unstable();
    let mut out = Vec::new();
    for (start, len) in ranges(&doc["used"]) {
        let (mut at, end) = (start, start + len);
        for &(h, hl) in &holes {
            let (hs, he) = (h.max(at), (h + hl).min(end));
            if hs < he {
                if at < hs {
                    out.push((at, hs - at));
                }
                at = he;
            }
        }
        if at < end {
            out.push((at, end - at));
        }
    }
    out
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
    // In the first range, past what the map reads: 192 KiB in, or, where
    // the inode table's unused tail ends the range sooner (it is zeroed,
    // not read), its last block: the used head of the inode table, which
    // follows the superblock, the descriptors and the bitmaps.
    let start = if first.1 > 256 << 10 {
        first.0 + (192 << 10)
    } else {
        first.0 + first.1 - 4096
    };
    assert!(start >= 64 << 10, "first used range {first:?}");
    [
        ("start", start),
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

/// A table row for tools/fault-matrix.sh.
fn row(what: &str, doc: &serde_json::Value) {
    eprintln!(
        "MATRIX | EIO: {what} | 1 | exit 5 naming {} at byte {}",
        doc["error"]["device"], doc["error"]["offset"]
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
        row(&format!("copy read {at}"), &doc);
        // verify: read fault on the source (the target is a good copy).
        drop(t);
        let (code, doc) = reroot_json(args!("verify", src.path(), &img));
        assert_io_error_at(code, &doc, src.path(), bad, &format!("verify read {at}"));
        row(&format!("verify read {at}"), &doc);
        // delta: read fault on the source.
        let t = LoopDev::attach(&sparse_file(&tgt_img, 64 * MIB), &[]);
        let (code, doc) = reroot_json(args!("copy", "--delta", "--force", src.path(), t.path()));
        assert_io_error_at(code, &doc, src.path(), bad, &format!("delta read {at}"));
        row(&format!("delta read {at}"), &doc);
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
            row(&what, &doc);
        }
    }
}

/// A source for the long cases: ext4 on 384 MiB with a 160 MiB tree,
/// attached read-only with direct I/O, and how long a full copy takes.
struct BigSource {
    dev: LoopDev,
    img: PathBuf,
    want: String,
    full: Duration,
    dir: tempfile::TempDir,
}

impl BigSource {
    fn new(seed: u64) -> Self {
        let dir = scratch();
        let img = sparse_file(&dir.path().join("src.img"), 384 * MIB);
        mkfs("ext4", &img, &["-b", "4096"]);
        let want = {
            let dev = LoopDev::attach(&img, &[]);
            let m = Mounted::new(dev.path(), &dir.path().join("mnt"), None);
            fill_tree(m.dir(), seed, 160 * MIB);
            tree_hash(m.dir())
        };
        assert!(e2fsck_clean(&img), "the source image is clean");
        let dev = LoopDev::attach(&img, &["--direct-io=on", "--read-only"]);
        let mut s = Self {
            dev,
            img,
            want,
            full: Duration::ZERO,
            dir,
        };
        let t = s.target();
        let t0 = Instant::now();
        run_ok(s.copy().arg(t.path()).stdout(Stdio::null()));
        s.full = t0.elapsed();
        s
    }

    /// A fresh blank target of the same size.
    fn target(&self) -> LoopDev {
        let f = self.dir.path().join("t.img");
        let _ = std::fs::remove_file(&f);
        LoopDev::attach(&sparse_file(&f, 384 * MIB), &["--direct-io=on"])
    }

    /// `reroot copy --force SRC` (add the target).
    fn copy(&self) -> Command {
        let mut c = reroot();
        c.arg("copy").arg("--force").arg(self.dev.path());
        c
    }

    /// Start a copy onto `t` and SIGKILL it after `at`; true when it was
    /// killed (not already done).
    fn kill_copy_after(&self, t: &Path, at: Duration) -> bool {
        let mut child = self
            .copy()
            .arg(t)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = child.kill();
        child.wait().unwrap().code().is_none()
    }

    /// `t` is identical: `reroot verify`, `e2fsck -fn`, the tree hash.
    fn assert_identical(&self, t: &Path, what: &str) {
        let (code, doc) = reroot_json(args!("verify", self.dev.path(), t));
        assert_eq!(code, 0, "{what}: verify: {doc:#}");
        assert!(e2fsck_clean(t), "{what}: e2fsck -fn");
        let m = Mounted::new(t, &self.dir.path().join("tmnt"), Some("ro"));
        assert_eq!(tree_hash(m.dir()), self.want, "{what}: tree hash");
    }
}

/// Wait until `dev` can be opened O_EXCL (not claimed); panics after 10 s.
/// Returns how long it took.
fn wait_unclaimed(dev: &Path, what: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(dev)
        {
            Ok(_) => return t0.elapsed(),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "{what}: {} still claimed 10 s after the kill",
                    dev.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// A copy killed with SIGKILL at a random moment, then `copy --resume`:
/// the target is released at once (an O_EXCL open succeeds), and after the
/// resume it is identical (`reroot verify`, `e2fsck -fn`, the tree hash).
/// With `must_interrupt`, a kill that came after the copy's end is tried
/// again earlier (the CI case must hit a running copy).
fn kill_9_then_resume(runs: u64, seed: u64, must_interrupt: bool) {
    let src = BigSource::new(seed);
    let mut rng = Rng::new(seed);
    let (mut max_release, mut interrupted) = (Duration::ZERO, 0);
    let full_us = u64::try_from(src.full.as_micros()).unwrap().max(1);
    for run in 0..runs {
        let mut t = src.target();
        let mut at = Duration::from_micros(rng.below(full_us));
        loop {
            if src.kill_copy_after(t.path(), at) {
                interrupted += 1;
                break;
            }
            if !must_interrupt || at < Duration::from_millis(1) {
                break;
            }
            at /= 2;
            drop(t);
            t = src.target();
        }
        max_release = max_release.max(wait_unclaimed(t.path(), &format!("run {run}")));
        let (code, doc) = reroot_json(args!("copy", "--resume", src.dev.path(), t.path()));
        assert_eq!(code, 0, "run {run} (killed at {at:?}): {doc:#}");
        src.assert_identical(t.path(), &format!("run {run} (killed at {at:?})"));
    }
    eprintln!(
        "MATRIX | kill -9 of copy at a random moment, then --resume | {runs} | identical \
         {runs}/{runs} ({interrupted} killed mid-copy); target free {max_release:?} after the \
         kill at most; a full copy takes {:?}",
        src.full
    );
}

/// A power cut on the target: a copy killed halfway (nothing flushed yet:
/// copy flushes at the end), then some of its writes lost: random 1 MiB
/// chunks of the target, and always the first (superblock), zeroed. `reroot
/// verify` finds the differences, and `copy --resume` (a delta pass, which
/// trusts nothing it does not read back) repairs them all.
fn power_cut_then_resume(runs: u64, seed: u64) {
    let src = BigSource::new(seed);
    let mut rng = Rng::new(seed ^ 0xc07);
    let used = used_ranges(&src.img);
    let mut lost_total = 0u64;
    for run in 0..runs {
        let mut at = src.full / 4
            + Duration::from_micros(
                rng.below(u64::try_from((src.full / 2).as_micros()).unwrap().max(1)),
            );
        // Copies get faster once the source is cached: cut earlier until
        // the cut lands before the copy's end (and its flush).
        let mut t = src.target();
        while !src.kill_copy_after(t.path(), at) {
            assert!(at > Duration::from_millis(1), "run {run}: never cut");
            at /= 2;
            drop(t);
            t = src.target();
        }
        wait_unclaimed(t.path(), &format!("run {run}"));
        // Lose writes: zero chunk 0 and about a third of the used chunks.
        let f = OpenOptions::new().write(true).open(t.path()).unwrap();
        let zero = vec![0u8; usize::try_from(MIB).unwrap()];
        let mut lost = 0u64;
        for &(start, len) in &used {
            let (first, last) = (start / MIB, (start + len - 1) / MIB);
            for c in first..=last {
                if c == 0 || rng.below(3) == 0 {
                    std::os::unix::fs::FileExt::write_all_at(&f, &zero, c * MIB).unwrap();
                    lost += 1;
                }
            }
        }
        f.sync_all().unwrap();
        drop(f);
        lost_total += lost;
        let (code, doc) = reroot_json(args!("verify", src.dev.path(), t.path()));
        assert_ne!(
            code, 0,
            "run {run}: verify called a cut copy equal: {doc:#}"
        );
        assert!(
            doc["mismatch_count"].as_u64().unwrap_or(0) > 0,
            "run {run}: {doc:#}"
        );
        let (code, doc) = reroot_json(args!("copy", "--resume", src.dev.path(), t.path()));
        assert_eq!(code, 0, "run {run}: {doc:#}");
        assert!(
            doc["bytes_written"].as_u64().unwrap() >= MIB,
            "run {run}: the resume rewrote nothing: {doc:#}"
        );
        src.assert_identical(t.path(), &format!("run {run} (cut at {at:?})"));
    }
    eprintln!(
        "MATRIX | power cut on the target (copy killed halfway, random chunks' writes lost), \
         then --resume | {runs} | found different by verify {runs}/{runs}, repaired and \
         identical {runs}/{runs} ({lost_total} chunks lost in all)"
    );
}

#[test]
fn a_power_cut_on_the_target_is_found_and_repaired() {
    require_root!();
    power_cut_then_resume(1, 0xc0de);
}

#[test]
#[ignore = "long: tools/fault-matrix.sh runs it"]
fn matrix_power_cut_10_times() {
    require_root!();
    power_cut_then_resume(runs_from_env(10), 0xbad);
}

fn runs_from_env(default: u64) -> u64 {
    std::env::var("REROOT_MATRIX_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn kill_9_of_copy_then_resume_is_identical() {
    require_root!();
    kill_9_then_resume(1, 0x5eed, true);
}

/// The long loop (tools/fault-matrix.sh): 20 kills.
#[test]
#[ignore = "long: tools/fault-matrix.sh runs it"]
fn matrix_kill_9_of_copy_20_times() {
    require_root!();
    kill_9_then_resume(runs_from_env(20), 0xfa017, false);
}

/// ENOSPC: an image-file target on a filesystem too small for the copy
/// (a sparse 64 MiB file on a 16 MiB tmpfs). The copy fails with exit 5,
/// naming the file, an offset and the cause, and leaves nothing mounted.
#[test]
fn enospc_on_a_file_target_that_cannot_grow() {
    require_root!();
    require_tool!("debugfs");
    let dir = scratch();
    let (img, _) = ext4_image_with_file(dir.path());
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "reroot-enospc"])
            .arg(&small),
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(small.clone());
    let t = sparse_file(&small.join("t.img"), 64 * MIB);
    for engine in ["uring", "sync"] {
        let (code, doc) = reroot_json(args!("copy", "--force", "--engine", engine, &img, &t));
        assert_eq!(code, 5, "{engine}: {doc:#}");
        let e = &doc["error"];
        assert_eq!(e["device"], t.display().to_string(), "{engine}: {doc:#}");
        assert!(e["offset"].as_u64().is_some(), "{engine}: {doc:#}");
        assert!(
            e["message"].to_string().contains("No space left on device"),
            "{engine}: {doc:#}"
        );
        eprintln!(
            "MATRIX | ENOSPC on a file target ({engine}) | 1 | exit 5 at {}: {}",
            e["offset"], e["message"]
        );
    }
}

/// The target disappears in the middle: the FUSE export under the target's
/// loop device is killed (SIGKILL to qemu-storage-daemon) once 4 MiB of the
/// copy reached its image. The copy ends with exit 5 naming the target and
/// an offset, and does not hang. (A loop device cannot vanish under an
/// open: `losetup -d` of a busy one only marks it to detach on last close.)
#[test]
fn a_target_that_disappears_in_the_middle() {
    if !crate::faultdev::available() {
        return;
    }
    require_tool!("debugfs");
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = scratch();
    let (img, _) = ext4_image_with_file(dir.path());
    for engine in ["uring", "sync"] {
        let t = FaultDev::blank(64 * MIB, &[]);
        let pid = Pid::from_raw(i32::try_from(t.daemon_pid()).unwrap());
        let qcow_len = || std::fs::metadata(t.image()).map_or(0, |m| m.len());
        let empty = qcow_len();
        let child = reroot()
            .args(["--json", "copy", "--force", "--engine", engine])
            .arg(&img)
            .arg(t.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Once data reaches the image (4 MiB of it), the export dies.
        let t0 = Instant::now();
        while qcow_len() < empty + 4 * MIB {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{engine}: no data arrives"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        kill(pid, Signal::SIGKILL).unwrap();
        let t0 = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{engine}: the copy hangs after its target vanished"))
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{engine}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(out.status.code(), Some(5), "{engine}: {doc:#}");
        assert_eq!(
            doc["error"]["device"],
            t.path().display().to_string(),
            "{engine}: {doc:#}"
        );
        assert!(
            doc["error"]["offset"].as_u64().is_some(),
            "{engine}: {doc:#}"
        );
        eprintln!(
            "MATRIX | target gone mid-copy (FUSE export killed, {engine}) | 1 | exit 5 after {:?}, at {}: {}",
            t0.elapsed(),
            doc["error"]["offset"],
            doc["error"]["message"]
        );
    }
}

// ---------------------------------------------------------------------
// migrate in the sandbox under faults.
// ---------------------------------------------------------------------

/// The scenario of one migrate fault: start the migration (detached for a
/// kill, attached in a process group of its own for a hang-up), wait until
/// `$MATRIX_STAGE` runs, then kill -9 the worker and `--resume`, or send
/// SIGHUP to the attached client's process group and follow the worker to
/// its end. With `$MATRIX_MODE` = crash, the hidden `--inject-crash` ends
/// the worker at the end of the stage's work instead (for stages too short
/// to be seen running).
const MIGRATE_FAULT_SCENARIO: &str = r#"
sec before; facts
T=${FAULT_TARGET:-$REROOT_DEMO_NEW}
J=/run/reroot/migrate.journal
sec start
case "$MATRIX_MODE" in
kill) reroot migrate "$REROOT_DEMO_OLD" "$T" --grow --new-uuid --detach --yes --json >/dev/null 2>/run/demo/start.err ;;
crash) reroot migrate "$REROOT_DEMO_OLD" "$T" --grow --new-uuid --yes --json --inject-crash "$MATRIX_STAGE" \
        >/dev/null 2>/run/demo/start.err ;;
hup) setsid reroot migrate "$REROOT_DEMO_OLD" "$T" --grow --new-uuid --yes --json >/run/demo/client.json 2>/run/demo/client.err &
     client=$! ;;
eio) reroot migrate "$REROOT_DEMO_OLD" "$T" --grow --new-uuid --yes --json >/run/demo/final.json 2>/run/demo/final.err
     echo "rc $?" ;;
esac
echo "started $?"
hit=no; i=0
if [ "$MATRIX_MODE" = kill ] || [ "$MATRIX_MODE" = hup ]; then
    # The journal's stage-start record: the stage runs from here.
    while [ $i -lt 100000 ]; do
        if grep -q "\"type\":\"stage-start\",\"stage\":\"$MATRIX_STAGE\"" $J 2>/dev/null; then
            hit=yes; break
        fi
        if grep -q '"type":"finished"' $J 2>/dev/null; then break; fi
        i=$((i + 1))
    done
    if [ $hit = yes ]; then
        case "$MATRIX_MODE" in
        kill) pid=$(cat /run/reroot/migrate.pid 2>/dev/null); kill -9 "$pid"; echo "killed $pid"
              j=0; while kill -0 "$pid" 2>/dev/null && [ $j -lt 100 ]; do usleep 50000; j=$((j + 1)); done ;;
        hup) kill -HUP -- "-$client"; echo "hup -$client" ;;
        esac
        # Landed after the stage had ended?
        if grep -qE "\"type\":\"stage-(done|failed)\",\"stage\":\"$MATRIX_STAGE\"" $J; then hit=late; fi
    fi
fi
echo "hit $hit after $i polls"
sec finish
if [ "$MATRIX_MODE" = crash ] || { [ "$MATRIX_MODE" = kill ] && [ $hit != no ]; }; then
    reroot migrate --resume --json >/run/demo/final.json 2>/run/demo/final.err; echo "rc $?"
elif [ "$MATRIX_MODE" != eio ]; then
    reroot status --follow --json >/run/demo/final.json 2>/run/demo/final.err; echo "rc $?"
fi
sec client_err; tail -3 /run/demo/client.err 2>/dev/null
sec final; cat /run/demo/final.json
sec final_err; tail -20 /run/demo/final.err
sec after; facts
sec end
done_rc 0
"#;

/// What one migrate fault came to.
struct MigrateFault {
    /// The fault-injecting target and its failing byte, if any.
    target: Option<(String, u64)>,
    /// The fault landed while the stage was running.
    hit: bool,
    /// It landed just after the stage ended (the stage was too short).
    late: bool,
    /// The final report.
    report: serde_json::Value,
    /// The attached command's (or the resume's) exit code.
    rc: i32,
    /// Where `/` is afterwards: `"new"`, `"old"` or the devno.
    root: String,
    /// `/` writable, data tree unchanged, every unit active.
    healthy: bool,
}

/// A fault-injecting target for the sandbox, made from the used ranges of
/// its old root: the device and the failing byte.
type MakeTarget<'a> = &'a dyn Fn(&Path, &[(u64, u64)]) -> (FaultDev, u64);

fn migrate_fault(mode: &str, stage: &str, make_target: Option<MakeTarget>) -> MigrateFault {
    use reroot::exec::demo::Facts;
    let rig = sandbox::rig(MIGRATE_FAULT_SCENARIO);
    let mut env = vec![
        ("MATRIX_MODE", mode.to_owned()),
        ("MATRIX_STAGE", stage.to_owned()),
    ];
    let mut devices = Vec::new();
    let target = make_target.map(|f| f(rig.old.path(), &used_ranges(rig.old.path())));
    if let Some((t, _)) = &target {
        env.push(("FAULT_TARGET", t.path().display().to_string()));
        devices.push(t.path().to_path_buf());
    }
    let run = rig
        .boot_with_devices(
            &devices,
            &env,
            Duration::from_secs(400),
            &mut |_| {},
            &mut || None,
        )
        .expect("booting the sandbox");
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let hit = sandbox::section(&run, "start").contains("hit yes");
    let late = sandbox::section(&run, "start").contains("hit late");
    let rc_section = if mode == "eio" { "start" } else { "finish" };
    let rc = sandbox::rc(&run, rc_section);
    let report = sandbox::json(&run, "final");
    let before = Facts::parse(sandbox::section(&run, "before"));
    let after = Facts::parse(sandbox::section(&run, "after"));
    let root = match after.root_dev() {
        Some(d) if d == rig.new.devno() => "new".to_owned(),
        Some(d) if d == rig.old.devno() => "old".to_owned(),
        d => format!("{d:?}"),
    };
    let healthy =
        after.root_writable && after.tree == before.tree && after.units.iter().all(|(_, a)| *a);
    if !healthy || std::env::var_os("REROOT_TEST_SHOW").is_some() {
        eprintln!(
            "{mode} {stage}: {}\n--- final_err ---\n{}",
            run.stdout,
            run.section("final_err").unwrap_or_default()
        );
    }
    let cleanup = rig.cleanup();
    assert!(cleanup.left_behind.is_empty(), "{cleanup:?}");
    MigrateFault {
        target: target.map(|(t, bad)| (t.path().display().to_string(), bad)),
        hit,
        late,
        report,
        rc,
        root,
        healthy,
    }
}

/// Completed (on the new root) or rolled back (on the old one), healthy
/// either way: the row for the table, or Err with it and the report.
fn completed_or_rolled_back(what: &str, f: &MigrateFault) -> Result<String, String> {
    let outcome = f.report["outcome"].as_str().unwrap_or("none").to_owned();
    let ok = match outcome.as_str() {
        "done" => f.rc == 0 && f.root == "new",
        "rolled-back" => f.root == "old" && f.report["system_restored"] == true,
        _ => false,
    };
    let row = format!(
        "{what} ({}) | 1 | {outcome}, exit {}, / on the {} device, healthy: {}",
        if f.hit {
            "mid-stage"
        } else if f.late {
            "just after the stage ended"
        } else {
            "at the stage's end, --inject-crash"
        },
        f.rc,
        f.root,
        f.healthy
    );
    if ok && f.healthy {
        Ok(row)
    } else {
        Err(format!("{row} FAILED: {:#}", f.report))
    }
}

/// Print every row (failures too, for the table), then fail if any did.
fn all_rows(rows: Vec<Result<String, String>>) {
    let mut failed = Vec::new();
    for r in rows {
        match r {
            Ok(row) => eprintln!("MATRIX | {row}"),
            Err(e) => {
                eprintln!("MATRIX | {}", e.lines().next().unwrap_or_default());
                failed.push(e);
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The byte offset of the last backup superblock of the ext4 on `dev`
/// (`reroot map`'s geometry; groups 1, 3^k, 5^k, 7^k with sparse_super).
fn last_backup_superblock(dev: &Path) -> u64 {
    let (code, doc) = reroot_json(args!("map", dev));
    assert_eq!(code, 0, "{doc:#}");
    let g = &doc["geometry"];
    let field = |k: &str| g[k].as_u64().unwrap_or_else(|| panic!("{k}: {g:#}"));
    let (bs, bpg, groups, first) = (
        field("block_size"),
        field("blocks_per_group"),
        field("groups_count"),
        field("first_data_block"),
    );
    let mut last = 1;
    for base in [3u64, 5, 7] {
        let mut p = base;
        while p < groups {
            last = last.max(p);
            p *= base;
        }
    }
    assert!(last < groups, "{groups} groups: no backup superblock");
    (first + last * bpg) * bs
}

/// A target that fails a write at `pick` of the used data: the migration
/// fails in the pre-copy with exit 5 naming the target and the offset, and
/// rolls back (the system as it was). Returns the table row.
///
/// "last" is the last backup superblock (sparse_super: groups 1 and powers
/// of 3, 5, 7), not the last used byte: the sandbox's boot frees data blocks
/// (deleted files), so a used byte of the image before the boot may be free,
/// and not copied, by the time of the migration; metadata stays put.
fn migrate_eio(pick: usize) -> String {
    let make = |dev: &Path, used: &[(u64, u64)]| {
        let bad = if pick == 2 {
            last_backup_superblock(dev)
        } else {
            positions(used)[pick].1
        };
        (FaultDev::blank(320 * MIB, &[Fault::Write(bad / 512)]), bad)
    };
    let f = migrate_fault("eio", "precopy", Some(&make));
    let r = &f.report;
    let (dev, bad) = f.target.clone().unwrap();
    assert_eq!(f.rc, 5, "{r:#}");
    assert_eq!(r["outcome"], "rolled-back", "{r:#}");
    assert_eq!(r["failed"]["stage"], "precopy", "{r:#}");
    let e = &r["failed"]["error"];
    assert!(
        e.to_string().contains(&dev),
        "the error names the target: {e:#}"
    );
    let hint = e["hint"].as_str().unwrap_or_default();
    assert!(
        !hint.contains("--delta") && hint.contains("rolls back"),
        "a migration's hint is about the migration: {e:#}"
    );
    // The journal keeps the error as kind, message and hint: the offset is
    // in the message, "(at byte offset N)".
    let off: u64 = e["message"]
        .as_str()
        .and_then(|m| m.split("(at byte offset ").nth(1))
        .and_then(|t| t.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in the message: {e:#}"));
    assert!(
        off <= bad && bad < off + MIB,
        "offset {off} vs {bad}: {e:#}"
    );
    assert_eq!(f.root, "old");
    assert!(f.healthy);
    format!(
        "EIO: migrate, target write {} (byte {bad}) | 1 | exit 5 at {off}, rolled back, / on the old device, healthy",
        ["start", "middle", "last backup superblock"][pick]
    )
}

#[test]
fn migrate_with_eio_on_the_target_rolls_back() {
    require_root!();
    if sandbox::skip() || !crate::faultdev::available() {
        return;
    }
    eprintln!("MATRIX | {}", migrate_eio(1));
}

/// The same at the first and the last chunk.
#[test]
#[ignore = "long: tools/fault-matrix.sh runs it"]
fn matrix_migrate_eio_at_the_start_and_end() {
    require_root!();
    if sandbox::skip() || !crate::faultdev::available() {
        return;
    }
    for pick in [0, 2] {
        eprintln!("MATRIX | {}", migrate_eio(pick));
    }
}

const STAGES: [&str; 10] = [
    "check", "precopy", "quiesce", "copy", "verify", "grow", "identity", "pivot", "restart",
    "finish",
];

/// kill -9 of the migrate worker in every stage, then `--resume`: the
/// migration completes or rolls back, every time.
#[test]
#[ignore = "long: tools/fault-matrix.sh runs it"]
fn matrix_migrate_kill_9_in_every_stage() {
    require_root!();
    if sandbox::skip() {
        return;
    }
    let rows = STAGES
        .iter()
        .map(|st| {
            let mut f = migrate_fault("kill", st, None);
            if !f.hit && !f.late {
                f = migrate_fault("crash", st, None);
            }
            completed_or_rolled_back(&format!("kill -9 of the worker in {st}"), &f)
        })
        .collect();
    all_rows(rows);
}

/// SIGHUP to the attached client's process group in every stage: the
/// worker goes on to the end.
#[test]
#[ignore = "long: tools/fault-matrix.sh runs it"]
fn matrix_sighup_in_every_stage() {
    require_root!();
    if sandbox::skip() {
        return;
    }
    let rows = STAGES
        .iter()
        .map(|st| {
            let f = migrate_fault("hup", st, None);
            let what = format!("SIGHUP to the client in {st}");
            match completed_or_rolled_back(&what, &f) {
                Ok(row) if f.report["outcome"] != "done" => Err(format!("{row} FAILED: not done")),
                r => r,
            }
        })
        .collect();
    all_rows(rows);
}
