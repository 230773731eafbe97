//! Fuzz the `/proc/net/unix` parser: any text must parse without panicking;
//! every socket it accepts, written back in the kernel's format
//! (`%pK: %08X %08X %08X %04X %02X %5lu` and the path), parses to the same
//! socket, and the header never parses as a socket.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/unix.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::unix::{UnixSocket, parse, parse_line};

fn line_of(s: &UnixSocket) -> String {
    let flags: u32 = if s.listening { 0x0001_0000 } else { 0 };
    let mut l = format!(
        "0000000012345678: 00000002 00000000 {flags:08X} {:04X} {:02X} {:5}",
        s.sock_type, s.state, s.inode
    );
    if let Some(p) = &s.path {
        l.push(' ');
        l.push_str(p);
    }
    l
}

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let all = parse(&text);
    assert!(all.len() <= text.lines().count());
    for s in &all {
        if let Some(p) = &s.path {
            assert!(!p.is_empty() && !p.contains('\n'));
        }
        assert_eq!(
            s.is_bound_to_path(),
            s.path.as_deref().is_some_and(|p| !p.starts_with('@'))
        );
        let back = line_of(s);
        assert_eq!(
            parse_line(&back).as_ref(),
            Some(s),
            "round trip of {back:?}"
        );
    }
    assert_eq!(
        parse_line("Num       RefCount Protocol Flags    Type St Inode Path"),
        None
    );
    !all.is_empty()
}
