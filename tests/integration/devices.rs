//! Device facts and refusals on real loop devices: `probe::device::inspect`
//! checked against the kernel (sysfs, blkid) and every `plan::target` rule
//! triggered by a real situation: a mounted target (here and in another
//! mount namespace), a held one, one opened with O_EXCL, a read-only one,
//! the same device, a partition vs its disk, two loop windows on one file,
//! an image on the source filesystem, a small target, signatures made by
//! real mkfs tools, a source mounted read-write vs read-only.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reroot::plan::target::{self, Refusal, Rule};
use reroot::probe::SysRoot;
use reroot::probe::device::{DeviceFacts, DeviceKind, inspect};
use reroot::probe::signature::SignatureKind;

use crate::common::{LoopDev, Mounted, mkfs, run_ok, scratch, sh, sparse_file};

const MIB: u64 = 1 << 20;

fn facts(path: &Path) -> DeviceFacts {
    inspect(path, &SysRoot::live()).unwrap_or_else(|e| panic!("inspect {}: {e}", path.display()))
}

fn rules(r: &[Refusal]) -> Vec<Rule> {
    r.iter().map(|r| r.rule).collect()
}

/// A sparse image of `size` on a loop device, in its own scratch directory.
fn loopdev(size: u64) -> (tempfile::TempDir, PathBuf, LoopDev) {
    let dir = scratch();
    let img = sparse_file(&dir.path().join("disk.img"), size);
    let dev = LoopDev::attach(&img, &[]);
    (dir, img, dev)
}

/// blkid's low-level probe (`-p`) of one value, e.g. TYPE or UUID.
fn blkid(dev: &Path, tag: &str) -> String {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag])
        .arg(dev)
        .output()
        .expect("running blkid");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn inspect_a_loop_device_matches_sysfs() {
    require_root!();
    let (_d, img, dev) = loopdev(64 * MIB);
    let f = facts(dev.path());
    let name = dev.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(f.kind, DeviceKind::Block);
    assert_eq!(f.name.as_deref(), Some(name));
    assert_eq!(f.size, 64 * MIB);
    assert_eq!(f.logical_block_size, 512);
    let sys_dev = fs::read_to_string(format!("/sys/class/block/{name}/dev")).unwrap();
    assert_eq!(f.rdev.unwrap().to_string(), sys_dev.trim());
    let lb = f
        .loop_backing
        .as_ref()
        .expect("a loop device has a backing file");
    assert_eq!(lb.file, fs::canonicalize(&img).unwrap());
    assert_eq!((lb.offset, lb.sizelimit), (0, 0));
    assert!(f.mounts.is_empty() && f.holders.is_empty() && !f.exclusive_busy);
    assert!(!f.read_only && f.signatures.is_empty() && f.partition.is_none());
    // Its footprint: itself, then the image file.
    assert_eq!(f.footprint.len(), 2, "{:?}", f.footprint);
    assert_eq!(f.footprint[1].name, lb.file.display().to_string());
    // The image lives on some device: that is where the loop's data is.
    assert!(!f.host_footprint.is_empty());
    // The image file as a target: the loop device holds it.
    let i = facts(&img);
    assert_eq!(i.kind, DeviceKind::File);
    assert_eq!(i.holders.len(), 1);
    assert_eq!(i.holders[0].name, name);
    let r = target::check_targets(&facts(dev.path()), &[i], MIB, false);
    assert!(rules(&r).contains(&Rule::Held), "{r:?}");
    assert!(rules(&r).contains(&Rule::Overlap), "{r:?}");
}

#[test]
fn signatures_of_real_mkfs_match_blkid() {
    require_root!();
    let (_d, _img, dev) = loopdev(320 * MIB);
    let mut cases: Vec<(&str, SignatureKind, Vec<&str>)> = vec![
        ("ext2", SignatureKind::Ext2, vec!["-L", "two"]),
        ("ext3", SignatureKind::Ext3, vec!["-L", "three"]),
        ("ext4", SignatureKind::Ext4, vec!["-L", "four"]),
    ];
    for (tool, case) in [
        ("mkfs.xfs", ("xfs", SignatureKind::Xfs, vec!["-L", "ex"])),
        (
            "mkfs.btrfs",
            ("btrfs", SignatureKind::Btrfs, vec!["-L", "bt"]),
        ),
    ] {
        if crate::common::have_tool(tool) {
            cases.push(case);
        } else {
            crate::common::skip(&format!(
                "`{tool}` is not installed: {} not compared",
                case.0
            ));
        }
    }
    for (fstype, kind, extra) in cases {
        sh(&format!("wipefs -a -q {}", dev.path().display()));
        mkfs(fstype, dev.path(), &extra);
        let f = facts(dev.path());
        assert_eq!(f.signatures.len(), 1, "{fstype}: {:?}", f.signatures);
        let s = &f.signatures[0];
        assert_eq!(s.kind, kind, "{fstype}");
        assert_eq!(
            s.uuid.as_deref().unwrap(),
            blkid(dev.path(), "UUID"),
            "{fstype}"
        );
        assert_eq!(
            s.label.as_deref().unwrap(),
            blkid(dev.path(), "LABEL"),
            "{fstype}"
        );
        let fs_bytes = s.fs_bytes.expect("filesystem size");
        assert!(
            fs_bytes > 0 && fs_bytes <= 320 * MIB,
            "{fstype}: {fs_bytes}"
        );
        assert_eq!(target::needed_bytes(&f), fs_bytes);
    }
    sh(&format!("wipefs -a -q {}", dev.path().display()));
    run_ok(
        Command::new("mkswap")
            .args(["-q", "-L", "sw"])
            .arg(dev.path()),
    );
    let f = facts(dev.path());
    assert_eq!(f.signatures[0].kind, SignatureKind::Swap);
    assert_eq!(
        f.signatures[0].uuid.as_deref().unwrap(),
        blkid(dev.path(), "UUID")
    );
    assert_eq!(f.signatures[0].label.as_deref(), Some("sw"));
    sh(&format!("wipefs -a -q {}", dev.path().display()));
    assert!(facts(dev.path()).signatures.is_empty());
}

#[test]
fn signature_refused_without_force_allowed_with() {
    require_root!();
    let (_s, _i, src) = loopdev(64 * MIB);
    let (_t, _j, dst) = loopdev(64 * MIB);
    mkfs("ext4", src.path(), &["-L", "src"]);
    mkfs("ext4", dst.path(), &["-L", "old"]);
    let (s, t) = (facts(src.path()), facts(dst.path()));
    let r = target::check_copy(
        &s,
        std::slice::from_ref(&t),
        target::needed_bytes(&s),
        false,
    );
    assert_eq!(rules(&r), [Rule::Signature]);
    assert_eq!(r[0].device, dst.path());
    assert!(r[0].reason.contains("ext4 signature"), "{}", r[0].reason);
    assert!(r[0].reason.contains("label \"old\""), "{}", r[0].reason);
    assert!(r[0].hint.contains("--force"));
    assert!(target::check_copy(&s, &[t], target::needed_bytes(&s), true).is_empty());
}

#[test]
fn mounted_target_and_source_rw_vs_ro() {
    require_root!();
    let (sd, _i, src) = loopdev(64 * MIB);
    let (td, _j, dst) = loopdev(64 * MIB);
    mkfs("ext4", src.path(), &[]);
    mkfs("ext4", dst.path(), &[]);
    let m = Mounted::new(dst.path(), &td.path().join("mnt"), None);
    let t = facts(dst.path());
    assert_eq!(t.mounts.len(), 1, "{:?}", t.mounts);
    assert_eq!(t.mounts[0].mount_point, m.dir());
    assert!(t.exclusive_busy, "a mounted device cannot be opened O_EXCL");
    let s = facts(src.path());
    let r = target::check_copy(&s, &[t], 64 * MIB, true);
    assert_eq!(rules(&r), [Rule::Mounted]);
    assert!(r[0].reason.contains(&m.dir().display().to_string()));
    assert!(r[0].hint.contains("umount"));
    drop(m);

    // Source mounted read-write: refused; read-only: fine.
    let t = facts(dst.path());
    {
        let _rw = Mounted::new(src.path(), &sd.path().join("mnt"), None);
        let r = target::check_copy(&facts(src.path()), std::slice::from_ref(&t), MIB, true);
        assert_eq!(rules(&r), [Rule::SourceMountedRw]);
        assert_eq!(r[0].device, src.path());
        assert!(r[0].reason.contains("read-write"));
    }
    let _ro = Mounted::new(src.path(), &sd.path().join("mnt"), Some("ro"));
    let s = facts(src.path());
    assert!(s.mounts[0].read_only);
    assert!(target::check_copy(&s, &[t], MIB, true).is_empty());
}

/// A process in a private mount namespace with `dev` mounted; killed (by
/// its pid) on drop, which releases the mount.
struct NsMount {
    child: std::process::Child,
}

impl NsMount {
    fn new(dev: &Path, dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount {} {} && echo ready && exec sleep 120",
                dev.display(),
                dir.display()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "mount in the namespace failed");
        Self { child }
    }
}

impl Drop for NsMount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mounted_only_in_another_namespace() {
    require_root!();
    require_tool!("unshare");
    let (td, _j, dst) = loopdev(64 * MIB);
    mkfs("ext4", dst.path(), &[]);
    let ns = NsMount::new(dst.path(), &td.path().join("ns-mnt"));
    let t = facts(dst.path());
    let pid = ns.child.id();
    assert_eq!(t.mounts.len(), 1, "{:?}", t.mounts);
    assert_eq!(t.mounts[0].pid, Some(pid));
    let r = target::check_targets(&facts(&td.path().join("disk.img")), &[t], MIB, true);
    let mounted: Vec<_> = r.iter().filter(|r| r.rule == Rule::Mounted).collect();
    assert_eq!(mounted.len(), 1, "{r:?}");
    assert!(mounted[0].reason.contains(&format!("pid {pid}")));
    assert!(
        mounted[0]
            .hint
            .contains(&format!("nsenter -t {pid} -m umount"))
    );
    drop(ns);
    assert!(facts(dst.path()).mounts.is_empty());
}

#[test]
fn exclusive_open_by_another_opener() {
    require_root!();
    let (_s, _i, src) = loopdev(16 * MIB);
    let (_t, _j, dst) = loopdev(16 * MIB);
    let path = dst.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(&path)
            .expect("O_EXCL open");
        tx.send(()).unwrap();
        let _ = done_rx.recv();
        drop(f);
    });
    rx.recv().unwrap();
    let t = facts(dst.path());
    assert!(t.exclusive_busy);
    let r = target::check_copy(&facts(src.path()), &[t], MIB, false);
    assert_eq!(rules(&r), [Rule::Exclusive]);
    assert!(r[0].hint.contains("fuser"));
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(!facts(dst.path()).exclusive_busy);
}

#[test]
fn read_only_loop_device() {
    require_root!();
    let dir = scratch();
    let img = sparse_file(&dir.path().join("ro.img"), 16 * MIB);
    let ro = LoopDev::attach(&img, &["--read-only"]);
    let (_s, _i, src) = loopdev(16 * MIB);
    let t = facts(ro.path());
    assert!(t.read_only);
    let r = target::check_copy(&facts(src.path()), &[t], MIB, false);
    assert_eq!(rules(&r), [Rule::ReadOnly]);
}

#[test]
fn same_device_by_another_name() {
    require_root!();
    let (d, _i, src) = loopdev(16 * MIB);
    let link = d.path().join("alias");
    std::os::unix::fs::symlink(src.path(), &link).unwrap();
    let r = target::check_copy(&facts(src.path()), &[facts(&link)], MIB, false);
    assert_eq!(rules(&r), [Rule::SameAsSource]);
    assert_eq!(r[0].device, link);
    // Given twice as targets.
    let (_t, _j, dst) = loopdev(16 * MIB);
    let r = target::check_copy(
        &facts(src.path()),
        &[facts(dst.path()), facts(dst.path())],
        MIB,
        false,
    );
    assert_eq!(rules(&r), [Rule::TargetsOverlap]);
}

/// Write a DOS partition table with `parts` (start, len) in bytes.
fn write_mbr(img: &Path, parts: &[(u64, u64)]) {
    let mut mbr = [0u8; 512];
    for (i, &(start, len)) in parts.iter().enumerate() {
        let e = 446 + 16 * i;
        mbr[e + 4] = 0x83;
        mbr[e + 8..e + 12].copy_from_slice(&u32::try_from(start / 512).unwrap().to_le_bytes());
        mbr[e + 12..e + 16].copy_from_slice(&u32::try_from(len / 512).unwrap().to_le_bytes());
    }
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &mbr, 0).unwrap();
}

fn appears(path: &Path) -> bool {
    for _ in 0..50 {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

#[test]
fn partitions_overlap_their_disk_not_each_other() {
    require_root!();
    let dir = scratch();
    let img = sparse_file(&dir.path().join("parted.img"), 64 * MIB);
    write_mbr(&img, &[(MIB, 31 * MIB), (32 * MIB, 32 * MIB)]);
    let disk = LoopDev::attach(&img, &["--partscan"]);
    let p1 = PathBuf::from(format!("{}p1", disk.path().display()));
    let p2 = PathBuf::from(format!("{}p2", disk.path().display()));
    if !appears(&p2) {
        // Kernels without the msdos partition parser: add them with BLKPG.
        require_tool!("partx");
        run_ok(Command::new("partx").arg("-a").arg(disk.path()));
    }
    assert!(appears(&p1) && appears(&p2), "no partition nodes");
    let (d, a, b) = (facts(disk.path()), facts(&p1), facts(&p2));
    assert_eq!(d.partitions.len(), 2, "{:?}", d.partitions);
    assert_eq!(d.signatures[0].kind, SignatureKind::Mbr);
    let po = b.partition.as_ref().unwrap();
    assert_eq!(
        (po.start, po.size, po.number),
        (32 * MIB, 32 * MIB, Some(2))
    );
    assert_eq!(Some(&po.disk), d.name.as_ref());

    // Partition as target of its disk, and the other way round.
    let r = target::check_copy(&d, std::slice::from_ref(&a), MIB, false);
    assert_eq!(rules(&r), [Rule::Overlap]);
    assert!(
        r[0].reason
            .contains(&format!("bytes {}..{}", MIB, 32 * MIB)),
        "{}",
        r[0].reason
    );
    let r = target::check_copy(&b, std::slice::from_ref(&d), MIB, true);
    assert_eq!(rules(&r), [Rule::Overlap]);
    // Sibling partitions do not overlap.
    assert!(target::check_copy(&a, std::slice::from_ref(&b), MIB, false).is_empty());

    // A mounted partition makes its whole disk a mounted target.
    mkfs("ext4", &p2, &[]);
    let m = Mounted::new(&p2, &dir.path().join("p2"), None);
    let r = target::check_targets(&a, &[facts(disk.path())], MIB, true);
    let mounted: Vec<_> = r.iter().filter(|r| r.rule == Rule::Mounted).collect();
    assert_eq!(mounted.len(), 1, "{r:?}");
    assert!(
        mounted[0].reason.contains("its partition"),
        "{}",
        mounted[0].reason
    );
    drop(m);
}

#[test]
fn loop_windows_on_one_file() {
    require_root!();
    let dir = scratch();
    let img = sparse_file(&dir.path().join("shared.img"), 64 * MIB);
    let off = |o: u64, l: u64| {
        LoopDev::attach(
            &img,
            &["--offset", &o.to_string(), "--sizelimit", &l.to_string()],
        )
    };
    let a = off(0, 16 * MIB);
    let b = off(16 * MIB, 16 * MIB);
    let c = off(8 * MIB, 16 * MIB);
    let (fa, fb, fc) = (facts(a.path()), facts(b.path()), facts(c.path()));
    assert_eq!(fc.loop_backing.as_ref().unwrap().offset, 8 * MIB);
    assert_eq!(fc.size, 16 * MIB);
    assert!(target::check_copy(&fa, std::slice::from_ref(&fb), MIB, false).is_empty());
    let r = target::check_copy(&fa, std::slice::from_ref(&fc), MIB, false);
    assert_eq!(rules(&r), [Rule::Overlap]);
    assert!(
        r[0].reason
            .contains(&format!("bytes {}..{}", 8 * MIB, 16 * MIB)),
        "{}",
        r[0].reason
    );
    // Two targets that overlap each other but not the source.
    let r = target::check_copy(&fa, &[fb, fc], MIB, false);
    assert_eq!(rules(&r), [Rule::Overlap, Rule::TargetsOverlap], "{r:?}");
    // The file itself vs a loop over it (and the file is held by the loops).
    let fi = facts(&img);
    assert_eq!(fi.holders.len(), 3);
    let r = target::check_copy(&fa, &[fi], MIB, true);
    assert!(rules(&r).contains(&Rule::Overlap), "{r:?}");
}

#[test]
fn image_on_the_source_filesystem() {
    require_root!();
    let (d, _i, src) = loopdev(64 * MIB);
    mkfs("ext4", src.path(), &[]);
    let mnt = d.path().join("mnt");
    let target_img = mnt.join("target.img");
    {
        let _m = Mounted::new(src.path(), &mnt, None);
        sparse_file(&target_img, 8 * MIB);
    }
    let _ro = Mounted::new(src.path(), &mnt, Some("ro"));
    let t = facts(&target_img);
    assert!(t.read_only, "a file on a read-only mount cannot be written");
    let r = target::check_copy(&facts(src.path()), &[t], MIB, true);
    assert!(rules(&r).contains(&Rule::Overlap), "{r:?}");
    let o = r.iter().find(|r| r.rule == Rule::Overlap).unwrap();
    assert!(o.reason.contains("is stored on the source"), "{}", o.reason);
}

#[test]
fn too_small_target() {
    require_root!();
    let (_s, _i, src) = loopdev(64 * MIB);
    let (_t, _j, dst) = loopdev(32 * MIB);
    mkfs("ext4", src.path(), &[]);
    let s = facts(src.path());
    let r = target::check_copy(&s, &[facts(dst.path())], target::needed_bytes(&s), false);
    assert_eq!(rules(&r), [Rule::TooSmall]);
    assert!(r[0].reason.contains("is 32 MiB"), "{}", r[0].reason);
    assert!(r[0].reason.contains("needs 64 MiB"), "{}", r[0].reason);
}

/// True when the kernel has device-mapper and dmsetup can talk to it.
fn have_dm() -> bool {
    crate::common::have_tool("dmsetup")
        && Command::new("dmsetup")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// A dm-linear device over all of `dev`; removed on drop.
struct DmLinear {
    name: String,
}

impl DmLinear {
    fn new(name: &str, dev: &Path, sectors: u64) -> Self {
        run_ok(
            Command::new("dmsetup")
                .args(["create", name, "--table"])
                .arg(format!("0 {sectors} linear {} 0", dev.display())),
        );
        Self { name: name.into() }
    }
}

impl Drop for DmLinear {
    fn drop(&mut self) {
        let _ = Command::new("dmsetup")
            .arg("remove")
            .arg(&self.name)
            .status();
    }
}

#[test]
fn held_by_device_mapper() {
    require_root!();
    if !have_dm() {
        return crate::common::skip("no device-mapper in this kernel (`dmsetup version` fails)");
    }
    let (_s, _i, src) = loopdev(16 * MIB);
    let (_t, _j, dst) = loopdev(16 * MIB);
    let name = format!("reroot-test-{}", std::process::id());
    let dm = DmLinear::new(&name, dst.path(), 16 * MIB / 512);
    let t = facts(dst.path());
    assert_eq!(t.holders.len(), 1, "{:?}", t.holders);
    assert_eq!(t.holders[0].dm_name.as_deref(), Some(name.as_str()));
    let r = target::check_copy(&facts(src.path()), &[t], MIB, false);
    assert_eq!(rules(&r), [Rule::Held]);
    assert!(r[0].hint.contains(&format!("dmsetup remove {name}")));
    // The dm device overlaps what it sits on.
    let mapper = Path::new("/dev/mapper").join(&dm.name);
    let r = target::check_copy(&facts(dst.path()), &[facts(&mapper)], MIB, false);
    assert!(rules(&r).contains(&Rule::Overlap), "{r:?}");
}

// ---- `reroot copy` on the command line: each refusal exits 3, names the
// device and the reason (also in --json), and leaves every target as it was.

/// A 32 MiB ext4 source with a file on it, on a loop device.
fn ext4_source() -> (tempfile::TempDir, LoopDev) {
    let dir = scratch();
    let img = sparse_file(&dir.path().join("src.img"), 32 * MIB);
    mkfs("ext4", &img, &["-L", "src"]);
    let dev = LoopDev::attach(&img, &[]);
    {
        let m = Mounted::new(dev.path(), &dir.path().join("fill"), None);
        sh(&format!(
            "head -c 3000000 /dev/urandom > {}/data",
            m.dir().display()
        ));
    }
    (dir, dev)
}

/// Fill the first MiB of `dev` with a pattern, so "untouched" means something.
fn stamp(dev: &Path) {
    sh(&format!(
        "head -c {MIB} /dev/urandom | dd of={} bs=1M conv=notrunc status=none",
        dev.display()
    ));
}

fn content_hash(dev: &Path) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&fs::read(dev).expect("reading the whole target"))
}

/// `reroot copy [extra] SRC TARGETS...` must exit 3 with `dev` and `reason`
/// in the message (and in the --json error), and change no target.
fn cli_refuses(src: &Path, targets: &[&Path], extra: &[&str], dev: &Path, reason: &str) {
    let before: Vec<u64> = targets.iter().map(|t| content_hash(t)).collect();
    let out = crate::common::reroot()
        .arg("copy")
        .args(extra)
        .arg(src)
        .args(targets)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&dev.display().to_string()), "{err}");
    assert!(err.contains(reason), "want {reason:?} in: {err}");
    assert!(err.contains("hint:"), "{err}");
    let out = crate::common::reroot()
        .args(["--json", "copy"])
        .args(extra)
        .arg(src)
        .args(targets)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &doc["error"];
    assert_eq!(e["kind"], "refused", "{doc:#}");
    assert_eq!(e["exit_code"], 3, "{doc:#}");
    assert_eq!(e["device"], dev.display().to_string(), "{doc:#}");
    assert!(e["message"].as_str().unwrap().contains(reason), "{doc:#}");
    let after: Vec<u64> = targets.iter().map(|t| content_hash(t)).collect();
    assert_eq!(before, after, "a refused copy changed a target");
}

fn cli_copies(src: &Path, dst: &Path, extra: &[&str]) {
    let out = crate::common::reroot()
        .arg("copy")
        .args(extra)
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(crate::common::e2fsck_clean(dst));
}

#[test]
fn cli_refuses_mounted_held_busy_read_only_targets() {
    require_root!();
    let (_s, src) = ext4_source();
    // Mounted (read-only, so its bytes stay still while we compare).
    let (td, _i, dst) = loopdev(32 * MIB);
    mkfs("ext4", dst.path(), &[]);
    {
        let m = Mounted::new(dst.path(), &td.path().join("mnt"), Some("ro"));
        let at = format!("mounted at {}", m.dir().display());
        cli_refuses(src.path(), &[dst.path()], &["--force"], dst.path(), &at);
    }
    // An image file that backs a loop device.
    let (_h, held_img, _held_loop) = loopdev(32 * MIB);
    stamp(&held_img);
    cli_refuses(
        src.path(),
        &[&held_img],
        &[],
        &held_img,
        "held by loop device",
    );
    // Opened with O_EXCL by someone else.
    stamp(dst.path());
    let excl = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(dst.path())
        .unwrap();
    cli_refuses(
        src.path(),
        &[dst.path()],
        &[],
        dst.path(),
        "opened exclusively",
    );
    drop(excl);
    // Read-only.
    let ro_dir = scratch();
    let ro_img = sparse_file(&ro_dir.path().join("ro.img"), 32 * MIB);
    let ro = LoopDev::attach(&ro_img, &["--read-only"]);
    cli_refuses(src.path(), &[ro.path()], &[], ro.path(), "is read-only");
}

#[test]
fn cli_refuses_same_overlapping_and_small_targets() {
    require_root!();
    let (_s, src) = ext4_source();
    cli_refuses(
        src.path(),
        &[src.path()],
        &["--force"],
        src.path(),
        "is the source",
    );
    // A loop window that overlaps the source's.
    let dir = scratch();
    let img = sparse_file(&dir.path().join("shared.img"), 64 * MIB);
    let a = LoopDev::attach(&img, &["--sizelimit", &(32 * MIB).to_string()]);
    mkfs("ext4", a.path(), &[]);
    let b = LoopDev::attach(
        &img,
        &[
            "--offset",
            &(16 * MIB).to_string(),
            "--sizelimit",
            &(32 * MIB).to_string(),
        ],
    );
    cli_refuses(
        a.path(),
        &[b.path()],
        &["--force"],
        b.path(),
        "overlaps the source",
    );
    // Two targets overlapping each other.
    let (_t, _i, dst) = loopdev(32 * MIB);
    stamp(dst.path());
    cli_refuses(
        src.path(),
        &[dst.path(), dst.path()],
        &[],
        dst.path(),
        "same device as the target",
    );
    // Too small.
    let (_u, _j, small) = loopdev(16 * MIB);
    stamp(small.path());
    cli_refuses(
        src.path(),
        &[small.path()],
        &[],
        small.path(),
        "is 16 MiB (16777216 bytes) but the filesystem needs 32 MiB",
    );
}

#[test]
fn cli_signature_needs_force_and_source_must_not_be_rw() {
    require_root!();
    let (sd, src) = ext4_source();
    let (_t, _i, dst) = loopdev(32 * MIB);
    run_ok(
        Command::new("mkswap")
            .args(["-q", "-L", "precious"])
            .arg(dst.path()),
    );
    cli_refuses(
        src.path(),
        &[dst.path()],
        &[],
        dst.path(),
        "swap signature (UUID ",
    );
    {
        let _rw = Mounted::new(src.path(), &sd.path().join("mnt"), None);
        cli_refuses(
            src.path(),
            &[dst.path()],
            &["--force"],
            src.path(),
            "the source is mounted at",
        );
    }
    // Read-only source and --force: the copy runs.
    let _ro = Mounted::new(src.path(), &sd.path().join("mnt"), Some("ro"));
    cli_copies(src.path(), dst.path(), &["--force"]);
    assert_eq!(blkid(dst.path(), "LABEL"), "src");
}

/// Issue 11: a loop device stacked on the source's loop device was accepted
/// as a target (`LL=$(losetup -f --show $LS); reroot copy --delta $LS $LL`
/// exited 0 and wrote onto the source); the other way round, the source
/// stacked on the target, must be refused too.
#[test]
fn stacked_loop_on_the_source_is_refused() {
    require_root!();
    let (_s, ls) = ext4_source();
    let ll = LoopDev::attach(ls.path(), &[]);
    let before = content_hash(ls.path());
    cli_refuses(
        ls.path(),
        &[ll.path()],
        &["--delta"],
        ll.path(),
        "overlaps the source",
    );
    cli_refuses(
        ls.path(),
        &[ll.path()],
        &["--force"],
        ll.path(),
        "overlaps the source",
    );
    // The source stacked on the target: the target holds it.
    cli_refuses(
        ll.path(),
        &[ls.path()],
        &["--force"],
        ls.path(),
        &format!("held by loop device {}", ll.path().display()),
    );
    assert_eq!(content_hash(ls.path()), before, "the source changed");
    assert!(crate::common::e2fsck_clean(ls.path()));
}

/// Issue 11: a device whose contents are mounted through a loop device
/// stacked on it at an offset (`LY=$(losetup -f --show -o 1M $LX); mount -o
/// ro $LY mnt; reroot copy small.img $LX`) was overwritten without even
/// --force, corrupting the mounted filesystem.
#[test]
fn device_mounted_through_a_stacked_loop_is_refused() {
    require_root!();
    let (sd, src) = ext4_source();
    let src_img = sd.path().join("src.img");
    let (td, _i, lx) = loopdev(40 * MIB);
    let ly = LoopDev::attach(lx.path(), &["--offset", &MIB.to_string()]);
    mkfs("ext4", ly.path(), &["-L", "upper"]);
    {
        let m = Mounted::new(ly.path(), &td.path().join("w"), None);
        sh(&format!(
            "head -c 2000000 /dev/urandom > {}/keep",
            m.dir().display()
        ));
    }
    let m = Mounted::new(ly.path(), &td.path().join("mnt"), Some("ro"));
    let keep = xxhash_rust::xxh3::xxh3_64(&fs::read(m.dir().join("keep")).unwrap());
    let reason = format!(
        "held by loop device {} (at byte {MIB})",
        ly.path().display()
    );
    for extra in [
        &[][..],
        &["--force"][..],
        &["--delta"][..],
        &["--full", "--force"][..],
    ] {
        cli_refuses(&src_img, &[lx.path()], extra, lx.path(), &reason);
    }
    let t = facts(lx.path());
    let r = target::check_copy(&facts(src.path()), &[t], MIB, true);
    assert!(rules(&r).contains(&Rule::Held), "{r:?}");
    let mounted = r
        .iter()
        .find(|r| r.rule == Rule::Mounted)
        .expect("a Mounted refusal");
    assert!(
        mounted.reason.contains("stacked on it is mounted at"),
        "{}",
        mounted.reason
    );
    // The mounted filesystem is intact.
    sh("sync");
    assert_eq!(
        xxhash_rust::xxh3::xxh3_64(&fs::read(m.dir().join("keep")).unwrap()),
        keep
    );
    drop(m);
    assert!(crate::common::e2fsck_clean(ly.path()));
}

/// Issue 11: an image-file source mounted read-write through a loop device
/// was not refused (`mount /dev/loop0 mnt; reroot copy --full small.img
/// /dev/loop1` exited 0), although the loop device itself as the source was.
#[test]
fn image_source_mounted_rw_through_a_loop_is_refused() {
    require_root!();
    let (sd, src) = ext4_source();
    let src_img = sd.path().join("src.img");
    let (_t, _i, dst) = loopdev(32 * MIB);
    stamp(dst.path());
    let _rw = Mounted::new(src.path(), &sd.path().join("mnt"), None);
    let reason = format!(
        "the source's loop device {} stacked on it is mounted at",
        src.path().display()
    );
    cli_refuses(&src_img, &[dst.path()], &["--full"], &src_img, &reason);
    cli_refuses(&src_img, &[dst.path()], &["--force"], &src_img, &reason);
}

/// Issue 11: `--delta` / `--resume` overwrote any filesystem (`mkfs.xfs -f -L
/// precious $T; reroot copy --delta $SRC $T` exited 0). A delta pass needs an
/// earlier copy of this very source on the target, or --force.
#[test]
fn delta_onto_a_foreign_filesystem_is_refused() {
    require_root!();
    let (sd, src) = ext4_source();
    // mkfs.xfs wants at least 300 MB.
    let (_t, _i, dst) = loopdev(320 * MIB);
    let mut foreign = vec![("ext4", vec!["-L", "precious"])];
    if crate::common::have_tool("mkfs.xfs") {
        foreign.push(("xfs", vec!["-L", "precious"]));
    } else {
        crate::common::skip("`mkfs.xfs` is not installed: the xfs target not tried");
    }
    for (fstype, extra) in foreign {
        sh(&format!("wipefs -a -q {}", dst.path().display()));
        mkfs(fstype, dst.path(), &extra);
        for flag in ["--delta", "--resume"] {
            cli_refuses(
                src.path(),
                &[dst.path()],
                &[flag],
                dst.path(),
                "that is not an earlier copy of the source",
            );
        }
        assert_eq!(blkid(dst.path(), "LABEL"), "precious", "{fstype}");
    }
    // An earlier copy of the source: the delta pass runs and rewrites what changed.
    cli_copies(src.path(), dst.path(), &["--force"]);
    {
        let m = Mounted::new(src.path(), &sd.path().join("m"), None);
        sh(&format!(
            "head -c 500000 /dev/urandom > {}/new",
            m.dir().display()
        ));
    }
    cli_copies(src.path(), dst.path(), &["--delta"]);
    let out = crate::common::reroot()
        .arg("verify")
        .arg(src.path())
        .arg(dst.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --force overrides the rule (the user says the target is theirs to lose).
    sh(&format!("wipefs -a -q {}", dst.path().display()));
    mkfs("ext4", dst.path(), &["-L", "precious"]);
    cli_copies(src.path(), dst.path(), &["--delta", "--force"]);
    assert_eq!(blkid(dst.path(), "LABEL"), "src");
}

/// Issue 11: the TooSmall refusal told the user to shrink the source with
/// `reroot grow`, which never shrinks.
#[test]
fn too_small_hint_does_not_offer_reroot_grow() {
    require_tool!("mkfs.ext4");
    let dir = scratch();
    let src = sparse_file(&dir.path().join("src.img"), 32 * MIB);
    mkfs("ext4", &src, &[]);
    let dst = sparse_file(&dir.path().join("small.img"), 16 * MIB);
    let out = crate::common::reroot()
        .arg("copy")
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("but the filesystem needs 32 MiB"), "{err}");
    assert!(!err.contains("reroot grow"), "{err}");
    assert!(err.contains("reroot does not shrink"), "{err}");
    assert!(err.contains(&format!("truncate -s {} ", 32 * MIB)), "{err}");
    assert_eq!(fs::metadata(&dst).unwrap().len(), 16 * MIB);
}

/// Issue 11, through device-mapper: a dm device on a loop device stacked on
/// the target (at an offset) holds the target two levels up, and its mount
/// is the target's; the other way round, the dm device as the source
/// overlaps the target all the way down.
#[test]
fn dm_on_a_loop_stacked_on_the_target_is_followed() {
    require_root!();
    if !have_dm() {
        eprintln!("SKIP dm_on_a_loop_stacked_on_the_target_is_followed: no device-mapper");
        return;
    }
    let (_s, src) = ext4_source();
    let (td, _i, lx) = loopdev(40 * MIB);
    let ly = LoopDev::attach(lx.path(), &["--offset", &MIB.to_string()]);
    let name = format!("reroot-stack-{}", std::process::id());
    let dm = DmLinear::new(&name, ly.path(), 32 * MIB / 512);
    let mapper = Path::new("/dev/mapper").join(&dm.name);
    mkfs("ext4", &mapper, &["-L", "upper"]);
    let m = Mounted::new(&mapper, &td.path().join("mnt"), Some("ro"));
    let t = facts(lx.path());
    let ly_name = ly.path().file_name().unwrap().to_str().unwrap();
    let dm_holder = t
        .holders
        .iter()
        .find(|h| h.dm_name.as_deref() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no dm holder in {:?}", t.holders));
    assert_eq!(dm_holder.of, ly_name);
    assert_eq!(t.mounts.len(), 1, "{:?}", t.mounts);
    assert_eq!(t.mounts[0].mount_point, m.dir());
    cli_refuses(
        src.path(),
        &[lx.path()],
        &["--force"],
        lx.path(),
        &format!("(stacked on {ly_name})"),
    );
    // Down: the dm device's footprint reaches the target at 1 MiB.
    drop(m);
    let r = target::check_copy(&facts(&mapper), &[facts(lx.path())], MIB, true);
    let overlap = r
        .iter()
        .find(|r| r.rule == Rule::Overlap)
        .expect("an Overlap refusal");
    let lx_name = lx.path().file_name().unwrap().to_str().unwrap();
    assert!(
        overlap.reason.contains(&format!("bytes {}..", MIB)) && overlap.reason.contains(lx_name),
        "{}",
        overlap.reason
    );
    assert!(crate::common::e2fsck_clean(&mapper));
}
