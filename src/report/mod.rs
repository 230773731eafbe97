//! Showing results: the progress reporter (indicatif on a TTY, plain lines
//! otherwise), human summaries and `--json`. Consumes [`Event`]s; the only
//! module that writes to the terminal on behalf of the library.
//!
//! [`Event`]: crate::exec::event::Event

pub mod progress;
