//! [`Event`]s: what a long-running stage tells the reporter (phase started,
//! progress, phase done, warnings), sent over a channel through an
//! [`EventSink`]. The stage never blocks on, or fails because of, the reporter.

use std::time::Duration;

/// What a progress count measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// Bytes (shown with a rate and an ETA).
    Bytes,
    /// Percent, 0 to 100 (e2fsck and resize2fs progress).
    Percent,
    /// Countable items (processes, mounts, steps).
    Items,
}

/// One thing a stage reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A phase starts (`copy`, `verify`, `fsck`, ...). `total` is in `unit`s.
    PhaseStart {
        /// Short name shown as the bar's prefix.
        name: String,
        /// Amount of work, when known.
        total: Option<u64>,
        /// What `total` and later `done` count.
        unit: Unit,
    },
    /// Progress in the current phase: work done so far (absolute, not a delta).
    Progress {
        /// Units done.
        done: u64,
    },
    /// The current phase ended.
    PhaseEnd {
        /// Same name as in `PhaseStart`.
        name: String,
        /// Units done.
        done: u64,
        /// Wall time of the phase.
        elapsed: Duration,
    },
    /// Something the operator should read.
    Info(String),
    /// Something that went less well than planned but did not stop the stage.
    Warning(String),
}

/// Where a stage sends its events. Cloneable; sending never fails or blocks
/// (a reporter that went away is ignored).
#[derive(Debug, Clone, Default)]
pub struct EventSink {
    tx: Option<crossbeam_channel::Sender<Event>>,
}

impl EventSink {
    /// A sink that drops everything (tests, `--quiet`).
    pub fn none() -> Self {
        Self { tx: None }
    }

    /// A sink feeding `tx`.
    pub fn new(tx: crossbeam_channel::Sender<Event>) -> Self {
        Self { tx: Some(tx) }
    }

    /// Send one event.
    pub fn emit(&self, ev: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(ev);
        }
    }

    /// Start a phase.
    pub fn phase(&self, name: &str, total: Option<u64>, unit: Unit) {
        self.emit(Event::PhaseStart {
            name: name.to_owned(),
            total,
            unit,
        });
    }

    /// Report progress (absolute).
    pub fn progress(&self, done: u64) {
        self.emit(Event::Progress { done });
    }

    /// End a phase.
    pub fn phase_end(&self, name: &str, done: u64, elapsed: Duration) {
        self.emit(Event::PhaseEnd {
            name: name.to_owned(),
            done,
            elapsed,
        });
    }

    /// An informational line.
    pub fn info(&self, msg: impl Into<String>) {
        self.emit(Event::Info(msg.into()));
    }

    /// A warning.
    pub fn warn(&self, msg: impl Into<String>) {
        self.emit(Event::Warning(msg.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_delivers_and_survives_a_gone_receiver() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sink = EventSink::new(tx);
        sink.phase("copy", Some(10), Unit::Bytes);
        sink.progress(5);
        assert_eq!(
            rx.recv().unwrap(),
            Event::PhaseStart {
                name: "copy".into(),
                total: Some(10),
                unit: Unit::Bytes
            }
        );
        assert_eq!(rx.recv().unwrap(), Event::Progress { done: 5 });
        drop(rx);
        sink.warn("nobody listens"); // must not panic
        EventSink::none().info("dropped");
    }
}
