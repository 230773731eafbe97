//! Fuzz the loop-device probe (`reroot::probe::loops`) on a fixture sysfs
//! written from the input: the fields of `/sys/block/loop0/` (`dev`,
//! `loop/backing_file`, `loop/offset`, `loop/sizelimit`, `loop/autoclear`,
//! `ro`), separated by NUL bytes. Whatever they hold, reading returns; a
//! device is reported exactly when it has a backing file and a `MAJ:MIN`,
//! with every field as sysfs says (0 for what does not parse).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/loops.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
