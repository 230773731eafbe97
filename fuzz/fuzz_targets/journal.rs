//! Fuzz the migration journal's parser: whatever the bytes, `parse` must
//! return without panicking; what it accepts must re-encode to exactly the
//! bytes of its valid lines, number its records 1, 2, 3, ... with `started`
//! first and only there, and fold into a summary whose stages are the
//! request's. A prefix of an accepted journal is accepted too (a write cut
//! short only loses its last line).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/journal.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
