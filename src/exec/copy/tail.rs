//! The source's last partial block: when a source's size is not a multiple
//! of the devices' logical block size, its last bytes cannot be moved with
//! O_DIRECT. The plan names them ([`CopyPlan::tail`](crate::plan::copy::CopyPlan));
//! these helpers read, write and re-read them through the page cache
//! (written with `fdatasync`; the targets' flush then drops the cached
//! pages, so the readback comes from the device or file).
//!
//! Imports `error` and `units` only.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::units::Extent;

fn buf(tail: Extent) -> Result<Vec<u8>> {
    let len = usize::try_from(tail.len())
        .map_err(|_| Error::invalid(format!("partial last block of {} bytes", tail.len())))?;
    Ok(vec![0u8; len])
}

/// Read `tail` of `path` (buffered).
pub fn read(path: &Path, tail: Extent) -> Result<Vec<u8>> {
    let mut data = buf(tail)?;
    let f = File::open(path)
        .map_err(|e| Error::io("opening for the last partial block", e).device(path))?;
    f.read_exact_at(&mut data, tail.start()).map_err(|e| {
        Error::io("reading the last partial block", e)
            .device(path)
            .offset(tail.start())
    })?;
    Ok(data)
}

/// Write `data` at `tail` of `path` (buffered) and `fdatasync` it.
pub fn write(path: &Path, tail: Extent, data: &[u8]) -> Result<()> {
    let io = |what: &'static str| move |e| Error::io(what, e).device(path).offset(tail.start());
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("opening for the last partial block"))?;
    f.write_all_at(data, tail.start())
        .map_err(io("writing the last partial block"))?;
    f.sync_data().map_err(io("flushing the last partial block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_round_trip_on_files() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, vec![0u8; 5000]).unwrap();
        let tail = Extent::from_bounds(4096, 5000).unwrap();
        let t = read(&a, tail).unwrap();
        assert_eq!(t, data[4096..]);
        write(&b, tail, &t).unwrap();
        assert_eq!(read(&b, tail).unwrap(), t);
        assert_eq!(std::fs::read(&b).unwrap()[4096..], data[4096..]);
        // Past the end: an error naming the offset, not a short read.
        let e = read(&a, Extent::from_bounds(4096, 6000).unwrap()).unwrap_err();
        assert!(e.to_string().contains("4096"), "{e}");
    }
}
