//! The stages that change the system: copy and verify, grow, quiesce, pivot,
//! restarts, finish, the migration journal. They report through [`event`]s
//! and never touch the terminal.
//!
//! May import everything to its left: `units`, `error`, `ext`, `probe`,
//! `plan`, `sys`.

pub mod bench;
pub mod boot;
pub mod check;
pub mod claim;
pub mod copy;
pub mod demo;
pub mod e2fs;
pub mod event;
pub mod finish;
pub mod grow;
pub mod identity;
pub mod interrupt;
pub mod journal;
pub mod migrate;
pub mod pivot;
pub mod precopy;
pub mod quiesce;
pub mod sandbox;
pub mod services;
pub mod temp_mount;
pub mod tools;
pub mod track;
pub mod transform;
