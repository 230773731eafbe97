//! Fuzz the ext2/3/4 map parser: the input is a whole image. Whatever it
//! holds, `read_map` must return (no panic, no hang, no huge allocation),
//! and a map it accepts must be sorted, disjoint, non-adjacent ranges inside
//! the filesystem, which itself fits the image and starts with the boot area.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/ext_map.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
