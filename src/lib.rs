//! reroot moves a running Linux root filesystem to another block device
//! without a reboot: into LVM or md RAID, onto a bigger or smaller disk.
//!
//! Data flows one way, and each module imports only from those to its left:
//!
//! ```text
//! units/error -> ext -> probe -> plan -> exec -> report
//!                     (sys: the only unsafe code, used by probe and exec)
//! ```
//!
//! - [`ext`] parses ext2/3/4 bitmaps into the [`units::ExtentList`] of used bytes.
//! - [`probe`] reads `/proc`, `/sys` and `/dev` (rooted, so tests use fixtures).
//! - [`plan`] makes pure decisions from probed facts.
//! - [`exec`] changes the system and reports through [`exec::event::Event`]s.
//! - [`report`] shows progress and results.

pub mod error;
pub mod exec;
pub mod ext;
pub mod plan;
pub mod probe;
pub mod report;
pub mod sys;
#[cfg(test)]
pub(crate) mod test_skip;
pub mod units;

pub use error::{Error, ErrorKind, Result};
