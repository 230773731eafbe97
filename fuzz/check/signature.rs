//! Fuzz the signature probe: the input is the start (or all) of a device.
//! Whatever it holds, `detect` must return without panicking, and every
//! signature it reports must lie inside the device, with a UUID in one of
//! the shapes the formats use and a label without NULs.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/signature.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::signature::{SignatureKind, detect};

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let size = data.len() as u64;
    let found = detect(data, size).expect("reads inside a byte slice cannot fail");
    for s in &found {
        assert!(
            s.offset < size,
            "signature at {} past the end {size}",
            s.offset
        );
        if let Some(u) = &s.uuid {
            assert!(
                !u.is_empty() && u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "odd uuid {u:?}"
            );
        }
        if let Some(l) = &s.label {
            assert!(!l.is_empty() && !l.contains('\0'), "odd label {l:?}");
        }
    }
    // A longer device with the same head may add signatures, never lose one
    // found in the head (md is placed relative to the end: not compared).
    let mut longer = data.to_vec();
    longer.resize(data.len() + 4096, 0);
    let more = detect(&longer, longer.len() as u64).expect("slice reads cannot fail");
    let head = found
        .iter()
        .filter(|s| s.kind != SignatureKind::LinuxRaidMember);
    for s in head {
        assert!(
            more.iter()
                .any(|m| m.kind == s.kind && m.offset == s.offset)
        );
    }
    !found.is_empty()
}
