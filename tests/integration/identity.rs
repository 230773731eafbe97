//! Identity after `reroot copy`: by default the copy keeps the source's UUID
//! (and the report says both devices are twins); with `--new-uuid` the copy
//! gets its own UUID through the supported tool, stays clean (e2fsck -fn,
//! also with metadata_csum, with and without metadata_csum_seed; xfs_repair;
//! btrfs check) and keeps its tree, and the source is untouched.

use std::path::Path;
use std::process::Command;

use crate::common::{self, run_ok};
use crate::grow::{Pair, dumpe2fs_text};

fn blkid_uuid(dev: &Path) -> String {
    let out = run_ok(
        Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "UUID"])
            .arg(dev),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The report's device list as (path, uuid) pairs.
fn devices(report: &serde_json::Value) -> Vec<(String, String)> {
    report["identity"]["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no identity.devices in {report}"))
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap().to_owned(),
                d["uuid"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Shared checks after `copy --new-uuid`: a different UUID on the target,
/// the same on the source, and a report naming both.
fn assert_new_uuid(p: &Pair, report: &serde_json::Value, source_uuid: &str) -> String {
    let new = blkid_uuid(p.target.path());
    assert_ne!(new, source_uuid, "the copy got a new UUID");
    assert_eq!(blkid_uuid(p.source.path()), source_uuid, "source untouched");
    let change = &report["identity"]["changes"][0];
    assert_eq!(change["old_uuid"], source_uuid, "{report}");
    assert_eq!(change["new_uuid"], new.as_str(), "{report}");
    assert_eq!(
        devices(report),
        vec![
            (
                p.source.path().display().to_string(),
                source_uuid.to_owned()
            ),
            (p.target.path().display().to_string(), new.clone()),
        ]
    );
    assert_eq!(report["identity"]["shared_uuids"], serde_json::json!([]));
    new
}

#[test]
fn copy_keeps_the_identity_by_default_and_says_so() {
    require_root!();
    let (p, report) = Pair::with_copy("ext4", 256, 512, &["-L", "root"], &[]);
    let uuid = blkid_uuid(p.source.path());
    assert_eq!(blkid_uuid(p.target.path()), uuid);
    assert_eq!(report["identity"]["changes"], serde_json::json!([]));
    assert_eq!(
        devices(&report),
        vec![
            (p.source.path().display().to_string(), uuid.clone()),
            (p.target.path().display().to_string(), uuid.clone()),
        ]
    );
    assert_eq!(
        report["identity"]["shared_uuids"][0]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let notes = report["identity"]["notes"].to_string();
    assert!(notes.contains("twins"), "{notes}");
    assert!(
        notes.contains("\\\"root\\\""),
        "the shared label is named: {notes}"
    );
}

#[test]
fn new_uuid_on_metadata_csum_ext4_that_needs_a_check_first() {
    require_root!();
    // Pretend the source was mounted after its last check, as a live root
    // is: tune2fs -U then insists on e2fsck -f before rewriting checksums.
    let (p, report) = Pair::build("ext4", 256, 512, &[], &["--new-uuid"], |src| {
        run_ok(
            Command::new("debugfs")
                .args(["-w", "-R", "ssv lastcheck 20200101"])
                .arg(src),
        );
    });
    let source_uuid = blkid_uuid(p.source.path());
    assert_new_uuid(&p, &report, &source_uuid);
    let change = &report["identity"]["changes"][0];
    assert!(
        change["method"]
            .as_str()
            .unwrap()
            .contains("checksum rewritten"),
        "{change}"
    );
    assert_eq!(
        change["fsck"]["verdict"], "clean",
        "e2fsck ran first: {change}"
    );
    let features = dumpe2fs_text(p.target.path(), "Filesystem features");
    assert!(features.contains("metadata_csum"), "{features}");
    assert!(
        !features.contains("metadata_csum_seed"),
        "reroot must not add metadata_csum_seed: {features}"
    );
    assert!(
        common::e2fsck_clean(p.target.path()),
        "e2fsck -fn accepts it"
    );
    assert_eq!(p.target_tree("ro"), p.tree);
}

#[test]
fn new_uuid_with_metadata_csum_seed_and_on_ext2() {
    require_root!();
    let (p, report) = Pair::with_copy(
        "ext4",
        256,
        512,
        &["-O", "metadata_csum_seed"],
        &["--new-uuid"],
    );
    let uuid = blkid_uuid(p.source.path());
    assert_new_uuid(&p, &report, &uuid);
    let change = &report["identity"]["changes"][0];
    assert!(
        change["method"].as_str().unwrap().contains("seed"),
        "{change}"
    );
    assert!(common::e2fsck_clean(p.target.path()));
    assert_eq!(p.target_tree("ro"), p.tree);

    let (p, report) = Pair::with_copy("ext2", 256, 256, &[], &["--new-uuid"]);
    let uuid = blkid_uuid(p.source.path());
    assert_new_uuid(&p, &report, &uuid);
    assert!(common::e2fsck_clean(p.target.path()));
    assert_eq!(p.target_tree("ro"), p.tree);
}

#[test]
fn new_uuid_then_grow() {
    require_root!();
    let (p, report) = Pair::with_copy("ext4", 256, 512, &[], &["--new-uuid"]);
    let new = assert_new_uuid(&p, &report, &blkid_uuid(p.source.path()));
    let grown = crate::grow::assert_ok(
        &common::reroot()
            .args(["grow", "--json"])
            .arg(p.target.path())
            .output()
            .unwrap(),
    );
    assert_eq!(grown["uuid"], new.as_str(), "grow keeps the new identity");
    assert!(common::e2fsck_clean(p.target.path()));
}

#[test]
fn new_uuid_on_xfs() {
    require_root!();
    require_tool!("mkfs.xfs");
    require_tool!("xfs_admin");
    let (p, report) = Pair::with_copy("xfs", 320, 320, &[], &["--new-uuid"]);
    let uuid = blkid_uuid(p.source.path());
    assert_new_uuid(&p, &report, &uuid);
    run_ok(Command::new("xfs_repair").arg("-n").arg(p.target.path()));
    // Its own UUID now: mounts beside the source without nouuid.
    let _src = common::Mounted::new(p.source.path(), &p.mnt("src"), Some("ro"));
    assert_eq!(p.target_tree("ro"), p.tree);
}

#[test]
fn new_uuid_on_btrfs() {
    require_root!();
    require_tool!("mkfs.btrfs");
    require_tool!("btrfstune");
    let (p, report) = Pair::with_copy("btrfs", 256, 256, &[], &["--new-uuid"]);
    let uuid = blkid_uuid(p.source.path());
    assert_new_uuid(&p, &report, &uuid);
    run_ok(
        Command::new("btrfs")
            .args(["check", "--readonly"])
            .arg(p.target.path()),
    );
    assert_eq!(p.target_tree("ro"), p.tree);
}

/// `check --root MNT --json` boot-config findings for the fstab in MNT.
fn boot_findings(root: &Path, target: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = common::reroot()
        .args(["check", "--json", "--root"])
        .arg(root)
        .arg("--target")
        .arg(target)
        .args(extra)
        .output()
        .unwrap();
    let report = crate::grow::json(&out);
    report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {report}"))
        .iter()
        .filter(|f| f["category"] == "boot-config")
        .cloned()
        .collect()
}

#[test]
fn check_judges_how_fstab_names_the_root() {
    require_root!();
    let dir = common::scratch();
    let src = common::LoopDev::attach(
        &common::sparse_file(&dir.path().join("src.img"), 64 << 20),
        &[],
    );
    let tgt = common::LoopDev::attach(
        &common::sparse_file(&dir.path().join("tgt.img"), 128 << 20),
        &[],
    );
    common::mkfs("ext4", src.path(), &["-L", "oldroot"]);
    let uuid = blkid_uuid(src.path());
    let m = common::Mounted::new(src.path(), &dir.path().join("root"), None);
    std::fs::create_dir_all(m.dir().join("etc")).unwrap();
    let fstab = m.dir().join("etc/fstab");

    // By device path: breaks, and the advice names the UUID to use instead.
    std::fs::write(
        &fstab,
        format!("# test\n{} / ext4 defaults 0 1\n", src.path().display()),
    )
    .unwrap();
    let fs = boot_findings(m.dir(), tgt.path(), &[]);
    let f = fs
        .iter()
        .find(|f| f["summary"].as_str().unwrap().contains("/etc/fstab line 2"))
        .unwrap_or_else(|| panic!("no finding for the fstab line: {fs:?}"));
    assert_eq!(f["severity"], "warning", "{f}");
    assert!(
        f["summary"].as_str().unwrap().contains("device path"),
        "{f}"
    );
    assert!(
        f["advice"]
            .as_str()
            .unwrap()
            .contains(&format!("`UUID={uuid}`")),
        "{f}"
    );
    assert!(
        fs.iter()
            .any(|f| f["summary"].as_str().unwrap().contains("share UUID")),
        "the twin-identity note: {fs:?}"
    );

    // By UUID: keeps working with an identical copy, breaks with --new-uuid.
    std::fs::write(&fstab, format!("UUID={uuid} / ext4 defaults 0 1\n")).unwrap();
    let fs = boot_findings(m.dir(), tgt.path(), &[]);
    let f = fs
        .iter()
        .find(|f| f["summary"].as_str().unwrap().contains("line 1"))
        .unwrap();
    assert_eq!(f["severity"], "info", "{f}");
    let fs = boot_findings(m.dir(), tgt.path(), &["--new-uuid"]);
    let f = fs
        .iter()
        .find(|f| f["summary"].as_str().unwrap().contains("line 1"))
        .unwrap();
    assert_eq!(f["severity"], "warning", "{f}");
    assert!(f["advice"].as_str().unwrap().contains("initramfs"), "{f}");

    // By label: keeps working either way.
    std::fs::write(&fstab, "LABEL=oldroot / ext4 defaults 0 1\n").unwrap();
    for extra in [&[][..], &["--new-uuid"][..]] {
        let fs = boot_findings(m.dir(), tgt.path(), extra);
        let f = fs
            .iter()
            .find(|f| f["summary"].as_str().unwrap().contains("line 1"))
            .unwrap();
        assert_eq!(f["severity"], "info", "{f}");
    }
}
