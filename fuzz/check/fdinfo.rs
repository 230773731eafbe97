//! Fuzz the fdinfo parser: any text must parse or fail without panicking.
//! What it accepts must survive a round trip through the kernel's format,
//! and the access mode must follow from the flags' O_ACCMODE bits.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/fdinfo.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::fdinfo::{Access, parse};

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(info) = parse(&text) else {
        return false;
    };
    let mut back = format!("pos:\t{}\nflags:\t0{:o}\n", info.pos, info.flags);
    if let Some(m) = info.mnt_id {
        back.push_str(&format!("mnt_id:\t{m}\n"));
    }
    if let Some(i) = info.ino {
        back.push_str(&format!("ino:\t{i}\n"));
    }
    assert_eq!(parse(&back).expect("a written-back fdinfo parses"), info);
    let access = info.access();
    assert_eq!(access, Access::from_flags(info.flags));
    assert_eq!(access.writes(), matches!(info.flags & 3, 1 | 2));
    true
}
