//! Fuzz the `/proc/PID/maps` parser: any text must parse or fail without
//! panicking. Every line it accepts, written back the way the kernel writes
//! it (hex fields, the path after padding, " (deleted)" appended), parses to
//! the same entry; `dev()` encodes major:minor and the predicates agree
//! with the fields.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/maps.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
