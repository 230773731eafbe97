//! Fuzz the fdinfo parser: any text must parse or fail without panicking.
//! What it accepts must survive a round trip through the kernel's format,
//! and the access mode must follow from the flags' O_ACCMODE bits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reroot::probe::fdinfo::{Access, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(info) = parse(&text) else { return };
    let mut back = format!("pos:\t{}\nflags:\t0{:o}\n", info.pos, info.flags);
    if let Some(m) = info.mnt_id {
        back.push_str(&format!("mnt_id:\t{m}\n"));
    }
    if let Some(i) = info.ino {
        back.push_str(&format!("ino:\t{i}\n"));
    }
    assert_eq!(parse(&back).expect("a written-back fdinfo parses"), info);
    let access = info.access();
    assert_eq!(access, Access::from_flags(info.flags));
    assert_eq!(access.writes(), matches!(info.flags & 3, 1 | 2));
});
