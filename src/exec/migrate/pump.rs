//! The worker's event pump: a thread that takes the stages' [`Event`]s and
//! writes human lines to `migrate.log` (progress every 5 s) and JSON lines
//! ([`WireEvent`]) to `migrate.events` (progress at most 5 per second) for
//! attached terminals to draw a bar from.

use std::fs;
use std::io::Write as _;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Paths;
use super::follow::WireEvent;
use crate::exec::event::{Event, EventSink, Unit};
use crate::exec::pivot::ActionLog;

/// The pump: events from the stages to the log (human lines) and to the
/// events file (JSON lines, progress at most 5 per second).
pub(super) fn spawn_pump(paths: &Paths) -> (EventSink, Option<JoinHandle<()>>) {
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    let ev_path = paths.events.clone();
    let log_path = paths.log.clone();
    let thread = std::thread::Builder::new()
        .name("reroot-migrate-pump".into())
        .spawn(move || {
            let mut out = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&ev_path)
                .ok();
            let mut log = ActionLog::open(&log_path);
            let mut phase: Option<(String, Option<u64>, Unit)> = None;
            let mut last_event = Instant::now();
            let mut last_line = Instant::now();
            for ev in rx {
                let write = match &ev {
                    Event::PhaseStart { name, total, unit } => {
                        let size = match (total, unit) {
                            (Some(t), Unit::Bytes) => {
                                format!(" ({})", crate::plan::target::human_bytes(*t))
                            }
                            _ => String::new(),
                        };
                        log.line(&format!("{name}: started{size}"));
                        phase = Some((name.clone(), *total, *unit));
                        last_line = Instant::now();
                        true
                    }
                    Event::Progress { done } => {
                        if last_line.elapsed() >= Duration::from_secs(5) {
                            if let Some((name, total, unit)) = &phase {
                                log.line(&progress_line(name, *done, *total, *unit));
                            }
                            last_line = Instant::now();
                        }
                        let due = last_event.elapsed() >= Duration::from_millis(200);
                        if due {
                            last_event = Instant::now();
                        }
                        due
                    }
                    Event::PhaseEnd {
                        name,
                        done,
                        elapsed,
                    } => {
                        let unit = phase.as_ref().map_or(Unit::Items, |p| p.2);
                        log.line(&format!(
                            "{name}: done, {} in {:.1} s",
                            amount(*done, unit),
                            elapsed.as_secs_f64()
                        ));
                        phase = None;
                        true
                    }
                    Event::Info(m) => {
                        log.line(m);
                        true
                    }
                    Event::Warning(m) => {
                        log.line(&format!("warning: {m}"));
                        true
                    }
                };
                if write {
                    if let (Some(f), Ok(line)) =
                        (out.as_mut(), serde_json::to_string(&WireEvent::from(&ev)))
                    {
                        let _ = writeln!(f, "{line}");
                    }
                }
            }
        })
        .ok();
    (EventSink::new(tx), thread)
}

fn amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => crate::plan::target::human_bytes(n),
        Unit::Percent => format!("{n}%"),
        Unit::Items => n.to_string(),
    }
}

fn progress_line(name: &str, done: u64, total: Option<u64>, unit: Unit) -> String {
    match total {
        Some(t) if t > 0 && unit != Unit::Percent => format!(
            "{name}: {} of {} ({}%)",
            amount(done, unit),
            amount(t, unit),
            done.saturating_mul(100) / t
        ),
        _ => format!("{name}: {}", amount(done, unit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line("copy", 1 << 20, Some(4 << 20), Unit::Bytes),
            "copy: 1 MiB of 4 MiB (25%)"
        );
        assert_eq!(
            progress_line("fsck", 40, Some(100), Unit::Percent),
            "fsck: 40%"
        );
    }
}
