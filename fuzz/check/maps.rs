//! Fuzz the `/proc/PID/maps` parser: any text must parse or fail without
//! panicking. Every line it accepts, written back the way the kernel writes
//! it (hex fields, the path after padding, " (deleted)" appended), parses to
//! the same entry; `dev()` encodes major:minor and the predicates agree
//! with the fields.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/maps.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::maps::{DELETED_SUFFIX, MapEntry, parse, parse_line};

fn line_of(e: &MapEntry<'_>) -> String {
    let p = e.perms;
    let perms: String = [
        if p.read { 'r' } else { '-' },
        if p.write { 'w' } else { '-' },
        if p.exec { 'x' } else { '-' },
        if p.shared { 's' } else { 'p' },
    ]
    .iter()
    .collect();
    format!(
        "{:x}-{:x} {perms} {:08x} {:02x}:{:02x} {}                   {}{}",
        e.start,
        e.end,
        e.offset,
        e.major,
        e.minor,
        e.inode,
        e.path,
        if e.deleted { DELETED_SUFFIX } else { "" }
    )
}

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let all: Vec<_> = parse(&text).collect();
    assert!(all.len() <= text.lines().count());
    for (i, line) in text.lines().enumerate() {
        let Ok(e) = parse_line(line, i + 1) else {
            continue;
        };
        assert!(!e.path.starts_with(' '), "padding left in {:?}", e.path);
        assert!(!e.deleted || !e.path.is_empty());
        let back = line_of(&e);
        assert_eq!(
            parse_line(&back, 1).expect("a written-back line parses"),
            e,
            "round trip of {back:?}"
        );
        let dev = e.dev();
        // glibc's major()/minor() undo makedev().
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
        let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
        assert_eq!((major, minor), (u64::from(e.major), u64::from(e.minor)));
        assert_eq!(e.is_file(), e.inode != 0 && e.path.starts_with('/'));
        assert_eq!(
            e.writes_file(),
            e.perms.write && e.perms.shared && e.is_file()
        );
    }
    !all.is_empty()
}
