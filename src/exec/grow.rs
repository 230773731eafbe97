//! `grow`: fit the filesystem on a fresh copy to its (larger) device.
//!
//! ext2/3/4: `e2fsck -f -p` first (a copy it cannot repair unattended is a
//! bad copy, and resize2fs then never runs), then `resize2fs -p`. xfs and
//! btrfs grow only while mounted: on a private temporary mount, with
//! `xfs_growfs` or `btrfs filesystem resize`. The size comes from
//! `plan::grow`. Imports `probe`, `plan`, `exec::{tools, e2fs, temp_mount,
//! claim, event}`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::claim;
use super::e2fs::{self, FsckOutcome};
use super::event::{EventSink, Unit};
use super::temp_mount::with_private_mount;
use super::tools::{self, Requirement, Tool};
use crate::error::{Error, Result, Stage};
use crate::ext::ReadAt;
use crate::plan::grow::{GrowDecision, GrowFacts, decide};
use crate::probe::fs_superblock::{self, FsInfo, FsKind};

/// What to grow to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrowOptions {
    /// New size in bytes; `None` fills the device.
    pub size: Option<u64>,
}

/// What `grow` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GrowReport {
    /// The device grown.
    pub device: PathBuf,
    /// Its filesystem.
    pub fstype: FsKind,
    /// Its UUID (unchanged by grow).
    pub uuid: String,
    /// Filesystem block size.
    pub block_size: u32,
    /// Device size in bytes.
    pub device_bytes: u64,
    /// Filesystem size before.
    pub old_bytes: u64,
    /// Filesystem size after.
    pub new_bytes: u64,
    /// What was decided.
    pub decision: GrowDecision,
    /// e2fsck's outcome (ext only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsck: Option<FsckOutcome>,
    /// The tools used, with their versions.
    pub tools: Vec<Tool>,
}

/// The tools growing `kind` needs.
pub fn requirements(kind: FsKind) -> &'static [Requirement] {
    match kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => &[tools::E2FSCK, tools::RESIZE2FS],
        FsKind::Xfs => &[tools::XFS_GROWFS],
        FsKind::Btrfs => &[tools::BTRFS],
    }
}

/// Read the superblock facts and size of an unused device (the file is closed
/// again before returning, so tools can open it exclusively).
pub fn inspect(dev: &Path) -> Result<(FsInfo, u64)> {
    let file = claim::open_unused(dev)?;
    let size = file
        .size()
        .map_err(|e| Error::io("reading the device size", e).device(dev))?;
    let sig = fs_superblock::read(&file)
        .map_err(|e| e.device(dev))?
        .ok_or_else(|| {
            Error::incompatible("no ext2/3/4, xfs or btrfs filesystem found")
                .device(dev)
                .hint("is this the right device? `blkid DEV` shows what it holds")
        })?;
    Ok((sig, size))
}

/// Grow the filesystem on `dev`.
pub fn grow(dev: &Path, opts: &GrowOptions, sink: &EventSink) -> Result<GrowReport> {
    grow_inner(dev, opts, sink).map_err(|e| e.stage(Stage::Grow).device(dev))
}

fn grow_inner(dev: &Path, opts: &GrowOptions, sink: &EventSink) -> Result<GrowReport> {
    let (sig, device_bytes) = inspect(dev)?;
    let tools = tools::locate_all(requirements(sig.kind))?;
    if let Some(b) = &sig.btrfs {
        if b.num_devices != 1 {
            return Err(Error::incompatible(format!(
                "a btrfs filesystem on {} devices; reroot grows single-device btrfs only",
                b.num_devices
            ))
            .hint("grow each device with `btrfs filesystem resize DEVID:max MOUNTPOINT`"));
        }
    }
    let decision = decide(
        &GrowFacts {
            fs_bytes: sig.fs_bytes,
            block_size: sig.block_size,
            device_bytes,
        },
        opts.size,
    )?;
    sink.info(format!(
        "{}: {} {}, {} on a {} device: {}",
        dev.display(),
        sig.kind,
        sig.uuid,
        human(sig.fs_bytes),
        human(device_bytes),
        match decision {
            GrowDecision::AlreadyThatSize { .. } => "already that size".to_owned(),
            GrowDecision::Grow { bytes, .. } => format!("growing to {}", human(bytes)),
        }
    ));
    let mut fsck = None;
    match sig.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            fsck = Some(e2fs::e2fsck_preen(pick(&tools, "e2fsck")?, dev, sink)?);
            if let GrowDecision::Grow { blocks, .. } = decision {
                e2fs::resize2fs(pick(&tools, "resize2fs")?, dev, Some(blocks), sink)?;
            }
        }
        FsKind::Xfs => {
            if let GrowDecision::Grow { blocks, .. } = decision {
                require_block_device(dev, sig.kind)?;
                // nouuid: the source may be mounted with the same UUID.
                let xfs_growfs = pick(&tools, "xfs_growfs")?;
                mounted_grow(dev, "xfs", "nouuid", &xfs_growfs.path, sink, |mnt| {
                    let mut c = xfs_growfs.command();
                    c.arg("-D").arg(blocks.to_string()).arg(mnt);
                    c
                })?;
            }
        }
        FsKind::Btrfs => {
            if let GrowDecision::Grow { bytes, .. } = decision {
                require_block_device(dev, sig.kind)?;
                let devid = sig.btrfs.as_ref().map_or(1, |b| b.devid);
                let btrfs = pick(&tools, "btrfs")?;
                mounted_grow(dev, "btrfs", "", &btrfs.path, sink, |mnt| {
                    let mut c = btrfs.command();
                    c.args(["filesystem", "resize", &format!("{devid}:{bytes}")])
                        .arg(mnt);
                    c
                })
                .map_err(|e| {
                    e.hint(
                        "if the mount was refused while the source is mounted: kernels before \
6.7 refuse two btrfs devices with the same fsid; give the copy a new one first \
(`reroot copy --new-uuid`, or `btrfstune -u DEV`)",
                    )
                })?;
            }
        }
    }
    let (after, _) = inspect(dev)?;
    let new_bytes = after.fs_bytes;
    if let GrowDecision::Grow { bytes, .. } = decision {
        if new_bytes <= sig.fs_bytes {
            return Err(Error::tool(format!(
                "the grow tools reported success but the filesystem is still {new_bytes} bytes"
            )));
        }
        if new_bytes != bytes {
            sink.warn(format!(
                "{} is now {new_bytes} bytes, not {bytes}: the tool rounded down (a last block \
group or allocation group too small to be worth adding is left out)",
                dev.display()
            ));
        }
    }
    Ok(GrowReport {
        device: dev.to_path_buf(),
        fstype: sig.kind,
        uuid: after.uuid,
        block_size: sig.block_size,
        device_bytes,
        old_bytes: sig.fs_bytes,
        new_bytes,
        decision,
        fsck,
        tools,
    })
}

/// `512 MiB` when exact in MiB, else bytes (messages only).
fn human(bytes: u64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// The located tool called `name`.
fn pick<'a>(tools: &'a [Tool], name: &str) -> Result<&'a Tool> {
    tools
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::tool(format!("`{name}` was not located")))
}

fn require_block_device(dev: &Path, kind: FsKind) -> Result<()> {
    if claim::is_block_device(dev)? {
        Ok(())
    } else {
        Err(Error::refused(format!(
            "{kind} grows only while mounted, and this is not a block device"
        ))
        .hint("attach the image first: `losetup --find --show IMAGE`, then grow the loop device"))
    }
}

/// Mount privately, run the command `make` builds for the mount point, unmount.
fn mounted_grow(
    dev: &Path,
    fstype: &str,
    data: &str,
    tool: &Path,
    sink: &EventSink,
    make: impl FnOnce(&Path) -> std::process::Command + Send,
) -> Result<()> {
    let started = Instant::now();
    sink.phase("grow", None, Unit::Percent);
    with_private_mount(dev, fstype, data, &[tool], |mnt| {
        tools::run_ok(&mut make(mnt)).map(|_| ())
    })?;
    sink.phase_end("grow", 100, started.elapsed());
    Ok(())
}
