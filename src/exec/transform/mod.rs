//! Filesystem transforms: `copy --mkfs TYPE` makes a new filesystem of
//! another type (or on a smaller device) and copies the tree into it with
//! every kind of metadata, then compares digests of both trees;
//! `verify --files` compares two trees on its own. A live variant copies
//! while the source is in use, lets the caller freeze it, and copies what
//! changed.
//!
//! Steps: refuse what must not be touched (the target mounted, the same
//! device as the source, a target holding a filesystem without `force`, a
//! label that does not fit without `lossy`); in a private mount namespace
//! ([`ns`]) mount the source read-only, measure it, refuse when it does not
//! fit (`plan::transform::fit`, before anything is written), mkfs, mount the
//! target, copy ([`tree`]), digest ([`digest`]). Imports `plan::transform`,
//! `probe`, `exec::{event, identity, tools}`.

pub mod boot;
pub mod digest;
pub mod meta;
pub mod ns;
pub mod tree;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result, Stage};
use crate::exec::event::EventSink;
use crate::exec::{identity, tools};
use crate::plan::transform::{self as plan, Fit, MkfsType, SourceUsage};
use crate::probe::{SysRoot, mountinfo};
pub use digest::Difference;
pub use meta::Loss;
pub use tree::{TreeOptions, TreeStats};

/// How to transform.
#[derive(Debug, Clone)]
pub struct TransformOptions {
    /// The new filesystem's type.
    pub kind: MkfsType,
    /// Let mkfs pick a random UUID instead of the source's.
    pub new_uuid: bool,
    /// Accept what the target type cannot hold (reported, not an error).
    pub lossy: bool,
    /// Make the filesystem even where the target already holds one.
    pub force: bool,
    /// Compare digests of both trees after the copy.
    pub verify: bool,
    /// Worker threads.
    pub threads: usize,
}

impl Default for TransformOptions {
    fn default() -> Self {
        Self {
            kind: MkfsType::Ext4,
            new_uuid: false,
            lossy: false,
            force: false,
            verify: true,
            threads: tree::default_threads(),
        }
    }
}

/// Phase timing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    /// Name.
    pub name: String,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// What a transform did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransformReport {
    /// Source device or directory.
    pub source: PathBuf,
    /// Target device.
    pub target: PathBuf,
    /// The source's filesystem type, when known.
    pub source_fstype: Option<String>,
    /// The new filesystem's type.
    pub fstype: MkfsType,
    /// The UUID given to mkfs (`None`: random).
    pub uuid: Option<String>,
    /// The label given to mkfs.
    pub label: String,
    /// Things to know (label cut, identity).
    pub notes: Vec<String>,
    /// What the source holds.
    pub usage: SourceUsage,
    /// The space estimate that allowed the copy.
    pub fit: Fit,
    /// First (or only) pass.
    pub stats: TreeStats,
    /// Live: the pass after the freeze.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<TreeStats>,
    /// What the target type could not hold.
    pub losses: Vec<Loss>,
    /// `--lossy` was given.
    pub lossy: bool,
    /// Digests were compared.
    pub verified: bool,
    /// Digest of the source tree (16 hex digits).
    pub source_digest: Option<String>,
    /// Digest of the target tree.
    pub target_digest: Option<String>,
    /// Paths whose digests differ.
    pub differences: Vec<Difference>,
    /// Phase timings.
    pub phases: Vec<Phase>,
    /// Wall time.
    pub seconds: f64,
}

impl TransformReport {
    /// The error the command ends with, if any: differences not explained
    /// by a loss (exit 4), or losses without `--lossy` (refused).
    pub fn outcome_error(&self) -> Option<Error> {
        let unexplained = self.differences.iter().filter(|d| !d.explained).count();
        if unexplained > 0 {
            return Some(
                Error::new(ErrorKind::Mismatch(format!(
                    "{unexplained} paths differ between {} and {} (first: {} {})",
                    self.source.display(),
                    self.target.display(),
                    self.differences[0].path.display(),
                    self.differences[0].what
                )))
                .stage(Stage::Verify)
                .device(&self.target),
            );
        }
        if !self.losses.is_empty() && !self.lossy {
            return Some(
                Error::refused(format!(
                    "{} thing(s) the new {} filesystem cannot hold (first: {} {})",
                    self.losses.len(),
                    self.fstype,
                    self.losses[0].path.display(),
                    self.losses[0].what
                ))
                .stage(Stage::Copy)
                .device(&self.target)
                .hint("the list is in the report; rerun with --lossy to accept these losses, or choose another type"),
            );
        }
        None
    }
}

/// The identity and type of the source: a device directly, a directory
/// through the device mounted there.
fn source_identity(src: &Path) -> Option<identity::DeviceIdentity> {
    let md = std::fs::metadata(src).ok()?;
    if md.file_type().is_block_device() {
        return identity::identity_of(src).ok();
    }
    let mounts = mountinfo::read(&SysRoot::live(), "self").ok()?;
    let m = mountinfo::mount_of(&mounts, &std::fs::canonicalize(src).ok()?)?;
    if !m.source.starts_with("/dev/") {
        return None;
    }
    identity::identity_of(Path::new(&m.source)).ok()
}

/// What the filesystem at `dir` holds.
fn usage_of(dir: &Path) -> Result<SourceUsage> {
    let v = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io(format!("statvfs {}", dir.display()), e.into()))?;
    let frsize = v.fragment_size();
    Ok(SourceUsage {
        used_bytes: v
            .blocks()
            .saturating_sub(v.blocks_free())
            .saturating_mul(frsize),
        used_inodes: v.files().saturating_sub(v.files_free()),
    })
}

fn free_of(dir: &Path) -> Result<(u64, u64)> {
    let v = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io(format!("statvfs {}", dir.display()), e.into()))?;
    // btrfs allocates inodes on demand and reports no inode counts at all.
    let free_inodes = if v.files() == 0 {
        u64::MAX
    } else {
        v.files_free()
    };
    Ok((
        v.blocks_free().saturating_mul(v.fragment_size()),
        free_inodes,
    ))
}

fn device_size(dev: &Path) -> Result<u64> {
    let f = std::fs::File::open(dev)
        .map_err(|e| Error::io(format!("opening {}", dev.display()), e).device(dev))?;
    crate::sys::blkdev::size(&f)
        .map_err(|e| Error::io(format!("reading the size of {}", dev.display()), e).device(dev))
}

/// Checks before anything is written: the target is a block device, not
/// the source, not mounted, and holds no filesystem unless `force`.
fn refuse_target(src: &Path, dst: &Path, opts: &TransformOptions) -> Result<()> {
    let md = std::fs::metadata(dst)
        .map_err(|e| Error::io(format!("opening {}", dst.display()), e).device(dst))?;
    if !md.file_type().is_block_device() {
        return Err(
            Error::invalid(format!("{} is not a block device", dst.display()))
                .hint("attach an image with `losetup -f --show IMAGE` first"),
        );
    }
    let same = std::fs::metadata(src)
        .is_ok_and(|smd| smd.file_type().is_block_device() && smd.rdev() == md.rdev());
    if same {
        return Err(Error::refused("the source and the target are the same device").device(dst));
    }
    if ns::is_mounted(dst) {
        return Err(Error::refused(format!("{} is mounted", dst.display()))
            .device(dst)
            .hint("unmount it first; reroot never makes a filesystem on a mounted device"));
    }
    let existing = if opts.force {
        None
    } else {
        identity::identity_of(dst).ok()
    };
    if let Some(id) = existing {
        return Err(Error::refused(format!(
            "{} holds a {} filesystem (UUID {}, label {:?})",
            dst.display(),
            id.fstype,
            id.uuid,
            id.label
        ))
        .device(dst)
        .hint("add --force to replace it"));
    }
    Ok(())
}

fn mkfs(kind: MkfsType, id: &plan::MkfsIdentity, inodes: Option<u64>, dst: &Path) -> Result<()> {
    let prog = tools::find(kind.program()).ok_or_else(|| {
        Error::tool(format!("{} is not installed", kind.program()))
            .hint(format!("install {}", kind.package()))
    })?;
    let args = plan::mkfs_args(kind, id, inodes, &dst.to_string_lossy());
    tools::run_ok(Command::new(prog).args(&args)).map(|_| ())
}

/// Which part of a transform to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// mkfs and copy (the source is not changing).
    Full,
    /// mkfs and a first copy while the source is in use (a live root):
    /// files that vanish are skipped; no digest (the source moves).
    Live,
    /// Onto the filesystem an earlier pass made: copy what changed,
    /// remove what is gone (no mkfs).
    Delta,
}

/// The new filesystem's identity, with what to tell; refuses before
/// anything is written when it cannot be what was asked.
fn plan_identity(
    src: &Path,
    opts: &TransformOptions,
) -> Result<(plan::MkfsIdentity, Vec<String>, Option<String>)> {
    let kind = opts.kind;
    let sid = source_identity(src);
    let (uuid, label) = match &sid {
        Some(i) => (i.uuid.clone(), i.label.clone()),
        None => (String::new(), String::new()),
    };
    let mut notes = Vec::new();
    let mut id = plan::identity(kind, &uuid, &label, opts.new_uuid);
    if let Some(cut) = &id.label_cut {
        if !opts.lossy {
            return Err(Error::refused(cut.clone())
                .stage(Stage::Copy)
                .hint("add --lossy to accept the shorter label; nothing was written"));
        }
        notes.push(cut.clone());
    }
    if sid.is_none() {
        notes.push("the source's UUID and label are unknown: the new filesystem gets a random UUID and no label".into());
    }
    if kind == MkfsType::Btrfs && id.uuid.is_some() {
        // mkfs.btrfs (and btrfstune) refuse a UUID any other block device
        // carries, and the source carries it; two btrfs with one fsid
        // would also confuse the kernel's device scan.
        let why = "mkfs.btrfs refuses a UUID another block device (here: the source) carries";
        if !opts.lossy {
            return Err(Error::refused(format!("{why}: a btrfs copy cannot keep the source's UUID"))
                .stage(Stage::Copy)
                .hint("add --new-uuid (then fstab and root=UUID= must name the new UUID; `reroot migrate --mkfs` rewrites fstab), or --lossy to accept that; nothing was written"));
        }
        notes.push(format!(
            "{why}: the new btrfs gets a random UUID; fstab and root=UUID= must follow"
        ));
        id.uuid = None;
    }
    Ok((id, notes, sid.map(|i| i.fstype.name().to_owned())))
}

/// Before a migration changes anything: would a `opts.kind` copy of the
/// filesystem mounted at `root` (device `src`) fit `dst`, with the
/// identity asked for? Refuses otherwise, counting bytes and inodes.
pub fn preflight(src: &Path, root: &Path, dst: &Path, opts: &TransformOptions) -> Result<Fit> {
    plan_identity(src, opts)?;
    let usage = usage_of(root)?;
    plan::fit(opts.kind, usage, device_size(dst)?).map_err(|e| e.stage(Stage::Check).device(dst))
}

/// `copy --mkfs`: make a `opts.kind` filesystem on `dst` and copy the tree
/// of `src` (a device, or a directory such as a live `/`) into it. With
/// `freeze`, the first pass runs live, `freeze` is called (the caller makes
/// the source read-only), and a delta pass follows before the digests.
///
/// Returns the report also when losses or differences were found; the
/// caller ends with [`TransformReport::outcome_error`].
pub fn transform(
    src: &Path,
    dst: &Path,
    opts: &TransformOptions,
    freeze: Option<&(dyn Fn() -> Result<()> + Sync)>,
    sink: &EventSink,
) -> Result<TransformReport> {
    run(src, dst, opts, Pass::Full, freeze, sink)
}

/// One pass of a migration through a transform (see [`Pass`]).
pub fn pass(
    src: &Path,
    dst: &Path,
    opts: &TransformOptions,
    pass: Pass,
    sink: &EventSink,
) -> Result<TransformReport> {
    run(src, dst, opts, pass, None, sink)
}

fn run(
    src: &Path,
    dst: &Path,
    opts: &TransformOptions,
    pass: Pass,
    freeze: Option<&(dyn Fn() -> Result<()> + Sync)>,
    sink: &EventSink,
) -> Result<TransformReport> {
    let started = Instant::now();
    let kind = opts.kind;
    let (id, notes, src_fstype) = if pass == Pass::Delta {
        if ns::is_mounted(dst) {
            return Err(Error::refused(format!("{} is mounted", dst.display())).device(dst));
        }
        let have = identity::identity_of(dst).map_err(|e| e.stage(Stage::Copy))?;
        if have.fstype.name() != kind.name() {
            return Err(Error::refused(format!(
                "{} holds {}, not the {kind} an earlier pass made",
                dst.display(),
                have.fstype
            ))
            .device(dst)
            .hint("start over with the first pass"));
        }
        let sid = source_identity(src);
        let id = plan::MkfsIdentity {
            uuid: Some(have.uuid),
            label: have.label,
            label_cut: None,
        };
        (id, Vec::new(), sid.map(|i| i.fstype.name().to_owned()))
    } else {
        refuse_target(src, dst, opts).map_err(|e| e.stage(Stage::Copy))?;
        plan_identity(src, opts)?
    };
    let target_bytes = device_size(dst)?;
    let lossy = opts.lossy;
    let threads = opts.threads.max(1);
    let verify = opts.verify && pass != Pass::Live;
    let mut report = ns::in_private_namespace(|m| {
        let sroot = m.source(src, src_fstype.as_deref())?;
        m.seal(&[src, dst]);
        let usage = usage_of(&sroot)?;
        let mut phases = Vec::new();
        let (fit, troot) = if pass == Pass::Delta {
            let fit = plan::fit(kind, usage, target_bytes).unwrap_or(Fit {
                overhead_bytes: 0,
                needed_bytes: usage.used_bytes,
                target_bytes,
                ext_inodes: None,
            });
            (fit, m.target(dst, kind.name(), kind.copy_mount_data())?)
        } else {
            let fit = plan::fit(kind, usage, target_bytes)
                .map_err(|e| e.stage(Stage::Copy).device(dst))?;
            sink.info(format!(
                "source: {} MB in {} inodes; new {kind} on {} ({} MB) needs about {} MB",
                usage.used_bytes / 1_000_000,
                usage.used_inodes,
                dst.display(),
                target_bytes / 1_000_000,
                fit.needed_bytes / 1_000_000
            ));
            let t = Instant::now();
            mkfs(kind, &id, fit.ext_inodes, dst).map_err(|e| e.stage(Stage::Copy).device(dst))?;
            phases.push(Phase {
                name: "mkfs".into(),
                seconds: t.elapsed().as_secs_f64(),
            });
            let troot = m.target(dst, kind.name(), kind.copy_mount_data())?;
            let (free_b, free_i) = free_of(&troot)?;
            plan::fit_after_mkfs(kind, usage, free_b, free_i)
                .map_err(|e| e.stage(Stage::Copy).device(dst))?;
            (fit, troot)
        };
        let topts = TreeOptions {
            threads,
            delta: pass == Pass::Delta,
            live: pass == Pass::Live || freeze.is_some(),
        };
        let t = Instant::now();
        let (stats, mut losses, manifest) =
            tree::copy_tree(&sroot, &troot, &topts, None, Some(usage.used_bytes), sink)?;
        phases.push(Phase {
            name: if pass == Pass::Delta { "delta" } else { "copy" }.into(),
            seconds: t.elapsed().as_secs_f64(),
        });
        let mut delta = None;
        if let Some(freeze) = freeze {
            freeze()?;
            let t = Instant::now();
            let dopts = TreeOptions {
                delta: true,
                live: false,
                ..topts
            };
            let (d, l, _) = tree::copy_tree(&sroot, &troot, &dopts, Some(&manifest), None, sink)?;
            // The delta pass sets every attribute again: its losses are the final word.
            losses = l;
            delta = Some(d);
            phases.push(Phase {
                name: "delta".into(),
                seconds: t.elapsed().as_secs_f64(),
            });
        }
        let mut r = TransformReport {
            source: src.to_path_buf(),
            target: dst.to_path_buf(),
            source_fstype: src_fstype.clone(),
            fstype: kind,
            uuid: id.uuid.clone(),
            label: id.label.clone(),
            notes: Vec::new(),
            usage,
            fit,
            stats,
            delta,
            losses,
            lossy,
            verified: false,
            source_digest: None,
            target_digest: None,
            differences: Vec::new(),
            phases,
            seconds: 0.0,
        };
        if verify {
            let t = Instant::now();
            let a = digest::digest_tree(&sroot, threads, sink)?;
            let b = digest::digest_tree(&troot, threads, sink)?;
            r.differences = digest::compare(&a, &b, &r.losses);
            r.source_digest = Some(a.hex());
            r.target_digest = Some(b.hex());
            r.verified = true;
            r.phases.push(Phase {
                name: "verify".into(),
                seconds: t.elapsed().as_secs_f64(),
            });
        }
        Ok(r)
    })?;
    report.notes.extend(notes);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// After the copy is verified: give the new root's `/etc/fstab` the new
/// type, options valid for it and (when it changed) the new UUID
/// ([`plan::rewrite_fstab`]). Rewrites the file in place, so its owner,
/// mode and security label stay. Returns what changed (nothing without an
/// fstab or a `/` line).
pub fn adapt_fstab(
    dst: &Path,
    kind: MkfsType,
    uuid_change: Option<(&str, &str)>,
) -> Result<Vec<String>> {
    ns::in_private_namespace(|m| {
        let troot = m.target(dst, kind.name(), kind.copy_mount_data())?;
        m.seal(&[dst]);
        let path = troot.join("etc/fstab");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading the new root's /etc/fstab", e)),
        };
        let (new, notes) = plan::rewrite_fstab(&text, kind, uuid_change);
        if new != text {
            std::fs::write(&path, new)
                .map_err(|e| Error::io("writing the new root's /etc/fstab", e))?;
        }
        Ok(notes)
    })
}

/// What `verify --files` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FilesVerifyReport {
    /// Source device or directory.
    pub source: PathBuf,
    /// Target device or directory.
    pub target: PathBuf,
    /// Paths in the source tree.
    pub entries: usize,
    /// Bytes of file contents hashed (source).
    pub bytes: u64,
    /// Digest of the source tree.
    pub source_digest: String,
    /// Digest of the target tree.
    pub target_digest: String,
    /// Paths that differ.
    pub differences: Vec<Difference>,
    /// Wall time.
    pub seconds: f64,
}

/// `verify --files SRC DST`: digest both trees (devices mounted read-only,
/// directories bound read-only, in a private namespace) and compare.
pub fn verify_files(
    src: &Path,
    dst: &Path,
    threads: usize,
    sink: &EventSink,
) -> Result<FilesVerifyReport> {
    let started = Instant::now();
    let kind_of = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .and_then(|_| identity::identity_of(p).ok())
            .map(|i| i.fstype.name().to_owned())
    };
    let (sk, dk) = (kind_of(src), kind_of(dst));
    let threads = threads.max(1);
    let mut r = ns::in_private_namespace(|m| {
        let a_root = m.source(src, sk.as_deref())?;
        let b_root = m.source(dst, dk.as_deref())?;
        m.seal(&[src, dst]);
        let a = digest::digest_tree(&a_root, threads, sink)?;
        let b = digest::digest_tree(&b_root, threads, sink)?;
        Ok(FilesVerifyReport {
            source: src.to_path_buf(),
            target: dst.to_path_buf(),
            entries: a.entries.len(),
            bytes: a.bytes,
            source_digest: a.hex(),
            target_digest: b.hex(),
            differences: digest::compare(&a, &b, &[]),
            seconds: 0.0,
        })
    })
    .map_err(|e| e.stage(Stage::Verify))?;
    r.seconds = started.elapsed().as_secs_f64();
    Ok(r)
}

impl FilesVerifyReport {
    /// Exit 4 when the trees differ.
    pub fn mismatch_error(&self) -> Option<Error> {
        let d = self.differences.first()?;
        Some(
            Error::new(ErrorKind::Mismatch(format!(
                "{} paths differ (first: {} {})",
                self.differences.len(),
                d.path.display(),
                d.what
            )))
            .stage(Stage::Verify),
        )
    }
}
