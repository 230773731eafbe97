//! Fuzz the mountinfo parser: any text must parse or fail without panicking.
//! What it accepts must survive a round trip: each mount, written back as a
//! mountinfo line (escaping space, tab, newline and backslash as the kernel
//! does), parses to the same mount. `unescape` never grows its input.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/mountinfo.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::mountinfo::{Mount, parse, parse_line, unescape};

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

fn line_of(m: &Mount) -> String {
    let mut tags = Vec::new();
    if let Some(n) = m.propagation.shared {
        tags.push(format!("shared:{n}"));
    }
    if let Some(n) = m.propagation.master {
        tags.push(format!("master:{n}"));
    }
    if let Some(n) = m.propagation.propagate_from {
        tags.push(format!("propagate_from:{n}"));
    }
    if m.propagation.unbindable {
        tags.push("unbindable".into());
    }
    let mut fields = vec![
        m.mount_id.to_string(),
        m.parent_id.to_string(),
        format!("{}:{}", m.major, m.minor),
        escape(m.root.to_str().expect("parsed from a str")),
        escape(m.mount_point.to_str().expect("parsed from a str")),
        escape(&m.mount_options.join(",")),
    ];
    fields.extend(tags);
    fields.push("-".into());
    fields.push(escape(&m.fstype));
    fields.push(escape(&m.source));
    fields.push(escape(&m.super_options.join(",")));
    fields.join(" ")
}

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    assert!(unescape(&text).len() <= text.len());
    let Ok(mounts) = parse(&text) else {
        return false;
    };
    for m in &mounts {
        let again = parse_line(&line_of(m), 1).expect("a written-back line parses");
        assert_eq!(&again, m, "round trip of {:?}", line_of(m));
        let dev = m.dev();
        // glibc's major()/minor() undo makedev().
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
        let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
        assert_eq!((major, minor), (u64::from(m.major), u64::from(m.minor)));
        assert!(["shared", "slave", "private", "unbindable"].contains(&m.propagation.make_flag()));
    }
    !mounts.is_empty()
}
