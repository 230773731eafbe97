//! Boot readiness of a target, for `check --target` and `migrate`: the
//! target's stack and the root's boot tooling (`probe::boot`), each
//! initramfs image listed with the generator's own lister, judged by
//! `plan::boot`. Reads only; it runs `lsinitramfs`/`lsinitrd`, which is why
//! it is not a probe.

use std::path::Path;
use std::process::Command;

use super::tools;
use crate::error::{Error, Result};
use crate::plan::boot::{
    self, BootAction, BootActionFacts, BootFinding, Generator, GrubFacts, Layer,
};
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

/// What `--boot` would do on the root tree at `root` (normally `/`, after
/// the pivot) for the new root on `target_name`: gathers the facts (runs
/// `mdadm --detail --scan` when the root is on md) and plans.
pub fn actions(sys: &SysRoot, root: &Path, target_name: &str) -> Vec<BootAction> {
    let layers = probe_boot::target_layers(sys, target_name);
    let facts = probe_boot::readiness_facts(root, layers.clone());
    let on_md = layers.iter().any(|l| matches!(l, Layer::Md { .. }));
    let md_scan = if on_md {
        tools::find("mdadm").and_then(|m| {
            let out = tools::run(Command::new(m).args(["--detail", "--scan"])).ok()?;
            out.status.success().then_some(out.stdout)
        })
    } else {
        None
    };
    let mdadm_conf_path = ["etc/mdadm/mdadm.conf", "etc/mdadm.conf"]
        .iter()
        .map(|r| root.join(r))
        .find(|p| p.is_file())
        .unwrap_or_else(|| root.join("etc/mdadm/mdadm.conf"));
    let first = |names: &[&str]| {
        names
            .iter()
            .find(|n| tools::find(n).is_some())
            .map(|n| (*n).to_owned())
    };
    let grub_cfg = ["boot/grub/grub.cfg", "boot/grub2/grub.cfg"]
        .iter()
        .find(|r| root.join(r).is_file())
        .map(|r| Path::new("/").join(r));
    let debconf: Vec<_> = probe_boot::grub_debconf_devices(root);
    let grub = GrubFacts {
        firmware: probe_boot::firmware(sys),
        debconf_devices: (!debconf.is_empty()).then(|| {
            debconf
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }),
        debconf_existing: debconf.into_iter().filter(|d| d.exists()).collect(),
        grub_boot_sectors: probe_boot::grub_boot_disks(sys),
        root_disks: probe_boot::root_disks(sys, target_name),
    };
    boot::boot_actions(&BootActionFacts {
        generator: facts.generator,
        md_scan,
        mdadm_conf: std::fs::read_to_string(&mdadm_conf_path).unwrap_or_default(),
        mdadm_conf_path,
        grub_mkconfig: first(&["update-grub", "grub-mkconfig", "grub2-mkconfig"])
            .map(|c| (c, grub_cfg)),
        grub_install: first(&["grub-install", "grub2-install"]),
        grub,
    })
}

/// Carry out `actions` in order, stopping at the first that fails (a later
/// step, GRUB on the disks, must not run on a half-made initramfs). Returns
/// the shell form of each action done.
pub fn apply(actions: &[BootAction]) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for a in actions {
        match a {
            BootAction::WriteFile { path, text, .. } => {
                let tmp = path.with_extension("reroot-new");
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                }
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            }
            BootAction::Run { argv, stdin } => {
                let Some((prog, args)) = argv.split_first() else {
                    continue;
                };
                let path = tools::find(prog).ok_or_else(|| {
                    Error::tool(format!("{prog} is not installed"))
                        .hint(format!("install it, then run: {}", a.shell()))
                })?;
                let mut cmd = Command::new(path);
                cmd.args(args);
                match stdin {
                    None => {
                        tools::run_ok(&mut cmd)?;
                    }
                    Some(input) => run_with_stdin(&mut cmd, input)?,
                }
            }
        }
        done.push(a.shell());
    }
    Ok(done)
}

/// Run `cmd` with `input` on its standard input; fail on a non-zero exit.
fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let what = tools::describe(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting {what}"), e))?;
    if let Some(mut s) = child.stdin.take() {
        s.write_all(input.as_bytes())
            .map_err(|e| Error::io(format!("writing to {what}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("waiting for {what}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::tool(format!(
            "`{what}` failed ({}): {}",
            out.status,
            tools::tail(&String::from_utf8_lossy(&out.stderr), 3)
        )))
    }
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

    #[test]
    fn apply_writes_files_and_runs_commands_in_order_and_stops_at_a_failure() {
        let t = tempfile::tempdir().unwrap();
        let conf = t.path().join("etc/mdadm/mdadm.conf");
        let marker = t.path().join("ran");
        let acts = vec![
            BootAction::WriteFile {
                path: conf.clone(),
                text: "ARRAY /dev/md/root UUID=1:2:3:4\n".into(),
                by_hand: "mdadm --detail --scan >> /etc/mdadm/mdadm.conf".into(),
            },
            BootAction::Run {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    format!("cat > {}", marker.display()),
                ],
                stdin: Some("hello\n".into()),
            },
            BootAction::Run {
                argv: vec!["false".into()],
                stdin: None,
            },
            BootAction::Run {
                argv: vec!["touch".into(), t.path().join("never").display().to_string()],
                stdin: None,
            },
        ];
        let e = apply(&acts).unwrap_err();
        assert!(e.to_string().contains("false"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "ARRAY /dev/md/root UUID=1:2:3:4\n"
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "hello\n");
        assert!(
            !t.path().join("never").exists(),
            "nothing runs after a failure"
        );
        assert_eq!(apply(&acts[..2]).unwrap().len(), 2);
    }
}
