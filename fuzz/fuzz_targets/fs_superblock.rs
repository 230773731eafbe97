//! Fuzz `reroot::probe::fs_superblock::read` (what `grow` and `--new-uuid`
//! decide on) with a whole device image. Whatever it holds, `read` returns;
//! what it accepts has a formatted UUID, a power-of-two block size and a
//! size consistent with its block count.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/fs_superblock.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
