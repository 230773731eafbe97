//! `reroot map` against the oracle, `dumpe2fs`: images built with the real
//! mkfs.ext2/3/4 over a matrix of layouts, filled from a directory
//! (`mkfs -d`), with files deleted afterwards (`debugfs -w -R rm`), must
//! give the used set dumpe2fs reports, block for block. Plus: kernel-written
//! images (root), live/recovery refusal, damaged primary superblock,
//! checksum failures, and a mutation test that the parser never panics.

use std::path::{Path, PathBuf};
use std::process::Command;

use reroot::ErrorKind;
use reroot::ext::{MapOptions, read_map};

use crate::common::*;

/// Half-open block ranges, sorted and merged.
type Ranges = Vec<(u64, u64)>;

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

/// `a` minus `b`, both merged.
fn subtract(a: &Ranges, b: &Ranges) -> Ranges {
    let mut out = Vec::new();
    for &(s, e) in a {
        let mut pos = s;
        for &(bs, be) in b.iter().filter(|&&(bs, be)| be > s && bs < e) {
            if bs > pos {
                out.push((pos, bs));
            }
            pos = pos.max(be);
        }
        if pos < e {
            out.push((pos, e));
        }
    }
    out
}

/// What dumpe2fs says about an image.
struct Dump {
    block_size: u64,
    blocks_count: u64,
    /// Used blocks: every group's range minus its "Free blocks:", plus the
    /// blocks before `First block`.
    used: Ranges,
    /// Groups flagged BLOCK_UNINIT.
    block_uninit: usize,
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("dumpe2fs printed no {name:?}"))
}

/// "a-b" or "a" -> [a, b + 1), in blocks. With bigalloc (`ratio` blocks per
/// cluster) dumpe2fs lists clusters by a block inside them: 1.47.0 prints
/// the first block of the last cluster, later versions its last block; both
/// mean "up to the end of b's cluster".
fn parse_range(s: &str, ratio: u64) -> (u64, u64) {
    let s = s.trim();
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u64 = a
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad range {s:?}"));
    let b: u64 = b
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad range {s:?}"));
    (a, (b / ratio + 1) * ratio)
}

fn dumpe2fs(img: &Path) -> Dump {
    let out = run_ok(Command::new("dumpe2fs").arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    let block_size = field(&text, "Block size:");
    let blocks_count = field(&text, "Block count:");
    let first_block = field(&text, "First block:");
    let ratio = text
        .lines()
        .find_map(|l| l.strip_prefix("Cluster size:"))
        .map_or(1, |v| {
            v.trim().parse::<u64>().expect("cluster size") / block_size
        });
    let mut groups = Vec::new();
    let mut free = Vec::new();
    let mut block_uninit = 0;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("Group ")
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        {
            let inner = rest
                .split_once("(Blocks ")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(r, _)| r)
                .expect("a group line has (Blocks a-b)");
            groups.push(parse_range(inner, 1));
            block_uninit += usize::from(line.contains("BLOCK_UNINIT"));
        } else if let Some(list) = line.strip_prefix("  Free blocks: ") {
            free.extend(
                list.split(", ")
                    .filter(|s| !s.trim().is_empty())
                    .map(|r| parse_range(r, ratio)),
            );
        }
    }
    assert!(!groups.is_empty(), "dumpe2fs listed no groups:\n{text}");
    let mut used = subtract(&merge(groups), &merge(free));
    if first_block > 0 {
        used.push((0, first_block));
    }
    let used = merge(used)
        .into_iter()
        .filter_map(|(s, e)| (s < blocks_count).then_some((s, e.min(blocks_count))))
        .collect();
    Dump {
        block_size,
        blocks_count,
        used,
        block_uninit,
    }
}

/// `reroot --json map [extra] img`, parsed.
fn reroot_map(img: &Path, extra: &[&str]) -> serde_json::Value {
    let out = run_ok(reroot().arg("--json").arg("map").args(extra).arg(img));
    serde_json::from_slice(&out.stdout).expect("map --json prints JSON")
}

/// Used byte ranges of a `map --json` document, widened to blocks.
fn used_blocks(doc: &serde_json::Value, block_size: u64) -> Ranges {
    let used = doc["used"].as_array().expect("used is an array");
    let mut prev_end = 0;
    let v = used
        .iter()
        .map(|e| {
            let s = e["start"].as_u64().expect("start");
            let l = e["len"].as_u64().expect("len");
            assert!(l > 0, "empty range");
            assert!(s >= prev_end, "ranges not sorted/disjoint at {s}");
            prev_end = s + l;
            (s / block_size, (s + l).div_ceil(block_size))
        })
        .collect();
    merge(v)
}

fn describe_diff(got: &Ranges, want: &Ranges) -> String {
    let extra = subtract(got, want);
    let missing = subtract(want, got);
    format!(
        "reroot marks as used but dumpe2fs does not: {:?}\ndumpe2fs marks as used but reroot does not: {:?}",
        &extra[..extra.len().min(10)],
        &missing[..missing.len().min(10)]
    )
}

/// Assert that reroot's map of `img` equals dumpe2fs's used set (plus the
/// boot area and primary superblock, bytes [0, 2048), that reroot always
/// includes). Returns the JSON document.
fn assert_matches_dumpe2fs(img: &Path) -> serde_json::Value {
    let dump = dumpe2fs(img);
    let doc = reroot_map(img, &[]);
    let geo = &doc["geometry"];
    assert_eq!(geo["block_size"].as_u64(), Some(dump.block_size));
    assert_eq!(geo["blocks_count"].as_u64(), Some(dump.blocks_count));
    assert_eq!(
        geo["block_uninit_groups"].as_u64(),
        Some(dump.block_uninit as u64)
    );
    let got = used_blocks(&doc, dump.block_size);
    let mut want = dump.used.clone();
    want.push((0, 2048u64.div_ceil(dump.block_size)));
    let want = merge(want);
    if got != want {
        if let Ok(keep) = std::env::var("REROOT_KEEP_FAILED") {
            let _ = std::fs::copy(img, Path::new(&keep).join(img.file_name().unwrap()));
        }
    }
    assert!(
        got == want,
        "map of {} differs from dumpe2fs\n{}",
        img.display(),
        describe_diff(&got, &want)
    );
    let total: u64 = got.iter().map(|(s, e)| e - s).sum();
    assert!(
        total < dump.blocks_count,
        "everything used? the test proves nothing"
    );
    doc
}

/// A scratch image: a tree filled into it at mkfs time, then some files
/// deleted with debugfs so freed blocks sit between used ones.
struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn build(fstype: &str, mib: u64, opts: &[&str], fill: u64) -> Image {
    let dir = scratch();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    if fill > 0 {
        fill_tree(&src, mib ^ fill, fill);
    }
    let path = sparse_file(&dir.path().join("fs.img"), mib << 20);
    let mut args: Vec<&str> = opts.to_vec();
    let src_s = src.to_str().unwrap();
    args.extend(["-d", src_s]);
    mkfs(fstype, &path, &args);
    if fill > 0 {
        // Delete every third regular file still in the tree.
        let mut files = Vec::new();
        collect_files(&src, &src, &mut files);
        files.sort();
        let cmds: String = files
            .iter()
            .step_by(3)
            .map(|f| format!("rm /{f}\n"))
            .collect();
        let cmdfile = dir.path().join("debugfs.cmds");
        std::fs::write(&cmdfile, cmds).unwrap();
        run_ok(
            Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&cmdfile)
                .arg(&path),
        );
    }
    Image { _dir: dir, path }
}

fn collect_files(top: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            collect_files(top, &p, out);
        } else if m.is_file() {
            out.push(p.strip_prefix(top).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// One matrix case: build, compare, return the document for extra checks
/// (`None`: e2fsprogs is missing, the test is skipped through
/// [`crate::common::skip`], which fails it under `REROOT_TEST_STRICT=1`).
fn case(fstype: &str, mib: u64, opts: &[&str]) -> Option<serde_json::Value> {
    if !have_tool("dumpe2fs") || !have_tool("debugfs") {
        crate::common::skip("e2fsprogs (dumpe2fs, debugfs) is not installed (.ci/run installs it)");
        return None;
    }
    let img = build(fstype, mib, opts, 10 << 20);
    assert!(e2fsck_clean(&img.path), "mkfs+debugfs left an unclean fs");
    Some(assert_matches_dumpe2fs(&img.path))
}

fn has_feature(doc: &serde_json::Value, f: &str) -> bool {
    doc["geometry"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x.as_str() == Some(f))
}

#[test]
fn ext2_default() {
    let Some(d) = case("ext2", 48, &[]) else {
        return;
    };
    assert_eq!(d["geometry"]["kind"], "ext2");
}

#[test]
fn ext3_default() {
    let Some(d) = case("ext3", 48, &[]) else {
        return;
    };
    assert_eq!(d["geometry"]["kind"], "ext3");
}

#[test]
fn ext4_default() {
    let Some(d) = case("ext4", 64, &[]) else {
        return;
    };
    assert_eq!(d["geometry"]["kind"], "ext4");
    assert_eq!(d["geometry"]["checksums"], "metadata_csum");
}

#[test]
fn ext4_4k_blocks_many_groups() {
    let Some(d) = case("ext4", 96, &["-b", "4096", "-g", "2048"]) else {
        return;
    };
    assert!(d["geometry"]["groups_count"].as_u64().unwrap() >= 12);
}

#[test]
fn ext4_without_flex_bg() {
    let Some(d) = case("ext4", 64, &["-O", "^flex_bg"]) else {
        return;
    };
    assert!(!has_feature(&d, "flex_bg"));
}

#[test]
fn ext4_meta_bg() {
    // 1 KiB blocks, 64-byte descriptors: 16 per block, so 64 groups make 4 meta groups.
    let Some(d) = case(
        "ext4",
        64,
        &["-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"],
    ) else {
        return;
    };
    assert!(has_feature(&d, "meta_bg"));
    assert_eq!(d["geometry"]["groups_count"], 64);
}

#[test]
fn ext4_meta_bg_32bit_descriptors() {
    let Some(d) = case(
        "ext4",
        64,
        &[
            "-b",
            "1024",
            "-g",
            "512",
            "-O",
            "meta_bg,^resize_inode,^64bit",
        ],
    ) else {
        return;
    };
    assert_eq!(d["geometry"]["desc_size"], 32);
}

#[test]
fn ext4_bigalloc() {
    let Some(d) = case("ext4", 64, &["-b", "4096", "-O", "bigalloc", "-C", "16384"]) else {
        return;
    };
    assert_eq!(d["geometry"]["cluster_size"], 16384);
}

#[test]
fn ext4_bigalloc_1k_blocks() {
    let Some(d) = case("ext4", 64, &["-b", "1024", "-O", "bigalloc", "-C", "4096"]) else {
        return;
    };
    assert_eq!(d["geometry"]["first_data_block"], 0);
}

#[test]
fn ext4_without_sparse_super() {
    let Some(d) = case("ext4", 64, &["-O", "^sparse_super,^resize_inode"]) else {
        return;
    };
    assert!(!has_feature(&d, "sparse_super"));
}

#[test]
fn ext4_sparse_super2() {
    let Some(d) = case("ext4", 64, &["-O", "sparse_super2"]) else {
        return;
    };
    assert!(has_feature(&d, "sparse_super2"));
}

#[test]
fn ext4_1k_blocks() {
    let Some(d) = case("ext4", 64, &["-b", "1024"]) else {
        return;
    };
    assert_eq!(d["geometry"]["first_data_block"], 1);
}

#[test]
fn ext4_32bit() {
    let Some(d) = case("ext4", 64, &["-O", "^64bit"]) else {
        return;
    };
    assert_eq!(d["geometry"]["desc_size"], 32);
}

#[test]
fn ext4_64bit_metadata_csum() {
    let Some(d) = case(
        "ext4",
        64,
        &["-b", "4096", "-g", "4096", "-O", "64bit,metadata_csum"],
    ) else {
        return;
    };
    assert_eq!(d["geometry"]["desc_size"], 64);
}

#[test]
fn ext4_uninit_bg_crc16() {
    let Some(d) = case("ext4", 64, &["-O", "^metadata_csum,uninit_bg"]) else {
        return;
    };
    assert_eq!(d["geometry"]["checksums"], "gdt_csum");
    assert!(d["geometry"]["block_uninit_groups"].as_u64().unwrap() > 0);
}

#[test]
fn ext4_block_uninit_groups() {
    // Many small groups, little data: most groups keep BLOCK_UNINIT and
    // their metadata (backups, flex_bg tables) must be computed.
    require_tool!("dumpe2fs");
    let img = build("ext4", 128, &["-b", "1024", "-g", "2048"], 2 << 20);
    let d = assert_matches_dumpe2fs(&img.path);
    assert!(d["geometry"]["block_uninit_groups"].as_u64().unwrap() >= 40);
}

#[test]
fn ext4_without_journal() {
    let Some(d) = case("ext4", 48, &["-O", "^has_journal"]) else {
        return;
    };
    assert!(!has_feature(&d, "has_journal"));
}

#[test]
fn not_ext_is_a_filesystem_error() {
    let dir = scratch();
    let img = sparse_file(&dir.path().join("zero.img"), 4 << 20);
    let out = reroot().args(["--json", "map"]).arg(&img).output().unwrap();
    assert_eq!(out.status.code(), Some(6));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "filesystem");
    assert_eq!(doc["error"]["offset"], 1024 + 0x38);
    assert!(doc["error"]["message"].as_str().unwrap().contains("magic"));
}

#[test]
fn human_output_lists_geometry_and_ranges() {
    require_tool!("mkfs.ext4");
    let img = build("ext4", 32, &[], 0);
    let out = run_ok(reroot().arg("map").arg("--blocks").arg(&img.path));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": ext4, 32.0 MiB"), "{text}");
    assert!(text.contains("metadata_csum"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("0-")),
        "{text}"
    );
    let out = run_ok(reroot().arg("map").arg("--summary").arg(&img.path));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("used: "), "{text}");
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("0..")),
        "{text}"
    );
}

/// Block `n` of the image, for tests that damage it.
fn patch(img: &Path, off: u64, f: impl FnOnce(&mut [u8])) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut buf = vec![0u8; 1024];
    file.read_exact_at(&mut buf, off).unwrap();
    f(&mut buf);
    file.write_all_at(&buf, off).unwrap();
}

/// `Block bitmap at N` of an initialized group (not BLOCK_UNINIT).
fn initialized_bitmap_block(img: &Path) -> u64 {
    let out = run_ok(Command::new("dumpe2fs").arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut uninit = false;
    for line in text.lines() {
        if line.starts_with("Group ") {
            uninit = line.contains("BLOCK_UNINIT");
        } else if let Some(rest) = line.trim_start().strip_prefix("Block bitmap at ") {
            if !uninit {
                let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                return n.parse().unwrap();
            }
        }
    }
    panic!("no initialized group");
}

#[test]
fn bitmap_checksum_failure_is_corrupt_unless_ignored() {
    require_tool!("dumpe2fs");
    let img = build("ext4", 32, &["-b", "4096"], 2 << 20);
    let blk = initialized_bitmap_block(&img.path);
    patch(&img.path, blk * 4096, |b| b[100] ^= 0x10);
    let out = reroot()
        .args(["--json", "map"])
        .arg(&img.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["offset"], blk * 4096, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );
    assert!(
        doc["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("--ignore-csum")
    );
    let doc = reroot_map(&img.path, &["--ignore-csum"]);
    let w = doc["warnings"].to_string();
    assert!(w.contains("bitmap checksum"), "{w}");
}

#[test]
fn descriptor_checksum_failure_is_corrupt_unless_ignored() {
    require_tool!("dumpe2fs");
    for opts in [
        &["-O", "metadata_csum"][..],
        &["-O", "^metadata_csum,uninit_bg"][..],
    ] {
        let img = build("ext4", 32, &[&["-b", "4096"], opts].concat(), 0);
        // Group 0's descriptor is the first in block 1; flip bg_free_inodes_count_lo.
        patch(&img.path, 4096, |b| b[0x0E] ^= 1);
        let out = reroot()
            .args(["--json", "map"])
            .arg(&img.path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(6), "{opts:?}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["offset"], 4096, "{doc}");
        let doc = reroot_map(&img.path, &["--ignore-csum"]);
        assert!(doc["warnings"].to_string().contains("descriptor checksum"));
    }
}

#[test]
fn damaged_primary_superblock_falls_back_to_a_backup() {
    require_tool!("dumpe2fs");
    // A bad checksum, or fields that do not add up: the magic is still
    // there, so a backup is used (found through the primary's own numbers,
    // or at group 1 of the default group size).
    let bad_csum = |b: &mut [u8]| b[0x78] ^= 0x20; // s_volume_name
    let bad_size = |b: &mut [u8]| b[0x18] = 9; // s_log_block_size
    for (opts, damage) in [
        (&["-b", "1024"][..], &bad_csum as &dyn Fn(&mut [u8])),
        (&["-b", "4096"][..], &bad_size),
        (&["-b", "4096", "-g", "4096"][..], &bad_csum),
        (&["-O", "^has_journal,^metadata_csum"][..], &bad_size),
    ] {
        let img = build("ext4", 160, opts, 4 << 20);
        let before = reroot_map(&img.path, &[]);
        patch(&img.path, 1024, damage);
        let after = reroot_map(&img.path, &[]);
        assert_ne!(after["geometry"]["superblock_offset"], 1024, "{opts:?}");
        assert!(after["warnings"].to_string().contains("backup superblock"));
        assert_eq!(before["used"], after["used"], "{opts:?}");
        let f = std::fs::File::open(&img.path).unwrap();
        assert!(reroot::ext::detect(&f).unwrap().is_some());
    }
}

#[test]
fn wiped_primary_superblock_is_refused_with_the_backup_named() {
    require_tool!("mkfs.ext4");
    let img = build("ext4", 160, &["-b", "4096"], 0);
    patch(&img.path, 1024, |b| b.fill(0));
    let out = reroot()
        .args(["--json", "map"])
        .arg(&img.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hint = doc["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("e2fsck -b 32768 -B 4096"), "{hint}");
    let f = std::fs::File::open(&img.path).unwrap();
    assert_eq!(reroot::ext::detect(&f).unwrap(), None);
}

#[test]
fn detect_tells_ext_from_other_data() {
    require_tool!("mkfs.ext4");
    let img = build("ext3", 16, &[], 0);
    let f = std::fs::File::open(&img.path).unwrap();
    let d = reroot::ext::detect(&f).unwrap().expect("ext3 detected");
    assert_eq!(d.kind, reroot::ext::ExtKind::Ext3);
    assert_eq!(d.fs_bytes, Some(16 << 20));
    assert!(reroot::ext::detect(&vec![0u8; 100]).unwrap().is_none());
    assert!(reroot::ext::detect(&vec![0u8; 1 << 16]).unwrap().is_none());
}

/// Kernel-written filesystems: mount, write, delete, unmount, compare. And
/// while mounted read-write the map is refused unless --live.
#[test]
fn kernel_written_ext4_and_live_refusal() {
    require_root!();
    require_tool!("dumpe2fs");
    for (fstype, opts) in [
        ("ext4", &["-b", "1024", "-g", "2048"][..]),
        ("ext2", &[][..]),
    ] {
        let dir = scratch();
        let img = sparse_file(&dir.path().join("k.img"), 96 << 20);
        mkfs(fstype, &img, opts);
        let dev = LoopDev::attach(&img, &[]);
        {
            let m = Mounted::new(dev.path(), &dir.path().join("mnt"), None);
            fill_tree(&m.dir().join("t"), 42, 24 << 20);
            run_ok(&mut Command::new("sync"));
            let out = reroot()
                .args(["--json", "map"])
                .arg(dev.path())
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(6),
                "{fstype}: mounted rw must be refused"
            );
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                doc["error"]["hint"].as_str().unwrap().contains("--live"),
                "{doc}"
            );
            let live = reroot_map(dev.path(), &["--live"]);
            assert!(live["warnings"].to_string().contains("best-effort"));
        }
        assert!(e2fsck_clean(dev.path()));
        assert_matches_dumpe2fs(dev.path());
    }
}

/// Deterministic mutations of real images (superblock, descriptors, bitmaps)
/// must give an error or a map that keeps the invariants, never a panic.
#[test]
fn mutated_images_never_panic() {
    require_tool!("mkfs.ext4");
    let layouts: [&[&str]; 3] = [
        &["-b", "1024", "-g", "1024", "-O", "metadata_csum"],
        &[
            "-b",
            "1024",
            "-g",
            "1024",
            "-O",
            "^metadata_csum,uninit_bg,meta_bg,^resize_inode",
        ],
        &["-b", "4096", "-g", "256", "-O", "bigalloc", "-C", "8192"],
    ];
    let mut checked = 0;
    for (li, opts) in layouts.iter().enumerate() {
        let img = build("ext4", 8, opts, 1 << 20);
        let base = std::fs::read(&img.path).unwrap();
        let geo = read_map(&base, &MapOptions::default()).expect("the unmutated image maps");
        let bs = u64::from(geo.geometry.block_size);
        // Metadata lives in the first blocks of each group: hit those.
        let group_bytes = u64::from(geo.geometry.blocks_per_group) * bs;
        let mut rng = Rng::new(0xE47 + li as u64);
        for iter in 0..150 {
            let mut data = base.clone();
            for _ in 0..1 + rng.below(6) {
                let off = match rng.below(4) {
                    0 => 1024 + rng.below(1024),
                    1 => bs.max(2048) + rng.below(4 * bs),
                    2 => {
                        let g = rng.below(u64::from(geo.geometry.groups_count));
                        g * group_bytes + rng.below(64 * bs)
                    }
                    _ => rng.below(data.len() as u64),
                };
                let off = usize::try_from(off.min(data.len() as u64 - 1)).unwrap();
                data[off] = rng.next_u64().to_le_bytes()[0];
            }
            let opts = MapOptions {
                ignore_csum: rng.below(2) == 0,
                live: rng.below(2) == 0,
            };
            let r = std::panic::catch_unwind(|| read_map(&data, &opts));
            let r = r.unwrap_or_else(|_| panic!("panic: layout {li} iteration {iter}"));
            match r {
                Ok(m) => {
                    let fs = m.geometry.fs_bytes;
                    assert!(fs <= data.len() as u64);
                    let mut prev = 0;
                    for e in &m.used {
                        assert!(
                            e.start() >= prev && e.end() <= fs,
                            "layout {li} iteration {iter}"
                        );
                        prev = e.end() + 1; // merged: never adjacent
                    }
                    checked += 1;
                }
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::Corrupt(_)
                            | ErrorKind::Incompatible(_)
                            | ErrorKind::NeedsRecovery(_)
                    ),
                    "layout {li} iteration {iter}: unexpected {e}"
                ),
            }
        }
    }
    assert!(
        checked > 50,
        "too few mutated images mapped ({checked}): the test proves little"
    );
}

/// Issue 11: `s_first_data_block=1` on a 4 KiB-block filesystem was accepted
/// and the map shifted by a block; e2fsck rejects it.
#[test]
fn first_data_block_1_with_4k_blocks_is_corrupt() {
    require_tool!("mkfs.ext2");
    require_tool!("e2fsck");
    let dir = scratch();
    let img = sparse_file(&dir.path().join("fdb.img"), 16 << 20);
    mkfs("ext2", &img, &["-b", "4096"]);
    assert!(reroot().arg("map").arg(&img).status().unwrap().success());
    // s_first_data_block is at byte 0x14 of the superblock (byte 1024).
    sh(&format!(
        "printf '\\001' | dd of={} bs=1 seek={} conv=notrunc status=none",
        img.display(),
        1024 + 0x14
    ));
    // The oracle: e2fsck refuses it (dumpe2fs complains but exits 0).
    let oracle = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&oracle.stdout) + String::from_utf8_lossy(&oracle.stderr);
    assert!(!oracle.status.success(), "e2fsck accepted it: {said}");
    assert!(
        said.contains("first_data_block = 1, should have been 0"),
        "{said}"
    );
    let out = reroot().args(["--json", "map"]).arg(&img).output().unwrap();
    assert_eq!(out.status.code(), Some(6));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "filesystem", "{doc:#}");
    assert_eq!(doc["error"]["offset"], 1024 + 0x14, "{doc:#}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("s_first_data_block 1 with 4096-byte blocks"),
        "{msg}"
    );
}
