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
