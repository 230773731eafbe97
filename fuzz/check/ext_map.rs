//! Fuzz the ext2/3/4 map parser: the input is a whole image. Whatever it
//! holds, `read_map` must return (no panic, no hang, no huge allocation),
//! and a map it accepts must be sorted, disjoint, non-adjacent ranges inside
//! the filesystem, which itself fits the image and starts with the boot area.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/ext_map.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::ext::{MapOptions, detect, read_map};

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let _ = detect(data);
    let mut accepted = false;
    let strict = MapOptions::default();
    let lax = MapOptions {
        ignore_csum: true,
        live: true,
    };
    for opts in [strict, lax] {
        let Ok(m) = read_map(data, &opts) else {
            continue;
        };
        accepted = true;
        let g = &m.geometry;
        assert_eq!(
            Some(g.fs_bytes),
            g.blocks_count.checked_mul(u64::from(g.block_size))
        );
        assert!(g.fs_bytes <= data.len() as u64);
        let mut prev_end: Option<u64> = None;
        for e in &m.used {
            assert!(!e.is_empty());
            if let Some(p) = prev_end {
                assert!(e.start() > p, "ranges overlap, touch or are unsorted");
            }
            assert!(e.end() <= g.fs_bytes, "range past the end of the fs");
            prev_end = Some(e.end());
        }
        assert!(m.used.contains(0) && m.used.contains(g.fs_bytes.min(2048) - 1));
    }
    accepted
}
