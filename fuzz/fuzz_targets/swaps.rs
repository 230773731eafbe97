//! Fuzz the `/proc/swaps` parser: any text must parse without panicking;
//! every swap it accepts, written back the way the kernel writes it (the
//! path octal-escaped, " (deleted)" appended raw, then the columns), parses
//! to the same swap.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/swaps.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
