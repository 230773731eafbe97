//! Fuzz `reroot::probe::fs_superblock::read` (what `grow` and `--new-uuid`
//! decide on) with a whole device image. Whatever it holds, `read` returns;
//! what it accepts has a formatted UUID, a power-of-two block size and a
//! size consistent with its block count.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/fs_superblock.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::fs_superblock::read;

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let Ok(Some(fs)) = read(data) else {
        return false;
    };
    assert_eq!(fs.uuid.len(), 36);
    assert!(fs.uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert!(fs.block_size.is_power_of_two() && (512..=65536).contains(&fs.block_size));
    if let Some(e) = &fs.ext {
        assert!(fs.kind.is_ext());
        assert_eq!(
            Some(fs.fs_bytes),
            e.blocks_count.checked_mul(u64::from(fs.block_size))
        );
    }
    if let Some(b) = &fs.btrfs {
        assert_eq!(fs.fs_bytes, b.dev_total_bytes);
    }
    true
}
