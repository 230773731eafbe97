//! The stages that change the system: copy and verify, grow, quiesce, pivot,
//! restarts, finish, the migration journal. They report through [`event`]s
//! and never touch the terminal.
//!
//! May import everything to its left: `units`, `error`, `ext`, `probe`,
//! `plan`, `sys`.

pub mod copy;
pub mod event;
