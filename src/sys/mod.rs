//! The only place with `unsafe` code: ioctls on block devices, the io_uring
//! ring and its registered buffers, mount and pivot_root.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment. Nothing outside this
//! module may use `unsafe`; everything here offers a safe interface.

#![allow(unsafe_code)]

pub mod blkdev;
pub mod buf;
pub mod inode_flags;
pub mod lock;
pub mod mount;
pub mod process;
pub mod statx;
pub mod uring;
