//! `reroot bench` on files and on loop devices with tiny sizes: the table
//! and the JSON list every strategy with numbers, copy rows write exactly
//! the source's bytes and nothing past the byte bound, results are saved and
//! `reroot copy --tune` uses them; a DST without `--yes`, a mounted DST and
//! a signed DST without `--force` are refused (exit 3) and left untouched.
//! Timings here are never asserted, only that they exist.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common::{LoopDev, Mounted, Rng, mkfs, reroot, run_ok, scratch};

const MIB: usize = 1 << 20;

fn random_file(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; size];
    Rng::new(seed).fill(&mut data);
    std::fs::write(path, &data).expect("writing an image");
    data
}

/// The queue depth of the rows that follow `reroot copy`'s defaults (the
/// pipeline and hashing rows); the sweeps use their own fixed axes.
fn copy_qd() -> usize {
    reroot::exec::copy::DEFAULT_QUEUE_DEPTH
}

/// The ids of the quick matrix, reads then copies (`files`: with copy_file_range).
fn quick_ids(copy: bool, files: bool) -> Vec<String> {
    let mut ids = Vec::new();
    let pqd = copy_qd();
    let ops: &[&str] = if copy { &["read", "copy"] } else { &["read"] };
    for op in ops {
        ids.push(format!("{op}/buffered/1M"));
        ids.push(format!("{op}/direct/1M"));
        ids.push(format!("{op}/threads/x4/1M"));
        for qd in [1, 4, 16, 64] {
            ids.push(format!("{op}/uring/qd{qd}/1M"));
        }
        for c in ["128K", "256K", "512K", "2M", "4M", "8M"] {
            ids.push(format!("{op}/uring/qd16/{c}"));
        }
        if *op == "read" {
            ids.push(format!("read/uring-xxh3/qd{pqd}/1M"));
        } else {
            if files {
                ids.push("copy/copy-file-range/1M".into());
            }
            ids.push("copy/splice/1M".into());
            ids.push(format!("copy/pipeline/qd{pqd}/1M"));
            ids.push(format!("copy/pipeline-hash/qd{pqd}/1M"));
        }
    }
    ids
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every expected row is there, in order, with numbers for every run.
fn assert_complete(report: &Value, ids: &[String], runs: usize, bytes: u64) {
    let rows = report["rows"].as_array().expect("rows");
    let got: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids, "rows");
    for r in rows {
        let id = r["id"].as_str().unwrap();
        assert!(r["error"].is_null(), "{id} failed: {}", r["error"]);
        let samples = r["samples"].as_array().unwrap();
        assert_eq!(samples.len(), runs, "{id}");
        for s in samples {
            assert_eq!(s["bytes"].as_u64(), Some(bytes), "{id}: {s}");
            assert!(s["ops"].as_u64().unwrap() > 0, "{id}");
            assert!(s["seconds"].as_f64().unwrap() > 0.0, "{id}");
            assert!(s["cpu_seconds"].as_f64().unwrap() >= 0.0, "{id}");
        }
        for field in ["mb_per_s", "iops", "cpu_s_per_gb"] {
            let f = &r[field];
            let median = f["median"].as_f64().unwrap_or(-1.0);
            assert!(median >= 0.0, "{id}.{field} = {f}");
            assert!(f["min"].as_f64().unwrap() <= median && median <= f["max"].as_f64().unwrap());
            assert!(f["spread_pct"].as_f64().is_some(), "{id}.{field}");
        }
        assert!(r["mb_per_s"]["median"].as_f64().unwrap() > 0.0, "{id}");
        for field in [
            "op",
            "method",
            "label",
            "chunk_size",
            "depth",
            "direct",
            "best",
        ] {
            assert!(!r[field].is_null(), "{id}.{field} missing");
        }
    }
    for op in ["read", "copy"] {
        let best: Vec<&str> = rows
            .iter()
            .filter(|r| r["op"] == op && r["best"] == true)
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        let has_op = rows.iter().any(|r| r["op"] == op);
        assert_eq!(best.len(), usize::from(has_op), "{op}: {best:?}");
        assert_eq!(
            report["best"][op].as_str(),
            best.first().copied(),
            "best.{op}"
        );
    }
    let t = &report["tuning"];
    assert!(
        t["queue_depth"].as_u64().is_some() && t["chunk_size"].as_u64().is_some(),
        "{t}"
    );
    assert_eq!(report["version"], 1);
    assert_eq!(report["settings"]["runs"].as_u64(), Some(runs as u64));
    assert_eq!(report["settings"]["limit"].as_u64(), Some(bytes));
    assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
}

#[test]
fn files_json_is_complete_and_copies_stay_in_bounds() {
    let dir = scratch();
    let src = dir.path().join("src.img");
    let dst = dir.path().join("dst.img");
    let saved = dir.path().join("state/bench.json");
    let data = random_file(&src, 8 * MIB, 1);
    // The target is larger than the byte bound; past it, a marker that must survive.
    std::fs::write(&dst, vec![0xa5u8; 9 * MIB]).unwrap();
    let out = run_ok(
        reroot()
            .args(["bench", "--json", "--yes", "--runs", "2"])
            .args([
                "--seconds".as_ref(),
                "20".as_ref(),
                "--bytes".as_ref(),
                "4M".as_ref(),
                "--save".as_ref(),
                saved.as_os_str(),
                src.as_os_str(),
                dst.as_os_str(),
            ]),
    );
    let report = json_of(&out);
    assert_complete(&report, &quick_ids(true, true), 2, 4 * MIB as u64);
    assert_eq!(report["source"]["kind"], "file");
    assert_eq!(report["target"]["path"].as_str(), dst.to_str());
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len(), 9 * MIB);
    assert!(
        got[..4 * MIB] == data[..4 * MIB],
        "copies wrote other bytes"
    );
    assert!(
        got[4 * MIB..].iter().all(|&b| b == 0xa5),
        "a copy wrote past --bytes"
    );

    // Saved, and `copy --tune=FILE` takes queue depth and chunk size from it.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(file["results"].as_array().unwrap().len(), 1);
    let copy_dst = dir.path().join("copy.img");
    std::fs::write(&copy_dst, vec![0u8; 8 * MIB]).unwrap();
    let tune = format!("--tune={}", saved.display());
    let out = run_ok(
        reroot()
            .args(["copy", "--json", "--verify", "hash", &tune])
            .arg(&src)
            .arg(&copy_dst),
    );
    let copied = json_of(&out);
    assert_eq!(copied["queue_depth"], report["tuning"]["queue_depth"]);
    assert_eq!(copied["chunk_size"], report["tuning"]["chunk_size"]);
    assert!(std::fs::read(&copy_dst).unwrap() == data);

    // No fitting result: a short probe picks one of its settings.
    let out = run_ok(
        reroot()
            .args(["copy", "--json", "--verify", "none"])
            .arg(format!("--tune={}", dir.path().join("none.json").display()))
            .arg(&src)
            .arg(&copy_dst),
    );
    let probed = json_of(&out);
    assert!(
        [4, 16, 64].contains(&probed["queue_depth"].as_u64().unwrap()),
        "{probed}"
    );
    assert!(
        [256 << 10, 1 << 20, 4 << 20].contains(&probed["chunk_size"].as_u64().unwrap()),
        "{probed}"
    );
}

#[test]
fn read_only_table_lists_every_strategy_and_marks_one() {
    let dir = scratch();
    let src = dir.path().join("src.img");
    random_file(&src, 2 * MIB, 2);
    let out = run_ok(
        reroot()
            .args([
                "bench",
                "--runs",
                "1",
                "--seconds",
                "20",
                "--bytes",
                "1M",
                "--no-save",
            ])
            .arg(&src),
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.len() > 8 && (l[3..].starts_with("read ") || l[3..].starts_with("copy ")))
        .collect();
    assert_eq!(rows.len(), quick_ids(false, false).len(), "{table}");
    let xxh3 = format!("uring-xxh3 qd{}", copy_qd());
    for (line, label) in rows.iter().zip([
        "buffered",
        "direct",
        "threads x4",
        "uring qd1",
        "uring qd4",
        "uring qd16",
        "uring qd64",
        "uring qd16",
        "uring qd16",
        "uring qd16",
        "uring qd16",
        "uring qd16",
        "uring qd16",
        xxh3.as_str(),
    ]) {
        assert!(line.contains(label), "{line} is not {label}");
        assert!(!line.contains("error"), "{line}");
        // MB/s, min-max, spread, IOPS, CPU s/GB after the chunk column.
        let numbers = line.split_whitespace().count();
        assert!(numbers >= 8, "{line}");
    }
    assert_eq!(
        rows.iter().filter(|l| l.starts_with(" * ")).count(),
        1,
        "{table}"
    );
    assert!(table.contains("copy --tune picks --queue-depth"), "{table}");
    assert!(!dir.path().join("state").exists());
}

fn assert_refused(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code; stderr:\n{err}");
    assert!(err.contains(what), "stderr lacks {what:?}:\n{err}");
    assert!(out.stdout.is_empty(), "no table after a refusal");
}

#[test]
fn dst_without_yes_is_refused_and_untouched() {
    let dir = scratch();
    let src = dir.path().join("src.img");
    let dst = dir.path().join("dst.img");
    random_file(&src, MIB, 3);
    let before = random_file(&dst, MIB, 4);
    let out = reroot()
        .args(["bench", "--no-save"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_refused(&out, "--yes");
    assert!(std::fs::read(&dst).unwrap() == before);
    // --json: the error is a document with the refusal.
    let out = reroot()
        .args(["bench", "--no-save", "--json"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let e = json_of(&out);
    assert_eq!(e["error"]["kind"], "refused");
    assert_eq!(e["error"]["device"].as_str(), dst.to_str());
}

#[test]
fn signed_dst_needs_force() {
    require_tool!("mkfs.ext4");
    let dir = scratch();
    let src = dir.path().join("src.img");
    let dst = dir.path().join("dst.img");
    let data = random_file(&src, 4 * MIB, 5);
    std::fs::write(&dst, vec![0u8; 4 * MIB]).unwrap();
    mkfs("ext4", &dst, &[]);
    let before = std::fs::read(&dst).unwrap();
    let bench = |extra: &[&str]| {
        reroot()
            .args([
                "bench",
                "--yes",
                "--no-save",
                "--runs",
                "1",
                "--only",
                "direct",
            ])
            .args(extra)
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap()
    };
    let out = bench(&[]);
    assert_refused(&out, "--force");
    assert!(
        std::fs::read(&dst).unwrap() == before,
        "refused, yet written"
    );
    let out = bench(&["--force", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = json_of(&out)["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["read/direct/1M", "copy/direct/1M"]);
    assert!(std::fs::read(&dst).unwrap() == data);
}

/// A loop device over a file of `size` random bytes (or zeros), O_DIRECT backed.
fn loop_over(dir: &Path, name: &str, size: usize, seed: Option<u64>) -> (LoopDev, PathBuf) {
    let file = dir.join(name);
    match seed {
        Some(s) => {
            random_file(&file, size, s);
        }
        None => std::fs::write(&file, vec![0u8; size]).unwrap(),
    }
    (LoopDev::attach(&file, &["--direct-io=on"]), file)
}

#[test]
fn loop_devices_json_is_complete() {
    require_root!();
    let dir = scratch();
    let (src, src_file) = loop_over(dir.path(), "src.img", 8 * MIB, Some(6));
    let (dst, dst_file) = loop_over(dir.path(), "dst.img", 8 * MIB, None);
    let out = run_ok(
        reroot()
            .args(["bench", "--json", "--yes", "--no-save", "--runs", "1"])
            .args(["--seconds", "20", "--bytes", "2M"])
            .arg(src.path())
            .arg(dst.path()),
    );
    let report = json_of(&out);
    assert_complete(&report, &quick_ids(true, false), 1, 2 * MIB as u64);
    assert_eq!(report["source"]["kind"], "block");
    assert_eq!(report["target"]["kind"], "block");
    drop(dst);
    drop(src);
    let (s, d) = (
        std::fs::read(src_file).unwrap(),
        std::fs::read(dst_file).unwrap(),
    );
    assert!(s[..2 * MIB] == d[..2 * MIB], "the copies wrote other bytes");
    assert!(
        d[2 * MIB..].iter().all(|&b| b == 0),
        "a copy wrote past --bytes"
    );
}

#[test]
fn mounted_dst_is_refused() {
    require_root!();
    require_tool!("mkfs.ext4");
    let dir = scratch();
    let (src, _) = loop_over(dir.path(), "src.img", 4 * MIB, Some(7));
    let dst_file = dir.path().join("dst.img");
    std::fs::write(&dst_file, vec![0u8; 8 * MIB]).unwrap();
    mkfs("ext4", &dst_file, &[]);
    let dst = LoopDev::attach(&dst_file, &[]);
    let m = Mounted::new(dst.path(), &dir.path().join("mnt"), None);
    for extra in [&[][..], &["--force"][..]] {
        let out = reroot()
            .args(["bench", "--yes", "--no-save"])
            .args(extra)
            .arg(src.path())
            .arg(dst.path())
            .output()
            .unwrap();
        assert_refused(&out, "mounted");
    }
    drop(m);
}
