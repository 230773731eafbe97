//! Every fuzz target's seed corpus, replayed as ordinary tests (stable
//! Rust, no libFuzzer): each file under `fuzz/seeds/<target>/` goes through
//! the very function the cargo-fuzz target calls (`fuzz/check/<target>.rs`,
//! included here), which asserts the parser's invariants. Seeds are small
//! real inputs, crafted edge cases and every input a fuzzer ever crashed
//! on (named `crash-*`), so a fixed parser bug stays fixed. Seeds named
//! `ok-*` are valid inputs the parser must accept, so the invariants on
//! what it accepts are exercised, not only the refusals.

use std::path::Path;

#[path = "../../fuzz/check/boot_refs.rs"]
mod boot_refs;
#[path = "../../fuzz/check/cgroup.rs"]
mod cgroup;
#[path = "../../fuzz/check/copy_plan.rs"]
mod copy_plan;
#[path = "../../fuzz/check/ext_map.rs"]
mod ext_map;
#[path = "../../fuzz/check/fdinfo.rs"]
mod fdinfo;
#[path = "../../fuzz/check/fs_superblock.rs"]
mod fs_superblock;
#[path = "../../fuzz/check/journal.rs"]
mod journal;
#[path = "../../fuzz/check/loops.rs"]
mod loops;
#[path = "../../fuzz/check/maps.rs"]
mod maps;
#[path = "../../fuzz/check/mountinfo.rs"]
mod mountinfo;
#[path = "../../fuzz/check/signature.rs"]
mod signature;
#[path = "../../fuzz/check/swaps.rs"]
mod swaps;
#[path = "../../fuzz/check/unix.rs"]
mod unix;

/// Run `check` on every seed of `target`; there must be some, and some
/// `ok-*` seed among them.
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    let mut ok = 0;
    for s in &seeds {
        let data = std::fs::read(s).unwrap();
        let Ok(accepted) = std::panic::catch_unwind(|| check(&data)) else {
            panic!("fuzz target {target} fails on seed {}", s.display());
        };
        let name = s.file_name().unwrap().to_string_lossy();
        if name.starts_with("ok-") {
            assert!(accepted, "{target}: the parser refuses {}", s.display());
            ok += 1;
        }
    }
    assert!(ok > 0, "{target}: no ok-* seed in {}", dir.display());
    // The empty input is always a case.
    check(&[]);
}

macro_rules! replay_tests {
    ($($t:ident),* $(,)?) => {
        $(
            #[test]
            fn $t() {
                replay(stringify!($t), $t::check);
            }
        )*
    };
}

#[test]
fn loops() {
    replay("loops", loops::check);
    loops::remove_fixture();
}

replay_tests!(
    boot_refs,
    cgroup,
    copy_plan,
    ext_map,
    fdinfo,
    fs_superblock,
    journal,
    maps,
    mountinfo,
    signature,
    swaps,
    unix,
);
