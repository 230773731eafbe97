//! Fuzz the `/proc/swaps` parser: any text must parse without panicking;
//! every swap it accepts, written back the way the kernel writes it (the
//! path with " (deleted)" when unlinked, octal-escaped, then the columns),
//! parses to the same swap. Fields split on spaces and tabs only.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/swaps.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::maps::DELETED_SUFFIX;
use reroot::probe::mountinfo::unescape;
use reroot::probe::swaps::{Swap, parse, parse_line};

/// The kernel's `seq_path` escaping of " \t\n\\".
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

fn line_of(s: &Swap) -> String {
    let path = s.path.to_str().expect("parsed from a str");
    format!(
        "{}{}\t{}\t{}\t{}\t{}",
        escape(path),
        if s.deleted { "\\040(deleted)" } else { "" },
        s.kind,
        s.size_kib,
        s.used_kib,
        s.priority
    )
}

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let all = parse(&text);
    assert!(all.len() <= text.lines().count());
    for line in text.lines() {
        let Some(s) = parse_line(line) else { continue };
        assert!(!s.kind.is_empty() && !s.kind.contains([' ', '\t']));
        assert!(!s.deleted || unescape(line).contains(DELETED_SUFFIX));
        assert!(!s.path.to_str().unwrap().ends_with(DELETED_SUFFIX) || s.deleted);
        assert_eq!(s.is_file(), s.kind == "file");
        let back = line_of(&s);
        assert_eq!(
            parse_line(&back).as_ref(),
            Some(&s),
            "round trip of {back:?}"
        );
    }
    !all.is_empty()
}
