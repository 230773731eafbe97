//! Fuzz the `/proc/net/unix` parser: any text must parse without panicking;
//! every socket it accepts, written back in the kernel's format
//! (`%pK: %08X %08X %08X %04X %02X %5lu` and the path), parses to the same
//! socket, and the header never parses as a socket.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/unix.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
