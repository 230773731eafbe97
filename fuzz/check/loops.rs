//! Fuzz the loop-device probe (`reroot::probe::loops`) on a fixture sysfs
//! written from the input: the fields of `/sys/block/loop0/` (`dev`,
//! `loop/backing_file`, `loop/offset`, `loop/sizelimit`, `loop/autoclear`,
//! `ro`), separated by NUL bytes. Whatever they hold, reading returns; a
//! device is reported exactly when it has a backing file and a `MAJ:MIN`,
//! with every field as sysfs says (0 for what does not parse).
//!
//! Shared by the cargo-fuzz target `fuzz_targets/loops.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use reroot::probe::SysRoot;
use reroot::probe::loops::{list, read_one};
use reroot::probe::maps::DELETED_SUFFIX;

/// One fixture tree per process, rewritten for every input.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("reroot-fuzz-loops-{}", std::process::id()));
        std::fs::create_dir_all(b.join("sys/block/loop0/loop")).expect("fixture dir");
        b
    })
}

const FILES: [&str; 6] = [
    "dev",
    "loop/backing_file",
    "loop/offset",
    "loop/sizelimit",
    "loop/autoclear",
    "ro",
];

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let dir = base().join("sys/block/loop0");
    let mut fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    fields.resize(FILES.len(), b"");
    for (name, content) in FILES.iter().zip(&fields) {
        std::fs::write(dir.join(name), content).expect("writing the fixture");
    }
    let sys = SysRoot::under(base());
    let got = read_one(&sys, "loop0");
    let all = list(&sys).expect("listing a fixture sysfs");
    assert_eq!(all.first(), got.as_ref());
    assert!(all.len() <= 1);

    let field = |i: usize| text(fields[i]).map(|s| s.trim_end_matches('\n').to_owned());
    let devno = field(0).and_then(|s| {
        let (a, b) = s.trim().split_once(':')?;
        Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
    });
    let backing = field(1).filter(|s| !s.is_empty());
    let num = |i: usize| {
        field(i)
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    match (devno, backing) {
        (Some((major, minor)), Some(raw)) => {
            let l = got.as_ref().expect("an attached loop device is reported");
            assert_eq!((l.major, l.minor), (major, minor));
            assert_eq!(l.dev(), nix_makedev(major, minor));
            assert_eq!(l.deleted, raw.ends_with(DELETED_SUFFIX));
            let path = raw.strip_suffix(DELETED_SUFFIX).unwrap_or(&raw);
            assert_eq!(l.backing_file, PathBuf::from(path));
            assert_eq!(l.offset, num(2));
            assert_eq!(l.sizelimit, num(3));
            assert_eq!(l.autoclear, num(4) == 1);
            assert_eq!(l.read_only, num(5) == 1);
            assert_eq!(l.node(), PathBuf::from("/dev/loop0"));
            assert_eq!(l.name, "loop0");
        }
        _ => assert_eq!(got, None),
    }
    got.is_some()
}

/// glibc's `makedev`.
fn nix_makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

/// Remove this process's fixture tree (the seed replay calls it when done;
/// the fuzz target, which runs until killed, does not).
#[allow(dead_code)]
pub fn remove_fixture() {
    let _ = std::fs::remove_dir_all(base());
}
