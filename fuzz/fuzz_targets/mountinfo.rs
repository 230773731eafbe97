//! Fuzz the mountinfo parser: any text must parse or fail without panicking.
//! What it accepts must survive a round trip: each mount, written back as a
//! mountinfo line (escaping space, tab, newline and backslash as the kernel
//! does), parses to the same mount. `unescape` never grows its input.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/mountinfo.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
