//! Aligned I/O buffers for O_DIRECT: one allocation per pool, cut into
//! equal buffers, each handed out exactly once as an owned [`Buf`].
//!
//! A `Buf` is the only way to reach its bytes, so holding it (or `&mut` to
//! it) is exclusive access; the io_uring wrapper keeps a `Buf` while the
//! kernel uses its memory. The pool memory lives until the last `Buf` and the
//! last registration (an `Arc`) are gone. Only `std` and `libc` here.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

/// The memory behind a pool: `count` buffers of `size` bytes, each aligned
/// to `align`.
#[derive(Debug)]
pub struct PoolMem {
    ptr: NonNull<u8>,
    layout: Layout,
    size: usize,
    count: usize,
}

// SAFETY: `PoolMem` is a plain heap allocation; access to its bytes goes only
// through `Buf`s, each of which covers a disjoint range and is not `Clone`,
// so sharing the owner between threads cannot create aliasing `&mut`.
unsafe impl Send for PoolMem {}
// SAFETY: see `Send`; `&PoolMem` exposes no bytes, only addresses and sizes.
unsafe impl Sync for PoolMem {}

impl PoolMem {
    /// Buffer size in bytes.
    pub fn buf_size(&self) -> usize {
        self.size
    }

    /// Number of buffers.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Start address of buffer `i` (for io_uring buffer registration).
    pub(crate) fn buf_ptr(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.count);
        // SAFETY: i < count, so i * size is inside the allocation (checked
        // against overflow when the layout was built).
        unsafe { self.ptr.as_ptr().add(i * self.size) }
    }

    /// One `iovec` per buffer, for `io_uring_register_buffers`.
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count)
            .map(|i| libc::iovec {
                iov_base: self.buf_ptr(i).cast(),
                iov_len: self.size,
            })
            .collect()
    }
}

impl Drop for PoolMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufPool::new` with exactly this layout; every
        // `Buf` and registration holds an `Arc`, so none is alive now.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// One aligned buffer of a pool, with a length of valid data (`len`).
/// Not `Clone`: owning it is exclusive access to its bytes.
#[derive(Debug)]
pub struct Buf {
    mem: Arc<PoolMem>,
    index: usize,
    len: usize,
}

impl Buf {
    /// The capacity (the pool's buffer size).
    pub fn capacity(&self) -> usize {
        self.mem.size
    }

    /// Bytes of valid data.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no data is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Set the valid length (clamped to the capacity).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.mem.size);
    }

    /// Index inside the pool (the registered-buffer index for io_uring).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The valid data.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the range [index*size, index*size + len) lies inside the
        // allocation and belongs to this `Buf` only; memory is zero-initialised
        // at allocation, so every byte is initialised.
        unsafe { std::slice::from_raw_parts(self.mem.buf_ptr(self.index), self.len) }
    }

    /// The whole capacity, writable.
    pub fn as_mut_full(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.mem.buf_ptr(self.index), self.mem.size) }
    }

    /// Raw start address, for the kernel.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.mem.buf_ptr(self.index)
    }

    /// True when this buffer belongs to `mem`.
    pub(crate) fn is_from(&self, mem: &Arc<PoolMem>) -> bool {
        Arc::ptr_eq(&self.mem, mem)
    }
}

/// A fixed set of aligned buffers. Taking and returning buffers never
/// allocates (the free list has its full capacity from the start).
#[derive(Debug)]
pub struct BufPool {
    mem: Arc<PoolMem>,
    free: Vec<Buf>,
}

impl BufPool {
    /// `count` buffers of `size` bytes aligned to `align` (a power of two;
    /// `size` must be a non-zero multiple of it). Memory is zeroed.
    pub fn new(count: usize, size: usize, align: usize) -> io::Result<Self> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_owned());
        if count == 0 || size == 0 {
            return Err(bad("buffer pool needs at least one non-empty buffer"));
        }
        if !align.is_power_of_two() || size % align != 0 {
            return Err(bad(
                "buffer size must be a multiple of a power-of-two alignment",
            ));
        }
        let total = size
            .checked_mul(count)
            .ok_or_else(|| bad("buffer pool too large"))?;
        let layout = Layout::from_size_align(total, align.max(4096))
            .map_err(|_| bad("buffer pool too large"))?;
        // SAFETY: the layout has a non-zero size (count, size > 0).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "allocating I/O buffers"))?;
        let mem = Arc::new(PoolMem {
            ptr,
            layout,
            size,
            count,
        });
        let free = (0..count)
            .rev()
            .map(|index| Buf {
                mem: Arc::clone(&mem),
                index,
                len: 0,
            })
            .collect();
        Ok(Self { mem, free })
    }

    /// The pool's memory (to register with io_uring).
    pub fn mem(&self) -> &Arc<PoolMem> {
        &self.mem
    }

    /// Buffer size.
    pub fn buf_size(&self) -> usize {
        self.mem.size
    }

    /// Buffers not handed out.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Take a free buffer, if any.
    pub fn take(&mut self) -> Option<Buf> {
        self.free.pop()
    }

    /// Give a buffer back. Buffers of another pool are dropped, never mixed in.
    pub fn put(&mut self, mut buf: Buf) {
        if buf.is_from(&self.mem) && self.free.len() < self.mem.count {
            buf.len = 0;
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_disjoint_and_recycled() {
        let mut pool = BufPool::new(4, 8192, 4096).unwrap();
        let mut bufs: Vec<Buf> = (0..4).map(|_| pool.take().unwrap()).collect();
        assert!(pool.take().is_none());
        for (i, b) in bufs.iter_mut().enumerate() {
            assert_eq!(b.as_mut_ptr() as usize % 4096, 0);
            b.as_mut_full().fill(u8::try_from(i).unwrap());
            b.set_len(100);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(b.as_slice().iter().all(|&x| usize::from(x) == i));
        }
        let b = bufs.pop().unwrap();
        pool.put(b);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.take().unwrap().len(), 0, "a returned buffer is reset");
    }

    #[test]
    fn foreign_buffers_are_not_adopted() {
        let mut a = BufPool::new(1, 4096, 4096).unwrap();
        let mut b = BufPool::new(1, 4096, 4096).unwrap();
        let x = b.take().unwrap();
        a.put(x);
        assert_eq!(a.available(), 1);
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(BufPool::new(0, 4096, 4096).is_err());
        assert!(BufPool::new(1, 1000, 4096).is_err());
        assert!(BufPool::new(1, 4096, 3000).is_err());
        assert!(BufPool::new(usize::MAX, 4096, 4096).is_err());
    }

    #[test]
    fn memory_outlives_the_pool_while_buffers_live() {
        let mut pool = BufPool::new(2, 4096, 4096).unwrap();
        let mut b = pool.take().unwrap();
        drop(pool);
        b.as_mut_full()[0] = 7;
        b.set_len(1);
        assert_eq!(b.as_slice(), &[7]);
    }
}
