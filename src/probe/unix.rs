//! Parser for `/proc/net/unix` (proc(5), per network namespace): the unix
//! sockets, their socket inode (which `/proc/PID/fd/N` links to as
//! `socket:[INODE]`) and the path they are bound to.
//!
//! Pure text in, data out; the header and malformed lines are skipped.

/// `__SO_ACCEPTCON` in the Flags column: the socket listens.
const SO_ACCEPTCON: u32 = 0x0001_0000;

/// One unix socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnixSocket {
    /// The socket inode (`socket:[N]` in fd links, `st_ino` of the fd).
    pub inode: u64,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), `SOCK_SEQPACKET` (5).
    pub sock_type: u16,
    /// Kernel socket state (1 unconnected, 3 connected, ...).
    pub state: u8,
    /// Listening (`__SO_ACCEPTCON`).
    pub listening: bool,
    /// The bound path: absolute or relative to the binder's cwd, `@name`
    /// for the abstract namespace; `None` when unbound.
    pub path: Option<String>,
}

impl UnixSocket {
    /// True when bound to a filesystem path (not abstract, not unbound).
    pub fn is_bound_to_path(&self) -> bool {
        self.path.as_deref().is_some_and(|p| !p.starts_with('@'))
    }
}

/// Parse one data line; `None` for the header and for malformed lines.
pub fn parse_line(line: &str) -> Option<UnixSocket> {
    // "%pK: %08X %08X %08X %04X %02X %5lu" then, when bound, ' ' and the path.
    let mut rest = line;
    let mut field = || {
        let s = rest.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        let (f, tail) = s.split_at(end);
        rest = tail;
        (!f.is_empty()).then_some(f)
    };
    let num = field()?;
    if !num.ends_with(':') {
        return None; // the header ("Num RefCount ...")
    }
    let _refcount = field()?;
    let _protocol = field()?;
    let flags = u32::from_str_radix(field()?, 16).ok()?;
    let sock_type = u16::from_str_radix(field()?, 16).ok()?;
    let state = u8::from_str_radix(field()?, 16).ok()?;
    let inode = field()?.parse().ok()?;
    let path = rest.strip_prefix(' ').filter(|p| !p.is_empty());
    Some(UnixSocket {
        inode,
        sock_type,
        state,
        listening: flags & SO_ACCEPTCON != 0,
        path: path.map(str::to_owned),
    })
}

/// Parse the whole table.
pub fn parse(text: &str) -> Vec<UnixSocket> {
    text.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
00000000ff0f03a2: 00000003 00000000 00000000 0001 03 19288
0000000052e8d0aa: 00000002 00000000 00010000 0001 01 123456 /run/systemd/journal/stdout
00000000a1b2c3d4: 00000002 00000000 00010000 0005 01  1056 @/org/kernel/udev
00000000deadbeef: 00000002 00000000 00000000 0002 01 77 /mnt/t/my sock
";

    #[test]
    fn parses_inodes_paths_and_flags() {
        let v = parse(SAMPLE);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].inode, 19288);
        assert_eq!(v[0].path, None);
        assert!(!v[0].is_bound_to_path());
        assert_eq!(v[1].path.as_deref(), Some("/run/systemd/journal/stdout"));
        assert!(v[1].listening && v[1].is_bound_to_path());
        assert_eq!(v[2].inode, 1056);
        assert_eq!(v[2].sock_type, 5);
        assert!(!v[2].is_bound_to_path());
        assert_eq!(v[3].path.as_deref(), Some("/mnt/t/my sock"));
        assert_eq!(v[3].sock_type, 2);
        assert!(!v[3].listening);
    }

    #[test]
    fn malformed_lines_are_skipped_not_panics() {
        for bad in [
            "",
            "x:",
            "0: 1 2",
            "0: 1 2 zz 1 1 5",
            "0: 1 2 0 1 1 -5",
            "0: 1 2 0 1 1ff 5",
            "0: 1 2 0 1 1 5\u{e9}",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
        assert_eq!(parse("0: 1 2 0 1 1 5 \n").len(), 1);
        assert_eq!(parse("0: 1 2 0 1 1 5 \n")[0].path, None);
    }
}
