//! Fuzz the signature probe: the input is the start (or all) of a device.
//! Whatever it holds, `detect` must return without panicking, and every
//! signature it reports must lie inside the device, with a UUID in one of
//! the shapes the formats use and a label without NULs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/signature.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
