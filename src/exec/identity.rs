//! Identity after a block copy: the copy carries the source's UUID and label,
//! so both devices claim to be the root. [`set_new_uuid`] gives a copy a
//! fresh UUID through each filesystem's supported tool, and [`report`] says
//! which identity every device ends with.
//!
//! ext: `tune2fs -U`. Without `metadata_csum_seed`, changing the UUID of a
//! `metadata_csum` filesystem rewrites every checksum, and tune2fs does that
//! only on an unmounted, freshly checked filesystem (valid, no errors,
//! checked after its last mount); otherwise it stops with "Please run e2fsck
//! -f". So reroot runs `e2fsck -f -p` first when that is not already so (or
//! when the journal needs replaying). It does not enable `metadata_csum_seed`
//! (an incompat feature GRUB before 2.06 cannot read). xfs: `xfs_admin -U`;
//! btrfs: `btrfs check --readonly`, then `btrfstune -f -u` (rewrites the fsid
//! in all metadata; works on every kernel). Imports `probe`, `exec::{tools,
//! e2fs, claim, event}`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::claim;
use super::e2fs::{self, FsckOutcome};
use super::event::{EventSink, Unit};
use super::tools::{self, Requirement, Tool};
use crate::error::{Error, Result};
use crate::plan::identity::{self as decide, IdentityFacts};
use crate::plan::preflight::{self, Category};
use crate::probe::device::{self, DevNo};
use crate::probe::fs_superblock::{self, FsInfo, FsKind};
use crate::probe::{SysRoot, cmdline, devlinks, fstab};

/// Which identity a device has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceIdentity {
    /// The device.
    pub device: PathBuf,
    /// Its filesystem.
    pub fstype: FsKind,
    /// Filesystem UUID (what `UUID=` in fstab and `root=UUID=` match).
    pub uuid: String,
    /// Label (what `LABEL=` matches); may be empty.
    pub label: String,
}

/// Read the identity of the filesystem on `dev` (mounted or not).
pub fn identity_of(dev: &Path) -> Result<DeviceIdentity> {
    let file = std::fs::File::open(dev)
        .map_err(|e| Error::io(format!("opening {}", dev.display()), e).device(dev))?;
    let info = read_info(&file, dev)?;
    Ok(DeviceIdentity {
        device: dev.to_path_buf(),
        fstype: info.kind,
        uuid: info.uuid,
        label: info.label,
    })
}

fn read_info(file: &std::fs::File, dev: &Path) -> Result<FsInfo> {
    fs_superblock::read(file)
        .map_err(|e| e.device(dev))?
        .ok_or_else(|| {
            Error::incompatible("no ext2/3/4, xfs or btrfs filesystem found").device(dev)
        })
}

/// Every device's identity after a copy, and what the operator should know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentityReport {
    /// Source first, then the targets.
    pub devices: Vec<DeviceIdentity>,
    /// Groups of devices that share a UUID (an identical copy).
    pub shared_uuids: Vec<Vec<PathBuf>>,
    /// Plain-language consequences.
    pub notes: Vec<String>,
}

/// The identities of `devices` (source first) and what follows from them.
pub fn report(devices: &[&Path]) -> Result<IdentityReport> {
    let ids = devices
        .iter()
        .map(|d| identity_of(d))
        .collect::<Result<Vec<_>>>()?;
    let mut shared: Vec<Vec<PathBuf>> = Vec::new();
    for (i, a) in ids.iter().enumerate() {
        if ids[..i].iter().any(|b| b.uuid == a.uuid) {
            continue; // already grouped with an earlier device
        }
        let group: Vec<PathBuf> = ids[i..]
            .iter()
            .filter(|b| b.uuid == a.uuid)
            .map(|b| b.device.clone())
            .collect();
        if group.len() > 1 {
            shared.push(group);
        }
    }
    let mut notes = Vec::new();
    if shared.is_empty() {
        notes.push(
            "every device has its own UUID: fstab, the kernel command line and the initramfs \
must name the new root by its new UUID (or by label) before the next boot"
                .to_owned(),
        );
    } else {
        notes.push(
            "devices sharing a UUID are twins to the kernel and udev: UUID= and LABEL= may \
resolve to either until one is re-identified (`reroot finish` re-identifies the old root); \
do not reboot with both attached before that"
                .to_owned(),
        );
        if ids.iter().any(|d| d.fstype == FsKind::Xfs) {
            notes.push(
                "xfs refuses to mount a second filesystem with a mounted one's UUID unless \
mounted with -o nouuid"
                    .to_owned(),
            );
        }
        if ids.iter().any(|d| d.fstype == FsKind::Btrfs) {
            notes.push(
                "kernels before 6.7 cannot mount two single-device btrfs with the same fsid at \
once; use --new-uuid there"
                    .to_owned(),
            );
        }
    }
    let labels: Vec<&str> = ids
        .iter()
        .map(|d| d.label.as_str())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.len() > 1 && labels.iter().all(|l| *l == labels[0]) {
        notes.push(format!(
            "all devices carry the label {:?}; relabel the old one before relying on LABEL=",
            labels[0]
        ));
    }
    Ok(IdentityReport {
        devices: ids,
        shared_uuids: shared,
        notes,
    })
}

/// What `set_new_uuid` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UuidChange {
    /// The device re-identified.
    pub device: PathBuf,
    /// Its filesystem.
    pub fstype: FsKind,
    /// UUID before.
    pub old_uuid: String,
    /// UUID after.
    pub new_uuid: String,
    /// How it was done.
    pub method: String,
    /// The check run first, if one was needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsck: Option<FsckOutcome>,
}

/// Check a UUID given by the operator: 8-4-4-4-12 hex digits.
pub fn validate_uuid(s: &str) -> Result<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok && s != "00000000-0000-0000-0000-000000000000" {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(Error::invalid(format!(
            "{s:?} is not a UUID (8-4-4-4-12 hex digits, not all zero)"
        )))
    }
}

/// The tools re-identifying `kind` needs.
pub fn requirements(kind: FsKind) -> &'static [Requirement] {
    match kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => &[tools::TUNE2FS, tools::E2FSCK],
        FsKind::Xfs => &[tools::XFS_ADMIN],
        FsKind::Btrfs => &[tools::BTRFS, tools::BTRFSTUNE],
    }
}

/// Give the (unmounted) filesystem on `dev` a new UUID: `uuid` when given,
/// else a random one. The label is left alone.
pub fn set_new_uuid(dev: &Path, uuid: Option<&str>, sink: &EventSink) -> Result<UuidChange> {
    set_inner(dev, uuid, sink).map_err(|e| e.device(dev))
}

fn set_inner(dev: &Path, uuid: Option<&str>, sink: &EventSink) -> Result<UuidChange> {
    let wanted = uuid.map(validate_uuid).transpose()?;
    let before = {
        let file = claim::open_unused(dev)?;
        read_info(&file, dev)?
    };
    let tools = tools::locate_all(requirements(before.kind))?;
    let pick = |name: &str| -> Result<&Tool> {
        tools
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::tool(format!("`{name}` was not located")))
    };
    let started = Instant::now();
    let mut fsck = None;
    let method = match before.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            let ext = before
                .ext
                .as_ref()
                .ok_or_else(|| Error::corrupt("ext superblock facts missing"))?;
            if ext.stable_inodes() {
                return Err(Error::incompatible(
                    "the filesystem has the stable_inodes feature (inode numbers are bound \
into encryption policies), so its UUID may not change",
                )
                .hint("keep the copy's identity (drop --new-uuid) and re-identify the old root instead"));
            }
            let rewrites = ext.uuid_change_rewrites_checksums();
            if ext.needs_recovery() || (rewrites && !ext.freshly_checked()) {
                // tune2fs would stop with "Please run e2fsck -f on the filesystem".
                fsck = Some(e2fs::e2fsck_preen(pick("e2fsck")?, dev, sink)?);
            }
            let mut cmd = pick("tune2fs")?.command();
            cmd.env_remove("TUNE2FS_FORCE_PROMPT")
                .arg("-U")
                .arg(wanted.as_deref().unwrap_or("random"))
                .arg(dev);
            sink.phase("new-uuid", None, Unit::Items);
            tools::run_ok(&mut cmd)?;
            if rewrites {
                "tune2fs -U (every metadata checksum rewritten)"
            } else if ext.csum_seed() {
                "tune2fs -U (checksum seed kept by metadata_csum_seed)"
            } else {
                "tune2fs -U"
            }
        }
        FsKind::Xfs => {
            let mut cmd = pick("xfs_admin")?.command();
            cmd.arg("-U")
                .arg(wanted.as_deref().unwrap_or("generate"))
                .arg(dev);
            sink.phase("new-uuid", None, Unit::Items);
            tools::run_ok(&mut cmd).map_err(|e| {
                e.hint(
                    "xfs_admin needs a clean log: mount the copy once (mount -o nouuid) and \
unmount it, then retry",
                )
            })?;
            "xfs_admin -U (v5 filesystems record it with the meta_uuid feature)"
        }
        FsKind::Btrfs => {
            sink.phase("new-uuid", None, Unit::Items);
            // btrfstune recommends this check, and a copy should pass it.
            tools::run_ok(
                pick("btrfs")?
                    .command()
                    .args(["check", "--readonly"])
                    .arg(dev),
            )
            .map_err(|e| {
                Error::corrupt(format!("the copy fails `btrfs check --readonly`: {e}"))
                    .hint("the copy is bad: check the source and copy again")
            })?;
            let mut cmd = pick("btrfstune")?.command();
            // -f: no confirmation prompt (stdin is closed anyway).
            match &wanted {
                Some(u) => cmd.args(["-f", "-U", u]),
                None => cmd.args(["-f", "-u"]),
            };
            tools::run_ok(cmd.arg(dev))?;
            "btrfstune -u (fsid rewritten in all metadata)"
        }
    };
    sink.phase_end("new-uuid", 1, started.elapsed());
    let after = {
        let file = std::fs::File::open(dev)
            .map_err(|e| Error::io(format!("opening {}", dev.display()), e))?;
        read_info(&file, dev)?
    };
    if after.uuid == before.uuid || wanted.as_ref().is_some_and(|w| *w != after.uuid) {
        return Err(Error::tool(format!(
            "the UUID is {} after `{method}`, expected {}",
            after.uuid,
            wanted.as_deref().unwrap_or("a new one")
        )));
    }
    sink.info(format!(
        "{}: new UUID {} (was {})",
        dev.display(),
        after.uuid,
        before.uuid
    ));
    Ok(UuidChange {
        device: dev.to_path_buf(),
        fstype: after.kind,
        old_uuid: before.uuid,
        new_uuid: after.uuid,
        method: method.to_owned(),
        fsck,
    })
}

/// What [`reidentify_mounted`] did to the old root right after the pivot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OnlineReidentify {
    /// The old root's device.
    pub device: PathBuf,
    /// Label before and after.
    pub label_before: String,
    /// Label after.
    pub label_after: String,
    /// UUID before.
    pub uuid_before: String,
    /// UUID after (the same when the change waits for the unmount).
    pub uuid_after: String,
    /// Why the UUID could not change yet (it changes when the old root is
    /// unmounted: `finish`, or the shutdown guard).
    pub uuid_deferred: Option<String>,
    /// Commands run and their result.
    pub commands: Vec<String>,
}

/// Re-identify the old root while it is still mounted (right after
/// `pivot_root`): the label `oldroot` at once, and a new UUID when no
/// checksum is seeded from it ([`decide::online_plan`]). Never enables
/// `metadata_csum_seed`. Each change is checked by reading the superblock
/// back; a tool failure is recorded, not fatal (the pivot has happened).
pub fn reidentify_mounted(dev: &Path) -> Result<OnlineReidentify> {
    let read = || -> Result<FsInfo> {
        let file = std::fs::File::open(dev)
            .map_err(|e| Error::io(format!("opening {}", dev.display()), e).device(dev))?;
        read_info(&file, dev)
    };
    let before = read()?;
    let plan = decide::online_plan(before.kind, before.ext.as_ref(), &before.label);
    let mut out = OnlineReidentify {
        device: dev.to_path_buf(),
        label_before: before.label.clone(),
        uuid_before: before.uuid.clone(),
        ..OnlineReidentify::default()
    };
    let tune2fs = tools::find("tune2fs");
    let run = |args: &[&str], out: &mut OnlineReidentify| -> bool {
        let Some(t) = &tune2fs else {
            out.commands.push("tune2fs: not found".to_owned());
            return false;
        };
        let mut argv = vec![t.display().to_string()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv.push(dev.display().to_string());
        let r = crate::exec::services::run_with_timeout(&argv, std::time::Duration::from_secs(60));
        out.commands.push(format!(
            "{}: {}",
            argv.join(" "),
            match &r {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.clone(),
            }
        ));
        r.is_ok()
    };
    if plan.relabel {
        run(&["-L", decide::OLD_LABEL], &mut out);
    }
    match &plan.new_uuid_now {
        Ok(()) => {
            if !run(&["-U", "random"], &mut out) {
                out.uuid_deferred = Some("tune2fs -U failed on the mounted filesystem".into());
            }
        }
        Err(why) => out.uuid_deferred = Some(why.clone()),
    }
    let after = read()?;
    out.label_after = after.label;
    out.uuid_after = after.uuid;
    if out.uuid_deferred.is_none() && out.uuid_after == out.uuid_before {
        out.uuid_deferred = Some("the UUID did not change".into());
    }
    Ok(out)
}

/// Where each name of the root leads now ([`decide::names_status`]): the
/// new root's own label and UUID, root= on the running kernel's command line
/// and the `/` entry of `/etc/fstab` (of the running root, which is the new
/// one after the pivot). `old_dev`/`new_dev` are the two devices;
/// `shutdown_guard`: something re-identifies the old root at shutdown.
pub fn names_now(
    sys: &SysRoot,
    old_dev: &Path,
    new_dev: &Path,
    shutdown_guard: bool,
) -> Vec<decide::NameStatus> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let devno = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|m| (libc::major(m.rdev()), libc::minor(m.rdev())))
    };
    let named = |p: &Path| {
        let id = identity_of(p).ok();
        decide::NamedFs {
            uuid: id.as_ref().map(|i| i.uuid.to_ascii_lowercase()),
            label: id.map(|i| i.label),
            devno: devno(p),
        }
    };
    let tab = fstab::read(Path::new("/etc/fstab")).ok();
    let line = cmdline::read(sys).ok();
    let refs: Vec<_> = decide::root_refs(tab.as_ref(), line.as_ref())
        .into_iter()
        .map(|r| {
            let resolved = match &r.device {
                fstab::DeviceRef::Path(p) => devno(p),
                _ => None,
            };
            (r, resolved)
        })
        .collect();
    decide::names_status(&named(old_dev), &named(new_dev), &refs, shutdown_guard)
}

/// `check`'s boot-configuration findings (issue 6): how `ROOT_DIR/etc/fstab`
/// and, when `root_dir` is `/`, the kernel command line name the root on
/// device `root_dev`, and whether each name survives the move to `target`
/// (with or without `--new-uuid`). Reads only. Empty when the root is not
/// on a block device.
pub fn boot_config_findings(
    sys: &SysRoot,
    root_dir: &Path,
    root_dev: u64,
    target: Option<&Path>,
    new_uuid: bool,
) -> Vec<preflight::Finding> {
    let Some(node) =
        device::kernel_name(sys, DevNo::from_raw(root_dev)).map(|n| sys.dev_dir.join(n))
    else {
        return Vec::new();
    };
    let Ok(source) = devlinks::device_names(sys, &node) else {
        return Vec::new();
    };
    let fstype = std::fs::File::open(&node)
        .ok()
        .and_then(|f| fs_superblock::read(&f).ok().flatten())
        .map(|i| i.kind);
    let target = target.and_then(|t| devlinks::device_names(sys, t).ok());
    let fstab_path = root_dir.join("etc/fstab");
    let tab = fstab_path
        .exists()
        .then(|| fstab::read(&fstab_path).ok())
        .flatten();
    let line = (root_dir == Path::new("/"))
        .then(|| cmdline::read(sys).ok())
        .flatten();
    let refs = decide::root_refs(tab.as_ref(), line.as_ref());
    let facts = IdentityFacts {
        refs: &refs,
        cmdline_read: line.is_some(),
        fstab_read: tab.is_some(),
        source: &source,
        target: target.as_ref(),
        fstype,
        new_uuid,
    };
    decide::decide(&facts)
        .into_iter()
        .map(|f| {
            let severity = match f.severity {
                decide::Severity::Info => preflight::Severity::Info,
                decide::Severity::Warning => preflight::Severity::Warning,
                decide::Severity::Blocker => preflight::Severity::Blocker,
            };
            let mut out = preflight::Finding::new(
                severity,
                Category::BootConfig,
                f.message,
                f.advice.unwrap_or_default(),
            );
            out.paths = match f.origin {
                Some(decide::RefOrigin::Fstab { .. }) => vec![fstab_path.clone()],
                Some(decide::RefOrigin::Cmdline) => vec![sys.proc("cmdline")],
                None => Vec::new(),
            };
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_validated() {
        assert_eq!(
            validate_uuid("2E1FDD67-a13d-45af-b916-94da3daa38b6").unwrap(),
            "2e1fdd67-a13d-45af-b916-94da3daa38b6"
        );
        for bad in [
            "",
            "random",
            "2e1fdd67a13d45afb91694da3daa38b6",
            "2e1fdd67-a13d-45af-b916-94da3daa38b",
            "2e1fdd67-a13d-45af-b916-94da3daa38bg",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(validate_uuid(bad).is_err(), "{bad:?}");
        }
    }
}
