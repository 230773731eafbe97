//! The tree copy: walk the source on one thread (creating directories on
//! the target as it goes), hand every other inode to worker threads over a
//! bounded channel, then make the deferred hard links, then set every
//! directory's attributes deepest first, then immutable and append-only
//! flags last. Memory is bounded by the channel, one buffer per worker, the
//! list of directories and the table of multiply-linked inodes.
//!
//! A delta pass (`delta`) runs over a target that holds an earlier copy: an
//! inode whose type, size and mtime match (and, with the first pass's
//! manifest, whose inode number and ctime did not change) keeps its data;
//! its attributes are set again. Everything else is replaced, and what the
//! source no longer has is removed. Imports `exec::{event, transform::meta}`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::stat::{Mode, SFlag};
use nix::unistd::Whence;

use super::meta::{self, EARLY, Losses, io_err};
use crate::error::{Error, Result};
use crate::exec::event::{EventSink, Unit};
use crate::plan::transform::FS_LAST_FLAGS;

/// How to copy a tree.
#[derive(Debug, Clone)]
pub struct TreeOptions {
    /// Worker threads for non-directory inodes (at least 1).
    pub threads: usize,
    /// The target holds an earlier copy: copy only what changed, remove what is gone.
    pub delta: bool,
    /// The source is in use (a live root): entries that vanish while the
    /// walk runs are skipped, not errors.
    pub live: bool,
}

impl Default for TreeOptions {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            delta: false,
            live: false,
        }
    }
}

/// One worker per core, at least 2 (small files wait on metadata I/O), at most 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
}

/// What a pass found in the source, by inode: number, ctime, size and
/// mtime, so the next pass can skip what did not change at all.
pub type Manifest = HashMap<PathBuf, (u64, i64, i64)>;

/// What a tree copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeStats {
    /// Regular files written (data copied).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Device nodes, fifos and sockets.
    pub specials: u64,
    /// Extra names made with link(2).
    pub hard_links: u64,
    /// Bytes of file data copied.
    pub bytes: u64,
    /// Bytes of holes not written (sparse files).
    pub hole_bytes: u64,
    /// Delta: regular files whose data was kept.
    pub unchanged: u64,
    /// Delta: target entries removed because the source no longer has them.
    pub removed: u64,
    /// Live: entries that vanished between the directory read and the copy.
    pub vanished: u64,
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    symlinks: AtomicU64,
    specials: AtomicU64,
    bytes: AtomicU64,
    holes: AtomicU64,
    unchanged: AtomicU64,
    removed: AtomicU64,
    vanished: AtomicU64,
}

struct Job {
    rel: PathBuf,
    md: Metadata,
}

struct Shared<'a> {
    src: &'a Path,
    dst: &'a Path,
    opts: &'a TreeOptions,
    prev: Option<&'a Manifest>,
    /// (dev, ino) of a multiply-linked source inode -> the first path copied.
    first_link: Mutex<HashMap<(u64, u64), PathBuf>>,
    /// (first path, other path) to link after the workers are done.
    links: Mutex<Vec<(PathBuf, PathBuf)>>,
    /// Paths that get immutable/append-only at the very end, with all their flags.
    last_flags: Mutex<Vec<(PathBuf, u32)>>,
    manifest: Mutex<Manifest>,
    losses: Losses,
    counters: Counters,
    error: Mutex<Option<Error>>,
    abort: AtomicBool,
}

impl Shared<'_> {
    fn fail(&self, e: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.abort.store(true, Ordering::Relaxed);
    }

    fn vanished(&self, e: &io::Error) -> bool {
        self.opts.live && e.kind() == io::ErrorKind::NotFound
    }
}

/// A directory whose attributes are set after everything under it.
struct DirRec {
    rel: PathBuf,
    md: Metadata,
    flags: u32,
}

/// Copy the tree under `src` into `dst` (an existing directory, normally
/// the root of a fresh filesystem). `total` is the byte count progress is
/// measured against. Returns what was done, what the target could not hold
/// and the manifest of the source as walked.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    opts: &TreeOptions,
    prev: Option<&Manifest>,
    total: Option<u64>,
    sink: &EventSink,
) -> Result<(TreeStats, Vec<meta::Loss>, Manifest)> {
    let started = Instant::now();
    let sh = Shared {
        src,
        dst,
        opts,
        prev,
        first_link: Mutex::new(HashMap::new()),
        links: Mutex::new(Vec::new()),
        last_flags: Mutex::new(Vec::new()),
        manifest: Mutex::new(HashMap::new()),
        losses: Losses::default(),
        counters: Counters::default(),
        error: Mutex::new(None),
        abort: AtomicBool::new(false),
    };
    let phase = if opts.delta { "delta" } else { "copy" };
    sink.phase(phase, total, Unit::Bytes);
    let (tx, rx) = crossbeam_channel::bounded::<Job>(4096);
    let done = AtomicBool::new(false);
    let dirs = std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.threads.max(1))
            .map(|_| {
                let rx = rx.clone();
                let sh = &sh;
                s.spawn(move || worker(sh, &rx))
            })
            .collect();
        drop(rx);
        s.spawn(|| {
            let mut last_files = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                sink.progress(sh.counters.bytes.load(Ordering::Relaxed));
                if last_files.elapsed() >= Duration::from_secs(10) {
                    last_files = Instant::now();
                    sink.info(format!(
                        "{} files, {} MB so far",
                        sh.counters.files.load(Ordering::Relaxed)
                            + sh.counters.symlinks.load(Ordering::Relaxed)
                            + sh.counters.specials.load(Ordering::Relaxed),
                        sh.counters.bytes.load(Ordering::Relaxed) / 1_000_000
                    ));
                }
            }
        });
        let dirs = walk(&sh, &tx);
        drop(tx); // workers end when the channel is drained and closed
        for w in workers {
            if w.join().is_err() {
                sh.fail(Error::tool("a copy worker thread panicked"));
            }
        }
        done.store(true, Ordering::Relaxed);
        dirs
    });
    let dirs = match dirs {
        Ok(d) => d,
        Err(e) => {
            sh.fail(e);
            Vec::new()
        }
    };
    if let Some(e) = sh.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let hard_links = make_links(&sh)?;
    let ndirs = dirs.len() as u64;
    finish_dirs(&sh, dirs)?;
    set_last_flags(&sh)?;
    let c = &sh.counters;
    let stats = TreeStats {
        files: c.files.load(Ordering::Relaxed),
        dirs: ndirs,
        symlinks: c.symlinks.load(Ordering::Relaxed),
        specials: c.specials.load(Ordering::Relaxed),
        hard_links,
        bytes: c.bytes.load(Ordering::Relaxed),
        hole_bytes: c.holes.load(Ordering::Relaxed),
        unchanged: c.unchanged.load(Ordering::Relaxed),
        removed: c.removed.load(Ordering::Relaxed),
        vanished: c.vanished.load(Ordering::Relaxed),
    };
    sink.phase_end(phase, stats.bytes, started.elapsed());
    let manifest = sh.manifest.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok((stats, sh.losses.into_sorted(), manifest))
}

/// Walk the source depth first with an explicit stack (deep trees do not
/// grow the thread's stack), creating directories and queueing the rest.
fn walk(sh: &Shared, tx: &crossbeam_channel::Sender<Job>) -> Result<Vec<DirRec>> {
    let root_md = std::fs::symlink_metadata(sh.src).map_err(|e| io_err("reading", sh.src, e))?;
    let mut dirs = vec![DirRec {
        rel: PathBuf::new(),
        flags: meta::flags_of(sh.src, &root_md),
        md: root_md,
    }];
    if sh.opts.delta {
        let tmd = std::fs::symlink_metadata(sh.dst).map_err(|e| io_err("reading", sh.dst, e))?;
        meta::unprotect(sh.dst, &tmd)?;
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        if sh.abort.load(Ordering::Relaxed) {
            break;
        }
        let sdir = sh.src.join(&dir);
        let rd = match std::fs::read_dir(&sdir) {
            Ok(r) => r,
            Err(e) if sh.vanished(&e) => continue,
            Err(e) => return Err(io_err("reading the directory", &sdir, e)),
        };
        let mut names: HashSet<OsString> = HashSet::new();
        for ent in rd {
            let ent = match ent {
                Ok(e) => e,
                Err(e) if sh.vanished(&e) => break,
                Err(e) => return Err(io_err("reading the directory", &sdir, e)),
            };
            let name = ent.file_name();
            let rel = dir.join(&name);
            // fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW): no path walk per entry.
            let md = match ent.metadata() {
                Ok(m) => m,
                Err(e) if sh.vanished(&e) => {
                    sh.counters.vanished.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(io_err("reading", &ent.path(), e)),
            };
            if sh.opts.delta {
                names.insert(name);
            }
            if md.is_dir() {
                make_dir(sh, &rel)?;
                dirs.push(DirRec {
                    flags: meta::flags_of(&ent.path(), &md),
                    rel: rel.clone(),
                    md,
                });
                stack.push(rel);
            } else if tx.send(Job { rel, md }).is_err() {
                break; // every worker stopped: an error is recorded
            }
        }
        if sh.opts.delta {
            remove_gone(sh, &dir, &names)?;
        }
    }
    Ok(dirs)
}

fn make_dir(sh: &Shared, rel: &Path) -> Result<()> {
    let d = sh.dst.join(rel);
    match std::fs::symlink_metadata(&d) {
        Ok(m) if m.is_dir() => {
            // An earlier pass's directory (or ext's lost+found): keep it.
            if sh.opts.delta {
                meta::unprotect(&d, &m)?;
            }
            return Ok(());
        }
        Ok(m) => remove_tree(&d, &m)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("reading", &d, e)),
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&d)
        .map_err(|e| io_err("creating the directory", rel, e))
}

use std::os::unix::fs::DirBuilderExt;

/// Delta: remove target entries of `dir` the source no longer has.
fn remove_gone(sh: &Shared, dir: &Path, names: &HashSet<OsString>) -> Result<()> {
    let tdir = sh.dst.join(dir);
    let rd = std::fs::read_dir(&tdir).map_err(|e| io_err("reading the directory", &tdir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| io_err("reading the directory", &tdir, e))?;
        let name = ent.file_name();
        if names.contains(&name) || (dir.as_os_str().is_empty() && name == "lost+found") {
            continue;
        }
        let p = ent.path();
        let md = std::fs::symlink_metadata(&p).map_err(|e| io_err("reading", &p, e))?;
        remove_tree(&p, &md)?;
        sh.counters.removed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Remove a target path and everything under it, clearing immutable and
/// append-only on the way.
fn remove_tree(path: &Path, md: &Metadata) -> Result<()> {
    meta::unprotect(path, md)?;
    if md.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|e| io_err("reading the directory", path, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| io_err("reading the directory", path, e))?;
            let p = ent.path();
            let m = std::fs::symlink_metadata(&p).map_err(|e| io_err("reading", &p, e))?;
            remove_tree(&p, &m)?;
        }
        std::fs::remove_dir(path).map_err(|e| io_err("removing", path, e))
    } else {
        std::fs::remove_file(path).map_err(|e| io_err("removing", path, e))
    }
}

/// Per-worker state: a data buffer, and whether copy_file_range works
/// between these two filesystems (it gives EXDEV across types).
struct WorkerState {
    buf: Vec<u8>,
    cfr: bool,
}

fn worker(sh: &Shared, rx: &crossbeam_channel::Receiver<Job>) {
    let mut st = WorkerState {
        buf: vec![0u8; 1 << 20],
        cfr: true,
    };
    for job in rx.iter() {
        if sh.abort.load(Ordering::Relaxed) {
            continue; // drain so the walker never blocks
        }
        if let Err(e) = copy_one(sh, &job, &mut st) {
            sh.fail(e);
        }
    }
}

fn copy_one(sh: &Shared, job: &Job, st: &mut WorkerState) -> Result<()> {
    let md = &job.md;
    let rel = &job.rel;
    let s = sh.src.join(rel);
    let d = sh.dst.join(rel);
    let ctime = (md.ino(), md.ctime(), md.ctime_nsec());
    if md.nlink() > 1 {
        let mut first = sh.first_link.lock().unwrap_or_else(|p| p.into_inner());
        match first.get(&(md.dev(), md.ino())) {
            Some(f) => {
                let f = f.clone();
                drop(first);
                sh.links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((f, rel.clone()));
                return Ok(());
            }
            None => {
                first.insert((md.dev(), md.ino()), rel.clone());
            }
        }
    }
    if sh.opts.delta {
        match std::fs::symlink_metadata(&d) {
            Ok(t) => {
                let unchanged_everything =
                    sh.prev.and_then(|p| p.get(rel)) == Some(&ctime) && same_data(md, &t);
                if unchanged_everything {
                    sh.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                    record(sh, rel, md, ctime);
                    if !md.is_file() {
                        // Reading a symlink may move its atime (files are read
                        // with O_NOATIME): set the times again, cheaply.
                        meta::times_path(&d, md, rel)?;
                    }
                    if md.is_file() && meta::flags_of(&s, md) & FS_LAST_FLAGS != 0 {
                        sh.last_flags
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((rel.clone(), meta::flags_of(&s, md)));
                    }
                    return Ok(());
                }
                if md.is_file() && same_data(md, &t) {
                    // Same data by size and mtime: set the attributes again only.
                    meta::unprotect(&d, &t)?;
                    resync_file(sh, rel, &s, &d, md)?;
                    sh.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                    record(sh, rel, md, ctime);
                    return Ok(());
                }
                remove_tree(&d, &t)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("reading", &d, e)),
        }
    }
    let ft = md.file_type();
    let r = if ft.is_file() {
        copy_file(sh, rel, &s, &d, md, st)
    } else if ft.is_symlink() {
        copy_symlink(sh, rel, &s, &d, md)
    } else {
        copy_special(sh, rel, &d, md)
    };
    match r {
        Err(e) if sh.opts.live && is_not_found(&e) => {
            sh.counters.vanished.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(e),
        Ok(()) => {
            record(sh, rel, md, ctime);
            Ok(())
        }
    }
}

fn is_not_found(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|io| io.kind() == io::ErrorKind::NotFound)
}

fn record(sh: &Shared, rel: &Path, _md: &Metadata, ctime: (u64, i64, i64)) {
    sh.manifest
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(rel.to_path_buf(), ctime);
}

/// Same type, size and mtime, and the target is not shared with another name.
fn same_data(s: &Metadata, t: &Metadata) -> bool {
    s.file_type() == t.file_type()
        && s.len() == t.len()
        && s.mtime() == t.mtime()
        && s.mtime_nsec() == t.mtime_nsec()
        && (s.nlink() > 1 || t.nlink() == 1)
        && (!s.file_type().is_block_device() && !s.file_type().is_char_device()
            || s.rdev() == t.rdev())
}

/// Delta: the data is there; set owner, mode, xattrs (dropping removed
/// ones), flags and times again.
fn resync_file(sh: &Shared, rel: &Path, s: &Path, d: &Path, md: &Metadata) -> Result<()> {
    let sf = meta::open_src(s).map_err(|e| io_err("opening", s, e))?;
    let df = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(d)
        .map_err(|e| io_err("opening", d, e))?;
    let flags = meta::src_flags(&sf);
    meta::apply_flags(&df, flags, EARLY, rel, &sh.losses)?;
    meta::chown_fd(&df, md, rel)?;
    meta::chmod_fd(&df, md, rel)?;
    let attrs = meta::read_xattrs_fd(&sf).map_err(|e| io_err("reading xattrs of", s, e))?;
    meta::drop_other_xattrs(d, &attrs, rel)?;
    meta::write_xattrs_fd(&df, &attrs, rel, &sh.losses)?;
    meta::times_fd(&df, md, rel)?;
    if flags & FS_LAST_FLAGS != 0 {
        sh.last_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((rel.to_path_buf(), flags));
    }
    Ok(())
}

fn copy_file(
    sh: &Shared,
    rel: &Path,
    s: &Path,
    d: &Path,
    md: &Metadata,
    st: &mut WorkerState,
) -> Result<()> {
    let sf = meta::open_src(s).map_err(|e| io_err("opening", s, e))?;
    let df = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(d)
        .map_err(|e| io_err("creating", rel, e))?;
    let flags = meta::src_flags(&sf);
    // Before the data: btrfs' nocow only takes on an empty file. A new file
    // inherits nothing (directory flags are set at the end), so without
    // flags to set there is nothing to do.
    if flags & EARLY != 0 {
        meta::apply_flags(&df, flags, EARLY, rel, &sh.losses)?;
    }
    let size = md.len();
    if size > 0 {
        let allocated = md.blocks().saturating_mul(512);
        if allocated < size {
            copy_sparse(sh, &sf, &df, size, st).map_err(|e| io_err("copying", rel, e))?;
        } else {
            copy_range(sh, &sf, &df, 0, size, st).map_err(|e| io_err("copying", rel, e))?;
        }
        df.set_len(size).map_err(|e| io_err("sizing", rel, e))?;
    }
    meta::chown_fd(&df, md, rel)?;
    meta::chmod_fd(&df, md, rel)?;
    let attrs = meta::read_xattrs_fd(&sf).map_err(|e| io_err("reading xattrs of", s, e))?;
    meta::write_xattrs_fd(&df, &attrs, rel, &sh.losses)?;
    meta::times_fd(&df, md, rel)?;
    if flags & FS_LAST_FLAGS != 0 {
        sh.last_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((rel.to_path_buf(), flags));
    }
    sh.counters.files.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Copy only the data segments (SEEK_DATA/SEEK_HOLE); holes stay holes.
fn copy_sparse(
    sh: &Shared,
    sf: &File,
    df: &File,
    size: u64,
    st: &mut WorkerState,
) -> io::Result<()> {
    let mut off: u64 = 0;
    let mut copied: u64 = 0;
    while off < size {
        let start = match nix::unistd::lseek(sf, to_off(off)?, Whence::SeekData) {
            Ok(p) => from_off(p)?,
            Err(nix::Error::ENXIO) => break, // only a hole remains
            Err(e) => return Err(e.into()),
        };
        let end = from_off(nix::unistd::lseek(sf, to_off(start)?, Whence::SeekHole)?)?.min(size);
        if end <= start {
            break;
        }
        copy_range(sh, sf, df, start, end, st)?;
        copied = copied.saturating_add(end - start);
        off = end;
    }
    sh.counters
        .holes
        .fetch_add(size.saturating_sub(copied), Ordering::Relaxed);
    Ok(())
}

fn to_off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))
}

fn from_off(v: i64) -> io::Result<u64> {
    u64::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))
}

/// Copy bytes `start..end`: copy_file_range while the kernel allows it
/// between these filesystems, pread/pwrite otherwise. Stops early at EOF
/// (a live file that shrank; the delta pass fixes it).
fn copy_range(
    sh: &Shared,
    sf: &File,
    df: &File,
    start: u64,
    end: u64,
    st: &mut WorkerState,
) -> io::Result<()> {
    let mut off = start;
    while off < end && st.cfr {
        let mut oin = to_off(off)?;
        let mut oout = oin;
        let len = usize::try_from((end - off).min(1 << 30)).unwrap_or(1 << 30);
        match nix::fcntl::copy_file_range(sf, Some(&mut oin), df, Some(&mut oout), len) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                off += n as u64;
                sh.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(
                nix::Error::EXDEV
                | nix::Error::ENOSYS
                | nix::Error::EOPNOTSUPP
                | nix::Error::EINVAL,
            ) => {
                st.cfr = false;
            }
            Err(e) => return Err(e.into()),
        }
    }
    while off < end {
        let want = usize::try_from((end - off).min(st.buf.len() as u64)).unwrap_or(st.buf.len());
        let n = sf.read_at(&mut st.buf[..want], off)?;
        if n == 0 {
            return Ok(());
        }
        df.write_all_at(&st.buf[..n], off)?;
        off += n as u64;
        sh.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}

fn copy_symlink(sh: &Shared, rel: &Path, s: &Path, d: &Path, md: &Metadata) -> Result<()> {
    let target = std::fs::read_link(s).map_err(|e| io_err("reading the link", s, e))?;
    std::os::unix::fs::symlink(&target, d).map_err(|e| io_err("creating the symlink", rel, e))?;
    meta::chown_path(d, md, rel)?;
    let attrs = meta::read_xattrs(s).map_err(|e| io_err("reading xattrs of", s, e))?;
    meta::write_xattrs(d, &attrs, rel, &sh.losses)?;
    meta::times_path(d, md, rel)?;
    sh.counters.symlinks.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Device nodes, fifos and sockets: mknod(2) makes all of them.
fn copy_special(sh: &Shared, rel: &Path, d: &Path, md: &Metadata) -> Result<()> {
    let ft = md.file_type();
    let kind = if ft.is_block_device() {
        SFlag::S_IFBLK
    } else if ft.is_char_device() {
        SFlag::S_IFCHR
    } else if ft.is_fifo() {
        SFlag::S_IFIFO
    } else if ft.is_socket() {
        SFlag::S_IFSOCK
    } else {
        return Err(Error::incompatible(format!(
            "{}: unknown file type",
            rel.display()
        )));
    };
    nix::sys::stat::mknod(d, kind, Mode::from_bits_truncate(0o600), md.rdev())
        .map_err(|e| io_err("creating", rel, e.into()))?;
    meta::chown_path(d, md, rel)?;
    meta::chmod_path(d, md, rel)?;
    let s = sh.src.join(rel);
    let attrs = meta::read_xattrs(&s).map_err(|e| io_err("reading xattrs of", &s, e))?;
    meta::write_xattrs(d, &attrs, rel, &sh.losses)?;
    meta::times_path(d, md, rel)?;
    sh.counters.specials.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The deferred hard links: every other name of a multiply-linked inode,
/// once its first name is complete.
fn make_links(sh: &Shared) -> Result<u64> {
    let links = std::mem::take(&mut *sh.links.lock().unwrap_or_else(|p| p.into_inner()));
    let mut n = 0;
    for (first, rel) in links {
        let f = sh.dst.join(&first);
        let d = sh.dst.join(&rel);
        if sh.opts.delta {
            match (std::fs::symlink_metadata(&f), std::fs::symlink_metadata(&d)) {
                (Ok(a), Ok(b)) if a.ino() == b.ino() => continue,
                (_, Ok(b)) => remove_tree(&d, &b)?,
                _ => {}
            }
        }
        match std::fs::hard_link(&f, &d) {
            Ok(()) => n += 1,
            // The first name vanished from a live source: copy on the next pass.
            Err(e) if sh.opts.live && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("linking", &rel, e)),
        }
    }
    Ok(n)
}

/// Directory attributes, deepest first, after everything inside them.
fn finish_dirs(sh: &Shared, mut dirs: Vec<DirRec>) -> Result<()> {
    dirs.sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
    for d in dirs {
        let rel = &d.rel;
        let s = sh.src.join(rel);
        let t = sh.dst.join(rel);
        let attrs = match meta::read_xattrs(&s) {
            Ok(a) => a,
            Err(e) if sh.vanished(&e) => continue,
            Err(e) => return Err(io_err("reading xattrs of", &s, e)),
        };
        meta::chown_path(&t, &d.md, rel)?;
        meta::chmod_path(&t, &d.md, rel)?;
        if sh.opts.delta {
            meta::drop_other_xattrs(&t, &attrs, rel)?;
        }
        meta::write_xattrs(&t, &attrs, rel, &sh.losses)?;
        let f = meta::open_for_flags(&t).map_err(|e| io_err("opening", &t, e))?;
        meta::apply_flags(&f, d.flags, EARLY, rel, &sh.losses)?;
        drop(f);
        meta::times_path(&t, &d.md, rel)?;
        if d.flags & FS_LAST_FLAGS != 0 {
            sh.last_flags
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((d.rel.clone(), d.flags));
        }
    }
    Ok(())
}

/// Immutable and append-only, after everything else.
fn set_last_flags(sh: &Shared) -> Result<()> {
    let list = std::mem::take(&mut *sh.last_flags.lock().unwrap_or_else(|p| p.into_inner()));
    for (rel, flags) in list {
        let t = sh.dst.join(&rel);
        let f = meta::open_for_flags(&t).map_err(|e| io_err("opening", &t, e))?;
        meta::apply_flags(&f, flags, FS_LAST_FLAGS, &rel, &sh.losses)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::transform::digest;

    fn write(p: &Path, data: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// The source's digest, read twice: the first read moves directory and
    /// symlink atimes under relatime (a transform mounts it noatime; a
    /// temporary directory is not), the second is what the copy sees.
    fn settled(a: &Path) -> digest::TreeDigest {
        let s = EventSink::none();
        digest::digest_tree(a, 2, &s).unwrap();
        digest::digest_tree(a, 2, &s).unwrap()
    }

    /// The copy's digest equals the source's.
    fn same(x: &digest::TreeDigest, b: &Path) {
        let y = digest::digest_tree(b, 2, &EventSink::none()).unwrap();
        assert_eq!(digest::compare(x, &y, &[]), vec![]);
    }

    #[test]
    fn copy_then_delta_copies_what_changed_and_removes_what_is_gone() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(&dst).unwrap();
        write(&src.join("a/keep"), b"same");
        write(&src.join("a/change"), b"before");
        write(&src.join("gone/file"), b"x");
        write(&src.join("b/big"), &vec![7u8; 3 << 20]);
        std::fs::hard_link(src.join("a/keep"), src.join("b/keep-link")).unwrap();
        std::os::unix::fs::symlink("../a/keep", src.join("b/sym")).unwrap();
        // Sparse: data at 0 and at 8 MiB, a hole between.
        let f = File::create(src.join("sparse")).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 8 << 20).unwrap();
        drop(f);
        let opts = TreeOptions {
            threads: 3,
            ..TreeOptions::default()
        };
        let s = EventSink::none();
        let before = settled(&src);
        let (st, losses, manifest) = copy_tree(&src, &dst, &opts, None, None, &s).unwrap();
        assert!(losses.is_empty(), "{losses:?}");
        assert_eq!((st.files, st.symlinks, st.hard_links), (5, 1, 1));
        assert!(st.hole_bytes > (7 << 20), "{st:?}");
        same(&before, &dst);
        // Change one file, remove a directory, add a file, then a delta pass.
        std::thread::sleep(Duration::from_millis(20));
        write(&src.join("a/change"), b"after!");
        std::fs::remove_dir_all(src.join("gone")).unwrap();
        write(&src.join("new"), b"new");
        let delta = TreeOptions {
            delta: true,
            ..opts
        };
        let before = settled(&src);
        let (st, _, _) = copy_tree(&src, &dst, &delta, Some(&manifest), None, &s).unwrap();
        assert_eq!(st.files, 2, "a/change and new: {st:?}");
        assert_eq!(st.removed, 1, "gone/: {st:?}");
        assert!(st.unchanged >= 3, "{st:?}");
        assert!(!dst.join("gone").exists());
        same(&before, &dst);
    }
}
