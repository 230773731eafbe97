//! The progress reporter: a thread that consumes [`Event`]s and draws an
//! indicatif bar on a terminal, or prints a plain line every few seconds when
//! stderr is not a terminal (logs, CI, `NO_COLOR`). Everything goes to stderr,
//! so stdout stays clean for results and `--json`.

use std::io::{IsTerminal, Write};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::event::{Event, EventSink, Unit};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// A plain line per phase and every `interval` in between.
    Plain {
        /// Time between progress lines.
        interval: Duration,
    },
    /// Warnings only.
    Quiet,
}

impl Style {
    /// A bar when stderr is a terminal and `NO_COLOR` is unset, plain lines
    /// every 5 s otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Style::Bar
        } else {
            Style::Plain {
                interval: Duration::from_secs(5),
            }
        }
    }
}

/// A running reporter. Hand [`sink`](Reporter::sink) to the stage, then call
/// [`finish`](Reporter::finish) when it returns.
#[derive(Debug)]
pub struct Reporter {
    sink: EventSink,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    /// Start the reporter thread.
    pub fn spawn(style: Style) -> Self {
        Self::spawn_to(style, Box::new(std::io::stderr()))
    }

    /// Start the reporter thread, writing lines (not the bar) to `out`.
    fn spawn_to(style: Style, out: Box<dyn Write + Send>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Event>();
        let thread = std::thread::Builder::new()
            .name("reroot-report".into())
            .spawn(move || {
                let mut state = State::new(style, out);
                for ev in rx {
                    state.handle(ev);
                }
                state.close();
            })
            // OK to unwrap: failing to start a thread at startup is not recoverable.
            .expect("spawning the reporter thread");
        Self {
            sink: EventSink::new(tx),
            thread: Some(thread),
        }
    }

    /// The sink to give to stages.
    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// Drop our sender and wait until every event has been shown. Stages must
    /// have dropped their clones of the sink first.
    pub fn finish(mut self) {
        self.sink = EventSink::none();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Phase {
    name: String,
    total: Option<u64>,
    unit: Unit,
    started: Instant,
    last_line: Instant,
    done: u64,
}

struct State {
    style: Style,
    /// Where lines go when there is no bar (stderr, or a test's buffer).
    out: Box<dyn Write + Send>,
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
}

fn amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => BinaryBytes(n).to_string(),
        Unit::Percent => format!("{n}%"),
        Unit::Items => n.to_string(),
    }
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        return "-".into();
    }
    // MB = 10^6 bytes, the unit disk vendors and fio use.
    format!("{:.0} MB/s", bytes as f64 / 1e6 / s)
}

impl State {
    fn new(style: Style, out: Box<dyn Write + Send>) -> Self {
        Self {
            style,
            out,
            bar: None,
            phase: None,
        }
    }

    fn line(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => {
                let _ = writeln!(self.out, "{msg}");
            }
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::PhaseStart { name, total, unit } => {
                self.end_bar();
                let now = Instant::now();
                if let Style::Plain { .. } = self.style {
                    let what = total
                        .map(|t| format!(" ({})", amount(t, unit)))
                        .unwrap_or_default();
                    self.line(&format!("{name}: started{what}"));
                }
                if self.style == Style::Bar {
                    self.bar = Some(make_bar(&name, total, unit));
                }
                self.phase = Some(Phase {
                    name,
                    total,
                    unit,
                    started: now,
                    last_line: now,
                    done: 0,
                });
            }
            Event::Progress { done } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(done);
                }
                let Some(p) = self.phase.as_mut() else { return };
                p.done = done;
                if let Style::Plain { interval } = self.style {
                    if p.last_line.elapsed() >= interval {
                        p.last_line = Instant::now();
                        let mut msg = format!("{}: {}", p.name, amount(done, p.unit));
                        if let Some(t) = p.total {
                            msg.push_str(&format!(" of {}", amount(t, p.unit)));
                            if p.unit != Unit::Percent && t > 0 {
                                msg.push_str(&format!(" ({:.0}%)", done as f64 * 100.0 / t as f64));
                            }
                        }
                        if p.unit == Unit::Bytes {
                            msg.push_str(&format!(", {}", rate(done, p.started.elapsed())));
                        }
                        self.line(&msg);
                    }
                }
            }
            Event::PhaseEnd {
                name,
                done,
                elapsed,
            } => {
                self.end_bar();
                let unit = self.phase.take().map_or(Unit::Items, |p| p.unit);
                if self.style != Style::Quiet {
                    let mut msg = format!(
                        "{name}: done, {} in {:.1} s",
                        amount(done, unit),
                        elapsed.as_secs_f64()
                    );
                    if unit == Unit::Bytes {
                        msg.push_str(&format!(" ({})", rate(done, elapsed)));
                    }
                    self.line(&msg);
                }
            }
            Event::Info(msg) => {
                if self.style != Style::Quiet {
                    self.line(&msg);
                }
            }
            Event::Warning(msg) => self.line(&format!("warning: {msg}")),
        }
    }

    fn end_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn close(&mut self) {
        self.end_bar();
    }
}

fn make_bar(name: &str, total: Option<u64>, unit: Unit) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = match (unit, total.is_some()) {
        (Unit::Bytes, true) => {
            "{prefix:>8} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
        }
        (Unit::Bytes, false) => "{prefix:>8} {spinner} {bytes} {binary_bytes_per_sec}",
        (_, true) => "{prefix:>8} [{bar:40}] {pos}/{len} {elapsed}",
        (_, false) => "{prefix:>8} {spinner} {pos} {elapsed}",
    };
    // OK to unwrap: the templates above are constants known to parse.
    let style = ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(name.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` into a buffer the test keeps.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Send a phase with progress, an info and a warning; return what the
    /// reporter printed once `finish` has returned.
    fn shown(style: Style) -> String {
        let out = Shared::default();
        let r = Reporter::spawn_to(style, Box::new(out.clone()));
        let s = r.sink();
        s.phase("copy", Some(100), Unit::Bytes);
        s.progress(50);
        s.info("note");
        s.warn("careful");
        s.phase_end("copy", 100, Duration::from_millis(10));
        drop(s);
        r.finish();
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn reporter_drains_all_events_and_stops() {
        // Every event sent before `finish` is shown by the time it returns.
        let plain = shown(Style::Plain {
            interval: Duration::ZERO,
        });
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines.len(), 5, "{plain}");
        assert_eq!(lines[0], "copy: started (100 B)");
        assert!(
            lines[1].starts_with("copy: 50 B of 100 B (50%), "),
            "{plain}"
        );
        assert_eq!(lines[2], "note");
        assert_eq!(lines[3], "warning: careful");
        assert!(
            lines[4].starts_with("copy: done, 100 B in 0.0 s"),
            "{plain}"
        );
        // Quiet shows warnings only.
        assert_eq!(shown(Style::Quiet), "warning: careful\n");
    }

    #[test]
    fn formats() {
        assert_eq!(amount(2048, Unit::Bytes), "2.00 KiB");
        assert_eq!(amount(42, Unit::Percent), "42%");
        assert_eq!(rate(100_000_000, Duration::from_secs(1)), "100 MB/s");
    }
}
