//! Inode-table tails (`bg_itable_unused`): `reroot map` classes against
//! dumpe2fs, and copies that zero or skip them. Each copy goes to a target
//! pre-filled with a non-zero pattern (so a tail left alone would hold
//! garbage), must pass `e2fsck -fn`, mount to the source's tree hash, take
//! many new files (inodes allocated in the former tails), and pass
//! `e2fsck -fn` again.

use std::path::Path;

use crate::common::{
    LoopDev, Mounted, e2fsck_clean, fill_tree, mkfs, reroot, run_ok, scratch, sh, sparse_file,
    tree_hash,
};

const MIB: u64 = 1 << 20;

/// (start, end) byte ranges.
type Ranges = Vec<(u64, u64)>;

fn ranges(v: &serde_json::Value) -> Ranges {
    v.as_array()
        .expect("an array of extents")
        .iter()
        .map(|e| {
            let s = e["start"].as_u64().unwrap();
            (s, s + e["len"].as_u64().unwrap())
        })
        .collect()
}

fn merge(mut v: Ranges) -> Ranges {
    v.sort_unstable();
    let mut out: Ranges = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The tails dumpe2fs describes: per group, the inode table past
/// `ipg - unused` inodes (all of it for INODE_UNINIT), split by ITABLE_ZEROED.
fn dumpe2fs_tails(img: &Path) -> (Ranges, Ranges) {
    let out = run_ok(std::process::Command::new("dumpe2fs").arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("dumpe2fs has no {name}"))
            .trim()
            .parse()
            .unwrap()
    };
    let bs = field("Block size:");
    let ipg = field("Inodes per group:");
    let isz = field("Inode size:");
    let csum = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .is_some_and(|l| l.contains("uninit_bg") || l.contains("metadata_csum"));
    let (mut zeroed, mut lazy) = (Vec::new(), Vec::new());
    if !csum {
        return (zeroed, lazy);
    }
    let mut flags = String::new();
    let mut table: Option<(u64, u64)> = None;
    let mut finish = |flags: &str, table: (u64, u64), unused: u64| {
        let used = if flags.contains("INODE_UNINIT") {
            0
        } else {
            ipg - unused
        };
        let used_blocks = (used * isz).div_ceil(bs);
        let first = table.0 + used_blocks;
        if first <= table.1 {
            let r = (first * bs, (table.1 + 1) * bs);
            if flags.contains("ITABLE_ZEROED") {
                zeroed.push(r);
            } else {
                lazy.push(r);
            }
        }
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Group ") {
            flags = t.to_string();
        } else if let Some(rest) = t.strip_prefix("Inode table at ") {
            let span = rest.split_whitespace().next().unwrap();
            let (a, b) = span.split_once('-').unwrap();
            table = Some((a.parse().unwrap(), b.parse().unwrap()));
        } else if t.ends_with("unused inodes") {
            let unused: u64 = t
                .rsplit(", ")
                .next()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            finish(
                &flags,
                table.take().expect("inode table before counts"),
                unused,
            );
        }
    }
    (merge(zeroed), merge(lazy))
}

fn map_json(img: &Path) -> serde_json::Value {
    let out = run_ok(reroot().args(["--json", "map"]).arg(img));
    serde_json::from_slice(&out.stdout).expect("map --json prints JSON")
}

/// A source image made with `mkfs_opts`, filled (and churned when `churn`),
/// on a loop device; the target pre-filled with 0x5A on another.
fn case(name: &str, mkfs_opts: &[&str], churn: bool, expect_tails: bool) {
    let dir = scratch();
    let base = dir.path();
    let img = sparse_file(&base.join("src.img"), 128 * MIB);
    let mut opts = vec!["-b", "4096", "-N", "16384"];
    opts.extend_from_slice(mkfs_opts);
    mkfs("ext4", &img, &opts);
    let src = LoopDev::attach(&img, &[]);
    {
        // noinit_itable: the kernel must not zero the tables behind our back.
        let m = Mounted::new(src.path(), &base.join("m"), Some("noinit_itable"));
        fill_tree(m.dir(), 7, 8 * MIB);
        if churn {
            // Many small files, most deleted again: tails shrink, then
            // e2fsck (below) may grow them again over stale inodes.
            sh(&format!(
                "cd {0} && mkdir -p many && for i in $(seq 1 3000); do echo $i > many/f$i; done && \
                 rm -f many/f1* many/f2* many/f5* && sync",
                m.dir().display()
            ));
        }
    }
    if churn {
        // e2fsck -fy recomputes bg_itable_unused from the inode bitmap.
        let _ = std::process::Command::new("e2fsck")
            .arg("-fy")
            .arg(src.path())
            .output();
    }
    let src_hash = {
        let m = Mounted::new(src.path(), &base.join("m"), Some("ro"));
        tree_hash(m.dir())
    };

    // The map's classes are dumpe2fs's tails, exactly.
    let doc = map_json(src.path());
    let (want_zeroed, want_lazy) = dumpe2fs_tails(src.path());
    assert_eq!(
        ranges(&doc["itable_tails"]["zeroed"]),
        want_zeroed,
        "{name}: INODE_ZEROED tails differ from dumpe2fs"
    );
    assert_eq!(
        ranges(&doc["itable_tails"]["lazy"]),
        want_lazy,
        "{name}: lazy tails differ from dumpe2fs"
    );
    let tails = doc["classes"]["itable_zeroed_bytes"].as_u64().unwrap()
        + doc["classes"]["itable_lazy_bytes"].as_u64().unwrap();
    assert_eq!(tails > 0, expect_tails, "{name}: tail bytes {tails}");
    if name == "lazy" {
        assert!(
            doc["classes"]["itable_lazy_bytes"].as_u64().unwrap() > 0,
            "{name}: mke2fs -E lazy_itable_init=1,nodiscard leaves groups not zeroed"
        );
    }
    assert_eq!(
        doc["classes"]["data_bytes"].as_u64().unwrap() + tails,
        doc["used_bytes"].as_u64().unwrap(),
        "{name}: classes add up to the used bytes"
    );

    // Copy onto a target full of garbage.
    let timg = base.join("t.img");
    sh(&format!(
        "head -c {} /dev/zero | tr '\\0' 'Z' > {}",
        128 * MIB,
        timg.display()
    ));
    let tgt = LoopDev::attach(&timg, &[]);
    let out = run_ok(
        reroot()
            .args(["--json", "copy", "--force"])
            .arg(src.path())
            .arg(tgt.path()),
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["mismatch_count"], 0, "{name}");
    let class = |c: &str| {
        r["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["class"] == c)
            .cloned()
            .unwrap()
    };
    let zeroed_class = class("itable-zeroed");
    assert_eq!(
        zeroed_class["bytes"].as_u64().unwrap(),
        doc["classes"]["itable_zeroed_bytes"].as_u64().unwrap()
    );
    assert_eq!(
        zeroed_class["copied"].as_u64().unwrap() + zeroed_class["zeroed"].as_u64().unwrap(),
        zeroed_class["bytes"].as_u64().unwrap(),
        "{name}: every INODE_ZEROED tail byte is zeroed or copied"
    );
    // A separate verify agrees, tails included.
    let v = run_ok(
        reroot()
            .args(["--json", "verify"])
            .arg(src.path())
            .arg(tgt.path()),
    );
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["mismatch_count"], 0, "{name}: verify");

    assert!(e2fsck_clean(tgt.path()), "{name}: copy fails e2fsck -fn");
    {
        let m = Mounted::new(tgt.path(), &base.join("t"), Some("ro"));
        assert_eq!(tree_hash(m.dir()), src_hash, "{name}: tree differs");
    }
    {
        // New inodes land in the former tails.
        let m = Mounted::new(tgt.path(), &base.join("t"), None);
        sh(&format!(
            "cd {} && for d in $(seq 1 12); do mkdir -p new$d; \
             for i in $(seq 1 400); do echo $d.$i > new$d/f$i; done; done && sync",
            m.dir().display()
        ));
    }
    assert!(
        e2fsck_clean(tgt.path()),
        "{name}: copy fails e2fsck -fn after taking new files"
    );
}

#[test]
fn tails_default_mkfs() {
    require_root!();
    require_tool!("dumpe2fs");
    case("default", &[], false, true);
}

#[test]
fn tails_lazy_itable_init_not_zeroed() {
    require_root!();
    require_tool!("dumpe2fs");
    // nodiscard: mke2fs neither zeroes nor discards, so no ITABLE_ZEROED.
    case("lazy", &["-E", "lazy_itable_init=1,nodiscard"], false, true);
}

#[test]
fn tails_itable_zeroed_by_mkfs() {
    require_root!();
    require_tool!("dumpe2fs");
    case("zeroed", &["-E", "lazy_itable_init=0"], false, true);
}

#[test]
fn no_tails_without_descriptor_checksums() {
    require_root!();
    require_tool!("dumpe2fs");
    case(
        "no-csum",
        &["-O", "^uninit_bg,^metadata_csum"],
        false,
        false,
    );
}

#[test]
fn tails_after_many_files_created_and_deleted() {
    require_root!();
    require_tool!("dumpe2fs");
    case("churn", &[], true, true);
}
