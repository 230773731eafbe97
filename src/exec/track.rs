//! Write tracking at the block layer: a private tracefs instance
//! (`instances/reroot-PID-N`) with `block:block_bio_queue` enabled and
//! filtered on the source's device, read continuously from `trace_pipe` by
//! a thread that turns every write, discard and write-zeroes into a dirty
//! byte range of the source.
//!
//! Lost events never go unnoticed: a `[LOST]` marker, an unreadable line or
//! a non-zero `overrun`/`dropped events` counter in `per_cpu/cpuN/stats`
//! makes [`Tracker::take`] and [`Tracker::finish`] return [`NotTracked`],
//! and the caller falls back to a full delta pass. The instance is removed
//! on drop; [`remove_stale`] removes those of dead processes.
//!
//! Where the kernel reports a partition's bio: since the partition remap
//! happens before `block_bio_queue`, the event names the whole disk and a
//! disk-relative sector. The filter accepts both the disk and the partition
//! (older kernels), and [`Traced::map`] places each in the source.
//!
//! May import `probe`, `sys`, `units`, `error`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::probe::SysRoot;
use crate::probe::device::{DevNo, DeviceFacts, DeviceKind};
use crate::probe::mountinfo;
use crate::probe::tracefs::{self, BioQueue, InstanceName, Line};
use crate::units::{Extent, ExtentList};

/// Default ring buffer per CPU, KiB: about 60 000 bio records each.
pub const DEFAULT_BUFFER_KB: u64 = 4096;

/// How long [`Tracker::finish`] waits for its drain marker.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why writes are not (or no longer) tracked: the caller must fall back to
/// a full delta pass and say this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotTracked {
    /// What happened, in words for the operator.
    pub reason: String,
}

fn not(reason: impl Into<String>) -> NotTracked {
    NotTracked {
        reason: reason.into(),
    }
}

/// Settings of a tracker.
#[derive(Debug, Clone)]
pub struct TrackOptions {
    /// Ring buffer per CPU in KiB (`buffer_size_kb`).
    pub buffer_kb: u64,
    /// Where /proc and /sys are.
    pub root: SysRoot,
    /// The tracefs mount to use; found (or mounted at
    /// `/sys/kernel/tracing`) when `None`.
    pub tracefs: Option<PathBuf>,
    /// Test only (ignored in release builds): drop every tracked write that
    /// covers this source byte, to prove a missed write is caught.
    pub drop_at: Option<u64>,
    /// Test only (ignored in release builds): while this is true the reader
    /// does not read, so a burst of writes overflows the buffer for sure
    /// (an idle machine's reader otherwise keeps up with any burst).
    pub pause_reader: Option<Arc<AtomicBool>>,
}

impl Default for TrackOptions {
    fn default() -> Self {
        Self {
            buffer_kb: DEFAULT_BUFFER_KB,
            root: SysRoot::live(),
            tracefs: None,
            drop_at: None,
            pause_reader: None,
        }
    }
}

impl TrackOptions {
    /// The test switch from the environment (`REROOT_TEST_DROP_TRACKED_WRITE`
    /// = a source byte offset), honoured only in debug builds.
    #[must_use]
    pub fn with_test_switch_from_env(mut self) -> Self {
        if cfg!(debug_assertions) {
            if let Some(v) = std::env::var_os("REROOT_TEST_DROP_TRACKED_WRITE") {
                self.drop_at = v.to_str().and_then(|s| s.parse().ok());
            }
        }
        self
    }
}

/// Which device the kernel reports the source's writes on, and where the
/// source sits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traced {
    /// The source itself.
    pub dev: DevNo,
    /// Its whole disk, when the source is a partition.
    pub disk: Option<DevNo>,
    /// First byte of the source on `disk`.
    pub base: u64,
    /// Length of the source in bytes.
    pub len: u64,
}

impl Traced {
    /// Where the source's writes are reported, from its probed facts.
    pub fn of(facts: &DeviceFacts, root: &SysRoot) -> Result<Self, NotTracked> {
        if facts.kind != DeviceKind::Block {
            return Err(not(format!(
                "{} is not a block device",
                facts.path.display()
            )));
        }
        let dev = facts
            .rdev
            .ok_or_else(|| not(format!("{}: no device number", facts.path.display())))?;
        let Some(p) = &facts.partition else {
            return Ok(Self {
                dev,
                disk: None,
                base: 0,
                len: facts.size,
            });
        };
        let path = root.sys(format!("class/block/{}/dev", p.disk));
        let disk = fs::read_to_string(&path)
            .ok()
            .and_then(|s| DevNo::parse(&s))
            .ok_or_else(|| not(format!("cannot read {}", path.display())))?;
        Ok(Self {
            dev,
            disk: Some(disk),
            base: p.start,
            len: facts.size,
        })
    }

    /// The event filter: writes of any kind to the source or its disk.
    pub fn filter(&self) -> String {
        let raw = |d: DevNo| (u64::from(d.major) << 20) | u64::from(d.minor);
        let devs = match self.disk {
            Some(disk) => format!("dev == {} || dev == {}", raw(self.dev), raw(disk)),
            None => format!("dev == {}", raw(self.dev)),
        };
        format!("({devs}) && !(rwbs ~ \"*R*\")")
    }

    /// The source bytes a bio changes, clipped to the source; `None` when
    /// it changes none (a read, a flush, another partition).
    pub fn map(&self, bio: &BioQueue) -> Option<Extent> {
        if !bio.changes_data() {
            return None;
        }
        let (start, end) = bio.byte_range()?;
        let (start, end) = if bio.dev == self.dev {
            (start, end)
        } else if Some(bio.dev) == self.disk {
            (start.saturating_sub(self.base), end.checked_sub(self.base)?)
        } else {
            return None;
        };
        Extent::from_bounds(start, end.min(self.len))
    }
}

#[derive(Debug, Default)]
struct State {
    dirty: Vec<Extent>,
    lost: Option<String>,
    events: u64,
    marker_seen: bool,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means the reader panicked; its data is still
        // a valid (possibly short) dirty list, and `lost` is set below.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running tracker; dropping it stops the reader and removes the instance.
#[derive(Debug)]
pub struct Tracker {
    dir: PathBuf,
    traced: Traced,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    started: Instant,
    marker: String,
}

/// What a tracker saw so far.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackStats {
    /// The tracefs instance.
    pub instance: String,
    /// Change events read.
    pub events: u64,
    /// Seconds since the start.
    pub seconds: u64,
}

fn write_file(path: &Path, text: &str) -> Result<(), NotTracked> {
    fs::write(path, text).map_err(|e| not(format!("writing {:?} to {}: {e}", text, path.display())))
}

/// Find a mounted tracefs, or mount one at `/sys/kernel/tracing`.
pub fn tracefs_dir(root: &SysRoot) -> Result<PathBuf, NotTracked> {
    let mounts = mountinfo::read(root, "self").map_err(|e| not(format!("{e}")))?;
    if let Some(m) = mounts
        .iter()
        .filter(|m| m.fstype == "tracefs")
        .min_by_key(|m| m.mount_point != Path::new("/sys/kernel/tracing"))
    {
        return Ok(m.mount_point.clone());
    }
    let dir = root.sys("kernel/tracing");
    if !dir.is_dir() {
        return Err(not(
            "no tracefs: the kernel has no /sys/kernel/tracing (CONFIG_TRACING off?)",
        ));
    }
    crate::sys::mount::mount(
        Path::new("tracefs"),
        &dir,
        "tracefs",
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| not(format!("mounting tracefs at {}: {e}", dir.display())))?;
    Ok(dir)
}

fn cpu_stats_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("per_cpu"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("stats"))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Events lost in the instance at `dir`, with the first CPU that lost some.
fn lost_in(dir: &Path) -> Result<Option<String>, NotTracked> {
    let files = cpu_stats_files(dir);
    if files.is_empty() {
        return Err(not("the tracefs instance has no per-CPU stats"));
    }
    for f in files {
        let text = fs::read_to_string(&f).map_err(|e| not(format!("{}: {e}", f.display())))?;
        let s = tracefs::parse_stats(&text).map_err(|e| not(format!("{}: {e}", f.display())))?;
        if s.lost() > 0 {
            return Ok(Some(format!(
                "the trace buffer lost {} write event(s) ({}: overrun {}, dropped {}); raise the buffer size",
                s.lost(),
                f.display(),
                s.overrun,
                s.dropped
            )));
        }
    }
    Ok(None)
}

impl Tracker {
    /// Start tracking the writes of the source described by `facts`.
    pub fn start(facts: &DeviceFacts, opts: &TrackOptions) -> Result<Self, NotTracked> {
        let traced = Traced::of(facts, &opts.root)?;
        let base = match &opts.tracefs {
            Some(p) => p.clone(),
            None => tracefs_dir(&opts.root)?,
        };
        let instances = base.join("instances");
        if !instances.is_dir() {
            return Err(not(format!(
                "{} has no instances directory (kernel too old?)",
                base.display()
            )));
        }
        let name = InstanceName {
            pid: std::process::id(),
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
        };
        let dir = instances.join(name.to_string());
        fs::create_dir(&dir).map_err(|e| {
            not(format!(
                "cannot create the tracefs instance {} ({e}; kernel lockdown or no permission?)",
                dir.display()
            ))
        })?;
        // From here on, Drop removes the instance.
        let mut t = Self {
            dir,
            traced,
            shared: Arc::new(Shared {
                stop: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            }),
            reader: None,
            started: Instant::now(),
            marker: format!("reroot-drain-{name}"),
        };
        t.configure(opts)?;
        Ok(t)
    }

    fn configure(&mut self, opts: &TrackOptions) -> Result<(), NotTracked> {
        let d = &self.dir;
        let ev = d.join("events/block/block_bio_queue");
        if !ev.is_dir() {
            return Err(not("the kernel has no block:block_bio_queue tracepoint"));
        }
        write_file(
            &d.join("buffer_size_kb"),
            &opts.buffer_kb.max(4).to_string(),
        )?;
        // Full buffer: drop new events (counted in "dropped events") rather
        // than overwrite unread ones; both counters are checked anyway.
        let _ = fs::write(d.join("options/overwrite"), "0");
        write_file(&ev.join("filter"), &self.traced.filter())?;
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(d.join("trace_pipe"))
            .map_err(|e| not(format!("opening trace_pipe: {e}")))?;
        write_file(&ev.join("enable"), "1")?;
        write_file(&d.join("tracing_on"), "1")?;
        let shared = Arc::clone(&self.shared);
        let traced = self.traced;
        let marker = self.marker.clone();
        let drop_at = if cfg!(debug_assertions) {
            opts.drop_at
        } else {
            None
        };
        let pause = if cfg!(debug_assertions) {
            opts.pause_reader.clone()
        } else {
            None
        };
        let h = std::thread::Builder::new()
            .name("reroot-track".into())
            .spawn(move || read_loop(pipe, &shared, traced, &marker, drop_at, pause))
            .map_err(|e| not(format!("starting the trace reader: {e}")))?;
        self.reader = Some(h);
        self.started = Instant::now();
        Ok(())
    }

    /// The instance's directory.
    pub fn instance(&self) -> &Path {
        &self.dir
    }

    /// Events read and time so far.
    pub fn stats(&self) -> TrackStats {
        TrackStats {
            instance: self
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            events: self.shared.lock().events,
            seconds: self.started.elapsed().as_secs(),
        }
    }

    fn check(&self) -> Result<(), NotTracked> {
        if let Some(r) = &self.shared.lock().lost {
            return Err(not(r.clone()));
        }
        if let Some(r) = lost_in(&self.dir)? {
            self.shared.lock().lost = Some(r.clone());
            return Err(not(r));
        }
        if self.reader.as_ref().is_some_and(JoinHandle::is_finished) {
            return Err(not("the trace reader stopped"));
        }
        Ok(())
    }

    /// The source ranges written since the last `take` (or the start), as
    /// read so far. Writes queued but not yet read come with the next take.
    pub fn take(&self) -> Result<ExtentList, NotTracked> {
        self.check()?;
        let dirty = std::mem::take(&mut self.shared.lock().dirty);
        Ok(ExtentList::from_unsorted(dirty))
    }

    /// The source is quiet (read-only): read every event queued so far, up
    /// to a marker written now, then stop and return the last dirty set and
    /// the number of write events read in all.
    pub fn finish(mut self) -> Result<(ExtentList, u64), NotTracked> {
        self.check()?;
        let marker = self.dir.join("trace_marker");
        fs::OpenOptions::new()
            .write(true)
            .open(&marker)
            .and_then(|mut f| f.write_all(self.marker.as_bytes()))
            .map_err(|e| not(format!("writing {}: {e}", marker.display())))?;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.shared.lock().marker_seen {
            if Instant::now() > deadline {
                return Err(not(
                    "the trace reader did not reach the drain marker in 30 s",
                ));
            }
            if self.reader.as_ref().is_some_and(JoinHandle::is_finished) {
                return Err(not("the trace reader stopped before the drain marker"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let dirty = self.take()?;
        self.stop();
        Ok((dirty, self.shared.lock().events))
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::write(self.dir.join("events/block/block_bio_queue/enable"), "0");
        // The reader's file is closed; rmdir can still race the kernel's
        // last reference for a moment.
        for _ in 0..50 {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
    }
}

fn read_loop(
    mut pipe: File,
    shared: &Shared,
    traced: Traced,
    marker: &str,
    drop_at: Option<u64>,
    pause: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 1 << 16];
    let mut partial: Vec<u8> = Vec::new();
    let mut batch: Vec<Extent> = Vec::new();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if pause.as_ref().is_some_and(|p| p.load(Ordering::Acquire)) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match pipe.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => {
                partial.extend_from_slice(buf.get(..n).unwrap_or_default());
                let Some(last_nl) = partial.iter().rposition(|&b| b == b'\n') else {
                    continue;
                };
                let rest = partial.split_off(last_nl.saturating_add(1));
                let text = String::from_utf8_lossy(&partial).into_owned();
                partial = rest;
                let mut lost = None;
                let mut marker_seen = false;
                let mut events = 0u64;
                for line in text.lines() {
                    if line.contains(marker) {
                        marker_seen = true;
                        continue;
                    }
                    match tracefs::parse_line(line) {
                        Ok(Line::Bio(b)) => {
                            if let Some(e) = traced.map(&b) {
                                events = events.saturating_add(1);
                                if drop_at.is_some_and(|at| at >= e.start() && at < e.end()) {
                                    continue;
                                }
                                batch.push(e);
                            }
                        }
                        Ok(Line::Lost { cpu, events }) => {
                            lost = Some(format!("CPU {cpu} lost {events} write event(s)"));
                        }
                        Ok(Line::Other) => {}
                        Err(e) => lost = Some(format!("unreadable trace line: {e}")),
                    }
                }
                let mut st = shared.lock();
                st.dirty.append(&mut batch);
                if st.dirty.len() > 1 << 16 {
                    let merged = ExtentList::from_unsorted(std::mem::take(&mut st.dirty));
                    st.dirty = merged.iter().copied().collect();
                }
                st.events = st.events.saturating_add(events);
                if lost.is_some() && st.lost.is_none() {
                    st.lost = lost;
                }
                st.marker_seen |= marker_seen;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.lock().lost = Some(format!("reading trace_pipe: {e}"));
                return;
            }
        }
    }
}

/// Remove the `reroot-PID-N` instances whose process is gone (a crashed or
/// killed run). An instance still in use is busy and stays. Returns the
/// names removed.
pub fn remove_stale(root: &SysRoot) -> Vec<String> {
    let Ok(base) = tracefs_dir(root) else {
        return Vec::new();
    };
    remove_stale_in(&base.join("instances"), root)
}

fn remove_stale_in(instances: &Path, root: &SysRoot) -> Vec<String> {
    let me = std::process::id();
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(instances) else {
        return removed;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = InstanceName::parse(&name) else {
            continue;
        };
        if n.pid == me || root.proc(n.pid.to_string()).exists() {
            continue;
        }
        if fs::remove_dir(e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests;
