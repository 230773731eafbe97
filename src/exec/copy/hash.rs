//! xxh3 of chunks on worker threads, so hashing never stalls the ring:
//! buffers go to the workers over a bounded crossbeam channel and come back
//! with their hash. Channels are sized to the buffer count, so sends never
//! block and nothing allocates per chunk. With zero threads the hash is
//! computed inline on the caller's thread (a benchmark baseline, and a
//! choice for machines whose cores are all busy: no hand-off latency).

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::sys::buf::Buf;

/// A hashed buffer, back from a worker.
#[derive(Debug)]
pub struct Hashed {
    /// The caller's tag.
    pub tag: u64,
    /// The buffer, unchanged.
    pub buf: Buf,
    /// xxh3-64 of the buffer's data.
    pub hash: u64,
}

/// The xxh3 of one chunk (what the workers compute; exposed for benches).
pub fn chunk_hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// A pool of hashing threads.
#[derive(Debug)]
pub struct Hashers {
    tx: Option<Sender<(u64, Buf)>>,
    rx: Receiver<Hashed>,
    threads: Vec<JoinHandle<()>>,
    outstanding: usize,
    /// Inline mode: results computed in `send`, waiting to be received.
    ready: std::collections::VecDeque<Hashed>,
}

impl Hashers {
    /// `threads` workers for at most `buffers` buffers in flight; 0 threads
    /// hashes inline in [`send`](Self::send).
    pub fn new(threads: usize, buffers: usize) -> std::io::Result<Self> {
        let (tx, job_rx) = crossbeam_channel::bounded::<(u64, Buf)>(buffers.max(1));
        let (done_tx, rx) = crossbeam_channel::bounded::<Hashed>(buffers.max(1));
        let mut handles = Vec::new();
        for i in 0..threads {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("reroot-hash-{i}"))
                    .spawn(move || {
                        for (tag, buf) in job_rx {
                            let hash = chunk_hash(buf.as_slice());
                            if done_tx.send(Hashed { tag, buf, hash }).is_err() {
                                break;
                            }
                        }
                    })?,
            );
        }
        Ok(Self {
            tx: Some(tx),
            rx,
            threads: handles,
            outstanding: 0,
            ready: std::collections::VecDeque::with_capacity(if threads == 0 {
                buffers
            } else {
                0
            }),
        })
    }

    /// Buffers sent and not yet received back.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Hand a buffer to a worker. Gives it back if the workers are gone.
    pub fn send(&mut self, tag: u64, buf: Buf) -> Result<(), Buf> {
        if self.threads.is_empty() {
            let hash = chunk_hash(buf.as_slice());
            self.ready.push_back(Hashed { tag, buf, hash });
            self.outstanding += 1;
            return Ok(());
        }
        match &self.tx {
            Some(tx) => match tx.send((tag, buf)) {
                Ok(()) => {
                    self.outstanding += 1;
                    Ok(())
                }
                Err(e) => Err(e.into_inner().1),
            },
            None => Err(buf),
        }
    }

    /// A finished hash, if one is ready.
    pub fn try_recv(&mut self) -> Option<Hashed> {
        if let Some(h) = self.ready.pop_front() {
            self.outstanding -= 1;
            return Some(h);
        }
        match self.rx.try_recv() {
            Ok(h) => {
                self.outstanding -= 1;
                Some(h)
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// Wait up to `timeout` for a finished hash (forever when `None`).
    pub fn recv(&mut self, timeout: Option<std::time::Duration>) -> Option<Hashed> {
        if self.outstanding == 0 {
            return None;
        }
        if self.threads.is_empty() {
            return self.try_recv();
        }
        let got = match timeout {
            Some(t) => self.rx.recv_timeout(t).ok(),
            None => self.rx.recv().ok(),
        };
        if got.is_some() {
            self.outstanding -= 1;
        }
        got
    }
}

impl Drop for Hashers {
    fn drop(&mut self) {
        self.tx = None;
        // Workers may block sending results: drain them while they stop.
        while self
            .rx
            .recv_timeout(std::time::Duration::from_millis(1))
            .is_ok()
            || self.threads.iter().any(|t| !t.is_finished())
        {}
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::buf::BufPool;

    #[test]
    fn hashes_come_back_with_their_buffers() {
        for threads in [0, 2] {
            round_trip(threads);
        }
    }

    fn round_trip(threads: usize) {
        let mut pool = BufPool::new(8, 4096, 4096).unwrap();
        let mut h = Hashers::new(threads, 8).unwrap();
        for tag in 0..8u64 {
            let mut b = pool.take().unwrap();
            b.as_mut_full()[0] = u8::try_from(tag).unwrap();
            b.set_len(4096);
            h.send(tag, b).unwrap();
        }
        let mut seen = 0;
        while let Some(x) = h.recv(None) {
            let mut expect = vec![0u8; 4096];
            expect[0] = u8::try_from(x.tag).unwrap();
            assert_eq!(x.hash, chunk_hash(&expect));
            pool.put(x.buf);
            seen += 1;
        }
        assert_eq!((seen, h.outstanding(), pool.available()), (8, 0, 8));
    }
}
