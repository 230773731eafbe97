//! Readers for tracefs text: one line of `trace_pipe` for the
//! `block:block_bio_queue` event, the per-CPU `stats` file (overruns and
//! dropped events), and the names of reroot's own instances.
//!
//! Pure parsers over `&str` (fuzz-safe: every malformed line is a typed
//! [`LineError`], never a panic); `exec::track` does the I/O.

use std::fmt;

use super::device::DevNo;

/// The prefix of every tracefs instance reroot makes: `reroot-PID-N`.
pub const INSTANCE_PREFIX: &str = "reroot-";

/// One `block_bio_queue` record: a bio queued to `dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BioQueue {
    /// The device the bio was queued to (after a partition's remap: the disk).
    pub dev: DevNo,
    /// The kernel's `rwbs` letters (`W`, `WS`, `FWS`, `D`, `N`, `R`, ...).
    pub rwbs: String,
    /// First 512-byte sector on `dev`.
    pub sector: u64,
    /// Length in 512-byte sectors (0 for a pure flush).
    pub nr_sector: u32,
}

impl BioQueue {
    /// Whether the bio can change data: a write, discard, secure erase or
    /// write-zeroes (`N`) with a non-empty range. Reads and empty flushes
    /// cannot.
    pub fn changes_data(&self) -> bool {
        self.nr_sector > 0 && !self.rwbs.contains('R')
    }

    /// The bytes `[start, end)` the bio covers on `dev`, or `None` on overflow.
    pub fn byte_range(&self) -> Option<(u64, u64)> {
        let start = self.sector.checked_mul(512)?;
        let end = start.checked_add(u64::from(self.nr_sector).checked_mul(512)?)?;
        Some((start, end))
    }
}

/// What one line of `trace_pipe` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A `block_bio_queue` record.
    Bio(BioQueue),
    /// `CPU:N [LOST M EVENTS]`: the ring buffer overflowed.
    Lost {
        /// The CPU whose buffer lost events.
        cpu: u32,
        /// How many.
        events: u64,
    },
    /// Anything else (another event, an empty line).
    Other,
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A field is missing after `block_bio_queue:`.
    #[error("block_bio_queue record without its {0} field")]
    Missing(&'static str),
    /// A field is present but not what the event's format says.
    #[error("block_bio_queue record with a bad {field} field {value:?}")]
    Bad {
        /// Which field.
        field: &'static str,
        /// What was there (at most 40 characters).
        value: String,
    },
    /// A `[LOST ...]` marker that does not parse (still a loss).
    #[error("unreadable lost-events marker {0:?}")]
    BadLost(String),
}

fn bad(field: &'static str, value: &str) -> LineError {
    LineError::Bad {
        field,
        value: value.chars().take(40).collect(),
    }
}

/// Parse one line of `trace_pipe` (without its newline).
///
/// The record's shape is the event's `print fmt`:
/// `"%d,%d %s %llu + %u [%s]"` (dev major,minor; rwbs; sector; nr_sector;
/// comm), after the usual `TASK-PID [CPU] FLAGS TIME: block_bio_queue: `.
pub fn parse_line(line: &str) -> Result<Line, LineError> {
    const EVENT: &str = " block_bio_queue: ";
    if let Some(at) = line.find(EVENT) {
        let rest = line.get(at.saturating_add(EVENT.len())..).unwrap_or("");
        return parse_record(rest).map(Line::Bio);
    }
    let trimmed = line.trim();
    if trimmed.starts_with("CPU:") && trimmed.contains("[LOST ") {
        return parse_lost(trimmed);
    }
    Ok(Line::Other)
}

fn parse_record(rest: &str) -> Result<BioQueue, LineError> {
    let mut it = rest.split_ascii_whitespace();
    let dev = it.next().ok_or(LineError::Missing("dev"))?;
    let (major, minor) = dev.split_once(',').ok_or_else(|| bad("dev", dev))?;
    let major: u32 = major.parse().map_err(|_| bad("dev", dev))?;
    let minor: u32 = minor.parse().map_err(|_| bad("dev", dev))?;
    if major >= 1 << 12 || minor >= 1 << 20 {
        return Err(bad("dev", dev));
    }
    let rwbs = it.next().ok_or(LineError::Missing("rwbs"))?;
    if rwbs.len() > 9 || !rwbs.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad("rwbs", rwbs));
    }
    let sector = it.next().ok_or(LineError::Missing("sector"))?;
    let sector: u64 = sector.parse().map_err(|_| bad("sector", sector))?;
    match it.next() {
        Some("+") => {}
        Some(other) => return Err(bad("+", other)),
        None => return Err(LineError::Missing("+")),
    }
    let nr = it.next().ok_or(LineError::Missing("nr_sector"))?;
    let nr_sector: u32 = nr.parse().map_err(|_| bad("nr_sector", nr))?;
    Ok(BioQueue {
        dev: DevNo { major, minor },
        rwbs: rwbs.to_owned(),
        sector,
        nr_sector,
    })
}

fn parse_lost(line: &str) -> Result<Line, LineError> {
    let err = || LineError::BadLost(line.chars().take(40).collect());
    let cpu = line
        .strip_prefix("CPU:")
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .ok_or_else(err)?;
    let events = line
        .split("[LOST ")
        .nth(1)
        .and_then(|r| r.split_ascii_whitespace().next())
        .and_then(|d| d.parse().ok())
        .ok_or_else(err)?;
    Ok(Line::Lost { cpu, events })
}

/// The loss counters of one CPU's ring buffer (`per_cpu/cpuN/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Events overwritten before they were read (`overrun`).
    pub overrun: u64,
    /// Events not written because the buffer was full (`dropped events`).
    pub dropped: u64,
}

impl CpuStats {
    /// Events lost either way.
    pub fn lost(&self) -> u64 {
        self.overrun.saturating_add(self.dropped)
    }
}

/// Parse a `per_cpu/cpuN/stats` file. Unknown lines are ignored; a known
/// counter that does not parse is an error (a loss must never hide).
pub fn parse_stats(text: &str) -> Result<CpuStats, LineError> {
    let mut s = CpuStats::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "overrun" => &mut s.overrun,
            "dropped events" => &mut s.dropped,
            _ => continue,
        };
        let v = value.trim();
        *slot = v.parse().map_err(|_| bad("stats", v))?;
    }
    Ok(s)
}

/// An instance name reroot made: `reroot-PID-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceName {
    /// The process that made it.
    pub pid: u32,
    /// Its number within that process.
    pub seq: u32,
}

impl InstanceName {
    /// Parse a directory name under `instances/`; `None` when it is not ours.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(INSTANCE_PREFIX)?;
        let (pid, seq) = rest.split_once('-')?;
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(pid) || !all_digits(seq) {
            return None;
        }
        Some(Self {
            pid: pid.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{INSTANCE_PREFIX}{}-{}", self.pid, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_lines() {
        let l = "              dd-20708   [001] .....   677.454967: block_bio_queue: 7,0 WS 2128 + 8 [dd]";
        assert_eq!(
            parse_line(l).unwrap(),
            Line::Bio(BioQueue {
                dev: DevNo { major: 7, minor: 0 },
                rwbs: "WS".into(),
                sector: 2128,
                nr_sector: 8
            })
        );
        // A comm with spaces, a discard, a write-zeroes, a flush.
        let d = " kworker/u8:2 x-9 [000] ..... 1.0: block_bio_queue: 259,3 DS 4096 + 128 [a b]";
        let Line::Bio(b) = parse_line(d).unwrap() else {
            panic!()
        };
        assert!(b.changes_data());
        assert_eq!(b.byte_range(), Some((4096 * 512, 4224 * 512)));
        let n = "x-1 [000] ..... 1.0: block_bio_queue: 7,0 NS 6144 + 128 [blkdiscard]";
        assert!(matches!(parse_line(n).unwrap(), Line::Bio(b) if b.changes_data()));
        let f = "dd-1 [000] ..... 1.0: block_bio_queue: 7,0 FWS 0 + 0 [dd]";
        assert!(matches!(parse_line(f).unwrap(), Line::Bio(b) if !b.changes_data()));
        let r = "dd-1 [000] ..... 1.0: block_bio_queue: 7,0 RA 8 + 8 [dd]";
        assert!(matches!(parse_line(r).unwrap(), Line::Bio(b) if !b.changes_data()));
        assert_eq!(
            parse_line("CPU:1 [LOST 123 EVENTS]").unwrap(),
            Line::Lost {
                cpu: 1,
                events: 123
            }
        );
        assert_eq!(parse_line("").unwrap(), Line::Other);
        assert_eq!(
            parse_line("x-1 [000] ..... 1.0: block_rq_issue: 7,0 W").unwrap(),
            Line::Other
        );
    }

    #[test]
    fn bad_records_are_typed_errors() {
        let p = |s: &str| parse_line(&format!("a-1 [000] . 1.0: block_bio_queue: {s}"));
        assert_eq!(p(""), Err(LineError::Missing("dev")));
        assert!(matches!(
            p("7:0 W 1 + 1 [x]"),
            Err(LineError::Bad { field: "dev", .. })
        ));
        assert!(matches!(
            p("7,0 w 1 + 1 [x]"),
            Err(LineError::Bad { field: "rwbs", .. })
        ));
        assert!(matches!(
            p("7,0 W -1 + 1 [x]"),
            Err(LineError::Bad {
                field: "sector",
                ..
            })
        ));
        assert!(matches!(
            p("7,0 W 1 - 1 [x]"),
            Err(LineError::Bad { field: "+", .. })
        ));
        assert_eq!(p("7,0 W 1 +"), Err(LineError::Missing("nr_sector")));
        assert!(matches!(
            p("99999,0 W 1 + 1 [x]"),
            Err(LineError::Bad { .. })
        ));
        assert!(matches!(
            parse_line("CPU:x [LOST many EVENTS]"),
            Err(LineError::BadLost(_))
        ));
        // Overflowing ranges are refused by byte_range, not wrapped.
        let Line::Bio(b) = p(&format!("7,0 W {} + 8 [x]", u64::MAX / 256)).unwrap() else {
            panic!()
        };
        assert_eq!(b.byte_range(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"0123456789,+ [] block_bio_queue:CPU:LOST EVENTSWRDNF\n\t-";
        for _ in 0..20_000 {
            let mut s = String::from("t-1 [000] . 1.0: block_bio_queue: ");
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = usize::try_from(x % alphabet.len() as u64).unwrap();
                s.push(char::from(alphabet[i]));
            }
            let _ = parse_line(&s);
            let _ = parse_line(s.trim_start_matches("t-1 [000] . 1.0: block_bio_queue: "));
            let _ = parse_stats(&s);
        }
    }

    #[test]
    fn stats_counters() {
        let text = "entries: 2\noverrun: 5\ncommit overrun: 0\nbytes: 128\noldest event ts:   677.463246\nnow ts:   677.661504\ndropped events: 7\nread events: 0\n";
        let s = parse_stats(text).unwrap();
        assert_eq!((s.overrun, s.dropped, s.lost()), (5, 7, 12));
        assert!(parse_stats("overrun: lots\n").is_err());
        assert_eq!(parse_stats("").unwrap(), CpuStats::default());
    }

    #[test]
    fn instance_names() {
        let n = InstanceName::parse("reroot-123-4").unwrap();
        assert_eq!((n.pid, n.seq), (123, 4));
        assert_eq!(n.to_string(), "reroot-123-4");
        for bad in [
            "reroot-",
            "reroot-1",
            "reroot-x-1",
            "reroot-1-",
            "other-1-2",
            "reroot-1-2-3",
        ] {
            assert_eq!(InstanceName::parse(bad), None, "{bad}");
        }
    }
}
