//! Fuzz the copy plan (`reroot::plan::copy::plan_copy`) with used maps,
//! device sizes, block and chunk sizes decoded from the input, up to the
//! end of the u64 range. Whatever they are, planning returns (no panic, no
//! overflow); a plan it makes covers every used byte of the source's
//! block-aligned part with aligned ranges that fit the source and every
//! target, its chunks cover exactly its ranges, and its counts add up. A
//! target at least as large as the source is never refused.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/copy_plan.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
