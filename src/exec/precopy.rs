//! The iterative live pre-copy and the final pass of the read-only window.
//!
//! [`Live::start`] starts the write tracker ([`super::track`]), copies every
//! used block (round 1), then re-copies in rounds what was written during
//! the previous one until the dirty set is small or stops shrinking
//! ([`crate::plan::precopy`]). Each round is verified while the system runs:
//! flush, then read the target back (O_DIRECT) and compare with the hashes
//! of what was read from the source; a chunk written after that is dirty
//! again and comes in a later round. After `remount,ro`, [`Live::finish`]
//! drains the tracker and copies and verifies only the final dirty set.
//! Without tracking (unavailable, or events lost) it falls back to a full
//! delta pass over every used block and says why.
//!
//! Reuses the copy engine: [`CopyPlan`]s over [`ExtentList`]s run through
//! one [`Pipeline`] kept open from round 1 to the window.
//!
//! May import `units`, `error`, `ext`, `probe`, `plan`, `sys`, `exec::copy`,
//! `exec::track`, `exec::event`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::exec::copy::{self, Access, CopyOptions, Device, Pass, PassConfig, Pipeline};
use crate::exec::event::EventSink;
use crate::exec::track::{NotTracked, TrackOptions, Tracker};
use crate::plan::copy::{CopyPlan, PlanInput, plan_copy};
use crate::plan::precopy::{self, Pending, Stop, StopRule};
use crate::plan::target;
use crate::probe::device;
use crate::sys::buf::BufPool;
use crate::units::ExtentList;

/// Free gaps up to this size between dirty ranges are copied too: fewer,
/// larger transfers.
const DIRTY_MAX_GAP: u64 = 64 << 10;

/// Settings of a pre-copy.
#[derive(Debug, Clone)]
pub struct PrecopyOptions {
    /// Engine, queue depth, chunk size, O_DIRECT, hash threads, root.
    pub copy: CopyOptions,
    /// Track writes (false: one live round, then a full delta pass).
    pub track: bool,
    /// The tracker's settings.
    pub tracker: TrackOptions,
    /// When to stop iterating.
    pub stop: StopRule,
    /// How long a queued write may take to complete (see
    /// [`crate::plan::precopy`]).
    pub settle: Duration,
    /// After the final pass, compare every used block of both devices.
    pub verify_full: bool,
}

impl Default for PrecopyOptions {
    fn default() -> Self {
        Self {
            copy: CopyOptions {
                live: true,
                ..CopyOptions::default()
            },
            track: true,
            tracker: TrackOptions::default(),
            stop: StopRule::default(),
            settle: Duration::from_secs(1),
            verify_full: false,
        }
    }
}

/// One pre-copy round.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Round {
    /// 1, 2, ...
    pub round: u32,
    /// Bytes copied (and verified).
    pub bytes: u64,
    /// Bytes written to the targets (less than `bytes` when a resumed
    /// pre-copy's first round found chunks already there).
    pub bytes_written: u64,
    /// Wall time, copy + flush + readback.
    pub seconds: f64,
    /// Bytes written to the source during the round (the next dirty set).
    pub dirty_bytes: u64,
    /// `dirty_bytes` per second of the round.
    pub dirty_bytes_per_s: f64,
}

/// Whether writes were tracked, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tracking {
    /// The final pass copied only the tracked dirty set.
    pub used: bool,
    /// Why not (tracking unavailable, turned off, or events lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Write events read from the trace.
    pub events: u64,
}

/// The final pass, inside the read-only window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FinalPass {
    /// `dirty` (the tracked set) or `delta` (every used block, the fallback).
    pub kind: &'static str,
    /// Bytes copied (dirty) or compared (delta).
    pub bytes: u64,
    /// Of which: blocks newly allocated since round 1's map.
    pub newly_used_bytes: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// Bytes read back from the target and found equal.
    pub bytes_verified: u64,
    /// Wall time of the pass, verification included.
    pub seconds: f64,
    /// `--verify-full`: used bytes compared on both devices, and the time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_verify_bytes: Option<u64>,
    /// Seconds of the full verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_verify_seconds: Option<f64>,
}

/// What the pre-copy and its final pass did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PrecopyReport {
    /// The live rounds.
    pub rounds: Vec<Round>,
    /// Why iterating stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
    /// Tracking used or why not.
    pub tracking: Tracking,
    /// The final pass (after [`Live::finish`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_pass: Option<FinalPass>,
    /// Used bytes of the source at round 1.
    pub used_bytes: u64,
    /// Warnings (tracking fallback, buffered I/O, ...).
    pub warnings: Vec<String>,
}

/// A pre-copy between its live rounds and the read-only window. Holds the
/// devices (the target exclusively), the pipeline and the tracker.
pub struct Live {
    // Field order is drop order: the pipeline (which registered the files)
    // goes before the devices, and the tracker last.
    pipe: Pipeline,
    source: Device,
    targets: Vec<Device>,
    target_paths: Vec<PathBuf>,
    paths: Vec<PathBuf>,
    opts: PrecopyOptions,
    map1: ExtentList,
    pending: Pending,
    t0: Instant,
    report: PrecopyReport,
    tracker: Option<Tracker>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("source", &self.source.path)
            .field("targets", &self.target_paths)
            .field("tracking", &self.tracker.is_some())
            .finish_non_exhaustive()
    }
}

struct SetStats {
    bytes: u64,
    written: u64,
    verified: u64,
    seconds: f64,
}

impl Live {
    /// Start tracking, copy every used block, then iterate. The source may
    /// be mounted read-write; the targets must not be in use.
    pub fn start(
        source: &Path,
        targets: &[PathBuf],
        opts: &PrecopyOptions,
        events: &EventSink,
    ) -> Result<Self> {
        let c = &opts.copy;
        if targets.is_empty() || targets.len() > 63 {
            return Err(Error::invalid("give between 1 and 63 targets").stage(Stage::Copy));
        }
        let src_facts = device::inspect(source, &c.root).map_err(|e| e.stage(Stage::Copy))?;
        let tgt_facts = targets
            .iter()
            .map(|t| device::inspect(t, &c.root).map_err(|e| e.stage(Stage::Copy)))
            .collect::<Result<Vec<_>>>()?;
        let needed = target::needed_bytes(&src_facts);
        let mut refusals = target::check_copy(&src_facts, &tgt_facts, needed, c.force);
        refusals.retain(|r| r.rule != target::Rule::SourceMountedRw);
        target::into_result(&refusals, Stage::Copy)?;

        let mut warnings = Vec::new();
        // Tracking starts before anything is read, so every write from now
        // on is seen.
        let (tracker, reason) = if opts.track {
            match Tracker::start(&src_facts, &opts.tracker) {
                Ok(t) => (Some(t), None),
                Err(NotTracked { reason }) => (None, Some(reason)),
            }
        } else {
            (None, Some("tracking turned off (--no-track)".to_owned()))
        };
        if let Some(r) = &reason {
            let w = format!(
                "writes are not tracked ({r}): the read-only window will hold a full delta pass over every used block"
            );
            events.warn(w.clone());
            warnings.push(w);
        }
        if tracker.is_some() {
            // Writes queued before the tracepoint was on must complete before
            // round 1 reads their blocks.
            std::thread::sleep(opts.settle);
        }

        let (src, w) = Device::open(source, Access::Read, c.direct)?;
        warnings.extend(w);
        let mut tgts = Vec::with_capacity(targets.len());
        for t in targets {
            let (d, w) = Device::open(t, Access::Write, c.direct)?;
            warnings.extend(w);
            tgts.push(d);
        }
        let pool = BufPool::new(c.queue_depth, c.chunk_size, 4096)
            .map_err(|e| Error::io("allocating I/O buffers", e))?;
        let mut files = vec![&src.file];
        files.extend(tgts.iter().map(|d| &d.file));
        let io = copy::io::engine(c.engine, &files, c.queue_depth, Some(pool.mem()))?;
        let pipe = Pipeline::new(io, pool, tgts.len(), c.hash_threads)?;
        let mut paths = vec![src.path.clone()];
        paths.extend(tgts.iter().map(|d| d.path.clone()));

        let (map1, summary) = copy::source_map(source, src.size, c.full, true)?;
        if let Some(r) = summary.reason.filter(|_| !c.full) {
            events.warn(r.clone());
            warnings.push(r);
        }
        let mut live = Self {
            pipe,
            source: src,
            targets: tgts,
            target_paths: targets.to_vec(),
            paths,
            opts: opts.clone(),
            pending: Pending::default(),
            t0: Instant::now(),
            report: PrecopyReport {
                rounds: Vec::new(),
                stopped: None,
                tracking: Tracking {
                    used: false,
                    reason,
                    events: 0,
                },
                final_pass: None,
                used_bytes: map1.total_bytes(),
                warnings,
            },
            map1,
            tracker,
        };
        live.rounds(events)?;
        Ok(live)
    }

    /// The report so far.
    pub fn report(&self) -> &PrecopyReport {
        &self.report
    }

    fn lose_tracking(&mut self, why: NotTracked, events: &EventSink) {
        let w = format!(
            "write tracking lost ({}): the read-only window will hold a full delta pass over every used block",
            why.reason
        );
        events.warn(w.clone());
        self.report.warnings.push(w);
        self.report.tracking.reason = Some(why.reason);
        self.tracker = None;
    }

    fn rounds(&mut self, events: &EventSink) -> Result<()> {
        let map1 = self.map1.clone();
        // A resumed pre-copy (`delta`) writes only the chunks that differ
        // from what the interrupted run left on the target.
        let s = if self.opts.copy.delta {
            self.run_set(&map1, 0, Pass::Delta, "round 1", events)?
        } else {
            self.copy_set(&map1, 0, "round 1", events)?
        };
        self.push_round(1, &s, events);
        let mut prev = None;
        let mut next = 2u32;
        let mut last = false;
        loop {
            if !self.take_into_pending(events) || last {
                return Ok(());
            }
            let bytes = self.pending.all().total_bytes();
            if let Some(stop) = self.opts.stop.decide(next, bytes, prev) {
                self.report.stopped = Some(stop);
                if bytes == 0 {
                    return Ok(());
                }
                // The newest sets cannot retire in a round that starts at
                // once (see plan::precopy): wait until they have settled and
                // copy what is pending once more, so that the window holds
                // only the writes from here on.
                std::thread::sleep(self.opts.settle);
                if !self.take_into_pending(events) {
                    return Ok(());
                }
                last = true;
            }
            let set = self.pending.all();
            let start = self.t0.elapsed();
            let s = self.copy_set(&set, DIRTY_MAX_GAP, &format!("round {next}"), events)?;
            self.pending.copied(start, self.opts.settle);
            self.push_round(next, &s, events);
            prev = Some(set.total_bytes());
            next = next.saturating_add(1);
        }
    }

    /// Take the tracker's dirty set into the pending sets; false when
    /// tracking is (now) off.
    fn take_into_pending(&mut self, events: &EventSink) -> bool {
        let Some(t) = &self.tracker else {
            return false;
        };
        match t.take() {
            Ok(d) => {
                self.fill_dirty(d.total_bytes());
                self.pending.add(self.t0.elapsed(), d);
                true
            }
            Err(e) => {
                self.lose_tracking(e, events);
                false
            }
        }
    }

    fn push_round(&mut self, round: u32, s: &SetStats, events: &EventSink) {
        events.info(format!(
            "pre-copy round {round}: {} bytes in {:.2} s",
            s.bytes, s.seconds
        ));
        self.report.rounds.push(Round {
            round,
            bytes: s.bytes,
            bytes_written: s.written,
            seconds: s.seconds,
            dirty_bytes: 0,
            dirty_bytes_per_s: 0.0,
        });
    }

    /// The set just taken was written during the last round (or the wait
    /// after it).
    fn fill_dirty(&mut self, bytes: u64) {
        if let Some(r) = self.report.rounds.last_mut() {
            r.dirty_bytes = r.dirty_bytes.saturating_add(bytes);
            r.dirty_bytes_per_s = if r.seconds > 0.0 {
                r.dirty_bytes as f64 / r.seconds
            } else {
                0.0
            };
        }
    }

    fn plan(&self, set: &ExtentList, max_gap: u64) -> Result<CopyPlan> {
        let align = self
            .targets
            .iter()
            .map(|d| d.logical_block_size)
            .chain([self.source.logical_block_size])
            .max()
            .unwrap_or(512);
        let sizes: Vec<u64> = self.targets.iter().map(|d| d.size).collect();
        plan_copy(&PlanInput {
            used: set,
            source_size: self.source.size,
            target_sizes: &sizes,
            align: u64::from(align),
            chunk_size: self.opts.copy.chunk_size as u64,
            max_gap,
        })
        .map_err(|e| e.stage(Stage::Copy))
    }

    fn flush(&self) -> Result<()> {
        for t in &self.targets {
            t.flush().map_err(|e| e.stage(Stage::Copy))?;
        }
        Ok(())
    }

    /// Copy `set` (or, with `delta`, write only what differs), flush, read
    /// the targets back and compare with the source hashes.
    fn run_set(
        &mut self,
        set: &ExtentList,
        max_gap: u64,
        pass: Pass,
        phase: &str,
        events: &EventSink,
    ) -> Result<SetStats> {
        let t = Instant::now();
        let plan = self.plan(set, max_gap)?;
        if plan.chunks == 0 {
            return Ok(SetStats {
                bytes: 0,
                written: 0,
                verified: 0,
                seconds: t.elapsed().as_secs_f64(),
            });
        }
        let mut table = vec![0u64; usize::try_from(plan.chunks).unwrap_or(usize::MAX)];
        let paths = self.paths.clone();
        let cfg = PassConfig {
            paths: &paths,
            queue_depth: self.opts.copy.queue_depth,
            phase,
        };
        let stats = self
            .pipe
            .run(&plan, pass, &cfg, &mut table, events)
            .map_err(|e| e.stage(Stage::Copy))?;
        self.flush()?;
        let check_phase = format!("{phase} readback");
        let cfg = PassConfig {
            phase: &check_phase,
            ..cfg
        };
        let check = self
            .pipe
            .run(
                &plan,
                Pass::Check { read_source: false },
                &cfg,
                &mut table,
                events,
            )
            .map_err(|e| e.stage(Stage::Copy))?;
        if let Some(m) = check.mismatches.first() {
            return Err(Error::new(ErrorKind::Mismatch(format!(
                "{} chunk(s) read back differ from what was written ({phase})",
                check.mismatch_count
            )))
            .stage(Stage::Copy)
            .device(self.paths.get(m.device).cloned().unwrap_or_default())
            .offset(m.offset)
            .hint("the target does not hold what was written: check the device (dmesg)"));
        }
        Ok(SetStats {
            bytes: plan.bytes,
            written: stats.bytes_written,
            verified: check.bytes_read.saturating_sub(check.mismatch_bytes),
            seconds: t.elapsed().as_secs_f64(),
        })
    }

    fn copy_set(
        &mut self,
        set: &ExtentList,
        max_gap: u64,
        phase: &str,
        events: &EventSink,
    ) -> Result<SetStats> {
        self.run_set(set, max_gap, Pass::Copy { hash: true }, phase, events)
    }

    /// The source is now read-only (or unmounted): drain the tracker, copy
    /// and verify the final dirty set (or, without tracking, run a full
    /// delta pass), then with `verify_full` compare every used block.
    /// Returns the report; the targets are released on return.
    pub fn finish(mut self, events: &EventSink) -> Result<PrecopyReport> {
        let t = Instant::now();
        let drained = match self.tracker.take().map(Tracker::finish) {
            Some(Ok((d, n))) => {
                self.report.tracking.events = n;
                Some(d)
            }
            Some(Err(e)) => {
                self.lose_tracking(e, events);
                None
            }
            None => None,
        };
        let size = self.source.size;
        let (map_now, _) = copy::source_map(&self.source.path, size, self.opts.copy.full, false)
            .map_err(|e| e.hint("the source changed under the pre-copy; run the copy again"))?;
        let fp = match drained {
            Some(drained) => {
                self.fill_dirty(drained.total_bytes());
                let newly = precopy::difference(&map_now, &self.map1).total_bytes();
                let set = precopy::final_set(&self.pending, &drained, &self.map1, &map_now);
                let s = self.copy_set(&set, DIRTY_MAX_GAP, "final dirty", events)?;
                self.report.tracking.used = true;
                FinalPass {
                    kind: "dirty",
                    bytes: s.bytes,
                    newly_used_bytes: newly,
                    bytes_written: s.written,
                    bytes_verified: s.verified,
                    seconds: t.elapsed().as_secs_f64(),
                    full_verify_bytes: None,
                    full_verify_seconds: None,
                }
            }
            None => {
                let s = self.run_set(&map_now, 0, Pass::Delta, "delta", events)?;
                FinalPass {
                    kind: "delta",
                    bytes: s.bytes,
                    newly_used_bytes: 0,
                    bytes_written: s.written,
                    bytes_verified: s.verified,
                    seconds: t.elapsed().as_secs_f64(),
                    full_verify_bytes: None,
                    full_verify_seconds: None,
                }
            }
        };
        self.report.final_pass = Some(fp);
        if self.opts.verify_full {
            self.verify_full(&map_now, events)?;
        }
        let report = self.report.clone();
        let targets = self.target_paths.clone();
        drop(self);
        for t in &targets {
            crate::exec::claim::wait_released(t);
        }
        Ok(report)
    }

    fn verify_full(&mut self, map: &ExtentList, events: &EventSink) -> Result<()> {
        let t = Instant::now();
        let plan = self.plan(map, 0)?;
        let mut table = vec![0u64; usize::try_from(plan.chunks).unwrap_or(usize::MAX)];
        let paths = self.paths.clone();
        let cfg = PassConfig {
            paths: &paths,
            queue_depth: self.opts.copy.queue_depth,
            phase: "verify full",
        };
        let stats = {
            self.pipe
                .run(
                    &plan,
                    Pass::Check { read_source: true },
                    &cfg,
                    &mut table,
                    events,
                )
                .map_err(|e| e.stage(Stage::Verify))?
        };
        if let Some(fp) = &mut self.report.final_pass {
            fp.full_verify_bytes = Some(plan.bytes);
            fp.full_verify_seconds = Some(t.elapsed().as_secs_f64());
        }
        if let Some(m) = stats.mismatches.first() {
            let ranges: Vec<String> = stats
                .mismatches
                .iter()
                .take(8)
                .map(|m| format!("{}..{}", m.offset, m.offset.saturating_add(m.len)))
                .collect();
            return Err(Error::new(ErrorKind::Mismatch(format!(
                "--verify-full: {} chunk(s) differ after the final pass ({}): a write was not tracked",
                stats.mismatch_count,
                ranges.join(", ")
            )))
            .stage(Stage::Verify)
            .device(self.paths.get(m.device).cloned().unwrap_or_default())
            .offset(m.offset)
            .hint("copy again with --no-track (full delta pass), and report this"));
        }
        Ok(())
    }
}
