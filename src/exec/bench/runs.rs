//! One timed run of one [`Strategy`]: open the devices the way the method
//! needs, move bytes from offset 0 until the time or byte bound, end a copy
//! with `fdatasync` of the target (inside the timed part, so the page cache
//! cannot flatter a buffered write), and return a [`Sample`].
//!
//! Each run reads (and writes) the same range, `[0, limit)`; a copy writes
//! the source's bytes at the same offsets of the target and never past
//! `limit`, which is inside both devices. May import `exec::copy`, `plan`,
//! `sys::buf` and `error`.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, SpliceFFlags};

use crate::error::{Error, Result};
use crate::exec::copy::hash::Hashers;
use crate::exec::copy::io::{Access, Device, Done, EngineKind, engine};
use crate::exec::copy::{Pass, PassConfig, Pipeline};
use crate::exec::event::EventSink;
use crate::plan::bench::{Method, Op, Sample, Strategy};
use crate::plan::copy::{PlanInput, plan_copy};
use crate::sys::buf::{Buf, BufPool};
use crate::units::{Extent, ExtentList};

/// What every run of a bench shares.
#[derive(Debug, Clone)]
pub(super) struct RunCtx<'a> {
    /// The source (read only).
    pub source: &'a Path,
    /// The confirmed scratch target, for copies.
    pub target: Option<&'a Path>,
    /// Bytes per run at most: aligned, inside the source and the target.
    pub limit: u64,
    /// The largest logical block size of the devices.
    pub align: u64,
    /// Time bound of a run.
    pub seconds: f64,
    /// Hashing threads for the hashing methods.
    pub hash_threads: usize,
}

/// A sample and the warnings met on the way (buffered fallbacks).
pub(super) type RunResult = Result<(Sample, Vec<String>)>;

/// Run `s` once.
pub(super) fn run_one(s: &Strategy, ctx: &RunCtx<'_>) -> RunResult {
    if s.op == Op::Copy && ctx.target.is_none() {
        return Err(Error::invalid("a copy strategy needs a target"));
    }
    match s.method {
        Method::Buffered => run_pread(s, ctx, false),
        Method::Direct | Method::Threads => run_pread(s, ctx, true),
        Method::Uring => run_uring(s, ctx, false),
        Method::UringXxh3 => run_uring(s, ctx, true),
        Method::CopyFileRange => run_copy_file_range(s, ctx),
        Method::Splice => run_splice(s, ctx),
        Method::Pipeline => run_pipeline(s, ctx, false),
        Method::PipelineHash => run_pipeline(s, ctx, true),
    }
}

/// CPU time (user + system) of the whole process, every thread, in seconds.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| secs(u.user_time()) + secs(u.system_time()))
}

/// Wall and CPU time of a run, and its deadline.
struct Clock {
    start: Instant,
    cpu: f64,
    deadline: Instant,
}

impl Clock {
    fn start(seconds: f64) -> Self {
        let start = Instant::now();
        Self {
            start,
            cpu: cpu_seconds(),
            deadline: start + Duration::from_secs_f64(seconds),
        }
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn sample(&self, bytes: u64, ops: u64) -> Sample {
        Sample {
            bytes,
            ops,
            seconds: self.start.elapsed().as_secs_f64(),
            cpu_seconds: (cpu_seconds() - self.cpu).max(0.0),
        }
    }
}

struct Opened {
    src: Device,
    dst: Option<Device>,
    warnings: Vec<String>,
}

/// Open the source for reading and, for a copy, the target for writing.
fn open(s: &Strategy, ctx: &RunCtx<'_>, direct: bool) -> Result<Opened> {
    let mut warnings = Vec::new();
    let (src, w) = Device::open(ctx.source, Access::Read, direct)?;
    warnings.extend(w);
    let dst = match (s.op, ctx.target) {
        (Op::Copy, Some(t)) => {
            // Not exclusively: the bench holds an exclusive descriptor for its
            // whole duration, and a second exclusive open would fail while the
            // kernel still tears down the previous run's io_uring.
            let (d, w) = Device::open(t, Access::WriteShared, direct)?;
            warnings.extend(w);
            Some(d)
        }
        _ => None,
    };
    Ok(Opened { src, dst, warnings })
}

fn chunk_usize(s: &Strategy) -> Result<usize> {
    usize::try_from(s.chunk_size)
        .ok()
        .filter(|&c| c >= 4096 && c.is_power_of_two())
        .ok_or_else(|| Error::invalid(format!("chunk size {} not usable", s.chunk_size)))
}

fn read_error(path: &Path, offset: u64, e: std::io::Error) -> Error {
    Error::io(format!("read failed at byte offset {offset}"), e)
        .device(path)
        .offset(offset)
}

fn write_error(path: &Path, offset: u64, e: std::io::Error) -> Error {
    Error::io(format!("write failed at byte offset {offset}"), e)
        .device(path)
        .offset(offset)
}

/// `fdatasync` of the target: part of every timed copy.
fn sync_target(dst: &Device) -> Result<()> {
    dst.file
        .sync_data()
        .map_err(|e| Error::io("fdatasync", e).device(&dst.path))
}

/// Length of the transfer at `off`: a chunk, or what is left below `limit`.
fn len_at(off: u64, chunk: u64, limit: u64) -> u64 {
    chunk.min(limit.saturating_sub(off))
}

/// `pread`/`pwrite` from `depth` threads (1 for buffered and direct), each
/// with its own aligned buffer, taking chunks in turn from a shared counter.
fn run_pread(s: &Strategy, ctx: &RunCtx<'_>, direct: bool) -> RunResult {
    let o = open(s, ctx, direct)?;
    let chunk = chunk_usize(s)?;
    let threads = usize::try_from(s.depth.max(1)).unwrap_or(1);
    let mut pool =
        BufPool::new(threads, chunk, 4096).map_err(|e| Error::io("allocating I/O buffers", e))?;
    let bufs: Vec<Buf> = std::iter::from_fn(|| pool.take()).collect();
    let next = AtomicU64::new(0);
    let clock = Clock::start(ctx.seconds);
    let worker = |mut buf: Buf| -> Result<(u64, u64)> {
        let (mut bytes, mut ops) = (0u64, 0u64);
        loop {
            if clock.expired() {
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(off) = i.checked_mul(s.chunk_size).filter(|&o| o < ctx.limit) else {
                break;
            };
            let len = usize::try_from(len_at(off, s.chunk_size, ctx.limit)).unwrap_or(chunk);
            let data = &mut buf.as_mut_full()[..len];
            o.src
                .file
                .read_exact_at(data, off)
                .map_err(|e| read_error(&o.src.path, off, e))?;
            ops += 1;
            if let Some(d) = &o.dst {
                d.file
                    .write_all_at(data, off)
                    .map_err(|e| write_error(&d.path, off, e))?;
                ops += 1;
            }
            bytes += len as u64;
        }
        Ok((bytes, ops))
    };
    let results: Vec<Result<(u64, u64)>> = std::thread::scope(|sc| {
        let handles: Vec<_> = bufs.into_iter().map(|b| sc.spawn(|| worker(b))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::invalid("internal: a benchmark thread panicked"))
                })
            })
            .collect()
    });
    let (mut bytes, mut ops) = (0, 0);
    for r in results {
        let (b, n) = r?;
        bytes += b;
        ops += n;
    }
    if let Some(d) = &o.dst {
        sync_target(d)?;
    }
    Ok((clock.sample(bytes, ops), o.warnings))
}

/// Tag of a transfer: its offset (aligned, so bit 0 is free) and bit 0 set for a write.
const WRITE_BIT: u64 = 1;

/// io_uring with `depth` transfers in flight: reads of the source, and for
/// a copy a write of each chunk to the target as soon as it is read; with
/// `hash`, every chunk read goes to the xxh3 workers before its buffer is reused.
fn run_uring(s: &Strategy, ctx: &RunCtx<'_>, hash: bool) -> RunResult {
    let o = open(s, ctx, true)?;
    let chunk = chunk_usize(s)?;
    let qd = usize::try_from(s.depth.max(1)).unwrap_or(1);
    let mut pool =
        BufPool::new(qd, chunk, 4096).map_err(|e| Error::io("allocating I/O buffers", e))?;
    let mut files = vec![&o.src.file];
    files.extend(o.dst.as_ref().map(|d| &d.file));
    let mut io = engine(EngineKind::Uring, &files, qd, Some(pool.mem()))?;
    let mut hashers = if hash {
        Some(
            Hashers::new(ctx.hash_threads, qd)
                .map_err(|e| Error::io("starting hash threads", e))?,
        )
    } else {
        None
    };
    let paths: Vec<&Path> = std::iter::once(o.src.path.as_path())
        .chain(o.dst.as_ref().map(|d| d.path.as_path()))
        .collect();
    let copy = o.dst.is_some();
    let mut done: Vec<Done> = Vec::with_capacity(qd);
    let (mut next, mut bytes, mut ops) = (0u64, 0u64, 0u64);
    let mut stop = false;
    let clock = Clock::start(ctx.seconds);
    loop {
        stop = stop || clock.expired();
        while !stop && next < ctx.limit && io.available() > 0 {
            let Some(buf) = pool.take() else { break };
            let len = len_at(next, s.chunk_size, ctx.limit);
            let len_usize = usize::try_from(len).unwrap_or(chunk);
            if let Err((buf, e)) = io.read(0, buf, next, len_usize, next) {
                pool.put(buf);
                return Err(e.device(&o.src.path));
            }
            next += len;
        }
        if let Some(h) = hashers.as_mut() {
            while let Some(x) = h.try_recv() {
                pool.put(x.buf);
            }
        }
        let hashing = hashers.as_ref().is_some_and(|h| h.outstanding() > 0);
        if io.in_flight() == 0 {
            if hashing {
                if let Some(x) = hashers.as_mut().and_then(|h| h.recv(None)) {
                    pool.put(x.buf);
                }
                continue;
            }
            if stop || next >= ctx.limit {
                break;
            }
            continue;
        }
        io.reap(!hashing, &mut done)?;
        if done.is_empty() && hashing {
            if let Some(x) = hashers
                .as_mut()
                .and_then(|h| h.recv(Some(Duration::from_micros(200))))
            {
                pool.put(x.buf);
            }
        }
        for d in done.drain(..) {
            let write = d.tag & WRITE_BIT != 0;
            let off = d.tag & !WRITE_BIT;
            if let Err(e) = d.result {
                let path = paths.get(e.file).copied().unwrap_or(ctx.source);
                return Err(if e.write {
                    write_error(path, e.offset, e.io_error())
                } else {
                    read_error(path, e.offset, e.io_error())
                });
            }
            ops += 1;
            if copy && !write {
                if let Err((buf, e)) = io.write(0b10, d.buf, off, off | WRITE_BIT) {
                    pool.put(buf);
                    return Err(e.device(paths[1]));
                }
                continue;
            }
            bytes += d.buf.len() as u64;
            match hashers.as_mut() {
                Some(h) if !write => {
                    if let Err(buf) = h.send(off, d.buf) {
                        pool.put(buf);
                        return Err(Error::io(
                            "hash threads stopped",
                            std::io::Error::other("gone"),
                        ));
                    }
                }
                _ => pool.put(d.buf),
            }
        }
    }
    if let Some(d) = &o.dst {
        sync_target(d)?;
    }
    Ok((clock.sample(bytes, ops), o.warnings))
}

/// reroot's copy pipeline over `[0, limit)`. The pipeline runs a whole plan,
/// so the range is cut into slices sized from the rate so far to end near
/// the deadline (the first slice is small); the pipeline drains between
/// slices, which costs a little when slices are short.
fn run_pipeline(s: &Strategy, ctx: &RunCtx<'_>, hash: bool) -> RunResult {
    let o = open(s, ctx, true)?;
    let Some(dst) = o.dst.as_ref() else {
        return Err(Error::invalid("a copy strategy needs a target"));
    };
    let chunk = chunk_usize(s)?;
    let qd = usize::try_from(s.depth.max(1)).unwrap_or(1);
    let pool = BufPool::new(qd, chunk, 4096).map_err(|e| Error::io("allocating I/O buffers", e))?;
    let io = engine(
        EngineKind::Uring,
        &[&o.src.file, &dst.file],
        qd,
        Some(pool.mem()),
    )?;
    let mut pipe = Pipeline::new(io, pool, 1, ctx.hash_threads)?;
    let paths = [o.src.path.clone(), dst.path.clone()];
    let cfg = PassConfig {
        paths: &paths,
        queue_depth: qd,
        phase: "bench",
    };
    let quiet = EventSink::none();
    let first_slice = (64u64 << 20).max(s.memory().saturating_mul(4));
    let (mut pos, mut bytes, mut ops) = (0u64, 0u64, 0u64);
    let clock = Clock::start(ctx.seconds);
    while pos < ctx.limit && !clock.expired() {
        let elapsed = clock.start.elapsed().as_secs_f64();
        let want = if bytes == 0 || elapsed <= 0.0 {
            first_slice
        } else {
            // Bytes the rate so far moves in the time left (a float-to-int
            // `as` saturates, and the slice is clamped below).
            #[allow(clippy::cast_possible_truncation)]
            let want = (bytes as f64 / elapsed * clock.remaining().as_secs_f64()) as u64;
            want
        };
        let len = want
            .max(s.memory())
            .min(ctx.limit - pos)
            .div_ceil(ctx.align)
            .saturating_mul(ctx.align)
            .min(ctx.limit - pos);
        let Some(extent) = Extent::new(pos, len) else {
            break;
        };
        let plan = plan_copy(&PlanInput {
            used: &ExtentList::from_unsorted(vec![extent]),
            source_size: o.src.size,
            target_sizes: &[dst.size],
            align: ctx.align,
            chunk_size: s.chunk_size,
            max_gap: 0, // one extent: no gaps to bridge
        })?;
        let mut table = vec![0u64; usize::try_from(plan.chunks).unwrap_or(0)];
        let stats = pipe.run(&plan, Pass::Copy { hash }, &cfg, &mut table, &quiet)?;
        bytes += stats.bytes_done;
        ops += stats.chunks_done * 2;
        pos += len;
    }
    sync_target(dst)?;
    Ok((clock.sample(bytes, ops), o.warnings))
}

fn nix_io(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// `copy_file_range(2)` in chunk-sized calls (both sides regular files).
fn run_copy_file_range(s: &Strategy, ctx: &RunCtx<'_>) -> RunResult {
    let o = open(s, ctx, false)?;
    let Some(dst) = o.dst.as_ref() else {
        return Err(Error::invalid("a copy strategy needs a target"));
    };
    if o.src.is_block || dst.is_block {
        return Err(Error::invalid(
            "copy_file_range applies to regular files only",
        ));
    }
    let (mut pos, mut ops) = (0u64, 0u64);
    let clock = Clock::start(ctx.seconds);
    while pos < ctx.limit && !clock.expired() {
        let len = usize::try_from(len_at(pos, s.chunk_size, ctx.limit)).unwrap_or(0);
        let mut off_in = i64::try_from(pos).map_err(|_| Error::invalid("offset too large"))?;
        let mut off_out = off_in;
        let n = nix::fcntl::copy_file_range(
            &o.src.file,
            Some(&mut off_in),
            &dst.file,
            Some(&mut off_out),
            len,
        )
        .map_err(|e| {
            Error::io("copy_file_range", nix_io(e))
                .device(&dst.path)
                .offset(pos)
        })?;
        ops += 1;
        if n == 0 {
            break;
        }
        pos += n as u64;
    }
    sync_target(dst)?;
    Ok((clock.sample(pos, ops), o.warnings))
}

/// `splice(2)` from the source into a pipe and from the pipe into the
/// target, a pipe-full at a time (the pipe is grown towards the chunk size).
fn run_splice(s: &Strategy, ctx: &RunCtx<'_>) -> RunResult {
    let o = open(s, ctx, false)?;
    let Some(dst) = o.dst.as_ref() else {
        return Err(Error::invalid("a copy strategy needs a target"));
    };
    let (rd, wr) = nix::unistd::pipe().map_err(|e| Error::io("pipe", nix_io(e)))?;
    let want = i32::try_from(s.chunk_size).unwrap_or(i32::MAX);
    // Grow the pipe; the kernel caps it at /proc/sys/fs/pipe-max-size (1 MiB
    // by default), and a smaller pipe still works.
    let _ = nix::fcntl::fcntl(&wr, FcntlArg::F_SETPIPE_SZ(want));
    let pipe_size = nix::fcntl::fcntl(&wr, FcntlArg::F_GETPIPE_SZ)
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(64 << 10);
    let step = s.chunk_size.min(pipe_size);
    let (mut pos, mut ops) = (0u64, 0u64);
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let to_i64 = |v: u64| i64::try_from(v).map_err(|_| Error::invalid("offset too large"));
    let clock = Clock::start(ctx.seconds);
    while pos < ctx.limit && !clock.expired() {
        let len = usize::try_from(len_at(pos, step, ctx.limit)).unwrap_or(0);
        let mut off_in = to_i64(pos)?;
        let n = nix::fcntl::splice(&o.src.file, Some(&mut off_in), &wr, None, len, flags)
            .map_err(|e| read_error(&o.src.path, pos, nix_io(e)))?;
        ops += 1;
        if n == 0 {
            break;
        }
        let mut off_out = to_i64(pos)?;
        let mut left = n;
        while left > 0 {
            let m = nix::fcntl::splice(&rd, None, &dst.file, Some(&mut off_out), left, flags)
                .map_err(|e| write_error(&dst.path, pos, nix_io(e)))?;
            ops += 1;
            if m == 0 {
                return Err(write_error(
                    &dst.path,
                    pos,
                    std::io::Error::other("splice into the target wrote nothing"),
                ));
            }
            left -= m;
        }
        pos += n as u64;
    }
    sync_target(dst)?;
    Ok((clock.sample(pos, ops), o.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::bench::Method;

    fn files(size: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        let data: Vec<u8> = (0..size)
            .map(|i| u8::try_from(i * 7 % 251).unwrap())
            .collect();
        std::fs::write(&src, &data).unwrap();
        std::fs::write(&dst, vec![0u8; size + (1 << 20)]).unwrap();
        (dir, src, dst)
    }

    #[test]
    fn every_method_copies_exactly_the_limit() {
        let size = 3 << 20;
        let (_dir, src, dst) = files(size);
        let limit = (2 << 20) + 8192; // not a multiple of the chunk: a short last chunk
        let ctx = RunCtx {
            source: &src,
            target: Some(&dst),
            limit,
            align: 4096,
            seconds: 30.0,
            hash_threads: 1,
        };
        let want = std::fs::read(&src).unwrap();
        for method in Method::ALL {
            std::fs::write(&dst, vec![0u8; size + (1 << 20)]).unwrap();
            let op = if method == Method::UringXxh3 {
                Op::Read
            } else {
                Op::Copy
            };
            let s = Strategy::new(op, method, 1 << 20, 4);
            let ring = matches!(method, Method::Uring | Method::Pipeline | Method::UringXxh3);
            if ring {
                if let Some(why) = crate::test_skip::io_uring_missing() {
                    crate::test_skip::skip(&format!("{method:?}: {why}"));
                    continue;
                }
            }
            let (sample, _) = run_one(&s, &ctx).unwrap_or_else(|e| panic!("{method:?}: {e}"));
            assert_eq!(sample.bytes, limit, "{method:?}");
            assert!(sample.ops > 0 && sample.seconds > 0.0, "{method:?}");
            let got = std::fs::read(&dst).unwrap();
            if op == Op::Copy {
                let l = usize::try_from(limit).unwrap();
                assert_eq!(got[..l], want[..l], "{method:?} copied the wrong bytes");
                assert!(
                    got[l..].iter().all(|&b| b == 0),
                    "{method:?} wrote past the limit"
                );
            } else {
                assert!(got.iter().all(|&b| b == 0), "a read wrote to the target");
            }
        }
    }

    #[test]
    fn the_time_bound_stops_a_run() {
        let (_dir, src, _dst) = files(8 << 20);
        let ctx = RunCtx {
            source: &src,
            target: None,
            limit: 8 << 20,
            align: 4096,
            seconds: 0.0,
            hash_threads: 1,
        };
        let s = Strategy::new(Op::Read, Method::Threads, 1 << 20, 2);
        let (sample, _) = run_one(&s, &ctx).unwrap();
        assert_eq!(sample.bytes, 0, "an expired deadline moves nothing");
    }

    #[test]
    fn a_copy_without_target_is_refused() {
        let (_dir, src, _dst) = files(1 << 20);
        let ctx = RunCtx {
            source: &src,
            target: None,
            limit: 1 << 20,
            align: 4096,
            seconds: 1.0,
            hash_threads: 1,
        };
        let s = Strategy::new(Op::Copy, Method::Direct, 1 << 20, 1);
        assert!(run_one(&s, &ctx).is_err());
    }
}
