//! A digest of a whole tree, for comparing a transform's source and target:
//! per path the type, mode, numeric owner and group, size, nanosecond atime
//! and mtime, device number, link count and hard-link partner (every
//! non-directory), symlink target, every extended attribute, the copyable
//! inode flags and the xxh3 of the contents. Directory sizes and link
//! counts are left out (they depend on the filesystem type, not on what it
//! holds). Contents are hashed on worker threads, reading with `O_NOATIME`.
//!
//! Imports `exec::{event, transform::meta}`, `plan::transform`.

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::meta::{self, Loss, io_err};
use crate::error::{Error, Result};
use crate::exec::event::{EventSink, Unit};

/// What one path's digest is made of, kept apart so a difference can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Type, mode, owner, group, size, times, device number, link count.
    pub attrs: u64,
    /// Extended attributes (names and values).
    pub xattrs: u64,
    /// Copyable inode flags.
    pub flags: u32,
    /// xxh3 of the contents (regular files) or of the link target (symlinks).
    pub content: u64,
    /// For a multiply-linked inode: its first path in sorted order.
    pub link: Option<PathBuf>,
}

/// The digest of one tree.
#[derive(Debug, Clone)]
pub struct TreeDigest {
    /// Per path relative to the root (the root itself is the empty path).
    pub entries: BTreeMap<PathBuf, Entry>,
    /// Bytes of file contents hashed.
    pub bytes: u64,
}

impl TreeDigest {
    /// One xxh3 over every entry in path order, as 16 hex digits.
    pub fn hex(&self) -> String {
        let mut h = Xxh3::new();
        for (p, e) in &self.entries {
            h.update(p.as_os_str().as_bytes());
            h.update(&[0]);
            h.update(&e.attrs.to_le_bytes());
            h.update(&e.xattrs.to_le_bytes());
            h.update(&e.flags.to_le_bytes());
            h.update(&e.content.to_le_bytes());
            if let Some(l) = &e.link {
                h.update(l.as_os_str().as_bytes());
            }
            h.update(&[0]);
        }
        format!("{:016x}", h.digest())
    }
}

/// A path whose digest differs, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// Path (as `/rel`).
    pub path: PathBuf,
    /// Which parts differ.
    pub what: String,
    /// The difference is explained by a reported loss (accepted with --lossy).
    pub explained: bool,
}

fn kind_code(md: &Metadata) -> u8 {
    let ft = md.file_type();
    if ft.is_file() {
        1
    } else if ft.is_dir() {
        2
    } else if ft.is_symlink() {
        3
    } else if ft.is_block_device() {
        4
    } else if ft.is_char_device() {
        5
    } else if ft.is_fifo() {
        6
    } else {
        7
    }
}

fn attrs_hash(md: &Metadata) -> u64 {
    let dir = md.is_dir();
    let mut h = Xxh3::new();
    h.update(&[kind_code(md)]);
    h.update(&(md.mode() & 0o7777).to_le_bytes());
    h.update(&md.uid().to_le_bytes());
    h.update(&md.gid().to_le_bytes());
    h.update(&(if dir { 0 } else { md.len() }).to_le_bytes());
    h.update(&md.atime().to_le_bytes());
    h.update(&md.atime_nsec().to_le_bytes());
    h.update(&md.mtime().to_le_bytes());
    h.update(&md.mtime_nsec().to_le_bytes());
    h.update(&(if dir { 0 } else { md.nlink() }).to_le_bytes());
    let ft = md.file_type();
    if ft.is_block_device() || ft.is_char_device() {
        h.update(&md.rdev().to_le_bytes());
    }
    h.digest()
}

/// Digest the tree under `root` with `threads` hashing threads.
pub fn digest_tree(root: &Path, threads: usize, sink: &EventSink) -> Result<TreeDigest> {
    let started = Instant::now();
    // Walk: every path with its metadata.
    let mut list: Vec<(PathBuf, Metadata)> = Vec::new();
    let root_md = std::fs::symlink_metadata(root).map_err(|e| io_err("reading", root, e))?;
    list.push((PathBuf::new(), root_md));
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let full = root.join(&dir);
        let rd = std::fs::read_dir(&full).map_err(|e| io_err("reading the directory", &full, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| io_err("reading the directory", &full, e))?;
            let rel = dir.join(ent.file_name());
            let md = std::fs::symlink_metadata(ent.path())
                .map_err(|e| io_err("reading", &ent.path(), e))?;
            if md.is_dir() {
                stack.push(rel.clone());
            }
            list.push((rel, md));
        }
    }
    list.sort_by(|a, b| a.0.cmp(&b.0));
    // Hard-link partners: the first path (sorted) of each multiply-linked inode.
    let mut leader: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for (p, md) in &list {
        if !md.is_dir() && md.nlink() > 1 {
            leader
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| p.clone());
        }
    }
    let total: u64 = list
        .iter()
        .filter(|(_, m)| m.is_file())
        .map(|(_, m)| m.len())
        .sum();
    sink.phase("digest", Some(total), Unit::Bytes);
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let out: Mutex<Vec<Option<Entry>>> = Mutex::new(vec![None; list.len()]);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((rel, md)) = list.get(i) else { break };
                    match entry(root, rel, md, &leader, &mut buf, &bytes) {
                        Ok(e) => out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(e),
                        Err(e) => {
                            first_err
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            next.store(list.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                    if i % 1024 == 0 {
                        sink.progress(bytes.load(Ordering::Relaxed));
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut entries = BTreeMap::new();
    for ((rel, _), e) in list.into_iter().zip(out) {
        let e = e.ok_or_else(|| Error::tool("a digest thread stopped early"))?;
        entries.insert(rel, e);
    }
    let bytes = bytes.into_inner();
    sink.phase_end("digest", bytes, started.elapsed());
    Ok(TreeDigest { entries, bytes })
}

fn entry(
    root: &Path,
    rel: &Path,
    md: &Metadata,
    leader: &HashMap<(u64, u64), PathBuf>,
    buf: &mut [u8],
    bytes: &AtomicU64,
) -> Result<Entry> {
    let full = root.join(rel);
    let attrs = meta::read_xattrs(&full).map_err(|e| io_err("reading xattrs of", &full, e))?;
    let mut xh = Xxh3::new();
    for (n, v) in &attrs {
        xh.update(n.as_bytes());
        xh.update(&[0]);
        xh.update(&(v.len() as u64).to_le_bytes());
        xh.update(v);
    }
    let mut flags = 0;
    let content = if md.is_file() {
        let mut f = meta::open_src(&full).map_err(|e| io_err("opening", &full, e))?;
        flags = meta::src_flags(&f);
        let mut h = Xxh3::new();
        loop {
            let n = f.read(buf).map_err(|e| io_err("reading", &full, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        h.digest()
    } else if md.file_type().is_symlink() {
        let t = std::fs::read_link(&full).map_err(|e| io_err("reading the link", &full, e))?;
        xxh3_64(t.as_os_str().as_bytes())
    } else {
        if md.is_dir() {
            flags = meta::flags_of(&full, md);
        }
        0
    };
    Ok(Entry {
        attrs: attrs_hash(md),
        xattrs: xh.digest(),
        flags,
        content,
        link: leader.get(&(md.dev(), md.ino())).cloned(),
    })
}

/// Compare two digests. A `lost+found` at the root that only one side has
/// is ignored (mkfs.ext* makes one; xfs and btrfs have none). Differences
/// on a path listed in `losses` are marked explained.
pub fn compare(src: &TreeDigest, dst: &TreeDigest, losses: &[Loss]) -> Vec<Difference> {
    let lf = Path::new("lost+found");
    let explained = |p: &Path| losses.iter().any(|l| l.path == meta::shown(p));
    let mut out = Vec::new();
    let mut push = |p: &Path, what: String| {
        out.push(Difference {
            path: meta::shown(p),
            explained: explained(p),
            what,
        })
    };
    for (p, a) in &src.entries {
        let Some(b) = dst.entries.get(p) else {
            push(p, "missing on the target".into());
            continue;
        };
        let mut parts = Vec::new();
        if a.attrs != b.attrs {
            parts.push("type/mode/owner/size/times");
        }
        if a.xattrs != b.xattrs {
            parts.push("xattrs");
        }
        if a.flags != b.flags {
            parts.push("inode flags");
        }
        if a.content != b.content {
            parts.push("contents");
        }
        if a.link != b.link {
            parts.push("hard links");
        }
        if !parts.is_empty() {
            push(p, parts.join(", "));
        }
    }
    for p in dst.entries.keys() {
        if !src.entries.contains_key(p) && !(p.starts_with(lf)) {
            push(p, "only on the target".into());
        }
    }
    if !src.entries.contains_key(lf) {
        out.retain(|d| !d.path.starts_with("/lost+found") || d.what != "only on the target");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/f"), b"hello").unwrap();
        std::fs::hard_link(dir.join("a/f"), dir.join("a/b/g")).unwrap();
        symlink("../f", dir.join("a/b/l")).unwrap();
    }

    fn set_times(root: &Path) {
        for p in ["a/b/l", "a/b/g", "a/b", "a/f", "a", ""] {
            let ts = nix::sys::time::TimeSpec::new(1_000_000, 5);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &root.join(p),
                &ts,
                &ts,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
    }

    #[test]
    fn equal_trees_equal_digests_and_changes_are_named() {
        let t = tempfile::tempdir().unwrap();
        let (x, y) = (t.path().join("x"), t.path().join("y"));
        tree(&x);
        tree(&y);
        // mkfs.ext4's lost+found, only on one side, is not a difference.
        std::fs::create_dir(y.join("lost+found")).unwrap();
        // Same times everywhere (reading a directory may move its atime).
        set_times(&x);
        set_times(&y);
        let s = EventSink::none();
        let a = digest_tree(&x, 2, &s).unwrap();
        let b = digest_tree(&y, 2, &s).unwrap();
        assert_eq!(compare(&a, &b, &[]), vec![]);
        assert_eq!(
            a.entries[Path::new("a/f")].link.as_deref(),
            Some(Path::new("a/b/g"))
        );
        // A changed byte (same size, same times) is found, the link partner too.
        std::fs::write(y.join("a/f"), b"hellO").unwrap();
        set_times(&y);
        let b = digest_tree(&y, 1, &s).unwrap();
        let d = compare(&a, &b, &[]);
        let paths: Vec<_> = d.iter().map(|d| d.path.clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from("/a/b/g"), PathBuf::from("/a/f")],
            "{d:?}"
        );
        assert!(d.iter().all(|d| d.what == "contents" && !d.explained));
        assert_ne!(a.hex(), b.hex());
        let loss = [Loss {
            path: PathBuf::from("/a/f"),
            what: "x".into(),
        }];
        assert!(compare(&a, &b, &loss).iter().any(|d| d.explained));
    }
}
