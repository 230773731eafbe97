//! [`BlockIo`]: how the pipeline moves whole [`Buf`]s between devices, with
//! two engines behind it: [`UringIo`] (io_uring, registered files and
//! buffers) and [`SyncIo`] (plain `pread`/`pwrite`, for `--engine sync`,
//! tests and old kernels). Also opening devices with O_DIRECT, falling back
//! to buffered I/O where the kernel refuses it.
//!
//! Imports `sys` (buffers, ring) and `error`; nothing above `exec`.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sys::buf::{Buf, PoolMem};
use crate::sys::uring::{self, Ring};
use crate::sys::{blkdev, lock};

pub use crate::sys::uring::{Completion, OpError};

/// One finished operation, as engines report it (tag = the caller's `u64`).
pub type Done = Completion<u64>;

/// Which engine moves the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// io_uring with registered files and buffers.
    #[default]
    Uring,
    /// `pread`/`pwrite`, one transfer at a time.
    Sync,
}

impl EngineKind {
    /// Name used in flags and reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Uring => "uring",
            EngineKind::Sync => "sync",
        }
    }
}

/// An open device or image with the facts the engine needs.
#[derive(Debug)]
pub struct Device {
    /// Path as given.
    pub path: PathBuf,
    /// The open file (O_DIRECT when `direct`).
    pub file: File,
    /// True when opened with O_DIRECT.
    pub direct: bool,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size (the O_DIRECT alignment unit).
    pub logical_block_size: u32,
    /// True for a block device, false for a regular file.
    pub is_block: bool,
}

/// How to open a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Read,
    /// Read and write; a block device is opened exclusively (`O_EXCL`), so
    /// nobody mounts or claims it while we write; an image file is locked
    /// (an OFD write lock), so no second writer starts.
    Write,
    /// Read and write without `O_EXCL`: for a caller that already holds the
    /// exclusive claim on its own descriptor (`reroot bench` keeps one for
    /// its whole run, and reopens the target per run).
    WriteShared,
}

impl Device {
    /// Open `path`, with O_DIRECT when `direct` (falling back to buffered
    /// I/O, with a warning returned, where the filesystem refuses O_DIRECT).
    pub fn open(path: &Path, access: Access, direct: bool) -> Result<(Self, Option<String>)> {
        let open = |flags: i32| {
            let mut o = OpenOptions::new();
            o.read(true)
                .write(access != Access::Read)
                .custom_flags(flags);
            o.open(path)
        };
        let excl = if access == Access::Write && is_block_path(path) {
            libc::O_EXCL
        } else {
            0
        };
        let mut warning = None;
        let (file, direct) = if direct {
            match open(libc::O_DIRECT | excl) {
                Ok(f) => (f, true),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    warning = Some(format!(
                        "{}: O_DIRECT refused ({e}); using buffered I/O, so the page cache is involved",
                        path.display()
                    ));
                    (open(excl).map_err(|e| open_error(path, access, e))?, false)
                }
                Err(e) => return Err(open_error(path, access, e)),
            }
        } else {
            (open(excl).map_err(|e| open_error(path, access, e))?, false)
        };
        let io_err = |what: &str, e| Error::io(what, e).device(path);
        let is_block = blkdev::is_block_device(&file).map_err(|e| io_err("fstat", e))?;
        if !is_block && !file.metadata().map_err(|e| io_err("fstat", e))?.is_file() {
            return Err(Error::invalid(format!(
                "{} is neither a block device nor a regular file",
                path.display()
            )));
        }
        if access == Access::Write && !is_block {
            // Image files: O_EXCL has no effect, so lock the file (an OFD
            // lock, held as long as this description is open, ring included).
            if !lock::try_lock_write(&file).map_err(|e| io_err("locking (F_OFD_SETLK)", e))? {
                return Err(Error::refused(format!(
                    "{} is locked by another writer (another `reroot copy`, or a program such \
                     as qemu that locks its images)",
                    path.display()
                ))
                .device(path)
                .hint(format!(
                    "wait for it to finish (`fuser -v {}` shows who has it open), or pick another file",
                    path.display()
                )));
            }
        }
        let size = blkdev::size(&file).map_err(|e| io_err("reading the size", e))?;
        let logical_block_size = blkdev::logical_block_size(&file)
            .map_err(|e| io_err("reading the logical block size", e))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
                direct,
                size,
                logical_block_size,
                is_block,
            },
            warning,
        ))
    }

    /// Write back and drop cached pages, so a later read comes from the device.
    pub fn flush(&self) -> Result<()> {
        blkdev::flush(&self.file)
            .map_err(|e| Error::io("flush (fdatasync)", e).device(&self.path))?;
        if !self.is_block {
            // Regular files have no BLKFLSBUF; ask the page cache to let go.
            let _ = nix::fcntl::posix_fadvise(
                &self.file,
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
        }
        Ok(())
    }
}

fn is_block_path(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

fn open_error(path: &Path, access: Access, e: io::Error) -> Error {
    let what = match access {
        Access::Read => "opening for reading",
        Access::Write | Access::WriteShared => "opening for writing",
    };
    if e.raw_os_error() == Some(libc::EBUSY) {
        // O_EXCL on a block device: mounted, held by LVM/md, or opened exclusively.
        return Error::refused(format!("{} is in use ({what}: {e})", path.display()))
            .device(path)
            .with_source(e)
            .hint("unmount it or stop what holds it (LVM, md, another exclusive opener) first");
    }
    Error::io(what, e).device(path)
}

/// Moves buffers between a fixed list of devices (index 0 is usually the
/// source). Operations may complete in any order; each comes back once,
/// from [`reap`](BlockIo::reap), with its buffer.
pub trait BlockIo {
    /// `"uring"` or `"sync"`.
    fn name(&self) -> &'static str;
    /// Operations in flight.
    fn in_flight(&self) -> usize;
    /// Room for more operations now.
    fn available(&self) -> usize;
    /// Queue a read of `len` bytes at `offset` of device `dev` into `buf`.
    #[allow(clippy::result_large_err)]
    fn read(
        &mut self,
        dev: usize,
        buf: Buf,
        offset: u64,
        len: usize,
        tag: u64,
    ) -> Result<(), (Buf, Error)>;
    /// Queue a write of `buf`'s data at `offset` to every device in the bit set `devs`.
    #[allow(clippy::result_large_err)]
    fn write(&mut self, devs: u64, buf: Buf, offset: u64, tag: u64) -> Result<(), (Buf, Error)>;
    /// Start what is queued; append finished operations to `out`, waiting
    /// for at least one when `wait` and something is in flight.
    fn reap(&mut self, wait: bool, out: &mut Vec<Done>) -> Result<()>;
}

/// The io_uring engine.
#[derive(Debug)]
pub struct UringIo {
    ring: Ring<u64>,
}

impl UringIo {
    /// A ring over `files` for `capacity` operations; `mem` is registered.
    pub fn new(files: &[&File], capacity: usize, mem: Option<&Arc<PoolMem>>) -> Result<Self> {
        let ring = Ring::new(capacity, files, mem)
            .map_err(|e| Error::io("setting up io_uring", e).hint("try `--engine sync`"))?;
        Ok(Self { ring })
    }

    /// Registered files and buffers in use.
    pub fn features(&self) -> uring::RingFeatures {
        self.ring.features()
    }
}

impl BlockIo for UringIo {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn in_flight(&self) -> usize {
        self.ring.in_flight()
    }

    fn available(&self) -> usize {
        self.ring.available()
    }

    fn read(
        &mut self,
        dev: usize,
        buf: Buf,
        offset: u64,
        len: usize,
        tag: u64,
    ) -> Result<(), (Buf, Error)> {
        self.ring
            .push_read(dev, buf, offset, len, tag)
            .map_err(|(b, _, e)| (b, Error::io("queueing a read", e).offset(offset)))
    }

    fn write(&mut self, devs: u64, buf: Buf, offset: u64, tag: u64) -> Result<(), (Buf, Error)> {
        self.ring
            .push_write(devs, buf, offset, tag)
            .map_err(|(b, _, e)| (b, Error::io("queueing a write", e).offset(offset)))
    }

    fn reap(&mut self, wait: bool, out: &mut Vec<Done>) -> Result<()> {
        self.ring
            .submit_and_reap(wait, |c| out.push(c))
            .map_err(|e| Error::io("io_uring submit", e))?;
        Ok(())
    }
}

/// The synchronous engine: every operation runs to completion when queued.
#[derive(Debug)]
pub struct SyncIo {
    files: Vec<File>,
    done: VecDeque<Done>,
    capacity: usize,
}

impl SyncIo {
    /// An engine over `files` that reports up to `capacity` finished operations per reap.
    pub fn new(files: &[&File], capacity: usize) -> Result<Self> {
        let files = files
            .iter()
            .map(|f| f.try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| Error::io("duplicating a file descriptor", e))?;
        if files.len() > uring::MAX_FILES {
            return Err(Error::invalid("too many devices"));
        }
        Ok(Self {
            files,
            done: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        })
    }
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

impl BlockIo for SyncIo {
    fn name(&self) -> &'static str {
        "sync"
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn available(&self) -> usize {
        self.capacity.saturating_sub(self.done.len())
    }

    fn read(
        &mut self,
        dev: usize,
        mut buf: Buf,
        offset: u64,
        len: usize,
        tag: u64,
    ) -> Result<(), (Buf, Error)> {
        if dev >= self.files.len() || len > buf.capacity() || len == 0 {
            return Err((buf, Error::invalid("bad read request")));
        }
        let mut pos = 0usize;
        let mut result = Ok(());
        while pos < len {
            let at = offset + pos as u64;
            match self.files[dev].read_at(&mut buf.as_mut_full()[pos..len], at) {
                Ok(0) => {
                    result = Err(OpError {
                        file: dev,
                        offset: at,
                        errno: 0,
                        write: false,
                    });
                    break;
                }
                Ok(n) => pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(OpError {
                        file: dev,
                        offset: at,
                        errno: errno_of(&e),
                        write: false,
                    });
                    break;
                }
            }
        }
        if result.is_ok() {
            buf.set_len(len);
        }
        self.done.push_back(Done { buf, tag, result });
        Ok(())
    }

    fn write(&mut self, devs: u64, buf: Buf, offset: u64, tag: u64) -> Result<(), (Buf, Error)> {
        if devs == 0 || (self.files.len() < 64 && devs >> self.files.len() != 0) || buf.is_empty() {
            return Err((buf, Error::invalid("bad write request")));
        }
        let mut result = Ok(());
        'files: for (i, f) in self.files.iter().enumerate() {
            if devs & (1u64 << i) == 0 {
                continue;
            }
            let data = buf.as_slice();
            let mut pos = 0usize;
            while pos < data.len() {
                let at = offset + pos as u64;
                match f.write_at(&data[pos..], at) {
                    Ok(0) => {
                        result = Err(OpError {
                            file: i,
                            offset: at,
                            errno: 0,
                            write: true,
                        });
                        break 'files;
                    }
                    Ok(n) => pos += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        result = Err(OpError {
                            file: i,
                            offset: at,
                            errno: errno_of(&e),
                            write: true,
                        });
                        break 'files;
                    }
                }
            }
        }
        self.done.push_back(Done { buf, tag, result });
        Ok(())
    }

    fn reap(&mut self, _wait: bool, out: &mut Vec<Done>) -> Result<()> {
        out.extend(self.done.drain(..));
        Ok(())
    }
}

/// Build the engine `kind` over `files`.
pub fn engine(
    kind: EngineKind,
    files: &[&File],
    capacity: usize,
    mem: Option<&Arc<PoolMem>>,
) -> Result<Box<dyn BlockIo>> {
    Ok(match kind {
        EngineKind::Uring => Box::new(UringIo::new(files, capacity, mem)?),
        EngineKind::Sync => Box::new(SyncIo::new(files, capacity)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::buf::BufPool;

    fn roundtrip(kind: EngineKind) {
        if kind == EngineKind::Uring {
            if let Some(why) = crate::test_skip::io_uring_missing() {
                return crate::test_skip::skip(&why);
            }
        }
        let src = tempfile::tempfile().unwrap();
        let dst = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
        src.write_all_at(&data, 0).unwrap();
        let mut pool = BufPool::new(2, 8192, 4096).unwrap();
        let mut io = engine(kind, &[&src, &dst], 2, Some(pool.mem())).unwrap();
        io.read(0, pool.take().unwrap(), 0, 8192, 7)
            .map_err(|e| e.1)
            .unwrap();
        let mut out = Vec::new();
        while out.is_empty() {
            io.reap(true, &mut out).unwrap();
        }
        let d = out.pop().unwrap();
        assert_eq!((d.tag, d.result, d.buf.len()), (7, Ok(()), 8192));
        io.write(0b10, d.buf, 4096, 8).map_err(|e| e.1).unwrap();
        while out.is_empty() {
            io.reap(true, &mut out).unwrap();
        }
        assert_eq!(out[0].result, Ok(()));
        let mut got = vec![0u8; 8192];
        dst.read_exact_at(&mut got, 4096).unwrap();
        assert_eq!(got, data);
        // A read past the end names the device and offset.
        let b = out.pop().unwrap().buf;
        io.read(1, b, 1 << 20, 4096, 9).map_err(|e| e.1).unwrap();
        while out.is_empty() {
            io.reap(true, &mut out).unwrap();
        }
        let e = out[0].result.unwrap_err();
        assert_eq!((e.file, e.offset, e.write), (1, 1 << 20, false));
    }

    #[test]
    fn sync_engine_roundtrip() {
        roundtrip(EngineKind::Sync);
    }

    #[test]
    fn uring_engine_roundtrip() {
        roundtrip(EngineKind::Uring);
    }

    #[test]
    fn open_regular_file_with_direct_or_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let (d, _warning) = Device::open(&p, Access::Write, true).unwrap();
        assert_eq!(d.size, 8192);
        assert!(!d.is_block);
        d.flush().unwrap();
        let e = Device::open(&dir.path().join("missing"), Access::Read, true).unwrap_err();
        assert_eq!(
            e.context().device.as_deref(),
            Some(dir.path().join("missing").as_path())
        );
    }
}
