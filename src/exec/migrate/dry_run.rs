//! `migrate --dry-run`: gather this system's facts (the check, what quiesce
//! would do, the source's used-block map, the mount moves of the pivot, what
//! runs from the root now) and hand them to [`crate::plan::migrate::plan`].
//! Reads only.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::{MigrateOptions, PUT_OLD, ensure_root_device, root_mount_dev};
use crate::error::Result;
use crate::exec::check::{self, CheckOptions};
use crate::exec::copy;
use crate::plan::migrate::{self as plan, Facts, MigratePlan, ServiceTool};
use crate::plan::pivot::{self as pplan, MountFacts, Operator};
use crate::plan::preflight::{Category, Severity};
use crate::plan::quiesce::DEFAULT_PREPARE_DIRS;
use crate::probe::SysRoot;
use crate::probe::mountinfo;

fn devno(path: &Path) -> Option<(u32, u32)> {
    let m = fs::metadata(path).ok()?;
    std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type())
        .then(|| (libc::major(m.rdev()), libc::minor(m.rdev())))
}

/// The plan for `o` on this system. Refusals that would stop the migration
/// are in the plan's `blockers`, not errors; errors are only for a system
/// that cannot be examined.
pub fn dry_run(o: &MigrateOptions) -> Result<MigratePlan> {
    let sys = SysRoot::live();
    let root = PathBuf::from("/");
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        warnings.push(
            "not running as root: other users' processes and the devices cannot all be read, \
             so this plan may miss things"
                .to_owned(),
        );
    }
    if let Err(e) = ensure_root_device(&sys, &o.source, &root) {
        blockers.push(e.to_string());
    }
    let copts = CheckOptions {
        root: root.clone(),
        target: Some(o.target.clone()),
        force: o.force,
        ..CheckOptions::default()
    };
    let report = check::check(&sys, &copts)?;
    let prepare: Vec<PathBuf> = DEFAULT_PREPARE_DIRS.iter().map(PathBuf::from).collect();
    let qplan = crate::plan::quiesce::plan(&report, &prepare);
    blockers.extend(
        report
            .blockers()
            .filter(|f| f.category == Category::Target)
            .map(|f| format!("{} ({})", f.summary, f.advice)),
    );
    blockers.extend(
        qplan
            .unresolved
            .iter()
            .filter(|f| f.category != Category::Target)
            .map(|f| format!("{} ({})", f.summary, f.advice)),
    );
    warnings.extend(
        report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .map(|f| format!("{}: {}", f.summary, f.advice)),
    );
    warnings.extend(qplan.notes.iter().cloned());

    let (fstype, fs_bytes, used_bytes) = match fs::File::open(&o.source)
        .ok()
        .and_then(|f| crate::ext::ReadAt::size(&f).ok())
    {
        Some(size) => match copy::source_map(&o.source, size, false, true) {
            Ok((_, m)) => (
                crate::exec::identity::identity_of(&o.source)
                    .ok()
                    .map(|i| i.fstype.to_string()),
                m.fs_bytes,
                Some(m.used_bytes),
            ),
            Err(e) => {
                warnings.push(format!("no used-block map of {}: {e}", o.source.display()));
                (None, None, None)
            }
        },
        None => (None, None, None),
    };
    let target_bytes = fs::File::open(&o.target)
        .ok()
        .and_then(|f| crate::ext::ReadAt::size(&f).ok());

    let staging = o.state_dir.join("stage").join("newroot");
    let put_old = PathBuf::from(PUT_OLD);
    let mounts = match (mountinfo::read(&sys, "self"), devno(&o.target)) {
        (Ok(ms), Some(new_dev)) => pplan::plan_mounts(&MountFacts {
            mounts: &ms,
            stage: &o.state_dir.join("stage"),
            new_dev,
            put_old: &put_old,
        })
        .map_err(|e| e.to_string()),
        (Err(e), _) => Err(e.to_string()),
        (_, None) => Err(format!("{} is not a block device", o.target.display())),
    };
    let restarts = match root_mount_dev(&sys, &root) {
        Ok(((maj, min), _)) => {
            let raw = libc::makedev(maj, min);
            match crate::exec::pivot::scan_old_root(&sys, raw) {
                Ok((holders, _)) => {
                    let me = std::process::id();
                    pplan::plan_restarts(
                        &holders,
                        &Operator {
                            self_pids: vec![me],
                            sid: nix::unistd::getsid(None)
                                .ok()
                                .and_then(|p| u32::try_from(p.as_raw()).ok()),
                            ancestors: Vec::new(),
                        },
                    )
                }
                Err(e) => {
                    warnings.push(format!("cannot list what runs from the root: {e}"));
                    Vec::new()
                }
            }
        }
        Err(_) => Vec::new(),
    };
    let facts = Facts {
        source: o.source.clone(),
        target: o.target.clone(),
        root,
        fstype,
        fs_bytes,
        used_bytes,
        target_bytes,
        tool: Some(ServiceTool::of(&report.init)),
        quiesce_steps: qplan.steps,
        blockers,
        warnings,
        mounts,
        restarts,
        put_old,
        staging,
    };
    Ok(plan::plan(&facts, &o.choices))
}
