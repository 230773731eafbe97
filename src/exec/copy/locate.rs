//! Naming the failing sector of a failed chunk: the kernel fails a whole
//! transfer (1 MiB by default) when one logical block in it is bad, so the
//! error would name the chunk's start. [`refine`] retries the transfer one
//! logical block at a time, synchronously (O_DIRECT when the device was
//! opened so), and rewrites the error to name the first block that fails.
//! A failed write is retried with the source's data for that range, which
//! is what the copy was writing there anyway.
//!
//! Imports `error`, `sys::buf` and the copy engine's types.

use std::os::unix::fs::FileExt;

use super::io::Device;
use super::pipeline::FailedOp;
use crate::error::{Error, ErrorKind};
use crate::sys::buf::BufPool;

/// The byte offset of the first logical block of `f` whose retry fails
/// with an I/O error, or `None` when no single block fails (the error was
/// not about a block: a vanished device, a transient error).
pub fn failing_block(devices: &[&Device], f: FailedOp) -> Option<u64> {
    let dev = devices.get(f.device)?;
    let bs = u64::from(dev.logical_block_size.max(512));
    // One page-aligned buffer of at least a page (the pool's unit).
    let size = usize::try_from(bs.max(4096)).ok()?;
    let mut pool = BufPool::new(1, size, size.min(4096)).ok()?;
    let mut buf = pool.take()?;
    let end = f.offset.saturating_add(f.len).min(dev.size);
    let mut at = f.offset;
    while at < end {
        let len = usize::try_from(bs.min(end - at)).ok()?;
        let data = &mut buf.as_mut_full()[..len];
        let failed = if f.write {
            // What the copy was writing here: the source's bytes.
            let src = devices.first()?;
            src.file.read_exact_at(data, at).ok()?;
            dev.file.write_all_at(data, at).is_err()
        } else {
            dev.file.read_exact_at(data, at).is_err()
        };
        if failed {
            return Some(at);
        }
        at = at.saturating_add(bs);
    }
    None
}

/// `err` (the pass's I/O error about the transfer `f`) naming the failing
/// logical block instead, when one is found; `err` unchanged otherwise.
pub fn refine(err: Error, devices: &[&Device], f: Option<FailedOp>) -> Error {
    let Some(f) = f else { return err };
    let ErrorKind::Io(msg) = err.kind() else {
        return err;
    };
    let Some(dev) = devices.get(f.device) else {
        return err;
    };
    let Some(at) = failing_block(devices, f) else {
        return err;
    };
    let bs = dev.logical_block_size.max(512);
    let mut out = Error::new(ErrorKind::Io(format!(
        "{msg}; retried block by block: the {bs}-byte block at byte {at} (sector {}) fails \
         (the {}-byte transfer at byte {} contained it)",
        at / 512,
        f.len,
        f.offset
    )))
    .device(&dev.path)
    .offset(at);
    if let Some(stage) = err.context().stage {
        out = out.stage(stage);
    }
    if let Some(h) = err.hint_text() {
        out = out.hint(h.to_owned());
    }
    out
}
