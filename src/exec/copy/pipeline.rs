//! The pipeline: runs one pass over a [`CopyPlan`]'s chunks with a bounded
//! number of chunks in flight. Reads and writes overlap in the engine,
//! hashes run on worker threads, buffers come from a fixed pool and hashes
//! go into a table sized up front: the loop itself allocates nothing.
//!
//! Device 0 is the source, devices 1..=T the targets. A pass is one of:
//! copy (read source, write every target, then hash), delta (read source and
//! targets, hash, write only targets that differ), or check (read targets,
//! and the source or the hash table, hash, record differing chunks).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::exec::event::EventSink;
use crate::exec::interrupt::Interrupts;
use crate::plan::copy::CopyPlan;
use crate::sys::buf::{Buf, BufPool};

use super::hash::Hashers;
use super::io::{BlockIo, Done, OpError};
use super::trace::{Ev, Trace};
use super::zero::{self, ZeroError, ZeroTargets};

/// What one pass does with each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Read the source, write it to every target; hash it afterwards when `hash`.
    Copy {
        /// Fill the hash table.
        hash: bool,
    },
    /// Read source and targets, hash all, write the source chunk only to
    /// targets whose hash differs.
    Delta,
    /// Read every target and compare its hash with the source's: with
    /// `read_source` the source is read and hashed too (the table is filled),
    /// otherwise the table holds the source hashes (readback after a copy).
    Check {
        /// Read and hash the source as well.
        read_source: bool,
    },
}

impl Pass {
    fn reads_source(self) -> bool {
        !matches!(self, Pass::Check { read_source: false })
    }

    fn reads_targets(self) -> bool {
        !matches!(self, Pass::Copy { .. })
    }
}

/// The transfer that ended a pass with an I/O error: enough to retry it
/// in smaller pieces and name the failing sector ([`super::locate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedOp {
    /// Device index (0 = source, 1..=T = targets).
    pub device: usize,
    /// First byte of the failed transfer.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// A write (else a read).
    pub write: bool,
}

/// A chunk of a target that differs from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// Device index (1..=T: the targets).
    pub device: usize,
    /// First byte of the chunk.
    pub offset: u64,
    /// Length of the chunk.
    pub len: u64,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Bytes read from all devices.
    pub bytes_read: u64,
    /// Bytes written to all targets.
    pub bytes_written: u64,
    /// Bytes of all-zero chunks zeroed on the targets instead of written
    /// (summed over targets, like `bytes_written`).
    pub bytes_zeroed: u64,
    /// Bytes of chunks fully processed (source bytes).
    pub bytes_done: u64,
    /// Delta: target bytes already equal to the source, not written.
    pub bytes_unchanged: u64,
    /// Chunks fully processed.
    pub chunks_done: u64,
    /// Differing chunks (check and delta passes), at most [`MAX_MISMATCHES`] kept.
    pub mismatches: Vec<Mismatch>,
    /// All differing chunks, counted.
    pub mismatch_count: u64,
    /// Bytes in all differing chunks.
    pub mismatch_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// At most this many differing chunks are listed (all are counted).
pub const MAX_MISMATCHES: usize = 1000;

/// Settings of a pass.
#[derive(Debug, Clone)]
pub struct PassConfig<'a> {
    /// Paths of the devices (index 0 = source), for error messages.
    pub paths: &'a [PathBuf],
    /// Chunks in flight at once.
    pub queue_depth: usize,
    /// Name of the phase in progress events.
    pub phase: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Idle,
    Read,
    Write,
    Hash,
}

#[derive(Debug)]
struct Job {
    stage: Stage,
    chunk: u64,
    offset: u64,
    len: usize,
    bufs: Vec<Option<Buf>>,
    hashes: Vec<u64>,
    waiting: usize,
    write_mask: u64,
    failed: bool,
}

const WHICH_WRITE: u64 = 0xff;

/// A `'static` phase name for the timeline (pass names are borrowed).
fn trace_name(phase: &str) -> &'static str {
    match phase {
        "copy" => "copy",
        "delta" => "delta",
        "readback" => "readback",
        "verify" => "verify",
        "zero-check" => "zero-check",
        "itable-compare" => "itable-compare",
        _ => "pass",
    }
}

/// What [`Run::try_zero`] did.
enum Zeroed {
    /// Not zeros, or no cheap zeroing: write.
    No,
    /// Zeroed on every target in the mask.
    Yes,
    /// An I/O error, recorded.
    Failed,
}

fn tag(job: usize, which: u64) -> u64 {
    ((job as u64) << 8) | which
}

fn untag(t: u64) -> (usize, u64) {
    (usize::try_from(t >> 8).unwrap_or(usize::MAX), t & 0xff)
}

/// Buffers one pass needs per chunk in flight.
pub fn bufs_per_chunk(pass: Pass, targets: usize) -> usize {
    usize::from(pass.reads_source()) + if pass.reads_targets() { targets } else { 0 }
}

/// Runs passes; owns the engine, the buffer pool and the hashers.
pub struct Pipeline {
    io: Box<dyn BlockIo>,
    pool: BufPool,
    hashers: Hashers,
    targets: usize,
    zero: Option<Arc<ZeroTargets>>,
    failed: Option<FailedOp>,
    interrupts: Option<Arc<Interrupts>>,
    trace: Option<Trace>,
    /// Scratch for [`zero::sparse_runs`] (at most MAX_RUNS entries).
    runs: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("engine", &self.io.name())
            .field("buffers", &self.pool.available())
            .field("targets", &self.targets)
            .finish()
    }
}

struct Run<'a, 'p> {
    p: &'p mut Pipeline,
    pass: Pass,
    cfg: &'a PassConfig<'a>,
    table: &'a mut [u64],
    jobs: Vec<Job>,
    free_jobs: Vec<usize>,
    stats: PassStats,
    error: Option<Error>,
    aborted_from: Option<u64>,
    all_targets: u64,
}

impl Pipeline {
    /// A pipeline over an engine whose device 0 is the source and 1..=`targets`
    /// the targets, with buffers from `pool` and `hash_threads` hashers.
    pub fn new(
        io: Box<dyn BlockIo>,
        pool: BufPool,
        targets: usize,
        hash_threads: usize,
    ) -> Result<Self> {
        let hashers = Hashers::new(hash_threads, pool.available())
            .map_err(|e| Error::io("starting hash threads", e))?;
        if targets == 0 || targets >= 64 {
            return Err(Error::invalid("between 1 and 63 targets"));
        }
        Ok(Self {
            io,
            pool,
            hashers,
            targets,
            zero: None,
            failed: None,
            interrupts: None,
            trace: None,
            runs: Vec::with_capacity(zero::MAX_RUNS),
        })
    }

    /// Record a timeline of the passes (see [`Trace`]).
    pub fn set_trace(&mut self, trace: Option<Trace>) {
        self.trace = trace;
    }

    /// The timeline, for phases recorded around the passes.
    pub fn trace_mut(&mut self) -> Option<&mut Trace> {
        self.trace.as_mut()
    }

    /// Take the timeline back.
    pub fn take_trace(&mut self) -> Option<Trace> {
        self.trace.take()
    }

    /// Zero all-zero chunks on the targets instead of writing them (copy
    /// and delta passes), where `targets` can do it without moving data.
    pub fn set_zero_targets(&mut self, targets: Option<Arc<ZeroTargets>>) {
        self.zero = targets;
    }

    /// Poll these for SIGINT/SIGTERM/SIGHUP during every pass: one that
    /// comes stops the pass like an I/O error (in-flight transfers finish,
    /// the error says how far it got), as [`ErrorKind::Interrupted`].
    pub fn set_interrupts(&mut self, interrupts: Option<Arc<Interrupts>>) {
        self.interrupts = interrupts;
    }

    /// The transfer whose I/O error ended the last [`run`](Self::run), if one did.
    pub fn last_failure(&self) -> Option<FailedOp> {
        self.failed
    }

    /// The engine's name.
    pub fn engine(&self) -> &'static str {
        self.io.name()
    }

    /// Run `pass` over every chunk of `plan`. `table` has one entry per
    /// chunk: filled with source hashes by copy/delta/check-with-source,
    /// read by check-without-source. An I/O error stops the pass after what
    /// is in flight has drained; the error says how far it got.
    pub fn run(
        &mut self,
        plan: &CopyPlan,
        pass: Pass,
        cfg: &PassConfig<'_>,
        table: &mut [u64],
        events: &EventSink,
    ) -> Result<PassStats> {
        let per_chunk = bufs_per_chunk(pass, self.targets);
        let depth = cfg
            .queue_depth
            .min(self.pool.available() / per_chunk.max(1));
        if depth == 0 {
            return Err(Error::invalid("buffer pool too small for one chunk"));
        }
        if table.len() as u64 != plan.chunks {
            return Err(Error::invalid(
                "hash table size differs from the chunk count",
            ));
        }
        if plan.chunk_size > self.pool.buf_size() as u64 {
            return Err(Error::invalid("chunk size larger than the buffers"));
        }
        let n = self.targets + 1;
        let jobs = (0..depth)
            .map(|_| Job {
                stage: Stage::Idle,
                chunk: 0,
                offset: 0,
                len: 0,
                bufs: (0..n).map(|_| None).collect(),
                hashes: vec![0; n],
                waiting: 0,
                write_mask: 0,
                failed: false,
            })
            .collect();
        let all_targets = ((1u64 << n) - 1) & !1;
        let mut run = Run {
            p: self,
            pass,
            cfg,
            table,
            jobs,
            free_jobs: (0..depth).rev().collect(),
            stats: PassStats::default(),
            error: None,
            aborted_from: None,
            all_targets,
        };
        run.p.failed = None;
        let in_chunks = plan.bytes.saturating_sub(plan.tail.map_or(0, |t| t.len()));
        events.phase(cfg.phase, Some(in_chunks), crate::exec::event::Unit::Bytes);
        let started = Instant::now();
        let name = trace_name(cfg.phase);
        if let Some(t) = run.p.trace.as_mut() {
            t.phase(name, true);
        }
        let result = run.main_loop(plan, events);
        if let Some(t) = run.p.trace.as_mut() {
            t.phase(name, false);
        }
        let mut stats = std::mem::take(&mut run.stats);
        stats.elapsed = started.elapsed();
        // "done" only when it is: a pass that ends in an error says so in
        // the error, not after a "copy: done" line (issue 11).
        if result.is_ok() && run.error.is_none() {
            events.phase_end(cfg.phase, stats.bytes_done, stats.elapsed);
        }
        result?;
        if let Some(e) = run.error.take() {
            let below = run.aborted_from.unwrap_or(plan.ranges.end());
            let hint = format!(
                "{} of {} bytes were done before the error; every chunk below byte offset {below} is complete{}",
                stats.bytes_done,
                plan.bytes,
                if matches!(pass, Pass::Copy { .. } | Pass::Delta) {
                    "; rerun with --delta to continue"
                } else {
                    ""
                }
            );
            return Err(e.hint(hint));
        }
        Ok(stats)
    }
}

impl Run<'_, '_> {
    fn main_loop(&mut self, plan: &CopyPlan, events: &EventSink) -> Result<()> {
        let mut chunks = plan.chunks();
        let mut next = chunks.next();
        let mut chunk_no = 0u64;
        let mut done: Vec<Done> = Vec::with_capacity(self.jobs.len() * (self.p.targets + 1));
        let per_chunk = bufs_per_chunk(self.pass, self.p.targets);
        let mut last_progress = Instant::now();
        loop {
            // Start chunks while there is room.
            while self.error.is_none() && self.p.io.available() >= per_chunk {
                let (Some(c), Some(j)) = (next, self.free_jobs.last().copied()) else {
                    break;
                };
                self.free_jobs.pop();
                self.start(j, chunk_no, c.start(), c.len());
                chunk_no += 1;
                next = chunks.next();
            }
            if last_progress.elapsed() >= Duration::from_millis(100) {
                last_progress = Instant::now();
                events.progress(self.stats.bytes_done);
                if let Some(why) = self.p.interrupts.as_ref().and_then(|i| i.poll()) {
                    self.fail(Error::new(ErrorKind::Interrupted(format!(
                        "{why}: stopped after the transfers in flight"
                    ))));
                }
            }
            // Finished hashes first: they may free buffers or start writes.
            let mut progressed = false;
            while let Some(h) = self.p.hashers.try_recv() {
                self.on_hash(h.tag, h.buf, h.hash);
                progressed = true;
            }
            if progressed {
                continue;
            }
            if self.p.io.in_flight() > 0 {
                let hashing = self.p.hashers.outstanding() > 0;
                let t = self.p.trace.is_some().then(Instant::now);
                self.p.io.reap(!hashing, &mut done)?;
                if let (Some(tr), Some(t)) = (self.p.trace.as_mut(), t) {
                    let wait = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                    tr.rec(Ev::Reap, 0, done.len() as u64, 0, wait);
                }
                if done.is_empty() && hashing {
                    if let Some(h) = self.p.hashers.recv(Some(Duration::from_micros(200))) {
                        self.on_hash(h.tag, h.buf, h.hash);
                    }
                }
                for d in done.drain(..) {
                    self.on_io(d);
                }
            } else if self.p.hashers.outstanding() > 0 {
                if let Some(h) = self.p.hashers.recv(None) {
                    self.on_hash(h.tag, h.buf, h.hash);
                }
            } else if self.free_jobs.len() == self.jobs.len()
                && (next.is_none() || self.error.is_some())
            {
                events.progress(self.stats.bytes_done);
                return Ok(());
            }
        }
    }

    fn fail(&mut self, err: Error) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    fn op_error(&self, e: OpError) -> Error {
        let path = self.cfg.paths.get(e.file).cloned().unwrap_or_default();
        let what = if e.write { "write" } else { "read" };
        let io = e.io_error();
        let errno = if e.errno == 0 {
            "no errno: the device ended".to_owned()
        } else {
            format!("errno {}", e.errno)
        };
        Error::io(format!("{what} failed ({errno})"), io)
            .device(path)
            .offset(e.offset)
    }

    fn start(&mut self, j: usize, chunk: u64, offset: u64, len: u64) {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        {
            let job = &mut self.jobs[j];
            job.stage = Stage::Read;
            job.chunk = chunk;
            job.offset = offset;
            job.len = len;
            job.waiting = 0;
            job.write_mask = 0;
            job.failed = false;
        }
        let first = usize::from(!self.pass.reads_source());
        let last = if self.pass.reads_targets() {
            self.p.targets
        } else {
            0
        };
        for dev in first..=last {
            // OK to unwrap: the loop only starts a chunk when the engine has
            // room for all its reads, and the pool holds enough buffers for
            // every job (queue depth was cut to what the pool allows).
            let Some(buf) = self.p.pool.take() else {
                self.fail(Error::invalid("internal: buffer pool exhausted"));
                self.jobs[j].failed = true;
                break;
            };
            match self.p.io.read(dev, buf, offset, len, tag(j, dev as u64)) {
                Ok(()) => {
                    self.jobs[j].waiting += 1;
                    self.trace(j, Ev::ReadSubmit, dev as u64);
                }
                Err((buf, e)) => {
                    self.p.pool.put(buf);
                    let path = self.cfg.paths.get(dev).cloned().unwrap_or_default();
                    self.fail(e.device(path));
                    self.jobs[j].failed = true;
                    break;
                }
            }
        }
        if self.jobs[j].waiting == 0 {
            self.advance(j);
        }
    }

    fn on_io(&mut self, d: Done) {
        let (j, which) = untag(d.tag);
        let Some(job) = self.jobs.get_mut(j) else {
            self.p.pool.put(d.buf);
            return;
        };
        job.waiting -= 1;
        if let Some(t) = self.p.trace.as_mut() {
            let ev = if which == WHICH_WRITE {
                Ev::WriteDone
            } else {
                Ev::ReadDone
            };
            t.rec(ev, job.chunk, which, job.offset, job.len as u64);
        }
        match d.result {
            Err(e) => {
                job.failed = true;
                let failed = FailedOp {
                    device: e.file,
                    offset: job.offset,
                    len: job.len as u64,
                    write: e.write,
                };
                self.p.pool.put(d.buf);
                if self.error.is_none() {
                    self.p.failed = Some(failed);
                }
                let err = self.op_error(e);
                self.fail(err);
            }
            Ok(()) if which == WHICH_WRITE => {
                self.stats.bytes_written +=
                    d.buf.len() as u64 * u64::from(job.write_mask.count_ones());
                job.bufs[0] = Some(d.buf);
            }
            Ok(()) => {
                self.stats.bytes_read += d.buf.len() as u64;
                let idx = usize::try_from(which).unwrap_or(0);
                if self.pass.reads_targets() && !job.failed {
                    // Hash as soon as each read lands.
                    match self.p.hashers.send(d.tag, d.buf) {
                        Ok(()) => {
                            job.waiting += 1;
                            if let Some(t) = self.p.trace.as_mut() {
                                t.rec(Ev::HashSubmit, job.chunk, which, job.offset, job.len as u64);
                            }
                        }
                        Err(buf) => {
                            job.failed = true;
                            self.p.pool.put(buf);
                            self.fail(Error::io(
                                "hash threads stopped",
                                std::io::Error::other("gone"),
                            ));
                        }
                    }
                } else {
                    job.bufs[idx] = Some(d.buf);
                }
            }
        }
        if self.jobs[j].waiting == 0 {
            self.advance(j);
        }
    }

    fn on_hash(&mut self, t: u64, buf: Buf, hash: u64) {
        let (j, which) = untag(t);
        let Some(job) = self.jobs.get_mut(j) else {
            self.p.pool.put(buf);
            return;
        };
        job.waiting -= 1;
        if let Some(t) = self.p.trace.as_mut() {
            t.rec(Ev::HashDone, job.chunk, which, job.offset, job.len as u64);
        }
        let idx = usize::try_from(which).unwrap_or(0).min(job.bufs.len() - 1);
        job.hashes[idx] = hash;
        job.bufs[idx] = Some(buf);
        if job.waiting == 0 {
            self.advance(j);
        }
    }

    /// Everything the job waited for has arrived: take its next step.
    fn advance(&mut self, j: usize) {
        // After an error elsewhere, chunks already in flight still run to
        // the end (no new ones start): the most data ends up done, and
        // "every chunk below the failed one" stays true.
        if self.jobs[j].failed {
            return self.finish(j, false);
        }
        let (chunk, stage) = (self.jobs[j].chunk, self.jobs[j].stage);
        let chunk_idx = usize::try_from(chunk).unwrap_or(usize::MAX);
        match (self.pass, stage) {
            (Pass::Copy { .. }, Stage::Read) => match self.try_zero(j, self.all_targets) {
                Zeroed::No => self.write(j, self.all_targets),
                Zeroed::Yes => {
                    // As if the write had completed: hash (or finish) next.
                    let job = &mut self.jobs[j];
                    job.stage = Stage::Write;
                    job.write_mask = self.all_targets;
                    self.advance(j);
                }
                Zeroed::Failed => self.finish(j, false),
            },
            (Pass::Copy { hash: true }, Stage::Write) => {
                let job = &mut self.jobs[j];
                // OK to unwrap: the write completion put the buffer back.
                let buf = job.bufs[0].take().expect("source buffer after write");
                match self.p.hashers.send(tag(j, 0), buf) {
                    Ok(()) => {
                        job.stage = Stage::Hash;
                        job.waiting = 1;
                        self.trace(j, Ev::HashSubmit, 0);
                    }
                    Err(buf) => {
                        job.bufs[0] = Some(buf);
                        self.fail(Error::io(
                            "hash threads stopped",
                            std::io::Error::other("gone"),
                        ));
                        self.finish(j, false);
                    }
                }
            }
            (Pass::Copy { hash: false }, Stage::Write) => self.finish(j, true),
            (Pass::Copy { .. }, _) => {
                if let Some(slot) = self.table.get_mut(chunk_idx) {
                    *slot = self.jobs[j].hashes[0];
                }
                self.finish(j, true);
            }
            (Pass::Delta, Stage::Read) => {
                let src = self.jobs[j].hashes[0];
                if let Some(slot) = self.table.get_mut(chunk_idx) {
                    *slot = src;
                }
                let mut mask = 0u64;
                for t in 1..=self.p.targets {
                    if self.jobs[j].hashes[t] != src {
                        mask |= 1u64 << t;
                    } else {
                        self.stats.bytes_unchanged += self.jobs[j].len as u64;
                    }
                    if let Some(b) = self.jobs[j].bufs[t].take() {
                        self.p.pool.put(b);
                    }
                }
                if mask == 0 {
                    self.finish(j, true);
                } else {
                    self.record_mismatches(j, mask);
                    match self.try_zero(j, mask) {
                        Zeroed::No => self.write(j, mask),
                        Zeroed::Yes => self.finish(j, true),
                        Zeroed::Failed => self.finish(j, false),
                    }
                }
            }
            (Pass::Delta, _) => self.finish(j, true),
            (Pass::Check { read_source }, _) => {
                let src = if read_source {
                    let h = self.jobs[j].hashes[0];
                    if let Some(slot) = self.table.get_mut(chunk_idx) {
                        *slot = h;
                    }
                    h
                } else {
                    self.table.get(chunk_idx).copied().unwrap_or(0)
                };
                let mut mask = 0u64;
                for t in 1..=self.p.targets {
                    if self.jobs[j].hashes[t] != src {
                        mask |= 1u64 << t;
                    }
                }
                self.record_mismatches(j, mask);
                self.finish(j, true);
            }
        }
    }

    fn record_mismatches(&mut self, j: usize, mask: u64) {
        for t in 1..=self.p.targets {
            if mask & (1u64 << t) == 0 {
                continue;
            }
            self.stats.mismatch_count += 1;
            self.stats.mismatch_bytes += self.jobs[j].len as u64;
            if self.stats.mismatches.len() < MAX_MISMATCHES {
                self.stats.mismatches.push(Mismatch {
                    device: t,
                    offset: self.jobs[j].offset,
                    len: self.jobs[j].len as u64,
                });
            }
        }
    }

    /// Zero the job's chunk on the targets in `mask` instead of writing
    /// it, when it is all zeros and the targets zero cheaply.
    fn try_zero(&mut self, j: usize, mask: u64) -> Zeroed {
        let Some(z) = self.p.zero.clone().filter(|z| z.usable()) else {
            return Zeroed::No;
        };
        let job = &mut self.jobs[j];
        let (offset, len) = (job.offset, job.len as u64);
        if len < zero::MIN_ZERO_BYTES {
            return Zeroed::No;
        }
        let Some(data) = job.bufs[0]
            .as_ref()
            .and_then(|b| b.as_slice().get(..job.len))
        else {
            return Zeroed::No;
        };
        let runs = &mut self.p.runs;
        let Some(nonzero) = zero::sparse_runs(data, z.block(), runs) else {
            return Zeroed::No;
        };
        let result = if nonzero == 0 {
            z.zero(mask, offset, len)
        } else {
            z.write_sparse(mask, offset, data, runs)
        };
        match result {
            Ok(()) => {
                let n = u64::from(mask.count_ones());
                self.stats.bytes_zeroed += (len - nonzero) * n;
                self.stats.bytes_written += nonzero * n;
                self.trace(j, Ev::Zeroed, mask);
                Zeroed::Yes
            }
            Err(ZeroError::Unsupported) => Zeroed::No,
            Err(ZeroError::Io { device, error }) => {
                let path = self.cfg.paths.get(device).cloned().unwrap_or_default();
                self.fail(
                    Error::io("write-zeroes (fallocate) failed", error)
                        .device(path)
                        .offset(offset),
                );
                self.jobs[j].failed = true;
                Zeroed::Failed
            }
        }
    }

    fn write(&mut self, j: usize, mask: u64) {
        let job = &mut self.jobs[j];
        // OK to unwrap: the source buffer is home whenever a write starts.
        let mut buf = job.bufs[0].take().expect("source buffer before write");
        buf.set_len(job.len);
        job.stage = Stage::Write;
        job.write_mask = mask;
        let offset = job.offset;
        match self.p.io.write(mask, buf, offset, tag(j, WHICH_WRITE)) {
            Ok(()) => {
                self.jobs[j].waiting = 1;
                self.trace(j, Ev::WriteSubmit, mask);
            }
            Err((buf, e)) => {
                self.jobs[j].bufs[0] = Some(buf);
                self.fail(e);
                self.finish(j, false);
            }
        }
    }

    fn trace(&mut self, j: usize, ev: Ev, dev: u64) {
        if let (Some(t), Some(job)) = (self.p.trace.as_mut(), self.jobs.get(j)) {
            t.rec(ev, job.chunk, dev, job.offset, job.len as u64);
        }
    }

    fn finish(&mut self, j: usize, ok: bool) {
        self.trace(j, Ev::Done, u64::from(ok));
        let job = &mut self.jobs[j];
        for b in job.bufs.iter_mut() {
            if let Some(b) = b.take() {
                self.p.pool.put(b);
            }
        }
        if ok {
            self.stats.bytes_done += job.len as u64;
            self.stats.chunks_done += 1;
        } else {
            self.aborted_from = Some(self.aborted_from.map_or(job.offset, |o| o.min(job.offset)));
        }
        job.stage = Stage::Idle;
        self.free_jobs.push(j);
    }
}
