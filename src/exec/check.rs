//! The `check` stage: gather what uses the root ([`rootfs::gather`]), judge
//! it ([`preflight::assess`]) and, with a target, add the target refusals
//! (`plan::target`). Reads only; it lives here because it is a stage entry
//! point that `migrate` and `quiesce` call too.

use std::path::{Path, PathBuf};

use super::{boot, identity};
use crate::error::{Result, Stage};
use crate::plan::preflight::{self, Category, Finding, Report, Severity};
use crate::plan::target;
use crate::probe::SysRoot;
use crate::probe::device::{self, DevNo};
use crate::probe::init;
use crate::probe::rootfs;

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// The mount point of the filesystem to migrate.
    pub root: PathBuf,
    /// The target device, if any.
    pub target: Option<PathBuf>,
    /// Accept a target that carries a signature.
    pub force: bool,
    /// Where `systemd/system` or `openrc` tell the init system (`/run`).
    pub run_dir: PathBuf,
    /// Processes to leave out of the scan besides reroot itself.
    pub skip_pids: Vec<u32>,
    /// The copy will get a new UUID (`--new-uuid`): `UUID=` references break.
    pub new_uuid: bool,
    /// The copy is a transform into this type (`--mkfs`): the target may be
    /// smaller than the root; the data must fit and the boot chain read it.
    pub mkfs: Option<crate::plan::transform::MkfsType>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            target: None,
            force: false,
            run_dir: PathBuf::from("/run"),
            skip_pids: Vec::new(),
            new_uuid: false,
            mkfs: None,
        }
    }
}

/// Run the check. Fails only when the root cannot be examined at all (not a
/// mount point, `/proc` unreadable); everything else is a finding.
pub fn check(sys: &SysRoot, opts: &CheckOptions) -> Result<Report> {
    let facts =
        rootfs::gather(sys, &opts.root, &opts.skip_pids).map_err(|e| e.stage(Stage::Check))?;
    let init = init_of(sys, opts);
    let mut report = preflight::assess(&facts, &init);
    if opts.root == Path::new("/") {
        // The running system: can the pivot restart its daemons?
        if let Some((why, advice)) = crate::plan::services::restart_refusal(&init) {
            report.add(vec![Finding::new(
                Severity::Blocker,
                Category::RunsFromRoot,
                why,
                advice,
            )]);
        }
    }
    if let Some(t) = &opts.target {
        report.add(target_checks(
            sys,
            facts.dev(),
            t,
            opts.force,
            opts.mkfs.is_some(),
        ));
        if let Some(kind) = opts.mkfs {
            let src = facts.root.source.clone();
            report.add(crate::exec::transform::boot::check_findings(
                std::path::Path::new(&src),
                &opts.root,
                t,
                kind,
                opts.new_uuid,
            ));
        }
        if let Some(name) = target_kernel_name(sys, t) {
            report.add(boot::as_check_findings(&boot::readiness(
                sys, &opts.root, &name,
            )));
        }
    }
    report.add(identity::boot_config_findings(
        sys,
        &opts.root,
        facts.dev(),
        opts.target.as_deref(),
        opts.new_uuid,
    ));
    Ok(report)
}

/// The kernel name (`dm-3`) of the block device at `path`, if it is one.
fn target_kernel_name(sys: &SysRoot, path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    if !m.file_type().is_block_device() {
        return None;
    }
    device::kernel_name(sys, DevNo::from_raw(m.rdev()))
}

/// The init system, as `check` sees it.
pub fn init_of(sys: &SysRoot, opts: &CheckOptions) -> init::InitSystem {
    init::detect(sys, &opts.run_dir)
}

fn blocker(summary: String, advice: String, path: &Path) -> Finding {
    let mut f = Finding::new(Severity::Blocker, Category::Target, summary, advice);
    f.paths = vec![path.to_path_buf()];
    f
}

/// The target rules against the root's device (`devices`' checks).
fn target_checks(
    sys: &SysRoot,
    root_dev: u64,
    target: &Path,
    force: bool,
    mkfs: bool,
) -> Vec<Finding> {
    let tgt = match device::inspect(target, sys) {
        Ok(t) => t,
        Err(e) => {
            return vec![blocker(
                format!("target {}: {}", target.display(), e.kind()),
                e.hint_text()
                    .unwrap_or("check the target's path")
                    .to_owned(),
                target,
            )];
        }
    };
    let devno = DevNo::from_raw(root_dev);
    let src = device::kernel_name(sys, devno)
        .map(|n| sys.dev_dir.join(n))
        .ok_or_else(|| format!("the root's device {devno} has no block device in sysfs"))
        .and_then(|node| device::inspect(&node, sys).map_err(|e| e.to_string()));
    match src {
        Ok(src) => {
            // A transform copies files: its own check (`--mkfs`) sizes it.
            let needed = if mkfs { 0 } else { target::needed_bytes(&src) };
            preflight::target_findings(&target::check_targets(&src, &[tgt], needed, force))
        }
        Err(why) => vec![blocker(
            format!(
                "target {}: cannot compare it with the root: {why}",
                target.display()
            ),
            "the target checks need the root on a block device".to_owned(),
            target,
        )],
    }
}
