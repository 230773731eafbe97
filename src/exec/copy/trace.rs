//! `--trace FILE`: a timeline of a copy or verify, one JSON object per line
//! (times in microseconds since the command started): the phases around
//! the passes, and per chunk when each read and write was submitted and
//! completed, when its hashes came back, and how long the I/O thread
//! waited in each reap. Made to find where the time beyond N/R + N/W goes
//! (start-up, ramp-up and drain, phases that do not overlap); see
//! `benches/BENCHMARKING.md` and `tools/trace-summary.py`.
//!
//! Records go into a vector reserved up front; the file is written at the end.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ev {
    /// A phase began (`name`).
    PhaseStart(&'static str),
    /// A phase ended (`name`).
    PhaseEnd(&'static str),
    /// A read of `chunk` from device `dev` was queued.
    ReadSubmit,
    /// It completed.
    ReadDone,
    /// A write of `chunk` to the targets in `dev` (a bit set) was queued.
    WriteSubmit,
    /// It completed.
    WriteDone,
    /// `chunk` was all zeros and was zeroed on the targets instead.
    Zeroed,
    /// A buffer of `chunk` went to a hash thread.
    HashSubmit,
    /// Its hash came back.
    HashDone,
    /// `chunk` is finished.
    Done,
    /// The I/O thread waited `len` microseconds in a reap that returned `dev` completions.
    Reap,
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    t_us: u64,
    ev: Ev,
    chunk: u64,
    dev: u64,
    off: u64,
    len: u64,
}

/// A timeline being recorded.
#[derive(Debug)]
pub struct Trace {
    t0: Instant,
    recs: Vec<Rec>,
}

impl Trace {
    /// A timeline whose zero is `t0`, with room for about `capacity` records.
    pub fn new(t0: Instant, capacity: usize) -> Self {
        Self {
            t0,
            recs: Vec::with_capacity(capacity.min(1 << 24)),
        }
    }

    /// Make room for `n` more records, so the passes do not allocate.
    pub fn reserve(&mut self, n: u64) {
        self.recs
            .reserve(usize::try_from(n).unwrap_or(usize::MAX).min(1 << 24));
    }

    /// Record `ev` now.
    pub fn rec(&mut self, ev: Ev, chunk: u64, dev: u64, off: u64, len: u64) {
        let t_us = u64::try_from(self.t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.recs.push(Rec {
            t_us,
            ev,
            chunk,
            dev,
            off,
            len,
        });
    }

    /// Record a phase boundary now.
    pub fn phase(&mut self, name: &'static str, start: bool) {
        let ev = if start {
            Ev::PhaseStart(name)
        } else {
            Ev::PhaseEnd(name)
        };
        self.rec(ev, 0, 0, 0, 0);
    }

    /// Write the timeline to `path` as JSON lines.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut line = String::new();
        for r in &self.recs {
            line.clear();
            let _ = match r.ev {
                Ev::PhaseStart(n) => write!(
                    line,
                    r#"{{"t_us":{},"ev":"phase_start","name":"{n}"}}"#,
                    r.t_us
                ),
                Ev::PhaseEnd(n) => write!(
                    line,
                    r#"{{"t_us":{},"ev":"phase_end","name":"{n}"}}"#,
                    r.t_us
                ),
                Ev::Reap => write!(
                    line,
                    r#"{{"t_us":{},"ev":"reap","completions":{},"wait_us":{}}}"#,
                    r.t_us, r.dev, r.len
                ),
                ev => write!(
                    line,
                    r#"{{"t_us":{},"ev":"{}","chunk":{},"dev":{},"off":{},"len":{}}}"#,
                    r.t_us,
                    name(ev),
                    r.chunk,
                    r.dev,
                    r.off,
                    r.len
                ),
            };
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        out.flush()
    }
}

fn name(ev: Ev) -> &'static str {
    match ev {
        Ev::PhaseStart(_) => "phase_start",
        Ev::PhaseEnd(_) => "phase_end",
        Ev::ReadSubmit => "read_submit",
        Ev::ReadDone => "read_done",
        Ev::WriteSubmit => "write_submit",
        Ev::WriteDone => "write_done",
        Ev::Zeroed => "zeroed",
        Ev::HashSubmit => "hash_submit",
        Ev::HashDone => "hash_done",
        Ev::Done => "done",
        Ev::Reap => "reap",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_object_per_line() {
        let mut t = Trace::new(Instant::now(), 4);
        t.phase("copy", true);
        t.rec(Ev::ReadSubmit, 3, 0, 4096, 1 << 20);
        t.rec(Ev::Reap, 0, 2, 0, 17);
        t.phase("copy", false);
        let f = tempfile::NamedTempFile::new().unwrap();
        t.write(f.path()).unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0]["ev"], "phase_start");
        assert_eq!(v[0]["name"], "copy");
        assert_eq!(v[1]["ev"], "read_submit");
        assert_eq!(
            (v[1]["chunk"].as_u64(), v[1]["len"].as_u64()),
            (Some(3), Some(1 << 20))
        );
        assert_eq!(
            (v[2]["completions"].as_u64(), v[2]["wait_us"].as_u64()),
            (Some(2), Some(17))
        );
        assert!(
            v.windows(2)
                .all(|w| w[0]["t_us"].as_u64() <= w[1]["t_us"].as_u64())
        );
    }
}
