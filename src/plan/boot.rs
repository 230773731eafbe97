//! Boot readiness for a root on LVM, md RAID or dm-crypt: what the next boot
//! needs (an initramfs that activates or assembles the stack, `mdadm.conf`
//! naming the array, GRUB on every disk the firmware may boot from), judged
//! from probed facts before anything changes ([`assess`]), and the edits
//! `--boot` makes afterwards ([`mdadm_conf_with`], [`grub_install_disks`]).
//!
//! Pure: facts in (gathered by `probe::boot`), findings and edits out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::probe::boot::{BootReadinessFacts, Firmware, Generator, Initramfs, Layer};

/// The command that regenerates the initramfs of every installed kernel.
pub fn regenerate_all(g: Generator) -> Vec<String> {
    let v: &[&str] = match g {
        Generator::InitramfsTools => &["update-initramfs", "-u", "-k", "all"],
        Generator::Dracut => &["dracut", "--regenerate-all", "--force"],
        Generator::Mkinitcpio => &["mkinitcpio", "-P"],
    };
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// How a missing package is installed where generator `g` is at home.
fn install_command(g: Generator, package: &str) -> String {
    match g {
        Generator::InitramfsTools => format!("apt-get install {package}"),
        Generator::Dracut => format!("dnf install {package}"),
        Generator::Mkinitcpio => format!("pacman -S {package}"),
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The next boot would fail and reroot cannot fix it: stop before
    /// anything changes.
    Blocker,
    /// The next boot would fail unless this is done; `--boot` does it after
    /// the pivot, otherwise the operator must run the command.
    Fix,
    /// Already right.
    Ok,
}

/// One thing the next boot needs, and how it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFinding {
    /// How serious it is.
    pub severity: Severity,
    /// What was found, in one sentence.
    pub what: String,
    /// The command that fixes it (empty for [`Severity::Ok`]).
    pub fix: String,
}

impl BootFinding {
    fn new(severity: Severity, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            severity,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Paths that show an initramfs can activate LVM volumes.
const LVM_MARKERS: &[&str] = &["sbin/lvm", "usr/sbin/lvm"];
/// Paths that show an initramfs can assemble md arrays.
const MDADM_MARKERS: &[&str] = &["sbin/mdadm", "usr/sbin/mdadm"];
/// Paths that show an initramfs can open dm-crypt mappings.
const CRYPT_MARKERS: &[&str] = &["sbin/cryptsetup", "usr/sbin/cryptsetup"];
/// Where an initramfs carries its copy of mdadm.conf.
const MDADM_CONF_MARKERS: &[&str] = &["etc/mdadm/mdadm.conf", "etc/mdadm.conf"];

/// Whether `listing` holds any of `markers`.
fn holds(listing: &[String], markers: &[&str]) -> bool {
    listing.iter().any(|p| markers.contains(&p.as_str()))
}

/// What the next boot needs for `f.layers`, each need with its state.
/// Missing tools are blockers (reroot installs no packages); an initramfs or
/// an mdadm.conf that lacks something is a [`Severity::Fix`] (regenerated or
/// written by `--boot`).
pub fn assess(f: &BootReadinessFacts) -> Vec<BootFinding> {
    use Severity::{Blocker, Fix, Ok};
    let mut out = Vec::new();
    if f.layers.is_empty() {
        return out;
    }
    let Some(generator) = f.generator else {
        out.push(BootFinding::new(
            Blocker,
            "no initramfs generator (initramfs-tools, dracut, mkinitcpio) is installed: the \
             kernel cannot assemble a root on LVM, md or dm-crypt without an initramfs",
            "apt-get install initramfs-tools (or your distribution's dracut)",
        ));
        return out;
    };
    let regenerate = regenerate_all(generator).join(" ");
    let need = |out: &mut Vec<BootFinding>,
                have_tools: bool,
                package: &str,
                what: &str,
                markers: &[&str]| {
        if !have_tools {
            out.push(BootFinding::new(
                Blocker,
                format!("the root will be on {what}, but {package} (with its initramfs hook) is not installed"),
                install_command(generator, package),
            ));
            return;
        }
        out.push(BootFinding::new(Ok, format!("{package} is installed"), ""));
        for img in &f.initramfs {
            match &img.listing {
                Some(l) if holds(l, markers) => out.push(BootFinding::new(
                    Ok,
                    format!("{} holds {package}", img.path.display()),
                    "",
                )),
                Some(_) => out.push(BootFinding::new(
                    Fix,
                    format!(
                        "{} (kernel {}) cannot activate {what}: {package} is not in it",
                        img.path.display(),
                        img.kernel
                    ),
                    regenerate.clone(),
                )),
                None => out.push(BootFinding::new(
                    Fix,
                    format!(
                        "{} (kernel {}) could not be listed: regenerate it to be sure it holds {package}",
                        img.path.display(),
                        img.kernel
                    ),
                    regenerate.clone(),
                )),
            }
        }
    };
    if f.initramfs.is_empty() {
        out.push(BootFinding::new(
            Fix,
            "no initramfs image was found for any installed kernel",
            regenerate.clone(),
        ));
    }
    let mut seen_lvm = false;
    let mut seen_md = false;
    let mut seen_crypt = false;
    for layer in &f.layers {
        match layer {
            Layer::Lvm { .. } if !seen_lvm => {
                seen_lvm = true;
                need(&mut out, f.lvm_tools, "lvm2", "LVM", LVM_MARKERS);
            }
            Layer::Md { device, uuid } => {
                if !seen_md {
                    seen_md = true;
                    need(&mut out, f.mdadm_tools, "mdadm", "md RAID", MDADM_MARKERS);
                }
                let conf = f.mdadm_conf.as_deref().unwrap_or("");
                if conf_has_array(conf, uuid) {
                    out.push(BootFinding::new(
                        Ok,
                        format!("mdadm.conf names {} (UUID {uuid})", device.display()),
                        "",
                    ));
                } else {
                    out.push(BootFinding::new(
                        Fix,
                        format!(
                            "mdadm.conf does not name {} (UUID {uuid}): the initramfs may not assemble it",
                            device.display()
                        ),
                        "mdadm --detail --scan >> /etc/mdadm/mdadm.conf",
                    ));
                }
                for img in &f.initramfs {
                    if let Some(l) = &img.listing {
                        if !holds(l, MDADM_CONF_MARKERS) {
                            out.push(BootFinding::new(
                                Fix,
                                format!("{} carries no mdadm.conf", img.path.display()),
                                regenerate.clone(),
                            ));
                        }
                    }
                }
            }
            Layer::Crypt { name } => {
                if !seen_crypt {
                    seen_crypt = true;
                    need(
                        &mut out,
                        f.crypt_tools,
                        "cryptsetup-initramfs",
                        "dm-crypt",
                        CRYPT_MARKERS,
                    );
                }
                let listed = f.crypttab.as_deref().is_some_and(|t| {
                    t.lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .any(|l| l.split_whitespace().next() == Some(name.as_str()))
                });
                if !listed {
                    // reroot does not invent key settings: the operator writes crypttab.
                    out.push(BootFinding::new(
                        Blocker,
                        format!(
                            "/etc/crypttab has no entry for {name}: the initramfs cannot open it"
                        ),
                        format!("add a line for {name} to /etc/crypttab (see crypttab(5))"),
                    ));
                }
            }
            Layer::Lvm { .. } => {}
        }
    }
    out
}

/// The blockers among `findings`.
pub fn blockers(findings: &[BootFinding]) -> impl Iterator<Item = &BootFinding> {
    findings.iter().filter(|f| f.severity == Severity::Blocker)
}

/// The paths in a listing by `lsinitramfs` (one path a line), `lsinitrd`
/// (`ls -l` lines, symlinks as `a -> b`) or `lsinitcpio`, normalised to
/// relative paths without `./`. Header lines and blank lines are dropped.
pub fn parse_listing(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim_end();
            // `ls -l` style: the path is the ninth field, before any ` -> `.
            let path = if line.starts_with(['-', 'd', 'l', 'c', 'b', 'p', 's'])
                && line.split_whitespace().count() >= 9
            {
                let before_arrow = line.split(" -> ").next().unwrap_or(line);
                before_arrow.split_whitespace().nth(8)?
            } else {
                line.trim()
            };
            let p = path.trim_start_matches("./").trim_start_matches('/');
            // Dracut's header ("Image: ...", "====") and empty names are not paths.
            if p.is_empty() || p == "." || p.contains(": ") || p.starts_with('=') {
                return None;
            }
            Some(p.to_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The UUID (`UUID=...`) of an `ARRAY` line, lower-cased.
fn array_uuid(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    if words.next() != Some("ARRAY") {
        return None;
    }
    words
        .find_map(|w| w.strip_prefix("UUID="))
        .map(str::to_ascii_lowercase)
}

/// Whether `conf` has an `ARRAY` line with `uuid` (case-insensitive).
pub fn conf_has_array(conf: &str, uuid: &str) -> bool {
    let uuid = uuid.to_ascii_lowercase();
    conf.lines().filter_map(array_uuid).any(|u| u == uuid)
}

/// `conf` with the `ARRAY` lines of `scan` (the output of `mdadm --detail
/// --scan`) that it lacks appended under a comment, or `None` when it names
/// every array already. Existing lines are kept byte for byte.
pub fn mdadm_conf_with(conf: &str, scan: &str) -> Option<String> {
    let missing: Vec<&str> = scan
        .lines()
        .map(str::trim)
        .filter(|l| array_uuid(l).is_some_and(|u| !conf_has_array(conf, &u)))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut text = conf.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# added by reroot: the arrays the root needs at boot\n");
    for l in missing {
        text.push_str(l);
        text.push('\n');
    }
    Some(text)
}

/// Facts for choosing where GRUB is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrubFacts {
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// Debconf's `grub-pc/install_devices` (comma-separated), where set.
    pub debconf_devices: Option<String>,
    /// Those of `debconf_devices` that exist on this machine (resolved by the
    /// caller), in the same order.
    pub debconf_existing: Vec<PathBuf>,
    /// Whole disks whose boot sector holds GRUB now.
    pub grub_boot_sectors: Vec<PathBuf>,
    /// The whole disks under the new root (each half of a RAID1, the PVs'
    /// disks), so that any of them can boot alone.
    pub root_disks: Vec<PathBuf>,
}

/// Where `grub-install` must run (BIOS: each disk; UEFI: none, the ESP is
/// handled by one plain `grub-install`): the disks debconf names that exist,
/// else the disks whose boot sector holds GRUB, and in both cases every disk
/// under the new root; without duplicates, in that order.
pub fn grub_install_disks(f: &GrubFacts) -> Vec<PathBuf> {
    if f.firmware == Firmware::Uefi {
        return Vec::new();
    }
    let base: &[PathBuf] = if f.debconf_existing.is_empty() {
        &f.grub_boot_sectors
    } else {
        &f.debconf_existing
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for d in base.iter().chain(&f.root_disks) {
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// The `debconf-set-selections` input that records `disks` as GRUB's install
/// devices, so the next `grub-pc` upgrade installs there too.
pub fn debconf_selection(disks: &[PathBuf]) -> String {
    let list: Vec<String> = disks.iter().map(|d| d.display().to_string()).collect();
    format!(
        "grub-pc grub-pc/install_devices multiselect {}\n",
        list.join(", ")
    )
}

/// The `grub-install` argv for one BIOS disk, or for the ESP under UEFI.
pub fn grub_install_argv(install: &str, firmware: Firmware, disk: Option<&Path>) -> Vec<String> {
    let mut v = vec![install.to_owned()];
    match firmware {
        Firmware::Bios => {
            v.push("--target=i386-pc".into());
            if let Some(d) = disk {
                v.push(d.display().to_string());
            }
        }
        Firmware::Uefi => {
            v.push("--target=x86_64-efi".into());
            v.push("--efi-directory=/boot/efi".into());
        }
    }
    v
}

/// One thing `--boot` does on the new root, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum BootAction {
    /// Replace a file's text (written beside it, then renamed over it).
    WriteFile {
        /// The file on the new root.
        path: PathBuf,
        /// Its new text.
        text: String,
        /// The shell command an operator would type for the same edit.
        by_hand: String,
    },
    /// Run a command.
    Run {
        /// The command.
        argv: Vec<String>,
        /// Its standard input, if any.
        stdin: Option<String>,
    },
}

impl BootAction {
    /// The action as one shell line, for plans and for operators without `--boot`.
    pub fn shell(&self) -> String {
        match self {
            Self::WriteFile { by_hand, .. } => by_hand.clone(),
            Self::Run { argv, stdin: None } => argv.join(" "),
            Self::Run {
                argv,
                stdin: Some(input),
            } => format!("echo '{}' | {}", input.trim_end(), argv.join(" ")),
        }
    }
}

/// What [`boot_actions`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootActionFacts {
    /// The generator in use.
    pub generator: Option<Generator>,
    /// The output of `mdadm --detail --scan` when the root is on md.
    pub md_scan: Option<String>,
    /// Where mdadm.conf is (`/etc/mdadm/mdadm.conf` on Debian).
    pub mdadm_conf_path: PathBuf,
    /// Its text now (empty when absent).
    pub mdadm_conf: String,
    /// `update-grub`, or `grub-mkconfig`/`grub2-mkconfig` with its output file.
    pub grub_mkconfig: Option<(String, Option<PathBuf>)>,
    /// `grub-install` or `grub2-install`, when installed.
    pub grub_install: Option<String>,
    /// Where GRUB goes.
    pub grub: GrubFacts,
}

/// Everything `--boot` does, in order: mdadm.conf, the initramfs of every
/// kernel, GRUB's configuration, GRUB on every boot disk (both halves of a
/// RAID1) or the ESP, and debconf's record of those disks.
pub fn boot_actions(f: &BootActionFacts) -> Vec<BootAction> {
    let mut out = Vec::new();
    if let Some(scan) = &f.md_scan {
        if let Some(text) = mdadm_conf_with(&f.mdadm_conf, scan) {
            out.push(BootAction::WriteFile {
                path: f.mdadm_conf_path.clone(),
                text,
                by_hand: format!("mdadm --detail --scan >> {}", f.mdadm_conf_path.display()),
            });
        }
    }
    if let Some(g) = f.generator {
        out.push(BootAction::Run {
            argv: regenerate_all(g),
            stdin: None,
        });
    }
    match &f.grub_mkconfig {
        Some((cmd, _)) if cmd == "update-grub" => out.push(BootAction::Run {
            argv: vec![cmd.clone()],
            stdin: None,
        }),
        Some((cmd, Some(cfg))) => out.push(BootAction::Run {
            argv: vec![cmd.clone(), "-o".into(), cfg.display().to_string()],
            stdin: None,
        }),
        _ => {}
    }
    if let Some(install) = &f.grub_install {
        match f.grub.firmware {
            Firmware::Uefi => out.push(BootAction::Run {
                argv: grub_install_argv(install, Firmware::Uefi, None),
                stdin: None,
            }),
            Firmware::Bios => {
                let disks = grub_install_disks(&f.grub);
                for d in &disks {
                    out.push(BootAction::Run {
                        argv: grub_install_argv(install, Firmware::Bios, Some(d)),
                        stdin: None,
                    });
                }
                if f.grub.debconf_devices.is_some() && !disks.is_empty() {
                    out.push(BootAction::Run {
                        argv: vec!["debconf-set-selections".into()],
                        stdin: Some(debconf_selection(&disks)),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(kernel: &str, listing: Option<&[&str]>) -> Initramfs {
        Initramfs {
            kernel: kernel.into(),
            path: format!("/boot/initrd.img-{kernel}").into(),
            listing: listing.map(|l| l.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    fn lvm() -> Layer {
        Layer::Lvm {
            name: "sys/root".into(),
        }
    }

    fn md() -> Layer {
        Layer::Md {
            device: "/dev/md0".into(),
            uuid: "0a1b2c3d:4e5f6071:8293a4b5:c6d7e8f9".into(),
        }
    }

    fn sev(f: &[BootFinding]) -> Vec<Severity> {
        f.iter().map(|f| f.severity).collect()
    }

    #[test]
    fn a_plain_target_needs_nothing() {
        assert!(assess(&BootReadinessFacts::default()).is_empty());
    }

    #[test]
    fn lvm_without_lvm2_is_a_blocker_with_the_install_command() {
        let f = BootReadinessFacts {
            layers: vec![lvm()],
            generator: Some(Generator::InitramfsTools),
            initramfs: vec![img("6.1.0-18-amd64", Some(&["usr/sbin/lvm"]))],
            ..Default::default()
        };
        let out = assess(&f);
        assert_eq!(sev(&out), vec![Severity::Blocker]);
        assert_eq!(out[0].fix, "apt-get install lvm2");
        assert_eq!(blockers(&out).count(), 1);
    }

    #[test]
    fn lvm_missing_from_one_initramfs_is_fixed_by_regenerating() {
        let f = BootReadinessFacts {
            layers: vec![lvm()],
            generator: Some(Generator::InitramfsTools),
            lvm_tools: true,
            initramfs: vec![
                img("6.1.0-17-amd64", Some(&["usr/bin/busybox"])),
                img("6.1.0-18-amd64", Some(&["usr/sbin/lvm"])),
                img("6.1.0-19-amd64", None),
            ],
            ..Default::default()
        };
        let out = assess(&f);
        assert_eq!(
            sev(&out),
            vec![Severity::Ok, Severity::Fix, Severity::Ok, Severity::Fix]
        );
        assert!(out[1].what.contains("6.1.0-17-amd64"), "{:?}", out[1]);
        assert_eq!(out[1].fix, "update-initramfs -u -k all");
        assert!(out[3].what.contains("could not be listed"));
        assert_eq!(blockers(&out).count(), 0);
    }

    #[test]
    fn md_needs_mdadm_conf_with_its_uuid_in_any_case() {
        let mut f = BootReadinessFacts {
            layers: vec![md()],
            generator: Some(Generator::Dracut),
            mdadm_tools: true,
            mdadm_conf: Some("DEVICE partitions\n".into()),
            initramfs: vec![img("6.8.0", Some(&["usr/sbin/mdadm", "etc/mdadm.conf"]))],
            ..Default::default()
        };
        let out = assess(&f);
        let fix: Vec<_> = out.iter().filter(|f| f.severity == Severity::Fix).collect();
        assert_eq!(fix.len(), 1, "{out:?}");
        assert!(fix[0].what.contains("mdadm.conf does not name /dev/md0"));
        f.mdadm_conf =
            Some("ARRAY /dev/md0 metadata=1.2 UUID=0A1B2C3D:4E5F6071:8293A4B5:C6D7E8F9\n".into());
        assert!(assess(&f).iter().all(|f| f.severity == Severity::Ok));
    }

    #[test]
    fn an_initramfs_without_mdadm_conf_is_regenerated() {
        let f = BootReadinessFacts {
            layers: vec![md()],
            generator: Some(Generator::InitramfsTools),
            mdadm_tools: true,
            mdadm_conf: Some("ARRAY /dev/md0 UUID=0a1b2c3d:4e5f6071:8293a4b5:c6d7e8f9\n".into()),
            initramfs: vec![img("6.1", Some(&["usr/sbin/mdadm"]))],
            ..Default::default()
        };
        let out = assess(&f);
        assert!(
            out.iter()
                .any(|f| f.severity == Severity::Fix && f.what.contains("carries no mdadm.conf")),
            "{out:?}"
        );
    }

    #[test]
    fn no_generator_blocks_any_stack() {
        let f = BootReadinessFacts {
            layers: vec![lvm(), md()],
            lvm_tools: true,
            mdadm_tools: true,
            ..Default::default()
        };
        let out = assess(&f);
        assert_eq!(sev(&out), vec![Severity::Blocker]);
        assert!(out[0].what.contains("no initramfs generator"));
    }

    #[test]
    fn lvm_on_md_checks_both_once() {
        let f = BootReadinessFacts {
            layers: vec![lvm(), md(), lvm()],
            generator: Some(Generator::Mkinitcpio),
            ..Default::default()
        };
        let out = assess(&f);
        let blockers: Vec<_> = blockers(&out).map(|f| f.fix.as_str()).collect();
        assert_eq!(blockers, vec!["pacman -S lvm2", "pacman -S mdadm"]);
        // No initramfs at all: one regeneration finding.
        assert!(out.iter().any(|f| f.what.contains("no initramfs image")));
    }

    #[test]
    fn crypt_needs_a_crypttab_entry() {
        let mut f = BootReadinessFacts {
            layers: vec![Layer::Crypt {
                name: "root_crypt".into(),
            }],
            generator: Some(Generator::InitramfsTools),
            crypt_tools: true,
            crypttab: Some("# <target> <source>\nswap /dev/sdb2 /dev/urandom swap\n".into()),
            initramfs: vec![img("6.1", Some(&["usr/sbin/cryptsetup"]))],
            ..Default::default()
        };
        assert_eq!(blockers(&assess(&f)).count(), 1);
        f.crypttab = Some("root_crypt UUID=abcd none luks\n".into());
        assert_eq!(blockers(&assess(&f)).count(), 0);
    }

    #[test]
    fn listings_of_each_tool_parse_to_relative_paths() {
        let lsinitramfs = ".\nusr\nusr/sbin/lvm\n./etc/mdadm/mdadm.conf\n\n";
        assert_eq!(
            parse_listing(lsinitramfs),
            vec!["etc/mdadm/mdadm.conf", "usr", "usr/sbin/lvm"]
        );
        let lsinitrd = "Image: /boot/initramfs-6.8.img: 40M\n\
            ========================================================================\n\
            drwxr-xr-x  12 root root  0 Jan  1 00:00 .\n\
            -rwxr-xr-x   1 root root  2 Jan  1 00:00 usr/sbin/mdadm\n\
            lrwxrwxrwx   1 root root  7 Jan  1 00:00 sbin -> usr/sbin\n";
        assert_eq!(parse_listing(lsinitrd), vec!["sbin", "usr/sbin/mdadm"]);
    }

    #[test]
    fn mdadm_conf_gets_only_the_missing_arrays() {
        let conf = "HOMEHOST <system>\nARRAY /dev/md/boot metadata=1.2 UUID=aaaa:bbbb:cccc:dddd";
        let scan = "ARRAY /dev/md/boot metadata=1.2 name=h:boot UUID=AAAA:bbbb:cccc:dddd\n\
                    ARRAY /dev/md/root metadata=1.2 name=h:root UUID=1111:2222:3333:4444\n";
        let new = mdadm_conf_with(conf, scan).expect("one array is missing");
        assert!(new.starts_with(conf), "existing text kept byte for byte");
        assert_eq!(new.matches("ARRAY").count(), 2, "{new}");
        assert!(new.ends_with("UUID=1111:2222:3333:4444\n"));
        assert!(
            !new.contains("name=h:boot"),
            "the known array is not repeated"
        );
        assert_eq!(mdadm_conf_with(&new, scan), None);
        // An empty or absent file gets every array.
        let fresh = mdadm_conf_with("", scan).unwrap();
        assert_eq!(fresh.matches("\nARRAY").count(), 2);
    }

    #[test]
    fn grub_goes_to_debconf_disks_and_every_half_of_the_root() {
        let mut f = GrubFacts {
            firmware: Firmware::Bios,
            debconf_devices: Some("/dev/disk/by-id/ata-OLD".into()),
            debconf_existing: vec!["/dev/disk/by-id/ata-OLD".into()],
            grub_boot_sectors: vec!["/dev/sda".into()],
            root_disks: vec!["/dev/sdb".into(), "/dev/sdc".into(), "/dev/sdb".into()],
        };
        assert_eq!(
            grub_install_disks(&f),
            vec![
                PathBuf::from("/dev/disk/by-id/ata-OLD"),
                "/dev/sdb".into(),
                "/dev/sdc".into()
            ]
        );
        // Debconf names nothing that exists: the disks that boot GRUB now.
        f.debconf_existing.clear();
        assert_eq!(
            grub_install_disks(&f),
            vec![
                PathBuf::from("/dev/sda"),
                "/dev/sdb".into(),
                "/dev/sdc".into()
            ]
        );
        f.firmware = Firmware::Uefi;
        assert!(grub_install_disks(&f).is_empty());
        assert_eq!(
            grub_install_argv("grub-install", Firmware::Uefi, None),
            vec![
                "grub-install",
                "--target=x86_64-efi",
                "--efi-directory=/boot/efi"
            ]
        );
        assert_eq!(
            grub_install_argv("grub-install", Firmware::Bios, Some(Path::new("/dev/sdb"))),
            vec!["grub-install", "--target=i386-pc", "/dev/sdb"]
        );
        assert_eq!(
            debconf_selection(&["/dev/sda".into(), "/dev/sdb".into()]),
            "grub-pc grub-pc/install_devices multiselect /dev/sda, /dev/sdb\n"
        );
    }

    #[test]
    fn boot_actions_for_a_raid1_root_on_bios() {
        let f = BootActionFacts {
            generator: Some(Generator::InitramfsTools),
            md_scan: Some("ARRAY /dev/md/root metadata=1.2 name=h:root UUID=1:2:3:4\n".into()),
            mdadm_conf_path: "/etc/mdadm/mdadm.conf".into(),
            mdadm_conf: "HOMEHOST <system>\n".into(),
            grub_mkconfig: Some(("update-grub".into(), None)),
            grub_install: Some("grub-install".into()),
            grub: GrubFacts {
                firmware: Firmware::Bios,
                debconf_devices: Some("/dev/vda".into()),
                debconf_existing: vec!["/dev/vda".into()],
                grub_boot_sectors: vec![],
                root_disks: vec!["/dev/vdb".into()],
            },
        };
        let lines: Vec<String> = boot_actions(&f).iter().map(BootAction::shell).collect();
        assert_eq!(
            lines,
            vec![
                "mdadm --detail --scan >> /etc/mdadm/mdadm.conf",
                "update-initramfs -u -k all",
                "update-grub",
                "grub-install --target=i386-pc /dev/vda",
                "grub-install --target=i386-pc /dev/vdb",
                "echo 'grub-pc grub-pc/install_devices multiselect /dev/vda, /dev/vdb' | debconf-set-selections",
            ]
        );
        let BootAction::WriteFile { text, .. } = &boot_actions(&f)[0] else {
            panic!("the first action writes mdadm.conf")
        };
        assert!(text.starts_with("HOMEHOST <system>\n") && text.contains("UUID=1:2:3:4"));
        // Already named: no write; UEFI: one grub-install on the ESP, no debconf.
        let mut g = f.clone();
        g.mdadm_conf = text.clone();
        g.grub.firmware = Firmware::Uefi;
        g.grub_mkconfig = Some(("grub2-mkconfig".into(), Some("/boot/grub2/grub.cfg".into())));
        let lines: Vec<String> = boot_actions(&g).iter().map(BootAction::shell).collect();
        assert_eq!(
            lines,
            vec![
                "update-initramfs -u -k all",
                "grub2-mkconfig -o /boot/grub2/grub.cfg",
                "grub-install --target=x86_64-efi --efi-directory=/boot/efi",
            ]
        );
    }
}
