//! The process scan: every process that uses a filesystem, and how (its
//! executable, cwd, root, mapped files, open files with their access mode,
//! unix sockets bound on it), with the service it belongs to and its mount
//! namespace. What `lsof` and `fuser -m` find, from `/proc` alone.
//!
//! A file is "on the filesystem" when its `st_dev` is in [`Filter::devices`],
//! so bind mounts and paths in other mount namespaces count. Processes that
//! vanish mid-scan are skipped; ones whose `/proc` entries cannot be read are
//! listed in [`Scan::unreadable`]. May import `probe`'s parsers and
//! `sys::statx`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::SysRoot;
use super::cgroup::{self, Service};
use super::fdinfo::{self, Access};
use super::maps::{self, DELETED_SUFFIX};
use super::mountinfo::{self, Mount};
use super::unix;
use crate::error::{Error, Result};
use crate::sys::statx::{Stat, statx_cached};

/// Which filesystem(s) to look for, and which processes to look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `st_dev` values of the filesystem(s) (see [`Mount::dev`]).
    pub devices: BTreeSet<u64>,
    /// Processes to leave out (reroot itself).
    pub skip_pids: BTreeSet<u32>,
    /// When set, only these processes are scanned (a re-scan, a test).
    pub only_pids: Option<BTreeSet<u32>>,
}

impl Filter {
    /// Look for files on these devices in every process.
    pub fn devices(devs: impl IntoIterator<Item = u64>) -> Self {
        Self {
            devices: devs.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Also leave out the calling process.
    #[must_use]
    pub fn skip_self(mut self) -> Self {
        self.skip_pids.insert(std::process::id());
        self
    }

    /// True when `dev` is one of the filesystems looked for.
    pub fn matches(&self, dev: u64) -> bool {
        self.devices.contains(&dev)
    }

    fn wants(&self, pid: u32) -> bool {
        !self.skip_pids.contains(&pid) && self.only_pids.as_ref().is_none_or(|o| o.contains(&pid))
    }
}

/// Serialize an `st_dev` as `"MAJOR:MINOR"`.
pub fn serialize_dev<S: serde::Serializer>(
    dev: &u64,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&format_args!(
        "{}:{}",
        nix::sys::stat::major(*dev),
        nix::sys::stat::minor(*dev)
    ))
}

/// A file on the filesystem that a process uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileRef {
    /// Its path as the kernel shows it to reroot (without " (deleted)").
    pub path: PathBuf,
    /// `st_dev`.
    #[serde(serialize_with = "serialize_dev")]
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Unlinked or replaced since it was opened: link count 0, or " (deleted)".
    pub deleted: bool,
}

/// File type, from `st_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// `S_IFREG`
    Regular,
    /// `S_IFDIR`
    Directory,
    /// `S_IFSOCK`
    Socket,
    /// `S_IFIFO`
    Fifo,
    /// `S_IFCHR`
    CharDevice,
    /// `S_IFBLK`
    BlockDevice,
    /// `S_IFLNK` (an `O_PATH|O_NOFOLLOW` open)
    Symlink,
    /// Anything else.
    Unknown,
}

impl FileKind {
    /// The kind encoded in `st_mode`.
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Unknown,
        }
    }
}

/// An open file descriptor on the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpenFile {
    /// The descriptor number.
    pub fd: u32,
    /// The file.
    #[serde(flatten)]
    pub file: FileRef,
    /// Its type.
    pub kind: FileKind,
    /// Open for reading, writing or both (from fdinfo).
    pub access: Access,
    /// All open flags (`O_*`), from fdinfo; 0 when fdinfo was unreadable.
    pub flags: u32,
}

impl OpenFile {
    /// True when this open makes `remount,ro` fail: a regular file open for
    /// writing (the kernel counts write access only for non-special files).
    pub fn blocks_read_only(&self) -> bool {
        self.kind == FileKind::Regular && self.access.writes()
    }
}

/// A file mapped into the process's memory (all its mappings merged).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MappedFile {
    /// The file.
    #[serde(flatten)]
    pub file: FileRef,
    /// Some mapping is executable (code: a library or the program).
    pub exec: bool,
    /// Some mapping is shared and writable: writes reach the file.
    pub writes: bool,
}

/// A unix socket the process holds that is bound to a path on the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BoundSocket {
    /// The descriptor number in this process.
    pub fd: u32,
    /// The bound path (from `/proc/net/unix`).
    pub path: PathBuf,
    /// The socket inode (`socket:[N]`).
    pub inode: u64,
    /// It listens (a server).
    pub listening: bool,
}

/// How one process uses the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessUse {
    /// Process id (as seen from reroot's PID namespace).
    pub pid: u32,
    /// Parent pid, from `status`.
    pub ppid: Option<u32>,
    /// Real uid, from `status`.
    pub uid: Option<u32>,
    /// `comm`: the short command name.
    pub comm: String,
    /// `cmdline`, split at NULs.
    pub cmdline: Vec<String>,
    /// The executable, when on the filesystem.
    pub exe: Option<FileRef>,
    /// The working directory, when on the filesystem.
    pub cwd: Option<FileRef>,
    /// The root directory (chroot), when on the filesystem.
    pub root: Option<FileRef>,
    /// Mapped files on the filesystem, by path.
    pub maps: Vec<MappedFile>,
    /// Open descriptors on the filesystem, by fd number.
    pub fds: Vec<OpenFile>,
    /// Unix sockets bound on the filesystem.
    pub sockets: Vec<BoundSocket>,
    /// The cgroup path (unified hierarchy, else `name=systemd`).
    pub cgroup: Option<String>,
    /// The service the process belongs to, from its cgroup.
    pub service: Option<Service>,
    /// Mount namespace inode.
    pub mnt_ns: Option<u64>,
    /// The process lives in another mount namespace than reroot (a container,
    /// a service with a private namespace): a pivot does not reach it.
    pub other_mnt_ns: bool,
}

impl ProcessUse {
    /// A process that uses nothing yet (for building facts in tests).
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            ppid: None,
            uid: None,
            comm: String::new(),
            cmdline: Vec::new(),
            exe: None,
            cwd: None,
            root: None,
            maps: Vec::new(),
            fds: Vec::new(),
            sockets: Vec::new(),
            cgroup: None,
            service: None,
            mnt_ns: None,
            other_mnt_ns: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.exe.is_none()
            && self.cwd.is_none()
            && self.root.is_none()
            && self.maps.is_empty()
            && self.fds.is_empty()
            && self.sockets.is_empty()
    }

    /// Every deleted file the process still references (fds, maps, exe, cwd,
    /// root). Each keeps an orphan inode alive, and the kernel refuses
    /// `remount,ro` while the filesystem has orphans.
    pub fn deleted_files(&self) -> impl Iterator<Item = &FileRef> {
        [&self.exe, &self.cwd, &self.root]
            .into_iter()
            .flatten()
            .chain(self.fds.iter().map(|f| &f.file))
            .chain(self.maps.iter().map(|m| &m.file))
            .filter(|f| f.deleted)
    }

    /// Files the process can write to (regular files open for writing,
    /// shared writable mappings): `remount,ro` fails while they exist.
    pub fn written_files(&self) -> impl Iterator<Item = &FileRef> {
        self.fds
            .iter()
            .filter(|f| f.blocks_read_only())
            .map(|f| &f.file)
            .chain(self.maps.iter().filter(|m| m.writes).map(|m| &m.file))
    }

    /// True when code of the process (its executable or a mapped library)
    /// comes from the filesystem.
    pub fn runs_from(&self) -> bool {
        self.exe.is_some() || self.maps.iter().any(|m| m.exec)
    }

    /// A short label: `pid 123 (sshd)`.
    pub fn label(&self) -> String {
        format!("pid {} ({})", self.pid, self.comm)
    }
}

/// A mount namespace other than reroot's in which the filesystem is mounted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForeignNamespace {
    /// Namespace inode (`mnt:[N]`).
    pub ns: u64,
    /// Every process in it.
    pub pids: Vec<u32>,
    /// The services of those processes.
    pub services: BTreeSet<Service>,
    /// The mounts of the filesystem in it, as its first process sees them.
    pub mounts: Vec<Mount>,
}

/// The result of [`scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Scan {
    /// Processes that use the filesystem, by pid.
    pub processes: Vec<ProcessUse>,
    /// Processes whose `/proc` entries could not be read (permissions).
    pub unreadable: Vec<u32>,
    /// Other mount namespaces that have the filesystem mounted.
    pub foreign_namespaces: Vec<ForeignNamespace>,
    /// How many processes were looked at.
    pub scanned: usize,
}

/// The inode in a namespace link's text, `mnt:[4026531841]`.
pub fn parse_ns_link(text: &str) -> Option<u64> {
    let (_, rest) = text.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

fn ns_inode(path: &Path) -> Option<u64> {
    let t = fs::read_link(path).ok()?;
    parse_ns_link(t.to_str()?)
}

fn file_ref(path: PathBuf, st: &Stat) -> FileRef {
    let text = path.to_string_lossy();
    let (path, suffixed) = match text.strip_suffix(DELETED_SUFFIX) {
        Some(p) => (PathBuf::from(p), true),
        None => (path.clone(), false),
    };
    FileRef {
        path,
        dev: st.dev,
        ino: st.ino,
        deleted: suffixed || st.nlink == 0,
    }
}

fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// What reading one process gave.
enum Seen {
    /// Exited, a zombie or a kernel thread.
    Gone,
    Unreadable,
    Read,
}

struct Scanner<'a> {
    filter: &'a Filter,
    buf: String,
    /// socket inode -> (pid, fd) of every holder
    sockets: HashMap<u64, Vec<(u32, u32)>>,
}

impl Scanner<'_> {
    /// `exe`, `cwd` or `root` of a process, when on the filesystem.
    fn link(&self, base: &Path, name: &str) -> Option<FileRef> {
        let p = base.join(name);
        let st = statx_cached(&p).ok()?;
        if !self.filter.matches(st.dev) {
            return None;
        }
        Some(file_ref(fs::read_link(&p).ok()?, &st))
    }

    fn read_text(&mut self, path: &Path) -> io::Result<()> {
        self.buf.clear();
        fs::File::open(path)?.read_to_string(&mut self.buf)?;
        Ok(())
    }

    fn maps(&mut self, base: &Path, out: &mut ProcessUse) -> io::Result<()> {
        self.read_text(&base.join("maps"))?;
        let mut by_file: BTreeMap<(u64, u64, &str), MappedFile> = BTreeMap::new();
        for m in maps::parse(&self.buf) {
            if !m.is_file() || !self.filter.matches(m.dev()) {
                continue;
            }
            let e = by_file
                .entry((m.dev(), m.inode, m.path))
                .or_insert_with(|| MappedFile {
                    file: FileRef {
                        path: PathBuf::from(m.path),
                        dev: m.dev(),
                        ino: m.inode,
                        deleted: m.deleted,
                    },
                    exec: false,
                    writes: false,
                });
            e.exec |= m.perms.exec;
            e.writes |= m.writes_file();
        }
        out.maps = by_file.into_values().collect();
        out.maps.sort_by(|a, b| a.file.path.cmp(&b.file.path));
        Ok(())
    }

    fn fds(&mut self, base: &Path, out: &mut ProcessUse) -> io::Result<()> {
        let dir = base.join("fd");
        let mut fds = Vec::new();
        for e in fs::read_dir(&dir)? {
            let Ok(e) = e else { continue };
            let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let p = dir.join(e.file_name());
            let Ok(st) = statx_cached(&p) else { continue };
            let kind = FileKind::from_mode(st.mode);
            if kind == FileKind::Socket {
                self.sockets.entry(st.ino).or_default().push((out.pid, fd));
            }
            if !self.filter.matches(st.dev) {
                continue;
            }
            let Ok(target) = fs::read_link(&p) else {
                continue;
            };
            let flags = fs::read_to_string(base.join("fdinfo").join(e.file_name()))
                .ok()
                .and_then(|t| fdinfo::parse(&t).ok())
                .map_or(0, |i| i.flags);
            fds.push(OpenFile {
                fd,
                file: file_ref(target, &st),
                kind,
                access: Access::from_flags(flags),
                flags,
            });
        }
        fds.sort_by_key(|f| f.fd);
        out.fds = fds;
        Ok(())
    }

    /// Read one process. Fills `out` with its uses of the filesystem.
    fn process(&mut self, base: &Path, out: &mut ProcessUse) -> Seen {
        // Kernel threads and zombies have no executable: nothing to find
        // (a kernel thread's cwd and root are init's, which would mislead).
        let exe = base.join("exe");
        match statx_cached(&exe) {
            Err(e) if is_gone(&e) => return Seen::Gone,
            Ok(st) if self.filter.matches(st.dev) => {
                out.exe = fs::read_link(&exe).ok().map(|t| file_ref(t, &st));
            }
            _ => {}
        }
        out.cwd = self.link(base, "cwd");
        out.root = self.link(base, "root");
        let maps = self.maps(base, out);
        let fds = self.fds(base, out);
        match (maps, fds) {
            (Ok(()), Ok(())) => Seen::Read,
            (Err(e), _) | (_, Err(e)) if is_gone(&e) => Seen::Gone,
            _ => Seen::Unreadable,
        }
    }
}

/// Fill in what identifies a process: comm, cmdline, ppid, uid, cgroup, service.
fn describe(base: &Path, p: &mut ProcessUse) {
    p.comm = fs::read_to_string(base.join("comm"))
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_default();
    p.cmdline = fs::read(base.join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    if let Ok(status) = fs::read_to_string(base.join("status")) {
        for line in status.lines() {
            let first_num = |v: &str| v.split_whitespace().next().and_then(|n| n.parse().ok());
            if let Some(v) = line.strip_prefix("PPid:") {
                p.ppid = first_num(v);
            } else if let Some(v) = line.strip_prefix("Uid:") {
                p.uid = first_num(v);
            }
        }
    }
    let (cg, svc) = service_of(base);
    p.cgroup = cg;
    p.service = svc;
}

fn service_of(base: &Path) -> (Option<String>, Option<Service>) {
    match fs::read_to_string(base.join("cgroup")) {
        Ok(text) => {
            let lines = cgroup::parse(&text);
            (
                cgroup::display_path(&lines).map(str::to_owned),
                cgroup::service_of(&lines),
            )
        }
        Err(_) => (None, None),
    }
}

/// What one thread found in its share of the pids.
#[derive(Default)]
struct Part {
    found: Vec<ProcessUse>,
    unreadable: Vec<u32>,
    /// (mount namespace, pid) for namespaces other than reroot's
    mnt_members: Vec<(u64, u32)>,
    /// (network namespace, first pid) for namespaces other than reroot's
    net_first: Vec<(u64, u32)>,
    sockets: HashMap<u64, Vec<(u32, u32)>>,
    scanned: usize,
}

fn scan_pids(
    sys: &SysRoot,
    filter: &Filter,
    pids: &[u32],
    own_mnt: Option<u64>,
    own_net: Option<u64>,
) -> Part {
    let mut scanner = Scanner {
        filter,
        buf: String::with_capacity(64 << 10),
        sockets: HashMap::new(),
    };
    let mut part = Part::default();
    let mut nets = BTreeSet::new();
    for &pid in pids {
        let base = sys.proc_dir.join(pid.to_string());
        let mut p = ProcessUse::new(pid);
        p.mnt_ns = ns_inode(&base.join("ns/mnt"));
        let net = ns_inode(&base.join("ns/net"));
        match scanner.process(&base, &mut p) {
            Seen::Gone => continue,
            Seen::Unreadable => part.unreadable.push(pid),
            Seen::Read => {}
        }
        part.scanned += 1;
        if let Some(ns) = p.mnt_ns.filter(|ns| Some(*ns) != own_mnt) {
            part.mnt_members.push((ns, pid));
            p.other_mnt_ns = own_mnt.is_some();
        }
        if let Some(ns) = net.filter(|ns| Some(*ns) != own_net) {
            if nets.insert(ns) {
                part.net_first.push((ns, pid));
            }
        }
        if !p.is_empty() {
            describe(&base, &mut p);
            part.found.push(p);
        }
    }
    part.sockets = scanner.sockets;
    part
}

/// Scan every process under `sys.proc_dir` for uses of the filesystems in
/// `filter`. Fails only when `/proc` itself cannot be listed.
pub fn scan(sys: &SysRoot, filter: &Filter) -> Result<Scan> {
    let entries = fs::read_dir(&sys.proc_dir)
        .map_err(|e| Error::io("listing processes", e).device(&sys.proc_dir))?;
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| filter.wants(*p))
        .collect();
    pids.sort_unstable();

    let own_mnt = ns_inode(&sys.proc("self/ns/mnt"));
    let own_net = ns_inode(&sys.proc("self/ns/net"));
    // /proc text is generated by the kernel on read: CPU-bound, so a few
    // threads share the pids (a few thousand processes stay well under a
    // second).
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8)
        .min(pids.len() / 128 + 1);
    let chunk = pids.len().div_ceil(threads).max(1);
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|c| scope.spawn(move || scan_pids(sys, filter, c, own_mnt, own_net)))
            .collect();
        handles
            .into_iter()
            // A panic in a worker is a bug: pass it on rather than lose its pids.
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut found: BTreeMap<u32, ProcessUse> = BTreeMap::new();
    let mut unreadable = Vec::new();
    let mut mnt_members: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut net_first: BTreeMap<u64, u32> = BTreeMap::new();
    let mut sockets: HashMap<u64, Vec<(u32, u32)>> = HashMap::new();
    let mut scanned = 0usize;
    for part in parts {
        scanned += part.scanned;
        unreadable.extend(part.unreadable);
        found.extend(part.found.into_iter().map(|p| (p.pid, p)));
        for (ns, pid) in part.mnt_members {
            mnt_members.entry(ns).or_default().push(pid);
        }
        for (ns, pid) in part.net_first {
            let first = net_first.entry(ns).or_insert(pid);
            *first = (*first).min(pid);
        }
        for (ino, mut holders) in part.sockets {
            sockets.entry(ino).or_default().append(&mut holders);
        }
    }
    unreadable.sort_unstable();
    mnt_members.values_mut().for_each(|v| v.sort_unstable());

    // Unix sockets: reroot's network namespace, then one table per other one.
    let tables = std::iter::once(sys.proc("net/unix")).chain(
        net_first
            .values()
            .map(|pid| sys.proc(format!("{pid}/net/unix"))),
    );
    for table in tables {
        let Ok(text) = fs::read_to_string(&table) else {
            continue;
        };
        for s in unix::parse(&text) {
            let (Some(path), Some(holders)) = (s.path.as_deref(), sockets.get(&s.inode)) else {
                continue;
            };
            if !path.starts_with('/') {
                continue; // abstract, or relative to an unknown cwd
            }
            // Resolve the path in the first holder's root and mount namespace.
            let Some(&(pid0, _)) = holders.iter().min() else {
                continue;
            };
            let resolved = sys
                .proc(format!("{pid0}/root"))
                .join(path.trim_start_matches('/'));
            let on_fs = statx_cached(&resolved).is_ok_and(|st| {
                filter.matches(st.dev) && FileKind::from_mode(st.mode) == FileKind::Socket
            });
            if !on_fs {
                continue;
            }
            for &(pid, fd) in holders {
                let p = found.entry(pid).or_insert_with(|| {
                    let mut p = ProcessUse::new(pid);
                    p.mnt_ns = ns_inode(&sys.proc(format!("{pid}/ns/mnt")));
                    p.other_mnt_ns = own_mnt.is_some() && p.mnt_ns != own_mnt;
                    describe(&sys.proc_dir.join(pid.to_string()), &mut p);
                    p
                });
                p.sockets.push(BoundSocket {
                    fd,
                    path: PathBuf::from(path),
                    inode: s.inode,
                    listening: s.listening,
                });
            }
        }
    }

    for p in found.values_mut() {
        p.sockets.sort_by_key(|s| s.fd);
    }

    // Other mount namespaces in which the filesystem is mounted.
    let mut foreign_namespaces = Vec::new();
    for (ns, members) in mnt_members {
        let Some(&first) = members.first() else {
            continue;
        };
        let Ok(mounts) = mountinfo::read(sys, &first.to_string()) else {
            continue;
        };
        let mounts: Vec<_> = mounts
            .into_iter()
            .filter(|m| filter.matches(m.dev()))
            .collect();
        if mounts.is_empty() {
            continue;
        }
        let services = members
            .iter()
            .filter_map(|pid| service_of(&sys.proc_dir.join(pid.to_string())).1)
            .collect();
        foreign_namespaces.push(ForeignNamespace {
            ns,
            pids: members,
            services,
            mounts,
        });
    }

    Ok(Scan {
        processes: found.into_values().collect(),
        unreadable,
        foreign_namespaces,
        scanned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    use crate::probe::fixture::{link, put};

    /// A fixture /proc whose links point into `data/` of the same temp dir,
    /// so the "filesystem" is the temp dir's own device.
    #[test]
    fn scans_a_fixture_proc_tree() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        let data = b.join("data");
        fs::create_dir_all(&data).unwrap();
        let dev = fs::metadata(&data).unwrap().dev();
        put(&data, "bin/daemon", "");
        put(&data, "log/app.log", "");
        put(&data, "etc/conf", "");
        let sock = data.join("run.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let sock_ino = fs::metadata(&sock).unwrap().ino();
        let (maj, min) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        let data_s = data.display().to_string();

        // pid 10: a daemon run from the fs, writing a log, reading a conf.
        link(b, "proc/10/exe", data.join("bin/daemon"));
        link(b, "proc/10/cwd", "/proc");
        // The root resolves socket paths; whether "/" is on the temp dir's
        // filesystem depends on the machine, so it is not asserted.
        link(b, "proc/10/root", "/");
        put(
            b,
            "proc/10/maps",
            &format!(
                "1000-2000 r-xp 00000000 {maj:x}:{min:x} 5 {data_s}/lib/libfoo.so (deleted)\n\
                 2000-3000 r--p 00001000 {maj:x}:{min:x} 5 {data_s}/lib/libfoo.so (deleted)\n\
                 3000-4000 rw-s 00000000 {maj:x}:{min:x} 9 {data_s}/db\n\
                 4000-5000 r-xp 00000000 ff:ff 9 /elsewhere/lib.so\n\
                 5000-6000 rw-p 00000000 00:00 0 [heap]\n\
                 garbage line\n"
            ),
        );
        link(b, "proc/10/fd/0", "/dev/null");
        link(b, "proc/10/fd/3", data.join("log/app.log"));
        put(
            b,
            "proc/10/fdinfo/3",
            "pos:\t7\nflags:\t02101\nmnt_id:\t3\n",
        );
        link(b, "proc/10/fd/4", data.join("etc/conf"));
        put(b, "proc/10/fdinfo/4", "pos:\t0\nflags:\t0100000\n");
        link(b, "proc/10/fd/5", &sock);
        put(b, "proc/10/fdinfo/5", "pos:\t0\nflags:\t02\n");
        link(b, "proc/10/fd/notanfd", "/");
        put(b, "proc/10/comm", "daemon\n");
        put(b, "proc/10/cmdline", "/data/bin/daemon\0-f\0");
        put(
            b,
            "proc/10/status",
            "Name:\tdaemon\nPPid:\t1\nUid:\t107\t107\t107\t107\n",
        );
        put(b, "proc/10/cgroup", "0::/system.slice/daemon.service\n");
        link(b, "proc/10/ns/mnt", "mnt:[100]");
        link(b, "proc/10/ns/net", "net:[200]");
        // pid 11: nothing on the fs.
        link(b, "proc/11/exe", "/dev/null");
        put(b, "proc/11/maps", "");
        fs::create_dir_all(b.join("proc/11/fd")).unwrap();
        link(b, "proc/11/ns/mnt", "mnt:[100]");
        // pid 12: another mount namespace with the fs mounted; cwd on it.
        link(b, "proc/12/exe", "/dev/null");
        link(b, "proc/12/cwd", data.join("etc"));
        put(b, "proc/12/maps", "");
        fs::create_dir_all(b.join("proc/12/fd")).unwrap();
        link(b, "proc/12/ns/mnt", "mnt:[101]");
        put(b, "proc/12/cgroup", "0::/openrc.box\n");
        put(
            b,
            "proc/12/mountinfo",
            &format!(
                "1 1 {maj}:{min} / / rw - ext4 /dev/x rw\n2 1 0:5 / /proc rw - proc proc rw\n"
            ),
        );
        // pid 13: fd dir unreadable stands for "permission denied" (a file).
        link(b, "proc/13/exe", "/dev/null");
        put(b, "proc/13/maps", "");
        put(b, "proc/13/fd", "");
        // pid 15: a kernel thread (no exe): not even counted.
        link(b, "proc/15/cwd", &data);
        put(b, "proc/15/maps", "");
        // pid 14: skipped by the filter.
        link(b, "proc/14/cwd", &data);
        put(b, "proc/14/maps", "");
        fs::create_dir_all(b.join("proc/14/fd")).unwrap();
        // reroot's own view.
        link(b, "proc/self", "11");
        put(
            b,
            "proc/net/unix",
            &format!(
                "Num       RefCount Protocol Flags    Type St Inode Path\n\
                 0000000000000000: 00000002 00000000 00010000 0001 01 {sock_ino} {}\n",
                sock.display()
            ),
        );
        fs::create_dir_all(b.join("proc/notapid")).unwrap();

        let sys = SysRoot::under(b);
        let mut filter = Filter::devices([dev]);
        filter.skip_pids.insert(14);
        let s = scan(&sys, &filter).unwrap();
        assert_eq!(s.scanned, 4, "{s:?}");
        assert_eq!(s.unreadable, vec![13]);
        let pids: Vec<_> = s.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![10, 12]);

        let p = &s.processes[0];
        assert_eq!(p.comm, "daemon");
        assert_eq!(p.cmdline, vec!["/data/bin/daemon", "-f"]);
        assert_eq!((p.ppid, p.uid), (Some(1), Some(107)));
        assert_eq!(p.exe.as_ref().unwrap().path, data.join("bin/daemon"));
        assert!(p.cwd.is_none());
        assert_eq!(p.maps.len(), 2);
        assert_eq!(p.maps[0].file.path, data.join("db"));
        assert!(p.maps[0].writes && !p.maps[0].exec);
        assert_eq!(p.maps[1].file.path, data.join("lib/libfoo.so"));
        assert!(p.maps[1].exec && p.maps[1].file.deleted);
        let fds: Vec<_> = p.fds.iter().map(|f| (f.fd, f.access, f.kind)).collect();
        assert_eq!(
            fds,
            vec![
                (3, Access::Write, FileKind::Regular),
                (4, Access::Read, FileKind::Regular),
                (5, Access::ReadWrite, FileKind::Socket),
            ]
        );
        assert!(p.fds[0].blocks_read_only());
        assert!(
            !p.fds[2].blocks_read_only(),
            "sockets never block remount,ro"
        );
        assert_eq!(p.sockets.len(), 1);
        assert_eq!(p.sockets[0].path, sock);
        assert!(p.sockets[0].listening);
        assert_eq!(
            p.service,
            Some(Service::Systemd {
                unit: "daemon.service".into(),
                user_unit: None
            })
        );
        assert!(!p.other_mnt_ns);
        assert_eq!(p.deleted_files().count(), 1);
        assert_eq!(p.written_files().count(), 2);
        assert!(p.runs_from());

        let q = &s.processes[1];
        assert_eq!(q.cwd.as_ref().unwrap().path, data.join("etc"));
        assert!(q.other_mnt_ns);
        assert!(!q.runs_from());
        assert_eq!(s.foreign_namespaces.len(), 1);
        let ns = &s.foreign_namespaces[0];
        assert_eq!((ns.ns, ns.pids.clone()), (101, vec![12]));
        assert_eq!(ns.mounts.len(), 1);
        assert_eq!(ns.mounts[0].mount_point, Path::new("/"));
        assert_eq!(ns.services.len(), 1);

        // only_pids restricts the scan.
        let mut only = Filter::devices([dev]);
        only.only_pids = Some([12].into());
        let s = scan(&sys, &only).unwrap();
        assert_eq!(s.scanned, 1);
        assert_eq!(s.processes.len(), 1);

        // A /proc that cannot be listed is an error.
        assert!(scan(&SysRoot::under(&b.join("nope")), &filter).is_err());
    }

    /// The live /proc, restricted to this test process: a deleted file held
    /// open, a file open for writing and a bound unix socket in a temp dir.
    #[test]
    fn scans_this_process_live() {
        let d = tempfile::tempdir().unwrap();
        let dev = fs::metadata(d.path()).unwrap().dev();
        let held = d.path().join("held");
        fs::write(&held, b"x").unwrap();
        let _held = fs::File::open(&held).unwrap();
        fs::remove_file(&held).unwrap();
        let log = d.path().join("log");
        let _log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .unwrap();
        let sock = d.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let mut filter = Filter::devices([dev]);
        filter.only_pids = Some([std::process::id()].into());
        let s = scan(&SysRoot::live(), &filter).unwrap();
        assert_eq!(s.processes.len(), 1, "{s:#?}");
        let p = &s.processes[0];
        let h = p.fds.iter().find(|f| f.file.path == held).expect("held fd");
        assert!(h.file.deleted);
        assert_eq!(h.access, Access::Read);
        let l = p.fds.iter().find(|f| f.file.path == log).expect("log fd");
        assert!(l.blocks_read_only() && !l.file.deleted);
        assert!(p.sockets.iter().any(|s| s.path == sock && s.listening));
        assert!(p.deleted_files().any(|f| f.path == held));
        assert_eq!(p.pid, std::process::id());
        assert!(!p.comm.is_empty());
        assert!(!p.other_mnt_ns);
        let skip = scan(&SysRoot::live(), &filter.clone().skip_self()).unwrap();
        assert!(skip.processes.is_empty());
    }

    #[test]
    fn ns_links_parse() {
        assert_eq!(parse_ns_link("mnt:[4026531841]"), Some(4_026_531_841));
        assert_eq!(parse_ns_link("mnt:[x]"), None);
        assert_eq!(parse_ns_link("mnt:4"), None);
        assert_eq!(parse_ns_link("mnt:[4"), None);
    }

    #[test]
    fn file_kinds() {
        assert_eq!(
            FileKind::from_mode(libc::S_IFREG | 0o644),
            FileKind::Regular
        );
        assert_eq!(FileKind::from_mode(libc::S_IFSOCK), FileKind::Socket);
        assert_eq!(FileKind::from_mode(0), FileKind::Unknown);
    }
}
