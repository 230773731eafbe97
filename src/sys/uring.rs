//! A small, safe io_uring wrapper for positional reads and writes of whole
//! [`Buf`]s on a fixed set of files ([io_uring(7)]).
//!
//! The [`Ring`] keeps an in-flight table keyed by `user_data`: a slot is
//! filled with the buffer and the caller's tag *before* the submission entry
//! is pushed, a failed push gives both back, and the buffer is handed back
//! only when every completion that uses it has been reaped. One write may go
//! to several files at once (a mirror): the buffer comes back after the last
//! of them. Short transfers are resubmitted for the remainder. Required
//! opcodes are probed at start; files and pool buffers are registered when
//! the kernel allows it (fixed files, `READ_FIXED`/`WRITE_FIXED`), with a
//! silent fallback to plain descriptors and `READ`/`WRITE`.
//!
//! Dropping a ring waits for everything in flight, so the kernel never
//! touches memory that has been given back.
//!
//! [io_uring(7)]: https://man7.org/linux/man-pages/man7/io_uring.7.html

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use io_uring::{IoUring, Probe, opcode, squeue, types};

use super::buf::{Buf, PoolMem};

/// Largest number of files one ring serves (a write's file set is a `u64` mask).
pub const MAX_FILES: usize = 64;

/// Why an operation failed: which file (index given at [`Ring::new`]), at
/// which byte offset, and the errno (0 = the device ended early).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpError {
    /// Index of the file in the ring's file list.
    pub file: usize,
    /// Byte offset of the failed transfer.
    pub offset: u64,
    /// The errno, or 0 for an unexpected end of file.
    pub errno: i32,
    /// True for a write, false for a read.
    pub write: bool,
}

impl OpError {
    /// The error as an `io::Error`.
    pub fn io_error(&self) -> io::Error {
        if self.errno == 0 {
            io::Error::new(io::ErrorKind::UnexpectedEof, "device ended early")
        } else {
            io::Error::from_raw_os_error(self.errno)
        }
    }
}

/// A finished read or (mirrored) write: the buffer, the caller's tag, and the
/// first error, if any.
#[derive(Debug)]
pub struct Completion<T> {
    /// The buffer, back in the caller's hands. After a successful read its
    /// length is the number of bytes read.
    pub buf: Buf,
    /// What the caller attached at submission.
    pub tag: T,
    /// `Ok` when every transfer completed in full.
    pub result: Result<(), OpError>,
}

/// What the kernel offers, found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RingFeatures {
    /// Files are registered (fixed file table).
    pub fixed_files: bool,
    /// Pool buffers are registered (`READ_FIXED` / `WRITE_FIXED`).
    pub fixed_buffers: bool,
}

struct Slot<T> {
    buf: Option<Buf>,
    tag: Option<T>,
    write: bool,
    offset: u64,
    len: u32,
    /// Files still transferring (bit per file).
    pending: u64,
    /// Bytes done per file (for resubmitting short transfers).
    done: Vec<u32>,
    error: Option<OpError>,
}

/// An io_uring instance with an in-flight table of `capacity` operations.
pub struct Ring<T> {
    ring: IoUring,
    files: Vec<File>,
    features: RingFeatures,
    fixed_mem: Option<Arc<PoolMem>>,
    slots: Vec<Slot<T>>,
    free_slots: Vec<u32>,
    /// Submission entries pushed but not yet submitted.
    unsubmitted: usize,
    /// Transfers (one per file per slot) the kernel still owes a completion for.
    kernel_ops: usize,
}

impl<T> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("files", &self.files.len())
            .field("features", &self.features)
            .field("capacity", &self.slots.len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

fn user_data(slot: u32, file: usize) -> u64 {
    (u64::from(slot) << 8) | file as u64
}

impl<T> Ring<T> {
    /// A ring for `files` with room for `capacity` operations in flight
    /// (each may be a write to every file). When `mem` is given, its
    /// buffers are registered, if the kernel lets us.
    pub fn new(capacity: usize, files: &[&File], mem: Option<&Arc<PoolMem>>) -> io::Result<Self> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if files.is_empty() || files.len() > MAX_FILES {
            return Err(invalid(format!(
                "a ring serves 1 to {MAX_FILES} files, not {}",
                files.len()
            )));
        }
        if capacity == 0 || capacity > 4096 {
            return Err(invalid(format!("ring capacity {capacity} not in 1..=4096")));
        }
        let sq_entries = capacity
            .checked_mul(files.len())
            .and_then(usize::checked_next_power_of_two)
            .map_or(32768, |n| n.min(32768));
        let sq_entries = u32::try_from(sq_entries).unwrap_or(32768);
        let ring: IoUring = IoUring::builder().build(sq_entries)?;

        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Read::CODE, "IORING_OP_READ"),
            (opcode::Write::CODE, "IORING_OP_WRITE"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks {name}"),
                ));
            }
        }

        let files: Vec<File> = files
            .iter()
            .map(|f| f.try_clone())
            .collect::<io::Result<_>>()?;
        let fds: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
        let fixed_files = ring.submitter().register_files(&fds).is_ok();

        let mut fixed_mem = None;
        if let Some(mem) = mem {
            let fixed_ok = probe.is_supported(opcode::ReadFixed::CODE)
                && probe.is_supported(opcode::WriteFixed::CODE)
                && mem.count() <= usize::from(u16::MAX);
            if fixed_ok {
                let iovecs = mem.iovecs();
                // SAFETY: the iovecs describe the pool's live allocation; we keep
                // an `Arc` to it in `fixed_mem` until the ring (and with it the
                // registration) is dropped, so the memory outlives the registration.
                if unsafe { ring.submitter().register_buffers(&iovecs) }.is_ok() {
                    fixed_mem = Some(Arc::clone(mem));
                }
            }
        }

        let slots = (0..capacity)
            .map(|_| Slot {
                buf: None,
                tag: None,
                write: false,
                offset: 0,
                len: 0,
                pending: 0,
                done: vec![0; files.len()],
                error: None,
            })
            .collect();
        let free_slots = (0..u32::try_from(capacity).unwrap_or(4096)).rev().collect();
        Ok(Self {
            ring,
            features: RingFeatures {
                fixed_files,
                fixed_buffers: fixed_mem.is_some(),
            },
            files,
            fixed_mem,
            slots,
            free_slots,
            unsubmitted: 0,
            kernel_ops: 0,
        })
    }

    /// Registered files and buffers in use.
    pub fn features(&self) -> RingFeatures {
        self.features
    }

    /// Operations (reads, or writes to any number of files) in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// Room for this many more operations.
    pub fn available(&self) -> usize {
        self.free_slots.len()
    }

    /// Number of files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Queue a read of `len` bytes at `offset` of file `file` into `buf`.
    /// On failure the buffer and tag come back.
    #[allow(clippy::type_complexity)]
    pub fn push_read(
        &mut self,
        file: usize,
        buf: Buf,
        offset: u64,
        len: usize,
        tag: T,
    ) -> Result<(), (Buf, T, io::Error)> {
        if file >= self.files.len() {
            return Err((buf, tag, inval("no such file in the ring")));
        }
        if len > buf.capacity() {
            return Err((buf, tag, inval("read longer than the buffer")));
        }
        self.start(false, 1u64 << file, buf, offset, len, tag)
    }

    /// Queue a write of `buf`'s data at `offset` to every file in the bit set
    /// `files`. The buffer comes back after the last of them completes.
    #[allow(clippy::type_complexity)]
    pub fn push_write(
        &mut self,
        files: u64,
        buf: Buf,
        offset: u64,
        tag: T,
    ) -> Result<(), (Buf, T, io::Error)> {
        if files == 0 || (self.files.len() < 64 && files >> self.files.len() != 0) {
            return Err((
                buf,
                tag,
                inval("write to no file, or to a file not in the ring"),
            ));
        }
        let len = buf.len();
        self.start(true, files, buf, offset, len, tag)
    }

    #[allow(clippy::type_complexity)]
    fn start(
        &mut self,
        write: bool,
        files: u64,
        buf: Buf,
        offset: u64,
        len: usize,
        tag: T,
    ) -> Result<(), (Buf, T, io::Error)> {
        let Ok(len32) = u32::try_from(len) else {
            return Err((buf, tag, inval("transfer larger than 4 GiB")));
        };
        if len == 0 {
            return Err((buf, tag, inval("empty transfer")));
        }
        if offset.checked_add(len as u64).is_none() {
            return Err((buf, tag, inval("transfer past the largest offset")));
        }
        let Some(slot_no) = self.free_slots.pop() else {
            return Err((
                buf,
                tag,
                io::Error::new(io::ErrorKind::WouldBlock, "ring full: reap first"),
            ));
        };
        // Fill the in-flight table before the kernel sees anything.
        {
            let slot = &mut self.slots[slot_no as usize];
            slot.buf = Some(buf);
            slot.tag = Some(tag);
            slot.write = write;
            slot.offset = offset;
            slot.len = len32;
            slot.pending = files;
            slot.done.fill(0);
            slot.error = None;
        }
        let mut pushed = 0u64;
        for file in 0..self.files.len() {
            if files & (1u64 << file) == 0 {
                continue;
            }
            if let Err(e) = self.push_entry(slot_no, file) {
                if pushed == 0 {
                    // Nothing reached the queue: undo and hand everything back.
                    let slot = &mut self.slots[slot_no as usize];
                    slot.pending = 0;
                    self.free_slots.push(slot_no);
                    // OK to unwrap: both were stored just above.
                    let buf = slot.buf.take().expect("buffer stored above");
                    let tag = slot.tag.take().expect("tag stored above");
                    return Err((buf, tag, e));
                }
                // Some transfers are queued: the slot must live until they
                // complete; record the failure for the rest.
                let slot = &mut self.slots[slot_no as usize];
                slot.error.get_or_insert(OpError {
                    file,
                    offset,
                    errno: e.raw_os_error().unwrap_or(libc::EAGAIN),
                    write,
                });
                slot.pending &= !(1u64 << file);
                continue;
            }
            pushed |= 1u64 << file;
        }
        Ok(())
    }

    /// Push the (remaining) transfer of `slot_no` for `file`.
    fn push_entry(&mut self, slot_no: u32, file: usize) -> io::Result<()> {
        let slot = &mut self.slots[slot_no as usize];
        let done = slot.done[file];
        let remaining = slot.len - done;
        let offset = slot.offset + u64::from(done);
        let write = slot.write;
        // OK to unwrap: a slot with pending transfers always holds its buffer.
        let buf = slot.buf.as_mut().expect("in-flight slot holds its buffer");
        let fixed_index = match &self.fixed_mem {
            Some(mem) if buf.is_from(mem) => u16::try_from(buf.index()).ok(),
            _ => None,
        };
        // SAFETY: `done <= len <= capacity`, so the pointer stays inside the buffer.
        let ptr = unsafe { buf.as_mut_ptr().add(done as usize) };
        let ud = user_data(slot_no, file);
        // OK: file < MAX_FILES (64), checked in `new`.
        let fixed = types::Fixed(u32::try_from(file).unwrap_or(u32::MAX));
        let entry: squeue::Entry = match (self.features.fixed_files, write, fixed_index) {
            (true, false, Some(i)) => opcode::ReadFixed::new(fixed, ptr, remaining, i)
                .offset(offset)
                .build(),
            (true, true, Some(i)) => opcode::WriteFixed::new(fixed, ptr, remaining, i)
                .offset(offset)
                .build(),
            (true, false, None) => opcode::Read::new(fixed, ptr, remaining)
                .offset(offset)
                .build(),
            (true, true, None) => opcode::Write::new(fixed, ptr, remaining)
                .offset(offset)
                .build(),
            (false, false, Some(i)) => {
                let fd = types::Fd(self.files[file].as_raw_fd());
                opcode::ReadFixed::new(fd, ptr, remaining, i)
                    .offset(offset)
                    .build()
            }
            (false, true, Some(i)) => {
                let fd = types::Fd(self.files[file].as_raw_fd());
                opcode::WriteFixed::new(fd, ptr, remaining, i)
                    .offset(offset)
                    .build()
            }
            (false, false, None) => {
                let fd = types::Fd(self.files[file].as_raw_fd());
                opcode::Read::new(fd, ptr, remaining).offset(offset).build()
            }
            (false, true, None) => {
                let fd = types::Fd(self.files[file].as_raw_fd());
                opcode::Write::new(fd, ptr, remaining)
                    .offset(offset)
                    .build()
            }
        }
        .user_data(ud);
        if self.ring.submission().is_full() {
            self.ring.submit()?;
            self.unsubmitted = 0;
        }
        // SAFETY: the entry points into a buffer now owned by the in-flight
        // table (slot `slot_no`), which keeps it until this transfer's
        // completion is reaped (and `Drop` waits for all of them); the file
        // is open (held in `self.files`, or registered).
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, "submission queue full"))?;
        self.unsubmitted += 1;
        self.kernel_ops += 1;
        Ok(())
    }

    /// Submit what is queued, wait for at least one completion when `wait`
    /// (and something is in flight), then hand every finished operation to
    /// `on_done`. Returns how many operations finished.
    pub fn submit_and_reap(
        &mut self,
        wait: bool,
        mut on_done: impl FnMut(Completion<T>),
    ) -> io::Result<usize> {
        let want = usize::from(wait && self.kernel_ops > 0);
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && want == 0 => break,
                Err(e) => return Err(e),
            }
        }
        self.unsubmitted = 0;
        let mut finished = 0;
        loop {
            let next = self.ring.completion().next();
            let Some(cqe) = next else { break };
            self.kernel_ops -= 1;
            if let Some(c) = self.complete(cqe.user_data(), cqe.result())? {
                finished += 1;
                on_done(c);
            }
        }
        Ok(finished)
    }

    /// Account one completion; returns the operation when it is finished.
    fn complete(&mut self, ud: u64, res: i32) -> io::Result<Option<Completion<T>>> {
        let slot_no = u32::try_from(ud >> 8).unwrap_or(u32::MAX);
        let file = (ud & 0xff) as usize;
        let Some(slot) = self.slots.get_mut(slot_no as usize) else {
            return Err(io::Error::other(format!(
                "completion for unknown slot {slot_no}"
            )));
        };
        let write = slot.write;
        if res <= 0 {
            slot.error.get_or_insert(OpError {
                file,
                offset: slot.offset + u64::from(slot.done[file]),
                errno: -res,
                write,
            });
        } else {
            slot.done[file] += res.unsigned_abs();
            if slot.done[file] < slot.len && slot.error.is_none() {
                // Short transfer: queue the remainder, the slot stays busy.
                if let Err(e) = self.push_entry(slot_no, file) {
                    let slot = &mut self.slots[slot_no as usize];
                    slot.error.get_or_insert(OpError {
                        file,
                        offset: slot.offset + u64::from(slot.done[file]),
                        errno: e.raw_os_error().unwrap_or(libc::EAGAIN),
                        write,
                    });
                } else {
                    return Ok(None);
                }
            }
        }
        let slot = &mut self.slots[slot_no as usize];
        slot.pending &= !(1u64 << file);
        if slot.pending != 0 {
            return Ok(None);
        }
        // OK to unwrap: a slot that had pending transfers holds buffer and tag.
        let mut buf = slot.buf.take().expect("in-flight slot holds its buffer");
        let tag = slot.tag.take().expect("in-flight slot holds its tag");
        let result = match slot.error.take() {
            Some(e) => Err(e),
            None => {
                if !write {
                    buf.set_len(slot.len as usize);
                }
                Ok(())
            }
        };
        self.free_slots.push(slot_no);
        Ok(Some(Completion { buf, tag, result }))
    }
}

fn inval(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // The kernel may still write into buffers we hold: wait for every
        // transfer before the memory can be given back.
        while self.kernel_ops > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(_) => {
                    // Cannot wait: leak the buffers rather than free memory
                    // the kernel may still write to.
                    for slot in &mut self.slots {
                        if let Some(b) = slot.buf.take() {
                            std::mem::forget(b);
                        }
                    }
                    return;
                }
            }
            while let Some(cqe) = self.ring.completion().next() {
                let _ = cqe;
                self.kernel_ops -= 1;
            }
        }
        // Closing the ring tears it down in a kernel worker, some time after
        // we return: registered files would stay open (a block device opened
        // with O_EXCL would stay claimed) after the copy ended. Unregistering
        // drops them now, in this thread.
        if self.features.fixed_files {
            let _ = self.ring.submitter().unregister_files();
        }
        if self.features.fixed_buffers {
            let _ = self.ring.submitter().unregister_buffers();
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::super::buf::BufPool;
    use super::*;
    use std::os::unix::fs::FileExt;

    /// A ring, or `None` (after [`crate::test_skip::skip`]) when this
    /// kernel has no io_uring or forbids it. Any other failure panics.
    fn ring_or_skip<T>(cap: usize, files: &[&File], mem: Option<&Arc<PoolMem>>) -> Option<Ring<T>> {
        if let Some(why) = crate::test_skip::io_uring_missing() {
            crate::test_skip::skip(&why);
            return None;
        }
        Some(Ring::new(cap, files, mem).expect("io_uring works here, so must a ring"))
    }

    #[test]
    fn read_then_mirror_write() {
        let src = tempfile::tempfile().unwrap();
        let a = tempfile::tempfile().unwrap();
        let b = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
        src.write_all_at(&data, 0).unwrap();
        let mut pool = BufPool::new(4, 8192, 4096).unwrap();
        let Some(mut ring) = ring_or_skip::<u32>(4, &[&src, &a, &b], Some(pool.mem())) else {
            return;
        };
        assert_eq!(ring.file_count(), 3);
        for (i, off) in [0u64, 8192].into_iter().enumerate() {
            let buf = pool.take().unwrap();
            ring.push_read(0, buf, off, 8192, i as u32)
                .map_err(|e| e.2)
                .unwrap();
        }
        let mut done = Vec::new();
        while done.len() < 2 {
            ring.submit_and_reap(true, |c| done.push(c)).unwrap();
        }
        for c in done.drain(..) {
            assert!(c.result.is_ok());
            assert_eq!(c.buf.len(), 8192);
            let off = u64::from(c.tag) * 8192;
            ring.push_write(0b110, c.buf, off, c.tag)
                .map_err(|e| e.2)
                .unwrap();
        }
        let mut writes = 0;
        while writes < 2 {
            writes += ring
                .submit_and_reap(true, |c| {
                    assert!(c.result.is_ok());
                    pool.put(c.buf);
                })
                .unwrap();
        }
        assert_eq!(ring.in_flight(), 0);
        for f in [&a, &b] {
            let mut got = vec![0u8; data.len()];
            f.read_exact_at(&mut got, 0).unwrap();
            assert_eq!(got, data);
        }
    }

    #[test]
    fn errors_name_file_and_offset_and_push_failures_give_back() {
        let src = tempfile::tempfile().unwrap();
        src.set_len(4096).unwrap();
        let mut pool = BufPool::new(2, 4096, 4096).unwrap();
        let Some(mut ring) = ring_or_skip::<&str>(1, &[&src], None) else {
            return;
        };
        // Past the end: a read of 0 bytes is reported as an early end (errno 0).
        ring.push_read(0, pool.take().unwrap(), 8192, 4096, "eof")
            .map_err(|e| e.2)
            .unwrap();
        // The ring is full now: the second push gives the buffer back.
        let (buf, tag, err) = ring
            .push_read(0, pool.take().unwrap(), 0, 4096, "x")
            .unwrap_err();
        assert_eq!(tag, "x");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        pool.put(buf);
        let mut got = None;
        while got.is_none() {
            ring.submit_and_reap(true, |c| got = Some(c)).unwrap();
        }
        let c = got.unwrap();
        let e = c.result.unwrap_err();
        assert_eq!((e.file, e.offset, e.errno, e.write), (0, 8192, 0, false));
        // Bad arguments are refused up front.
        let (buf, _, _) = ring.push_read(3, c.buf, 0, 4096, "bad").unwrap_err();
        assert!(ring.push_write(0b10, buf, 0, "bad").is_err());
    }

    /// Dropping a ring with reads in flight returns only once the kernel is
    /// done with them: right after the drop every buffer holds its whole
    /// range of the file (no read was lost or cut short), and nothing writes
    /// to the buffers afterwards (a marker put there survives).
    #[test]
    fn drop_waits_for_in_flight_reads() {
        use std::os::unix::fs::OpenOptionsExt;
        const N: usize = 8;
        const LEN: usize = 256 << 10;
        let byte = |off: usize| u8::try_from(off / 4096 % 200 + off % 7 + 1).unwrap();
        let data: Vec<u8> = (0..N * LEN).map(byte).collect();
        // O_DIRECT on a disk filesystem keeps the reads in flight (cached
        // reads may complete inline at submission); tmpfs falls back.
        let dir = tempfile::tempdir_in("/var/tmp")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let path = dir.path().join("src");
        std::fs::write(&path, &data).unwrap();
        let src = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .or_else(|_| File::open(&path))
            .unwrap();
        let mut pool = BufPool::new(N, LEN, 4096).unwrap();
        let mem = Arc::clone(pool.mem());
        let Some(mut ring) = ring_or_skip::<usize>(N, &[&src], Some(pool.mem())) else {
            return;
        };
        let mut offset_of = [usize::MAX; N];
        for i in 0..N {
            let b = pool.take().unwrap();
            offset_of[b.index()] = i * LEN;
            ring.push_read(0, b, (i * LEN) as u64, LEN, i * LEN)
                .map_err(|e| e.2)
                .unwrap();
        }
        let mut early = Vec::new();
        ring.submit_and_reap(false, |c| early.push(c)).unwrap();
        for c in &early {
            assert!(c.result.is_ok());
            assert_eq!(c.buf.as_slice(), &data[c.tag..c.tag + LEN]);
        }
        let early: Vec<usize> = early.into_iter().map(|c| c.buf.index()).collect();
        drop(ring); // must not return before the kernel is done with the buffers
        let in_flight: Vec<usize> = (0..N).filter(|i| !early.contains(i)).collect();
        for &i in &in_flight {
            // SAFETY: buffer i lies inside the pool allocation, which `mem`
            // keeps alive; its `Buf` was dropped with the ring, so nothing
            // else in this process reaches these bytes.
            let got = unsafe { std::slice::from_raw_parts_mut(mem.buf_ptr(i), LEN) };
            let off = offset_of[i];
            assert!(
                got == &data[off..off + LEN],
                "buffer {i} (offset {off}) incomplete after drop"
            );
            got.fill(0xEE);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        for &i in &in_flight {
            // SAFETY: as above.
            let got = unsafe { std::slice::from_raw_parts(mem.buf_ptr(i), LEN) };
            assert!(
                got.iter().all(|&b| b == 0xEE),
                "buffer {i} written after the drop"
            );
        }
        drop(pool);
    }
}
