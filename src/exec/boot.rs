//! Boot readiness of a target, for `check --target` and `migrate`: the
//! target's stack and the root's boot tooling (`probe::boot`), each
//! initramfs image listed with the generator's own lister, judged by
//! `plan::boot`. Reads only; it runs `lsinitramfs`/`lsinitrd`, which is why
//! it is not a probe.

use std::path::Path;
use std::process::Command;

use super::tools;
use crate::plan::boot::{self, BootFinding, Generator};
use crate::plan::preflight::{Category, Finding, Severity};
use crate::probe::SysRoot;
use crate::probe::boot as probe_boot;

/// The lister of `g`'s images, with the image path as its last argument.
fn lister(g: Generator) -> Option<Command> {
    let (name, args): (&str, &[&str]) = match g {
        Generator::InitramfsTools => ("lsinitramfs", &[]),
        Generator::Dracut => ("lsinitrd", &[]),
        Generator::Mkinitcpio => ("lsinitcpio", &[]),
    };
    let mut c = Command::new(tools::find(name)?);
    c.args(args);
    Some(c)
}

/// What the next boot needs when the root moves onto `target_name` (a kernel
/// name: `dm-3`, `md0`), for the root tree mounted at `root`. Empty for a
/// plain disk or partition.
pub fn readiness(sys: &SysRoot, root: &Path, target_name: &str) -> Vec<BootFinding> {
    let layers = probe_boot::target_layers(sys, target_name);
    if layers.is_empty() {
        return Vec::new();
    }
    let mut facts = probe_boot::readiness_facts(root, layers);
    if let Some(g) = facts.generator {
        for img in &mut facts.initramfs {
            let file = root.join(img.path.strip_prefix("/").unwrap_or(&img.path));
            if !file.is_file() {
                // No image at all for this kernel: an empty listing says "lacks everything".
                img.listing = Some(Vec::new());
                continue;
            }
            img.listing = lister(g).and_then(|mut c| {
                let out = tools::run(c.arg(&file)).ok()?;
                out.status
                    .success()
                    .then(|| boot::parse_listing(&out.stdout))
            });
        }
    }
    boot::assess(&facts)
}

/// `findings` as `check` findings: blockers stay blockers, what `--boot`
/// does becomes a warning with its command, what is right is left out.
pub fn as_check_findings(findings: &[BootFinding]) -> Vec<Finding> {
    findings
        .iter()
        .filter_map(|f| {
            let (severity, advice) = match f.severity {
                boot::Severity::Blocker => (Severity::Blocker, f.fix.clone()),
                boot::Severity::Fix => (
                    Severity::Warning,
                    format!("after the pivot, `--boot` does it; by hand: {}", f.fix),
                ),
                boot::Severity::Ok => return None,
            };
            Some(Finding::new(
                severity,
                Category::BootConfig,
                f.what.clone(),
                advice,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::put;

    #[test]
    fn an_lvm_target_without_lvm2_blocks_and_a_missing_image_is_regenerated() {
        let t = tempfile::tempdir().unwrap();
        let sys_base = t.path().join("sys-fixture");
        put(&sys_base, "sys/class/block/dm-0/dm/uuid", "LVM-xyz\n");
        put(&sys_base, "sys/class/block/dm-0/dm/name", "vg-root\n");
        let sys = SysRoot::under(&sys_base);
        let root = t.path().join("root");
        put(&root, "usr/sbin/update-initramfs", "");
        put(&root, "lib/modules/6.1.0-18-amd64/modules.dep", "");
        let out = as_check_findings(&readiness(&sys, &root, "dm-0"));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::Blocker);
        assert_eq!(out[0].advice, "apt-get install lvm2");
        // With lvm2 and its hook, the kernel without an image needs a regeneration.
        put(&root, "usr/sbin/lvm", "");
        put(&root, "usr/share/initramfs-tools/hooks/lvm2", "");
        let out = as_check_findings(&readiness(&sys, &root, "dm-0"));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::Warning);
        assert!(
            out[0].summary.contains("initrd.img-6.1.0-18-amd64"),
            "{out:?}"
        );
        assert!(out[0].advice.contains("update-initramfs -u -k all"));
        // A plain partition needs nothing.
        assert!(readiness(&sys, &root, "sda2").is_empty());
    }
}
