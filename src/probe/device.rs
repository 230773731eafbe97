//! Everything reroot knows about a block device or image file before it
//! writes to it ([`inspect`] → [`DeviceFacts`]): kind, numbers, sizes,
//! read-only flag, mounts in every mount namespace, holders, exclusive
//! openers, partition / loop / dm / md topology as byte ranges on the
//! storage underneath (so overlap can be decided), and on-disk signatures.
//!
//! Reads `/sys`, `/proc` and `/dev` through [`SysRoot`] (fixture trees in
//! tests); uses `sys::blkdev` only for query ioctls. Decides nothing: the
//! refusals are `plan::target`'s job.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::SysRoot;
use super::mountinfo::{self, Mount};
use super::signature::{self, Signature};
use crate::error::{Error, Result};
use crate::sys::blkdev;

/// A device number `major:minor`, as in `st_rdev`, mountinfo and `/sys/dev/block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNo {
    /// Driver (7 = loop, 8 = sd, 253/254 = dm or virtio, 259 = blkext).
    pub major: u32,
    /// Instance.
    pub minor: u32,
}

impl DevNo {
    /// From a raw `dev_t` (`st_rdev`, `st_dev`).
    pub fn from_raw(dev: u64) -> Self {
        Self {
            major: libc::major(dev),
            minor: libc::minor(dev),
        }
    }

    /// Parse `"7:0"` (the format of `/sys/class/block/X/dev`).
    pub fn parse(s: &str) -> Option<Self> {
        let (ma, mi) = s.trim().split_once(':')?;
        Some(Self {
            major: ma.parse().ok()?,
            minor: mi.parse().ok()?,
        })
    }
}

impl fmt::Display for DevNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl serde::Serialize for DevNo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Block device or regular (image) file; anything else is refused by [`inspect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// A block device node.
    Block,
    /// A regular file used as an image.
    File,
}

/// The storage object under a byte range: a block device or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum StorageId {
    /// A block device (disk, partition, loop, dm, md), by device number.
    Disk {
        /// Its device number.
        dev: DevNo,
    },
    /// A regular file, by the device it lives on and its inode.
    File {
        /// `st_dev` of the file.
        dev: DevNo,
        /// `st_ino` of the file.
        ino: u64,
    },
}

/// A byte range `[start, start + len)` of a storage object that a device
/// reads or writes. Two devices overlap when any of their spans do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    /// What the range is on.
    pub on: StorageId,
    /// Human name of that object: kernel name (`loop0`) or file path.
    pub name: String,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Span {
    /// One past the last byte (saturating: an unknown size is `u64::MAX`).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }

    /// The common byte range `(start, end)` of two spans on the same object.
    pub fn intersect(&self, other: &Span) -> Option<(u64, u64)> {
        if self.on != other.on {
            return None;
        }
        let (s, e) = (self.start.max(other.start), self.end().min(other.end()));
        (s < e).then_some((s, e))
    }
}

/// A mount of the device (or of one of its partitions).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MountUse {
    /// Kernel name of what is mounted: the device itself or a partition of it.
    pub device: String,
    /// Where, as seen from that mount namespace.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Mounted read-only (per-mount `ro`).
    pub read_only: bool,
    /// A process in the other mount namespace where this mount was seen;
    /// `None` for reroot's own namespace.
    pub pid: Option<u32>,
}

impl MountUse {
    /// "mounted at /mnt (read-write)" or "... in the mount namespace of pid 42".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "mounted at {} ({}, {})",
            self.mount_point.display(),
            self.fstype,
            if self.read_only {
                "read-only"
            } else {
                "read-write"
            }
        );
        if let Some(pid) = self.pid {
            s.push_str(&format!(" in the mount namespace of pid {pid}"));
        }
        s
    }
}

/// Something stacked on the device: a dm/md device listed in
/// `/sys/class/block/X/holders`, a loop device whose backing file is the
/// device node (sysfs does not list those), or (for an image file) a loop
/// device over it; and, transitively, whatever is stacked on those.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// Kernel name of the holder (`dm-0`, `md0`, `loop3`).
    pub name: String,
    /// Device-mapper name (`vg-root`), from `/sys/class/block/dm-N/dm/name`.
    pub dm_name: Option<String>,
    /// What it holds: the device itself, one of its partitions, or (stacked
    /// further up) another holder.
    pub of: String,
    /// For a loop device: its `--offset` into what it holds, in bytes.
    pub offset: u64,
}

impl Holder {
    /// "md RAID device md0", "device-mapper device vg-root (dm-0)", "loop device loop3".
    pub fn describe(&self) -> String {
        if let Some(dm) = &self.dm_name {
            format!("device-mapper device {dm} ({})", self.name)
        } else if self.name.starts_with("md") {
            format!("md RAID device {}", self.name)
        } else if self.name.starts_with("loop") {
            if self.offset > 0 {
                format!("loop device /dev/{} (at byte {})", self.name, self.offset)
            } else {
                format!("loop device /dev/{}", self.name)
            }
        } else {
            format!("device {}", self.name)
        }
    }
}

/// A partition's place on its disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionOf {
    /// Kernel name of the whole disk.
    pub disk: String,
    /// Partition number, when sysfs says.
    pub number: Option<u32>,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

/// A loop device's backing file and window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoopBacking {
    /// The backing file as the kernel recorded it (without " (deleted)").
    pub file: PathBuf,
    /// The file was deleted (or replaced) since the loop was set up.
    pub deleted: bool,
    /// `--offset`, bytes.
    pub offset: u64,
    /// `--sizelimit`, bytes (0 = to the end of the file).
    pub sizelimit: u64,
}

/// Facts about one device or image, gathered by [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceFacts {
    /// The path as given.
    pub path: PathBuf,
    /// The path with symlinks resolved (`/dev/disk/by-id/...` → `/dev/sda`).
    pub canonical: PathBuf,
    /// Block device or image file.
    pub kind: DeviceKind,
    /// Kernel name (`loop3`, `sda1`, `dm-0`), for block devices with sysfs.
    pub name: Option<String>,
    /// `st_rdev`, for block devices.
    pub rdev: Option<DevNo>,
    /// `st_dev`: the filesystem the node or file lives on.
    pub dev: DevNo,
    /// `st_ino`.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size: the O_DIRECT alignment.
    pub logical_block_size: u32,
    /// Physical block size.
    pub physical_block_size: u32,
    /// Writes would fail: `BLKROGET`/sysfs `ro` for devices, `access(W_OK)` for files.
    pub read_only: bool,
    /// Where it (or one of its partitions) is mounted, in any mount namespace.
    pub mounts: Vec<MountUse>,
    /// dm/md devices stacked on it (or its partitions); loop devices over an image file.
    pub holders: Vec<Holder>,
    /// `open(O_EXCL)` failed with EBUSY: someone (a mount, a holder, a
    /// process) has it open exclusively.
    pub exclusive_busy: bool,
    /// When it is a partition: its disk and byte range.
    pub partition: Option<PartitionOf>,
    /// Kernel names of its partitions, when it is a whole disk.
    pub partitions: Vec<String>,
    /// When it is a loop device: the backing file and window.
    pub loop_backing: Option<LoopBacking>,
    /// dm/md: kernel names of the devices underneath (`slaves/`).
    pub slaves: Vec<String>,
    /// Byte ranges it covers at every level down: itself, its disk, the
    /// loop's backing file, a dm/md device's slaves (wholly, conservatively).
    pub footprint: Vec<Span>,
    /// Footprint of the devices whose filesystems hold its data: the device
    /// an image file, or a loop device's backing file, lives on.
    pub host_footprint: Vec<Span>,
    /// Signatures found on it.
    pub signatures: Vec<Signature>,
}

impl DeviceFacts {
    /// A bare record (no topology, mounts or signatures) for tests and for
    /// callers that build facts by hand.
    pub fn new(path: impl Into<PathBuf>, kind: DeviceKind, size: u64) -> Self {
        let path = path.into();
        Self {
            canonical: path.clone(),
            path,
            kind,
            name: None,
            rdev: None,
            dev: DevNo { major: 0, minor: 0 },
            ino: 0,
            size,
            logical_block_size: 512,
            physical_block_size: 4096,
            read_only: false,
            mounts: Vec::new(),
            holders: Vec::new(),
            exclusive_busy: false,
            partition: None,
            partitions: Vec::new(),
            loop_backing: None,
            slaves: Vec::new(),
            footprint: Vec::new(),
            host_footprint: Vec::new(),
            signatures: Vec::new(),
        }
    }

    /// Same device (same `st_rdev`) or same file (same `st_dev` and inode).
    pub fn same_as(&self, other: &DeviceFacts) -> bool {
        match (self.kind, other.kind) {
            (DeviceKind::Block, DeviceKind::Block) => {
                self.rdev.is_some() && self.rdev == other.rdev
            }
            (DeviceKind::File, DeviceKind::File) => self.dev == other.dev && self.ino == other.ino,
            _ => false,
        }
    }

    /// Mounted read-write anywhere (itself or a partition).
    pub fn mounted_rw(&self) -> Option<&MountUse> {
        self.mounts.iter().find(|m| !m.read_only)
    }
}

/// What `path` is: a block device or a regular file, with its metadata.
/// Refuses (exit 3) a path that does not exist or is something else (a
/// directory, a character device), saying so once.
pub fn kind_of(path: &Path) -> Result<(fs::Metadata, DeviceKind)> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::refused("does not exist")
                .device(path)
                .hint("check the path (`lsblk` lists block devices)"));
        }
        Err(e) => return Err(Error::io("stat", e).device(path)),
    };
    let ft = meta.file_type();
    let kind = if ft.is_block_device() {
        DeviceKind::Block
    } else if ft.is_file() {
        DeviceKind::File
    } else {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_char_device() {
            "a character device"
        } else {
            "not a block device"
        };
        return Err(
            Error::refused(format!("is {what}, not a block device or image file"))
                .device(path)
                .hint("give a block device (see `lsblk`) or a regular image file"),
        );
    };
    Ok((meta, kind))
}

/// Everything about `path`, read through `root` (`SysRoot::live()` in
/// production). Refuses a path that does not exist or is neither a block
/// device nor a regular file.
pub fn inspect(path: &Path, root: &SysRoot) -> Result<DeviceFacts> {
    let (meta, kind) = kind_of(path)?;
    let file = File::open(path).map_err(|e| Error::io("open", e).device(path))?;
    let ioerr = |what: &'static str| move |e: io::Error| Error::io(what, e).device(path);
    let mut facts = DeviceFacts::new(path, kind, blkdev::size(&file).map_err(ioerr("size"))?);
    facts.canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    facts.dev = DevNo::from_raw(meta.dev());
    facts.ino = meta.ino();
    facts.logical_block_size = blkdev::logical_block_size(&file).map_err(ioerr("BLKSSZGET"))?;
    facts.physical_block_size = blkdev::physical_block_size(&file).map_err(ioerr("BLKPBSZGET"))?;
    match kind {
        DeviceKind::Block => {
            let rdev = DevNo::from_raw(meta.rdev());
            facts.rdev = Some(rdev);
            facts.name = kernel_name(root, rdev);
            facts.read_only = blkdev::read_only(&file).unwrap_or(false);
            fill_block_topology(root, &mut facts);
            facts.exclusive_busy = claimed_exclusively(path);
        }
        DeviceKind::File => {
            facts.read_only = nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_err();
            fill_file_topology(root, &mut facts);
        }
    }
    facts.mounts = find_mounts(root, &facts)?;
    // Random access: no readahead into regions we did not ask for.
    let _ = nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM,
    );
    facts.signatures = signature::detect(&file, facts.size).map_err(|e| {
        Error::io("reading signatures", e.source)
            .device(path)
            .offset(e.offset)
    })?;
    Ok(facts)
}

/// `open(O_RDONLY|O_EXCL)` fails with EBUSY: mounted, held by dm/md, or
/// opened exclusively by a process (mkfs, another reroot, a hypervisor).
fn claimed_exclusively(path: &Path) -> bool {
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(path)
    {
        Ok(_) => false,
        Err(e) => e.raw_os_error() == Some(libc::EBUSY),
    }
}

/// A sysfs attribute's text without its trailing newline.
pub(crate) fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

fn read_num(path: &Path) -> Option<u64> {
    read_trim(path)?.trim().parse().ok()
}

fn class_block(root: &SysRoot, name: &str) -> PathBuf {
    root.sys("class/block").join(name)
}

/// The names in a directory (empty when it cannot be read), sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Kernel name of a block device number, from the `/sys/dev/block/M:m` link.
pub fn kernel_name(root: &SysRoot, dev: DevNo) -> Option<String> {
    let link = fs::read_link(root.sys(format!("dev/block/{dev}"))).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

fn devno_of(root: &SysRoot, name: &str) -> Option<DevNo> {
    DevNo::parse(&read_trim(&class_block(root, name).join("dev"))?)
}

/// Size in bytes from sysfs (`size` is always in 512-byte sectors).
fn sysfs_bytes(root: &SysRoot, name: &str) -> Option<u64> {
    read_num(&class_block(root, name).join("size"))?.checked_mul(512)
}

/// When `name` is a partition: its disk (the parent directory in the
/// `/sys/class/block/NAME` link) and byte range.
pub fn partition_of(root: &SysRoot, name: &str) -> Option<PartitionOf> {
    let dir = class_block(root, name);
    let number = read_num(&dir.join("partition"))?;
    let link = fs::read_link(&dir).ok()?;
    let disk = link.parent()?.file_name()?.to_string_lossy().into_owned();
    Some(PartitionOf {
        disk,
        number: u32::try_from(number).ok(),
        start: read_num(&dir.join("start"))?.checked_mul(512)?,
        size: read_num(&dir.join("size"))?.checked_mul(512)?,
    })
}

/// Kernel names of the partitions of disk `name`.
pub fn partitions_of(root: &SysRoot, name: &str) -> Vec<String> {
    names_in(&root.sys("class/block"))
        .into_iter()
        .filter(|p| partition_of(root, p).is_some_and(|po| po.disk == name))
        .collect()
}

/// The backing file and window of loop device `name`.
pub fn loop_backing(root: &SysRoot, name: &str) -> Option<LoopBacking> {
    let dir = class_block(root, name).join("loop");
    let raw = read_trim(&dir.join("backing_file"))?;
    let (file, deleted) = match raw.strip_suffix(" (deleted)") {
        Some(f) => (f.to_string(), true),
        None => (raw, false),
    };
    Some(LoopBacking {
        file: PathBuf::from(file),
        deleted,
        offset: read_num(&dir.join("offset")).unwrap_or(0),
        sizelimit: read_num(&dir.join("sizelimit")).unwrap_or(0),
    })
}

/// What a loop device reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    /// A regular file, and the device its filesystem is on.
    File { id: StorageId, host: DevNo },
    /// A block device node (`losetup /dev/loop1 /dev/loop0`): stacked.
    Block { dev: DevNo },
}

/// What loop device `lb` reads (`None` for a deleted or replaced file).
/// Paths under `/dev` are looked up under the root's `dev_dir`; a node that
/// is not there is found by its kernel name in sysfs.
fn loop_backing_id(root: &SysRoot, lb: &LoopBacking) -> Option<Backing> {
    if lb.deleted {
        return None;
    }
    let under_dev = lb.file.strip_prefix("/dev").ok();
    let path = under_dev.map_or_else(|| lb.file.clone(), |rel| root.dev_dir.join(rel));
    match fs::metadata(&path) {
        Ok(m) if m.file_type().is_block_device() => Some(Backing::Block {
            dev: DevNo::from_raw(m.rdev()),
        }),
        Ok(m) if m.file_type().is_file() => {
            let host = DevNo::from_raw(m.dev());
            Some(Backing::File {
                id: StorageId::File {
                    dev: host,
                    ino: m.ino(),
                },
                host,
            })
        }
        Ok(_) => None,
        Err(_) => {
            let name = under_dev?.file_name()?.to_str()?;
            devno_of(root, name).map(|dev| Backing::Block { dev })
        }
    }
}

/// Every loop device and what it reads.
fn all_loops(root: &SysRoot) -> Vec<(String, LoopBacking, Backing)> {
    names_in(&root.sys("class/block"))
        .into_iter()
        .filter_map(|name| {
            let lb = loop_backing(root, &name)?;
            let b = loop_backing_id(root, &lb)?;
            Some((name, lb, b))
        })
        .collect()
}

/// What is stacked directly on block device `name`: the dm/md devices in
/// its `holders/`, and loop devices whose backing file is its node.
fn holders_of(root: &SysRoot, loops: &[(String, LoopBacking, Backing)], name: &str) -> Vec<Holder> {
    let mut out: Vec<Holder> = names_in(&class_block(root, name).join("holders"))
        .into_iter()
        .map(|h| Holder {
            dm_name: read_trim(&class_block(root, &h).join("dm/name")),
            name: h,
            of: name.to_string(),
            offset: 0,
        })
        .collect();
    if let Some(me) = devno_of(root, name) {
        for (l, lb, b) in loops {
            if *b == (Backing::Block { dev: me }) {
                out.push(Holder {
                    name: l.clone(),
                    dm_name: None,
                    of: name.to_string(),
                    offset: lb.offset,
                });
            }
        }
    }
    out
}

/// `first` and everything stacked on them (and on their partitions), all
/// the way up, each once.
fn stacked_closure(
    root: &SysRoot,
    loops: &[(String, LoopBacking, Backing)],
    mut first: Vec<Holder>,
) -> Vec<Holder> {
    let mut out: Vec<Holder> = Vec::new();
    let mut i = 0;
    while i < first.len() {
        let h = first[i].clone();
        i += 1;
        if out.iter().any(|o| o.name == h.name) || out.len() > 256 {
            continue;
        }
        let mut lower = vec![h.name.clone()];
        lower.extend(partitions_of(root, &h.name));
        out.push(h);
        for l in lower {
            first.extend(holders_of(root, loops, &l));
        }
    }
    out
}

const MAX_DEPTH: u32 = 8;

/// Spans covered by bytes `[start, start+len)` of block device `name`, at
/// every level down; the `st_dev` of loop backing files go to `hosts`.
fn footprint(
    root: &SysRoot,
    name: &str,
    start: u64,
    len: u64,
    depth: u32,
    spans: &mut Vec<Span>,
    hosts: &mut BTreeSet<DevNo>,
) {
    let Some(dev) = devno_of(root, name) else {
        return;
    };
    let span = Span {
        on: StorageId::Disk { dev },
        name: name.to_string(),
        start,
        len,
    };
    if spans.contains(&span) || depth > MAX_DEPTH {
        return;
    }
    spans.push(span);
    if let Some(p) = partition_of(root, name) {
        footprint(
            root,
            &p.disk,
            p.start.saturating_add(start),
            len,
            depth + 1,
            spans,
            hosts,
        );
    }
    if let Some(lb) = loop_backing(root, name) {
        match loop_backing_id(root, &lb) {
            Some(Backing::File { id, host }) => {
                spans.push(Span {
                    on: id,
                    name: lb.file.display().to_string(),
                    start: lb.offset.saturating_add(start),
                    len,
                });
                hosts.insert(host);
            }
            // A loop stacked on a block device: follow it down, at its offset.
            Some(Backing::Block { dev }) => match kernel_name(root, dev) {
                Some(lower) => footprint(
                    root,
                    &lower,
                    lb.offset.saturating_add(start),
                    len,
                    depth + 1,
                    spans,
                    hosts,
                ),
                None => spans.push(Span {
                    on: StorageId::Disk { dev },
                    name: lb.file.display().to_string(),
                    start: lb.offset.saturating_add(start),
                    len,
                }),
            },
            None => {}
        }
    }
    for s in names_in(&class_block(root, name).join("slaves")) {
        // Which part of a slave a dm/md device uses would need its table: count it all.
        let size = sysfs_bytes(root, &s).unwrap_or(u64::MAX);
        footprint(root, &s, 0, size, depth + 1, spans, hosts);
    }
}

/// The footprint of the block devices in `hosts` (the filesystems that hold
/// files we read through); a device sysfs does not know (tmpfs, btrfs
/// anonymous numbers) is one span over all of it.
fn host_footprint(root: &SysRoot, hosts: &BTreeSet<DevNo>) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut more = BTreeSet::new();
    for &dev in hosts {
        match kernel_name(root, dev) {
            Some(name) => {
                let size = sysfs_bytes(root, &name).unwrap_or(u64::MAX);
                footprint(root, &name, 0, size, 0, &mut spans, &mut more);
            }
            None => spans.push(Span {
                on: StorageId::Disk { dev },
                name: format!("device {dev}"),
                start: 0,
                len: u64::MAX,
            }),
        }
    }
    spans
}

/// Partition, partitions, loop, slaves, holders (also of the partitions),
/// footprints of a block device whose `name` and `rdev` are known.
pub fn fill_block_topology(root: &SysRoot, facts: &mut DeviceFacts) {
    let Some(name) = facts.name.clone() else {
        if let Some(dev) = facts.rdev {
            facts.footprint.push(Span {
                on: StorageId::Disk { dev },
                name: facts.path.display().to_string(),
                start: 0,
                len: facts.size,
            });
        }
        return;
    };
    if read_num(&class_block(root, &name).join("ro")) == Some(1) {
        facts.read_only = true;
    }
    facts.partition = partition_of(root, &name);
    facts.partitions = partitions_of(root, &name);
    facts.loop_backing = loop_backing(root, &name);
    facts.slaves = names_in(&class_block(root, &name).join("slaves"));
    let loops = all_loops(root);
    let mut direct = holders_of(root, &loops, &name);
    for p in &facts.partitions {
        direct.extend(holders_of(root, &loops, p));
    }
    facts.holders = stacked_closure(root, &loops, direct);
    let mut hosts = BTreeSet::new();
    let len = sysfs_bytes(root, &name).unwrap_or(facts.size);
    footprint(root, &name, 0, len, 0, &mut facts.footprint, &mut hosts);
    facts.host_footprint = host_footprint(root, &hosts);
}

/// For an image file: its own span, the device it lives on, and the loop
/// devices that read it (as holders).
pub fn fill_file_topology(root: &SysRoot, facts: &mut DeviceFacts) {
    let me = StorageId::File {
        dev: facts.dev,
        ino: facts.ino,
    };
    facts.footprint.push(Span {
        on: me,
        name: facts.path.display().to_string(),
        start: 0,
        len: facts.size,
    });
    facts.host_footprint = host_footprint(root, &BTreeSet::from([facts.dev]));
    let loops = all_loops(root);
    let direct = loops
        .iter()
        .filter(|(_, _, b)| matches!(b, Backing::File { id, .. } if *id == me))
        .map(|(name, lb, _)| Holder {
            name: name.clone(),
            dm_name: None,
            of: facts.path.display().to_string(),
            offset: lb.offset,
        })
        .collect();
    facts.holders = stacked_closure(root, &loops, direct);
}

/// The mount tables worth checking: reroot's own, then one per other mount
/// namespace found in `/proc/*/ns/mnt` (tagged with a pid in it). Failing to
/// read our own table is an error (we could not tell whether a device is
/// mounted); other namespaces are best effort (processes come and go).
pub fn mount_tables(root: &SysRoot) -> Result<Vec<(Option<u32>, Vec<Mount>)>> {
    let own = root.proc("self/mountinfo");
    let text = fs::read_to_string(&own).map_err(|e| {
        Error::io("reading mountinfo", e)
            .device(&own)
            .hint("is /proc mounted?")
    })?;
    let mut tables = vec![(None, mountinfo::parse(&text)?)];
    let mut seen = BTreeSet::new();
    if let Ok(ns) = fs::read_link(root.proc("self/ns/mnt")) {
        seen.insert(ns);
    }
    let mut pids: Vec<u32> = names_in(&root.proc_dir)
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(ns) = fs::read_link(root.proc(format!("{pid}/ns/mnt"))) else {
            continue;
        };
        if seen.contains(&ns) {
            continue;
        }
        let Ok(text) = fs::read_to_string(root.proc(format!("{pid}/mountinfo"))) else {
            continue;
        };
        if let Ok(m) = mountinfo::parse(&text) {
            seen.insert(ns);
            tables.push((Some(pid), m));
        }
    }
    Ok(tables)
}

/// Mounts of the device, its partitions and everything stacked on it
/// ([`DeviceFacts::holders`] and their partitions), matched by device
/// number (or, for filesystems with anonymous numbers like btrfs, by source
/// `/dev/NAME`).
pub fn find_mounts(root: &SysRoot, facts: &DeviceFacts) -> Result<Vec<MountUse>> {
    let mut ours: Vec<(String, DevNo)> = Vec::new();
    if let (Some(name), Some(rdev)) = (&facts.name, facts.rdev) {
        ours.push((name.clone(), rdev));
        for p in &facts.partitions {
            if let Some(d) = devno_of(root, p) {
                ours.push((p.clone(), d));
            }
        }
    }
    for h in &facts.holders {
        for n in std::iter::once(h.name.clone()).chain(partitions_of(root, &h.name)) {
            if let Some(d) = devno_of(root, &n) {
                if !ours.iter().any(|(o, _)| *o == n) {
                    ours.push((n, d));
                }
            }
        }
    }
    if ours.is_empty() {
        return Ok(Vec::new());
    }
    let name = facts.name.clone().unwrap_or_default();
    let mut found: Vec<MountUse> = Vec::new();
    for (pid, table) in mount_tables(root)? {
        for m in &table {
            let Some((dev_name, _)) = ours.iter().find(|(n, d)| {
                (m.major, m.minor) == (d.major, d.minor)
                    || Path::new(&m.source) == Path::new("/dev").join(n)
                    || (*n == name
                        && fs::canonicalize(&m.source).is_ok_and(|c| c == facts.canonical))
            }) else {
                continue;
            };
            let use_ = MountUse {
                device: dev_name.clone(),
                mount_point: m.mount_point.clone(),
                fstype: m.fstype.clone(),
                read_only: m.is_read_only(),
                pid,
            };
            if !found.contains(&use_) {
                found.push(use_);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A fake `/sys` + `/proc` tree shaped like the kernel's.

    use super::*;
    use std::os::unix::fs::symlink;

    /// A temporary tree and the `SysRoot` over it.
    pub struct Fixture {
        pub dir: tempfile::TempDir,
        pub root: SysRoot,
    }

    impl Fixture {
        pub fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = SysRoot::under(dir.path());
            for d in ["sys/class/block", "sys/dev/block", "proc/self/ns"] {
                fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            symlink("mnt:[1]", root.proc("self/ns/mnt")).unwrap();
            fs::write(root.proc("self/mountinfo"), "").unwrap();
            Self { dir, root }
        }

        fn write(&self, rel: &Path, file: &str, text: &str) {
            let d = self.root.sys_dir.join(rel);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(file), format!("{text}\n")).unwrap();
        }

        /// A whole disk `name` with `bytes`, at `devices/virtual/block/NAME`.
        pub fn disk(&self, name: &str, dev: &str, bytes: u64) {
            let rel = PathBuf::from("devices/virtual/block").join(name);
            self.node(&rel, name, dev, bytes);
        }

        /// Partition `name` of `disk`, starting at byte `start`.
        pub fn part(&self, disk: &str, name: &str, dev: &str, number: u32, start: u64, bytes: u64) {
            let rel = PathBuf::from("devices/virtual/block").join(disk).join(name);
            self.node(&rel, name, dev, bytes);
            self.write(&rel, "partition", &number.to_string());
            self.write(&rel, "start", &(start / 512).to_string());
        }

        fn node(&self, rel: &Path, name: &str, dev: &str, bytes: u64) {
            self.write(rel, "dev", dev);
            self.write(rel, "size", &(bytes / 512).to_string());
            self.write(rel, "ro", "0");
            fs::create_dir_all(self.root.sys_dir.join(rel).join("holders")).unwrap();
            fs::create_dir_all(self.root.sys_dir.join(rel).join("slaves")).unwrap();
            let up = Path::new("../..").join(rel);
            symlink(&up, self.root.sys("class/block").join(name)).unwrap();
            symlink(&up, self.root.sys("dev/block").join(dev)).unwrap();
        }

        fn dir_of(&self, name: &str) -> PathBuf {
            fs::canonicalize(self.root.sys("class/block").join(name)).unwrap()
        }

        pub fn loop_file(&self, name: &str, file: &Path, offset: u64, sizelimit: u64) {
            let d = self.dir_of(name).join("loop");
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("backing_file"), format!("{}\n", file.display())).unwrap();
            fs::write(d.join("offset"), format!("{offset}\n")).unwrap();
            fs::write(d.join("sizelimit"), format!("{sizelimit}\n")).unwrap();
        }

        /// `upper` (dm-N or mdN) is stacked on `lower`.
        pub fn stack(&self, upper: &str, lower: &str, dm_name: Option<&str>) {
            symlink(
                self.dir_of(upper),
                self.dir_of(lower).join("holders").join(upper),
            )
            .unwrap();
            symlink(
                self.dir_of(lower),
                self.dir_of(upper).join("slaves").join(lower),
            )
            .unwrap();
            if let Some(n) = dm_name {
                let d = self.dir_of(upper).join("dm");
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join("name"), format!("{n}\n")).unwrap();
            }
        }

        pub fn set_ro(&self, name: &str) {
            fs::write(self.dir_of(name).join("ro"), "1\n").unwrap();
        }

        /// Mountinfo for our namespace (`pid` None) or a process in namespace `ns`.
        pub fn mountinfo(&self, pid: Option<u32>, ns: &str, text: &str) {
            match pid {
                None => fs::write(self.root.proc("self/mountinfo"), text).unwrap(),
                Some(p) => {
                    let d = self.root.proc(p.to_string());
                    fs::create_dir_all(d.join("ns")).unwrap();
                    symlink(ns, d.join("ns/mnt")).unwrap();
                    fs::write(d.join("mountinfo"), text).unwrap();
                }
            }
        }

        /// Facts for block device `name` as `inspect` would build them
        /// (without opening a device node).
        pub fn block(&self, name: &str) -> DeviceFacts {
            let rdev = devno_of(&self.root, name).unwrap();
            let size = sysfs_bytes(&self.root, name).unwrap();
            let mut f = DeviceFacts::new(format!("/dev/{name}"), DeviceKind::Block, size);
            f.rdev = Some(rdev);
            f.name = kernel_name(&self.root, rdev);
            fill_block_topology(&self.root, &mut f);
            f.mounts = find_mounts(&self.root, &f).unwrap();
            f
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::Fixture;
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn devno_parse_display_raw() {
        let d = DevNo::parse("259:65537\n").unwrap();
        assert_eq!(d.to_string(), "259:65537");
        assert_eq!(DevNo::from_raw(nix::sys::stat::makedev(259, 65537)), d);
        assert!(DevNo::parse("7").is_none());
        assert!(DevNo::parse("a:1").is_none());
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"259:65537\"");
    }

    #[test]
    fn partition_and_disk_ranges() {
        let fx = Fixture::new();
        fx.disk("loop0", "7:0", 64 * MIB);
        fx.part("loop0", "loop0p1", "259:0", 1, MIB, 31 * MIB);
        fx.part("loop0", "loop0p2", "259:1", 2, 32 * MIB, 32 * MIB);
        let disk = fx.block("loop0");
        assert_eq!(disk.partitions, ["loop0p1", "loop0p2"]);
        assert!(disk.partition.is_none());
        let p2 = fx.block("loop0p2");
        let po = p2.partition.as_ref().unwrap();
        assert_eq!(
            (po.disk.as_str(), po.number, po.start, po.size),
            ("loop0", Some(2), 32 * MIB, 32 * MIB)
        );
        // p2's footprint: itself, then bytes 32..64 MiB of loop0.
        assert_eq!(p2.footprint.len(), 2);
        assert_eq!(p2.footprint[1].name, "loop0");
        assert_eq!(
            (p2.footprint[1].start, p2.footprint[1].end()),
            (32 * MIB, 64 * MIB)
        );
        assert_eq!(
            p2.footprint[1].intersect(&disk.footprint[0]),
            Some((32 * MIB, 64 * MIB))
        );
        let p1 = fx.block("loop0p1");
        assert!(
            p1.footprint
                .iter()
                .all(|a| p2.footprint.iter().all(|b| a.intersect(b).is_none()))
        );
    }

    #[test]
    fn loop_backing_file_window_and_host() {
        let fx = Fixture::new();
        let img = fx.dir.path().join("disk.img");
        fs::write(&img, vec![0u8; 4096]).unwrap();
        let m = fs::metadata(&img).unwrap();
        fx.disk("loop1", "7:1", 8 * MIB);
        fx.disk("loop2", "7:2", 8 * MIB);
        fx.loop_file("loop1", &img, 0, 8 * MIB);
        fx.loop_file("loop2", &img, 4 * MIB, 0);
        let l1 = fx.block("loop1");
        let l2 = fx.block("loop2");
        let lb = l2.loop_backing.as_ref().unwrap();
        assert_eq!((lb.offset, lb.deleted, &lb.file), (4 * MIB, false, &img));
        let file_id = StorageId::File {
            dev: DevNo::from_raw(m.dev()),
            ino: m.ino(),
        };
        assert_eq!(l2.footprint[1].on, file_id);
        assert_eq!(
            l1.footprint[1].intersect(&l2.footprint[1]),
            Some((4 * MIB, 8 * MIB))
        );
        // The file lives on some device: it is in the host footprint.
        assert_eq!(l1.host_footprint[0].start, 0);
        assert!(!l1.host_footprint.is_empty());

        // The image file itself: its footprint meets the loop's, and the
        // loops over it are its holders.
        let mut f = DeviceFacts::new(&img, DeviceKind::File, 4096);
        f.dev = DevNo::from_raw(m.dev());
        f.ino = m.ino();
        fill_file_topology(&fx.root, &mut f);
        assert_eq!(f.footprint[0].intersect(&l1.footprint[1]), Some((0, 4096)));
        let names: Vec<_> = f.holders.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["loop1", "loop2"]);
        assert_eq!(f.holders[0].describe(), "loop device /dev/loop1");
    }

    /// Issue 11: a loop device whose backing file is another loop device's
    /// node was neither in the lower one's holders nor in its footprint.
    #[test]
    fn stacked_loop_devices_are_holders_and_share_the_footprint() {
        let fx = Fixture::new();
        let img = fx.dir.path().join("small.img");
        fs::write(&img, vec![0u8; 4096]).unwrap();
        fx.disk("loop0", "7:0", 8 * MIB);
        fx.disk("loop1", "7:1", 7 * MIB);
        fx.disk("dm-3", "253:3", 7 * MIB);
        fx.loop_file("loop0", &img, 0, 0);
        fx.loop_file("loop1", Path::new("/dev/loop0"), MIB, 0);
        fx.stack("dm-3", "loop1", Some("up"));
        fx.mountinfo(
            None,
            "mnt:[1]",
            "30 1 253:3 / /mnt/y ro - ext4 /dev/dm-3 ro\n",
        );
        let l0 = fx.block("loop0");
        let names: Vec<_> = l0.holders.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["loop1", "dm-3"], "{:?}", l0.holders);
        assert_eq!(
            l0.holders[0].describe(),
            "loop device /dev/loop1 (at byte 1048576)"
        );
        assert_eq!(l0.holders[1].of, "loop1");
        // The mount two levels up is a mount of loop0's contents.
        assert_eq!(l0.mounts.len(), 1, "{:?}", l0.mounts);
        assert_eq!(l0.mounts[0].device, "dm-3");
        // Down: loop1 covers loop0 from 1 MiB and the image under it.
        let l1 = fx.block("loop1");
        let (s, e) = l1
            .footprint
            .iter()
            .find_map(|a| a.intersect(&l0.footprint[0]))
            .expect("loop1 overlaps loop0");
        assert_eq!((s, e), (MIB, 8 * MIB));
        assert!(
            l1.footprint
                .iter()
                .any(|a| a.intersect(&l0.footprint[1]).is_some())
        );
        // The image file: loop0 and everything above it hold it.
        let m = fs::metadata(&img).unwrap();
        let mut f = DeviceFacts::new(&img, DeviceKind::File, 4096);
        f.dev = DevNo::from_raw(m.dev());
        f.ino = m.ino();
        fill_file_topology(&fx.root, &mut f);
        let names: Vec<_> = f.holders.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["loop0", "loop1", "dm-3"]);
        let mounts = find_mounts(&fx.root, &f).unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/y"));
    }

    #[test]
    fn deleted_backing_file_is_flagged_not_matched() {
        let fx = Fixture::new();
        fx.disk("loop3", "7:3", MIB);
        fx.loop_file("loop3", Path::new("/var/tmp/gone.img (deleted)"), 0, 0);
        let l = fx.block("loop3");
        let lb = l.loop_backing.as_ref().unwrap();
        assert!(lb.deleted);
        assert_eq!(lb.file, Path::new("/var/tmp/gone.img"));
        assert_eq!(l.footprint.len(), 1);
    }

    #[test]
    fn dm_over_partition_holds_and_covers_the_disk() {
        let fx = Fixture::new();
        fx.disk("sdb", "8:16", 100 * MIB);
        fx.part("sdb", "sdb1", "8:17", 1, MIB, 99 * MIB);
        fx.disk("dm-0", "253:0", 99 * MIB);
        fx.stack("dm-0", "sdb1", Some("vg-root"));
        let disk = fx.block("sdb");
        assert_eq!(disk.holders.len(), 1);
        assert_eq!(disk.holders[0].of, "sdb1");
        assert_eq!(
            disk.holders[0].describe(),
            "device-mapper device vg-root (dm-0)"
        );
        let dm = fx.block("dm-0");
        assert_eq!(dm.slaves, ["sdb1"]);
        assert!(
            dm.footprint
                .iter()
                .any(|s| s.intersect(&disk.footprint[0]).is_some()),
            "{:?}",
            dm.footprint
        );
        fx.disk("md0", "9:0", 50 * MIB);
        fx.disk("sdc", "8:32", 50 * MIB);
        fx.stack("md0", "sdc", None);
        assert_eq!(fx.block("sdc").holders[0].describe(), "md RAID device md0");
    }

    #[test]
    fn sysfs_ro_flag() {
        let fx = Fixture::new();
        fx.disk("sr0", "11:0", MIB);
        assert!(!fx.block("sr0").read_only);
        fx.set_ro("sr0");
        assert!(fx.block("sr0").read_only);
    }

    #[test]
    fn mounts_in_every_namespace_and_of_partitions() {
        let fx = Fixture::new();
        fx.disk("loop4", "7:4", 64 * MIB);
        fx.part("loop4", "loop4p1", "259:4", 1, MIB, 63 * MIB);
        fx.disk("loop5", "7:5", 64 * MIB);
        fx.mountinfo(
            None,
            "mnt:[1]",
            "1 0 254:1 / / rw - ext4 /dev/vda1 rw\n\
             30 1 259:4 / /mnt/a ro,relatime - ext4 /dev/loop4p1 rw\n",
        );
        // Same namespace as ours: not read twice.
        fx.mountinfo(Some(10), "mnt:[1]", "garbage\n");
        fx.mountinfo(
            Some(20),
            "mnt:[2]",
            "1 0 254:1 / / rw - ext4 /dev/vda1 rw\n\
             40 1 259:4 / /srv rw - ext4 /dev/loop4p1 rw\n\
             41 1 0:55 / /b rw - btrfs /dev/loop5 rw\n",
        );
        fx.mountinfo(Some(21), "mnt:[2]", "");
        let d = fx.block("loop4");
        assert_eq!(d.mounts.len(), 2, "{:?}", d.mounts);
        assert_eq!(d.mounts[0].device, "loop4p1");
        assert!(d.mounts[0].read_only);
        assert_eq!(d.mounts[0].pid, None);
        assert_eq!(d.mounts[1].pid, Some(20));
        assert_eq!(
            d.mounted_rw().unwrap().describe(),
            "mounted at /srv (ext4, read-write) in the mount namespace of pid 20"
        );
        // btrfs reports an anonymous device number: matched by source.
        let b = fx.block("loop5");
        assert_eq!(b.mounts.len(), 1);
        assert_eq!(b.mounts[0].mount_point, Path::new("/b"));
        assert!(fx.block("loop4p1").mounts.len() == 2);
    }

    #[test]
    fn missing_proc_is_an_error() {
        let fx = Fixture::new();
        fx.disk("loop6", "7:6", MIB);
        fs::remove_file(fx.root.proc("self/mountinfo")).unwrap();
        let mut f = DeviceFacts::new("/dev/loop6", DeviceKind::Block, MIB);
        f.rdev = DevNo::parse("7:6");
        f.name = Some("loop6".into());
        assert!(find_mounts(&fx.root, &f).is_err());
    }

    #[test]
    fn inspect_image_file() {
        let fx = Fixture::new();
        let img = fx.dir.path().join("fs.img");
        let mut data = vec![0u8; 2 << 20];
        data[1080..1082].copy_from_slice(&0xEF53u16.to_le_bytes());
        fs::write(&img, &data).unwrap();
        let f = inspect(&img, &fx.root).unwrap();
        assert_eq!(f.kind, DeviceKind::File);
        assert_eq!(f.size, 2 * MIB);
        assert_eq!(f.logical_block_size, 4096);
        assert!(f.rdev.is_none() && f.mounts.is_empty());
        assert_eq!(f.signatures.len(), 1);
        assert_eq!(f.footprint[0].len, 2 * MIB);
        assert!(f.same_as(&inspect(&img, &fx.root).unwrap()));
        let link = fx.dir.path().join("link.img");
        std::os::unix::fs::symlink(&img, &link).unwrap();
        let l = inspect(&link, &fx.root).unwrap();
        assert_eq!(l.canonical, fs::canonicalize(&img).unwrap());
        assert!(l.same_as(&f));
    }

    #[test]
    fn inspect_refuses_missing_and_odd_paths() {
        let fx = Fixture::new();
        let e = inspect(&fx.dir.path().join("nope"), &fx.root).unwrap_err();
        assert!(matches!(e.kind(), crate::ErrorKind::Refused(_)), "{e}");
        assert!(e.to_string().contains("does not exist"));
        let e = inspect(fx.dir.path(), &fx.root).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = inspect(Path::new("/dev/null"), &fx.root).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }
}
