//! Write tracking and the iterative pre-copy on loop devices: the tracker
//! places a partition's writes, and a pre-copy of a mounted ext4 with a
//! writer running (appends with fsync, rewrites in place, new and deleted
//! small files, O_DIRECT rewrites) ends, after `remount,ro` and the final
//! dirty pass, identical to its source: every used block (dumpe2fs's map,
//! compared byte for byte), `reroot verify`, `e2fsck -fn`, tree hashes.
//! A dropped write (test switch) makes that comparison fail; a lost trace
//! falls back to a full delta pass; a killed tracker's instance is removed.
//!
//! `REROOT_TRACK_RUNS=20` runs the randomised test 20 times (default 3).

// Sizes here are small test constants and random lengths below 2 MiB.
#![allow(clippy::cast_possible_truncation)]

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reroot::exec::event::EventSink;
use reroot::exec::precopy::{Live, PrecopyOptions, PrecopyReport};
use reroot::exec::track::{self, TrackOptions, Tracker};
use reroot::plan::precopy::StopRule;
use reroot::probe::SysRoot;
use reroot::probe::device;

use crate::common::{
    LoopDev, Mounted, Rng, e2fsck_clean, fill_tree, mkfs, reroot, run_ok, scratch, sh, sparse_file,
    tree_hash,
};

const MIB: u64 = 1 << 20;

/// Used byte ranges of an ext filesystem, from dumpe2fs's free lists.
fn used_ranges(dev: &Path) -> Vec<(u64, u64)> {
    let out = run_ok(Command::new("dumpe2fs").arg(dev));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("dumpe2fs printed no {name}"))
    };
    let bs = field("Block size:");
    let count = field("Block count:");
    let mut free: Vec<(u64, u64)> = Vec::new();
    for l in text.lines() {
        if let Some(list) = l.strip_prefix("  Free blocks: ") {
            for r in list.split(", ").filter(|s| !s.trim().is_empty()) {
                let (a, b) = r.trim().split_once('-').unwrap_or((r.trim(), r.trim()));
                free.push((a.parse().unwrap(), b.parse::<u64>().unwrap() + 1));
            }
        }
    }
    free.sort_unstable();
    let mut used = Vec::new();
    let mut pos = 0;
    for (a, b) in free {
        if a > pos {
            used.push((pos * bs, a * bs));
        }
        pos = pos.max(b);
    }
    if pos < count {
        used.push((pos * bs, count * bs));
    }
    used
}

/// The first used range where `a` and `b` differ, byte for byte.
fn first_difference(a: &Path, b: &Path, used: &[(u64, u64)]) -> Option<u64> {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let mut ba = vec![0u8; MIB as usize];
    let mut bb = vec![0u8; MIB as usize];
    for &(s, e) in used {
        let mut off = s;
        while off < e {
            let n = (e - off).min(MIB) as usize;
            fa.read_exact_at(&mut ba[..n], off).unwrap();
            fb.read_exact_at(&mut bb[..n], off).unwrap();
            if ba[..n] != bb[..n] {
                let i = ba[..n]
                    .iter()
                    .zip(&bb[..n])
                    .position(|(x, y)| x != y)
                    .unwrap();
                return Some(off + i as u64);
            }
            off += n as u64;
        }
    }
    None
}

fn reroot_verify_ok(src: &Path, tgt: &Path) -> bool {
    reroot()
        .args(["verify", "--json"])
        .arg(src)
        .arg(tgt)
        .output()
        .unwrap()
        .status
        .success()
}

/// A 4096-aligned 4 KiB window inside a Vec (O_DIRECT without unsafe).
fn aligned(v: &mut Vec<u8>) -> &mut [u8] {
    v.resize(8192, 0);
    let skip = (4096 - (v.as_ptr() as usize) % 4096) % 4096;
    &mut v[skip..skip + 4096]
}

/// Keeps writing under `dir` until stopped: appends with fsync, in-place
/// rewrites with fdatasync, new and deleted small files, O_DIRECT rewrites
/// of a database-like file. Random pauses of up to `max_pause_ms`.
fn writer(dir: PathBuf, seed: u64, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>, max_pause_ms: u64) {
    let mut rng = Rng::new(seed);
    let log_path = dir.join("churn.log");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("rewrite.dat"))
        .unwrap();
    let db = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.join("db.dat"))
        .unwrap();
    let mut small = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut dbuf = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        rng.fill(&mut buf);
        match rng.below(4) {
            0 => {
                let n = 1 + rng.below(16 << 10) as usize;
                std::io::Write::write_all(&mut log, &buf[..n]).unwrap();
                log.sync_all().unwrap();
            }
            1 => {
                let off = rng.below(2 * MIB - 65536);
                let n = 1 + rng.below(65536) as usize;
                rw.write_all_at(&buf[..n], off).unwrap();
                rw.sync_data().unwrap();
            }
            2 => {
                let p = dir.join(format!("small/s{i}"));
                fs::write(&p, &buf[..rng.below(12 << 10) as usize]).unwrap();
                File::open(&p).unwrap().sync_all().unwrap();
                small.push(p);
                if small.len() > 20 {
                    let gone = small.remove(rng.below(small.len() as u64) as usize);
                    fs::remove_file(gone).unwrap();
                }
            }
            _ => {
                let block = rng.below(256);
                let a = aligned(&mut dbuf);
                rng.fill(a);
                db.write_all_at(a, block * 4096).unwrap();
            }
        }
        i += 1;
        ops.fetch_add(1, Ordering::Relaxed);
        if max_pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(rng.below(max_pause_ms + 1)));
        }
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    work: PathBuf,
    src: LoopDev,
    tgt: LoopDev,
    mnt: Option<Mounted>,
}

impl Rig {
    fn new(seed: u64, size: u64, fill: u64) -> Self {
        let dir = scratch();
        let work = dir.path().to_path_buf();
        let src = LoopDev::attach(&sparse_file(&work.join("src.img"), size), &[]);
        let tgt = LoopDev::attach(&sparse_file(&work.join("tgt.img"), size), &[]);
        mkfs("ext4", src.path(), &["-b", "4096"]);
        let m = Mounted::new(src.path(), &work.join("mnt"), None);
        fill_tree(m.dir(), seed, fill);
        fs::create_dir_all(m.dir().join("small")).unwrap();
        let mut rng = Rng::new(seed ^ 0x55);
        let mut data = vec![0u8; 2 * MIB as usize];
        rng.fill(&mut data);
        fs::write(m.dir().join("rewrite.dat"), &data).unwrap();
        fs::write(m.dir().join("db.dat"), &data[..MIB as usize]).unwrap();
        fs::write(m.dir().join("victim.dat"), &data[..65536]).unwrap();
        sh("sync");
        Self {
            _dir: dir,
            work,
            src,
            tgt,
            mnt: Some(m),
        }
    }

    fn mnt(&self) -> &Path {
        self.mnt.as_ref().unwrap().dir()
    }

    fn freeze(&self) {
        run_ok(
            Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(self.mnt()),
        );
    }

    /// Every oracle: used blocks byte for byte, reroot verify, e2fsck, trees.
    fn assert_identical(&self) {
        let used = used_ranges(self.src.path());
        assert_eq!(
            first_difference(self.src.path(), self.tgt.path(), &used),
            None,
            "a used block differs"
        );
        assert!(reroot_verify_ok(self.src.path(), self.tgt.path()));
        assert!(e2fsck_clean(self.tgt.path()), "e2fsck -fn found problems");
        let want = tree_hash(self.mnt());
        let t = Mounted::new(self.tgt.path(), &self.work.join("tmnt"), Some("ro,noload"));
        assert_eq!(tree_hash(t.dir()), want, "tree hashes differ");
    }
}

fn opts(rng: &mut Rng) -> PrecopyOptions {
    let mut o = PrecopyOptions::default();
    o.copy.chunk_size = [64 << 10, 256 << 10, 1 << 20][rng.below(3) as usize];
    o.copy.queue_depth = 8;
    o.settle = Duration::from_millis(rng.below(300));
    o.stop = StopRule {
        max_rounds: 2 + rng.below(4) as u32,
        small_bytes: rng.below(2 * MIB),
        shrink_percent: 90,
    };
    o
}

/// One randomised run; returns the report.
fn churn_run(seed: u64) -> PrecopyReport {
    let mut rng = Rng::new(seed);
    let rig = Rig::new(seed, 96 * MIB, 12 * MIB + rng.below(16 * MIB));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let w = {
        let (d, s, o) = (rig.mnt().to_path_buf(), stop.clone(), ops.clone());
        let pause = rng.below(4);
        std::thread::spawn(move || writer(d, seed, s, o, pause))
    };
    // The writer starts before, runs during and goes on after the pre-copy.
    std::thread::sleep(Duration::from_millis(rng.below(200)));
    let o = opts(&mut rng);
    let live = Live::start(
        rig.src.path(),
        &[rig.tgt.path().to_path_buf()],
        &o,
        &EventSink::none(),
    )
    .expect("live pre-copy");
    std::thread::sleep(Duration::from_millis(rng.below(500)));
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer");
    rig.freeze();
    let r = live.finish(&EventSink::none()).expect("final pass");
    assert!(ops.load(Ordering::Relaxed) > 0, "the writer wrote nothing");
    assert!(
        r.tracking.used,
        "tracking not used: {:?}",
        r.tracking.reason
    );
    assert!(r.tracking.events > 0, "no write seen");
    let fp = r.final_pass.as_ref().unwrap();
    assert_eq!(fp.kind, "dirty");
    assert!(
        fp.bytes < r.used_bytes,
        "the window copied everything: {r:?}"
    );
    rig.assert_identical();
    r
}

#[test]
fn precopy_under_churn_ends_identical() {
    require_root!();
    require_tool!("dumpe2fs");
    require_tool!("e2fsck");
    let runs: u64 = std::env::var("REROOT_TRACK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let base = std::env::var("REROOT_TRACK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    for i in 0..runs {
        let seed = base.wrapping_add(i);
        eprintln!("run {i} seed {seed} (REROOT_TRACK_SEED={seed} REROOT_TRACK_RUNS=1 repeats it)");
        let r = churn_run(seed);
        eprintln!(
            "  rounds {:?}, window {} bytes",
            r.rounds
                .iter()
                .map(|x| (x.bytes, x.dirty_bytes))
                .collect::<Vec<_>>(),
            r.final_pass.as_ref().unwrap().bytes
        );
    }
}

/// The physical byte offset of a file's first block (FIEMAP via filefrag).
fn physical_offset(file: &Path) -> u64 {
    let out = sh(&format!(
        "filefrag -b4096 -v {} | awk '$1==\"0:\"{{print $4}}'",
        file.display()
    ));
    let blk: u64 = out
        .trim()
        .trim_end_matches("..")
        .trim_end_matches(':')
        .split("..")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("filefrag said {out:?}"));
    blk * 4096
}

fn rewrite_in_place_direct(file: &Path, seed: u64) {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(file)
        .unwrap();
    let mut v = Vec::new();
    let a = aligned(&mut v);
    Rng::new(seed).fill(a);
    f.write_all_at(a, 0).unwrap();
}

#[test]
fn a_dropped_tracked_write_is_caught() {
    require_root!();
    require_tool!("filefrag");
    require_tool!("dumpe2fs");
    let rig = Rig::new(11, 64 * MIB, 8 * MIB);
    let victim = rig.mnt().join("victim.dat");
    let at = physical_offset(&victim);
    let mut o = PrecopyOptions::default();
    o.copy.queue_depth = 8;
    o.settle = Duration::from_millis(50);
    o.tracker.drop_at = Some(at);
    o.verify_full = true;
    let live = Live::start(
        rig.src.path(),
        &[rig.tgt.path().to_path_buf()],
        &o,
        &EventSink::none(),
    )
    .expect("live pre-copy");
    rewrite_in_place_direct(&victim, 99);
    assert_eq!(physical_offset(&victim), at, "the rewrite moved the block");
    rig.freeze();
    let e = live
        .finish(&EventSink::none())
        .expect_err("--verify-full must see the dropped write");
    assert!(e.to_string().contains("not tracked"), "{e}");
    // The independent oracles agree.
    let used = used_ranges(rig.src.path());
    let diff = first_difference(rig.src.path(), rig.tgt.path(), &used);
    assert_eq!(diff.map(|d| d / 4096), Some(at / 4096));
    assert!(!reroot_verify_ok(rig.src.path(), rig.tgt.path()));

    // The same run without the switch ends identical: the control works.
    let rig = Rig::new(12, 64 * MIB, 8 * MIB);
    let victim = rig.mnt().join("victim.dat");
    o.tracker.drop_at = None;
    let live = Live::start(
        rig.src.path(),
        &[rig.tgt.path().to_path_buf()],
        &o,
        &EventSink::none(),
    )
    .expect("live pre-copy");
    rewrite_in_place_direct(&victim, 99);
    rig.freeze();
    let r = live.finish(&EventSink::none()).expect("final pass");
    assert!(r.final_pass.unwrap().full_verify_bytes.is_some());
    rig.assert_identical();
}

#[test]
fn lost_events_fall_back_to_a_full_delta_pass() {
    require_root!();
    require_tool!("dumpe2fs");
    let rig = Rig::new(21, 64 * MIB, 8 * MIB);
    let mut o = PrecopyOptions::default();
    o.copy.queue_depth = 8;
    o.settle = Duration::from_millis(50);
    o.tracker.buffer_kb = 4;
    let pause = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    o.tracker.pause_reader = Some(pause.clone());
    let live = Live::start(
        rig.src.path(),
        &[rig.tgt.path().to_path_buf()],
        &o,
        &EventSink::none(),
    )
    .expect("live pre-copy");
    // A burst of small O_DIRECT writes, far more than a 4 KiB buffer holds,
    // while the reader is held: on an idle machine it would keep up.
    pause.store(true, std::sync::atomic::Ordering::Release);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(rig.mnt().join("burst.dat"))
        .unwrap();
    let mut v = Vec::new();
    let a = aligned(&mut v);
    for i in 0..4000u64 {
        a[0] = i as u8;
        f.write_all_at(a, (i % 1024) * 4096).unwrap();
    }
    drop(f);
    pause.store(false, std::sync::atomic::Ordering::Release);
    rig.freeze();
    let r = live.finish(&EventSink::none()).expect("final pass");
    assert!(!r.tracking.used);
    let why = r.tracking.reason.clone().unwrap_or_default();
    assert!(why.contains("lost"), "{why}");
    assert_eq!(r.final_pass.as_ref().unwrap().kind, "delta");
    assert!(r.warnings.iter().any(|w| w.contains("full delta pass")));
    rig.assert_identical();
}

/// Writes to a partition are reported on its disk after the remap: the
/// tracker places them in the partition and ignores its neighbour's.
#[test]
fn a_partitions_writes_are_placed() {
    require_root!();
    require_tool!("partx");
    let dir = scratch();
    let img = sparse_file(&dir.path().join("disk.img"), 64 * MIB);
    // An MBR with two Linux partitions of 40960 sectors, at 2048 and 43008.
    let mut mbr = [0u8; 512];
    for (i, start) in [2048u32, 43008].into_iter().enumerate() {
        let e = &mut mbr[446 + 16 * i..462 + 16 * i];
        e[4] = 0x83;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&40960u32.to_le_bytes());
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(&mbr, 0)
        .unwrap();
    let disk = LoopDev::attach(&img, &["--partscan"]);
    let p1 = PathBuf::from(format!("{}p1", disk.path().display()));
    let p2 = PathBuf::from(format!("{}p2", disk.path().display()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(p1.exists() && p2.exists()) {
        // No udev in a container: ask the kernel for the partitions again.
        let _ = Command::new("partx").arg("-a").arg(disk.path()).output();
        assert!(
            Instant::now() < deadline,
            "no partition nodes for {}",
            disk.path().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let facts = device::inspect(&p1, &SysRoot::live()).unwrap();
    let t = Tracker::start(&facts, &TrackOptions::default()).expect("tracking");
    let put = |dev: &Path, off: u64| {
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(dev)
            .unwrap();
        let mut v = Vec::new();
        f.write_all_at(aligned(&mut v), off).unwrap();
    };
    put(&p1, 80 * 512);
    put(&p2, 80 * 512);
    put(&p1, 40960 * 512 - 4096);
    let mut buf = vec![0u8; 4096];
    File::open(&p1).unwrap().read_exact_at(&mut buf, 0).unwrap();
    let (dirty, events) = t.finish().expect("no loss");
    assert_eq!(events, 2);
    let got: Vec<(u64, u64)> = dirty.iter().map(|e| (e.start(), e.end())).collect();
    assert_eq!(
        got,
        vec![
            (80 * 512, 80 * 512 + 4096),
            (40960 * 512 - 4096, 40960 * 512)
        ]
    );
    let _ = Command::new("partx").arg("-d").arg(disk.path()).output();
}

/// Not a test on its own: holds a tracker on `REROOT_TRACK_HOLD` until
/// killed (run by `a_killed_trackers_instance_is_removed`).
#[test]
#[ignore]
fn hold_a_tracker() {
    let Some(dev) = std::env::var_os("REROOT_TRACK_HOLD") else {
        return;
    };
    let facts = device::inspect(Path::new(&dev), &SysRoot::live()).unwrap();
    let t = Tracker::start(&facts, &TrackOptions::default()).expect("tracking");
    println!("INSTANCE {}", t.instance().display());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_trackers_instance_is_removed() {
    require_root!();
    let dir = scratch();
    let dev = LoopDev::attach(&sparse_file(&dir.path().join("d.img"), 16 * MIB), &[]);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "track::hold_a_tracker",
            "--ignored",
            "--nocapture",
        ])
        .env("REROOT_TRACK_HOLD", dev.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(out);
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "the holder exited before starting its tracker");
        if line.starts_with("INSTANCE ") {
            break;
        }
    }
    let inst = PathBuf::from(line.trim().strip_prefix("INSTANCE ").unwrap());
    assert!(inst.is_dir());
    // While the holder lives its instance stays.
    assert!(
        !track::remove_stale(&SysRoot::live())
            .iter()
            .any(|n| inst.ends_with(n))
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(inst.is_dir(), "a killed process cannot remove its instance");
    let removed = track::remove_stale(&SysRoot::live());
    assert!(removed.iter().any(|n| inst.ends_with(n)), "{removed:?}");
    assert!(!inst.exists());
}
