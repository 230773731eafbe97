//! Following a migration from any terminal: new lines of `migrate.log`,
//! new progress events of `migrate.events` and the journal's summary, read
//! from where the last poll stopped (the positions survive a re-exec of the
//! follower). [`WireEvent`] is the events file's line format.

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Paths;
use crate::error::Result;
use crate::exec::event::{Event, Unit};
use crate::exec::journal::{self, Summary};

/// One line of `migrate.events`: an [`Event`] in a form JSON can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WireEvent {
    /// [`Event::PhaseStart`].
    Start {
        /// Phase name.
        name: String,
        /// Work to do.
        total: Option<u64>,
        /// Its unit.
        unit: Unit,
    },
    /// [`Event::Progress`].
    Progress {
        /// Work done.
        done: u64,
    },
    /// [`Event::PhaseEnd`].
    End {
        /// Phase name.
        name: String,
        /// Work done.
        done: u64,
        /// Wall time in milliseconds.
        ms: u64,
    },
    /// [`Event::Info`].
    Info {
        /// The line.
        text: String,
    },
    /// [`Event::Warning`].
    Warning {
        /// The line.
        text: String,
    },
}

impl From<&Event> for WireEvent {
    fn from(e: &Event) -> Self {
        match e {
            Event::PhaseStart { name, total, unit } => WireEvent::Start {
                name: name.clone(),
                total: *total,
                unit: *unit,
            },
            Event::Progress { done } => WireEvent::Progress { done: *done },
            Event::PhaseEnd {
                name,
                done,
                elapsed,
            } => WireEvent::End {
                name: name.clone(),
                done: *done,
                ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            },
            Event::Info(t) => WireEvent::Info { text: t.clone() },
            Event::Warning(t) => WireEvent::Warning { text: t.clone() },
        }
    }
}

impl From<WireEvent> for Event {
    fn from(w: WireEvent) -> Self {
        match w {
            WireEvent::Start { name, total, unit } => Event::PhaseStart { name, total, unit },
            WireEvent::Progress { done } => Event::Progress { done },
            WireEvent::End { name, done, ms } => Event::PhaseEnd {
                name,
                done,
                elapsed: Duration::from_millis(ms),
            },
            WireEvent::Info { text } => Event::Info(text),
            WireEvent::Warning { text } => Event::Warning(text),
        }
    }
}

/// What changed since the last poll.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// New whole lines of the log.
    pub log_lines: Vec<String>,
    /// New progress events.
    pub events: Vec<Event>,
    /// Where the migration stands (`None` before the journal exists).
    pub summary: Option<Summary>,
    /// The worker's pid, when it is alive.
    pub worker: Option<u32>,
}

/// Reads a migration's files incrementally.
#[derive(Debug, Clone)]
pub struct Follower {
    paths: Paths,
    log_pos: u64,
    events_pos: u64,
}

/// New whole lines of `path` from byte `pos`; advances `pos` past them.
fn new_lines(path: &Path, pos: &mut u64) -> Vec<String> {
    let Ok(mut f) = fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if len < *pos {
        // The file was replaced (a new migration): start over.
        *pos = 0;
    }
    if f.seek(SeekFrom::Start(*pos)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    // At most 4 MiB per poll; the rest comes next time.
    let _ = f.take(4 << 20).read_to_end(&mut buf);
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    *pos = pos.saturating_add(end as u64 + 1);
    String::from_utf8_lossy(&buf[..end])
        .split('\n')
        .map(str::to_owned)
        .collect()
}

impl Follower {
    /// Follow the migration in `state_dir` from these byte positions of the
    /// log and the events file (0, 0: from the start).
    pub fn new(state_dir: &Path, log_pos: u64, events_pos: u64) -> Self {
        Self {
            paths: Paths::new(state_dir),
            log_pos,
            events_pos,
        }
    }

    /// Follow from the current ends of the log and events (only what comes next).
    pub fn from_end(state_dir: &Path) -> Self {
        let paths = Paths::new(state_dir);
        let len = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
        Self {
            log_pos: len(&paths.log),
            events_pos: len(&paths.events),
            paths,
        }
    }

    /// The byte positions reached in the log and the events file.
    pub fn positions(&self) -> (u64, u64) {
        (self.log_pos, self.events_pos)
    }

    /// The migration's files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Read what is new.
    pub fn poll(&mut self) -> Result<Update> {
        let log_lines = new_lines(&self.paths.log, &mut self.log_pos);
        let events = new_lines(&self.paths.events, &mut self.events_pos)
            .into_iter()
            .filter_map(|l| serde_json::from_str::<WireEvent>(&l).ok())
            .map(Event::from)
            .collect();
        let summary = match journal::read(&self.paths.journal)? {
            Some(p) if !p.records.is_empty() => Some(journal::summarize(&p.records)?),
            _ => None,
        };
        Ok(Update {
            log_lines,
            events,
            summary,
            worker: super::worker_pid(&self.paths),
        })
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let text = fs::read_to_string(&self.paths.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn wire_events_round_trip() {
        let evs = vec![
            Event::PhaseStart {
                name: "copy".into(),
                total: Some(10),
                unit: Unit::Bytes,
            },
            Event::Progress { done: 5 },
            Event::PhaseEnd {
                name: "copy".into(),
                done: 10,
                elapsed: Duration::from_millis(1500),
            },
            Event::Info("hello".into()),
            Event::Warning("careful".into()),
        ];
        for e in evs {
            let line = serde_json::to_string(&WireEvent::from(&e)).unwrap();
            let back: WireEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(Event::from(back), e);
        }
    }

    #[test]
    fn follower_reads_only_whole_new_lines() {
        let d = tempfile::tempdir().unwrap();
        let mut f = Follower::new(d.path(), 0, 0);
        let u = f.poll().unwrap();
        assert!(u.log_lines.is_empty() && u.summary.is_none());
        let p = Paths::new(d.path());
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .unwrap();
        log.write_all(b"one\ntwo\npart").unwrap();
        assert_eq!(f.poll().unwrap().log_lines, vec!["one", "two"]);
        log.write_all(b"ial\n").unwrap();
        assert_eq!(f.poll().unwrap().log_lines, vec!["partial"]);
        assert!(f.poll().unwrap().log_lines.is_empty());
        let (lp, _) = f.positions();
        assert_eq!(lp, 16);
        let mut ev = fs::File::create(&p.events).unwrap();
        writeln!(
            ev,
            "{}",
            serde_json::to_string(&WireEvent::Progress { done: 3 }).unwrap()
        )
        .unwrap();
        writeln!(ev, "garbage").unwrap();
        assert_eq!(f.poll().unwrap().events, vec![Event::Progress { done: 3 }]);
        assert_eq!(f.tail(1), vec!["partial"]);
        let g = Follower::from_end(d.path());
        assert_eq!(g.positions().0, 16);
    }
}
