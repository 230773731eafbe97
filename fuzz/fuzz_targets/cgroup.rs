//! Fuzz the `/proc/PID/cgroup` parser and the service lookup: any text
//! must parse without panicking; every line it accepts writes back to
//! itself; the service found is named after a unit or OpenRC service with
//! no `/` in it, and the path shown is one of the lines' paths.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/cgroup.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
