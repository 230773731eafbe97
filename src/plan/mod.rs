//! Pure decisions: what to copy, what blocks a migration and what only warns,
//! which steps a migration takes and in what order. No I/O, no `sys`: every
//! function takes probed facts and returns a plan, so it is unit-tested
//! without root.

#![warn(clippy::arithmetic_side_effects)]

pub mod bench;
pub mod boot;
pub mod copy;
pub mod create;
pub mod finish;
pub mod grow;
pub mod identity;
pub mod migrate;
pub mod pivot;
pub mod precopy;
pub mod preflight;
pub mod quiesce;
pub mod services;
pub mod target;
pub mod transform;
