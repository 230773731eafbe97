//! Fuzz the text parsers of issue 6 with one input: fstab, the kernel
//! command line (and its `root=`), e2fsck's `-C FD` lines and resize2fs's
//! `-p` output; then the identity decision over what they found. Nothing
//! may panic; progress stays within 0..=100 and resize progress only rises.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/boot_refs.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
