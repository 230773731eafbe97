//! Fuzz the fdinfo parser: any text must parse or fail without panicking.
//! What it accepts must survive a round trip through the kernel's format,
//! and the access mode must follow from the flags' O_ACCMODE bits.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/fdinfo.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
