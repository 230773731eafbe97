//! What `check --mkfs TYPE` adds: does the used data fit a new TYPE
//! filesystem on the target (bytes and inodes), can the running kernel
//! mount TYPE, does the initramfs carry its module, and what GRUB needs.
//! Findings only; nothing changes. Imports `plan::{transform, preflight}`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exec::tools;
use crate::plan::preflight::{Category, Finding, Severity};
use crate::plan::transform::{self as plan, MkfsType};

fn finding(sev: Severity, cat: Category, summary: String, advice: String, p: &Path) -> Finding {
    let mut f = Finding::new(sev, cat, summary, advice);
    f.paths = vec![p.to_path_buf()];
    f
}

/// The kernel release (`uname -r`).
fn release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Built into the kernel, or shipped as a module for it.
fn kernel_has(kind: MkfsType, rel: &str) -> bool {
    let name = kind.name();
    let builtin_or_loaded = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(name)));
    let moddir = PathBuf::from(format!("/lib/modules/{rel}"));
    let listed = |f: &str| {
        std::fs::read_to_string(moddir.join(f)).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains(&format!("/fs/{name}/{name}.ko")))
        })
    };
    builtin_or_loaded || listed("modules.builtin") || listed("modules.dep")
}

/// The initramfs of this kernel and whether it holds the module: `None`
/// when there is none or no tool to list it.
fn initramfs_has(kind: MkfsType, rel: &str) -> Option<(PathBuf, bool)> {
    let img = [
        format!("/boot/initrd.img-{rel}"),
        format!("/boot/initramfs-{rel}.img"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())?;
    let lister = ["lsinitramfs", "lsinitrd"]
        .into_iter()
        .find_map(tools::find)?;
    let out = tools::run(Command::new(lister).arg(&img)).ok()?;
    let name = kind.name();
    let has = out
        .stdout
        .lines()
        .any(|l| l.ends_with(&format!("/{name}.ko")) || l.contains(&format!("/{name}.ko.")));
    Some((img, has))
}

/// Findings for a transform of the root mounted at `root` (device `src`)
/// into `kind` on `target`.
pub fn check_findings(
    src: &Path,
    root: &Path,
    target: &Path,
    kind: MkfsType,
    new_uuid: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let opts = super::TransformOptions {
        kind,
        new_uuid,
        ..super::TransformOptions::default()
    };
    match super::preflight(src, root, target, &opts) {
        Ok(fit) => out.push(finding(
            Severity::Info,
            Category::Target,
            format!(
                "a new {kind} on {} ({} MB) holds the root's data: about {} MB needed",
                target.display(),
                fit.target_bytes / 1_000_000,
                fit.needed_bytes / 1_000_000
            ),
            "the transform copies the files, so the target may be smaller than the root".into(),
            target,
        )),
        Err(e) => out.push(finding(
            Severity::Blocker,
            Category::Target,
            format!("--mkfs {kind}: {}", e.kind()),
            e.hint_text().unwrap_or("use a larger target").to_owned(),
            target,
        )),
    }
    let Some(rel) = release() else {
        return out;
    };
    if !kernel_has(kind, &rel) {
        out.push(finding(
            Severity::Blocker,
            Category::Filesystem,
            format!("the running kernel ({rel}) has no {kind} support"),
            format!("install the kernel's {kind} module (or a kernel with it); the pivot mounts the new root with this kernel"),
            target,
        ));
    }
    match initramfs_has(kind, &rel) {
        Some((img, true)) => out.push(finding(
            Severity::Info,
            Category::BootConfig,
            format!("{} holds the {kind} module", img.display()),
            plan::boot_needs(kind).into(),
            &img,
        )),
        Some((img, false)) if !kind.is_ext() => out.push(finding(
            Severity::Warning,
            Category::BootConfig,
            format!(
                "{} has no {kind} module: the next boot could not mount the new root",
                img.display()
            ),
            format!(
                "after the pivot, install {} on the new root and rebuild the initramfs \
                 (`update-initramfs -u` or `dracut -f`); {}",
                kind.package(),
                plan::boot_needs(kind)
            ),
            &img,
        )),
        _ => out.push(finding(
            if kind.is_ext() {
                Severity::Info
            } else {
                Severity::Warning
            },
            Category::BootConfig,
            format!("the initramfs could not be inspected for {kind} support"),
            plan::boot_needs(kind).into(),
            target,
        )),
    }
    out
}
