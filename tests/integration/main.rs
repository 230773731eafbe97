//! Integration tests: one binary, one module per command or stage.
//!
//! Tests that need root (loop devices, mounts, namespaces) call
//! `require_root!()` first and skip with a message otherwise; CI runs as
//! root and runs them all. Every device comes from a sparse file under a
//! temporary directory and is detached by an RAII guard, even on panic.

#[macro_use]
mod common;

mod bench;
mod check;
mod cli;
mod copy;
mod demo;
mod devices;
mod faultdev;
mod fuzz_replay;
mod grow;
mod identity;
mod itable;
mod map;
mod migrate;
mod package;
mod pivot;
mod reliability;
mod track;
mod transform;
