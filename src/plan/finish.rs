//! The decisions of `reroot finish`: whether the new root's `/etc/fstab`
//! names the new root ([`check_fstab`], with the fixed text when a device
//! path points at the old device), and what to regenerate so the machine
//! boots from it ([`plan_boot`]: initramfs generator, GRUB, LVM/md needs,
//! the kernel's `root=`).
//!
//! Pure: facts in (resolved by `exec::finish`), verdicts and commands out.
//! Imports only `probe::mountinfo::unescape`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One fstab line (fields as in fstab(5), octal escapes decoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FstabEntry {
    /// 0-based line number in the file.
    pub line: usize,
    /// First field: `UUID=...`, `LABEL=...`, `/dev/...`.
    pub spec: String,
    /// Second field: the mount point.
    pub file: String,
    /// Third field: the filesystem type.
    pub vfstype: String,
}

/// Decode fstab's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    crate::probe::mountinfo::unescape(s)
}

/// The entries of an fstab (comments and blank lines skipped).
pub fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut f = l.split_whitespace();
            Some(FstabEntry {
                line: i,
                spec: unescape(f.next()?),
                file: unescape(f.next()?),
                vfstype: f.next().unwrap_or("auto").to_owned(),
            })
        })
        .collect()
}

/// What an fstab `spec` refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by", content = "value")]
pub enum Spec {
    /// `UUID=`.
    Uuid(String),
    /// `LABEL=`.
    Label(String),
    /// `PARTUUID=` or `PARTLABEL=`: a partition, not a filesystem.
    Partition(String),
    /// A device path (`/dev/vda1`, `/dev/mapper/vg-root`, `/dev/disk/by-...`).
    Path(PathBuf),
    /// Anything else.
    Other(String),
}

/// Classify an fstab or `root=` spec (quotes around values are removed).
pub fn parse_spec(spec: &str) -> Spec {
    let unq = |v: &str| v.trim_matches('"').to_owned();
    if let Some(v) = spec.strip_prefix("UUID=") {
        Spec::Uuid(unq(v).to_ascii_lowercase())
    } else if let Some(v) = spec.strip_prefix("LABEL=") {
        Spec::Label(unq(v))
    } else if spec.starts_with("PARTUUID=") || spec.starts_with("PARTLABEL=") {
        Spec::Partition(spec.to_owned())
    } else if spec.starts_with('/') {
        Spec::Path(PathBuf::from(spec))
    } else {
        Spec::Other(spec.to_owned())
    }
}

/// The identities `check_fstab` compares against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootIdentity {
    /// UUID of the old root filesystem before finish changed it.
    pub old_uuid: Option<String>,
    /// Label of the old root before finish changed it.
    pub old_label: Option<String>,
    /// UUID of the new root.
    pub new_uuid: Option<String>,
    /// Label of the new root.
    pub new_label: Option<String>,
    /// The old filesystem got a new UUID and label (no `--keep-old-identity`).
    pub old_reidentified: bool,
    /// The new root's device node.
    pub new_device: PathBuf,
    /// When the root entry's spec is a path: whether it resolves to the old
    /// device (`Some(true)`), the new one (`Some(false)`), or neither/unknown.
    pub spec_is_old_device: Option<bool>,
    /// Same, for the new device.
    pub spec_is_new_device: Option<bool>,
}

/// The verdict on fstab's root entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum FstabVerdict {
    /// Names the new root unambiguously.
    Ok {
        /// Why.
        why: String,
    },
    /// Points at the old device: replace its spec.
    Fix {
        /// The spec now.
        old_spec: String,
        /// The spec to write.
        new_spec: String,
        /// The whole file with the fix applied.
        #[serde(skip)]
        new_text: String,
    },
    /// Needs a look by the operator.
    Warn {
        /// What and why.
        why: String,
    },
    /// No entry for `/`.
    NoRootEntry,
}

/// Replace the first field of line `line` of `text` by `new_spec`, keeping
/// everything else byte for byte.
fn replace_spec(text: &str, line: usize, new_spec: &str) -> String {
    let mut out = String::with_capacity(text.len().saturating_add(new_spec.len()));
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i == line {
            let indent = l.len().saturating_sub(l.trim_start().len());
            let body = &l[indent..];
            let end = body.find(char::is_whitespace).unwrap_or(body.len());
            out.push_str(&l[..indent]);
            out.push_str(new_spec);
            out.push_str(&body[end..]);
        } else {
            out.push_str(l);
        }
    }
    out
}

/// The spec to write for the new root: its UUID when that names it alone,
/// else its device path.
fn new_spec(id: &RootIdentity) -> String {
    match &id.new_uuid {
        Some(u) if id.old_reidentified || id.old_uuid.as_deref() != Some(u) => format!("UUID={u}"),
        _ => id.new_device.display().to_string(),
    }
}

/// Check the root entry of the new root's fstab.
pub fn check_fstab(text: &str, id: &RootIdentity) -> FstabVerdict {
    let entries = parse_fstab(text);
    let Some(e) = entries.iter().rev().find(|e| e.file == "/") else {
        return FstabVerdict::NoRootEntry;
    };
    let fix = || FstabVerdict::Fix {
        old_spec: e.spec.clone(),
        new_spec: new_spec(id),
        new_text: replace_spec(text, e.line, &new_spec(id)),
    };
    match parse_spec(&e.spec) {
        Spec::Uuid(u) => {
            let is_new = id.new_uuid.as_deref() == Some(u.as_str());
            let shared = id.old_uuid.as_deref() == Some(u.as_str());
            if is_new && (!shared || id.old_reidentified) {
                FstabVerdict::Ok {
                    why: format!("UUID={u} names only the new root"),
                }
            } else if is_new {
                FstabVerdict::Warn {
                    why: format!(
                        "UUID={u} is carried by both the old and the new root (--keep-old-identity): \
                         a reboot may mount either; change one of them"
                    ),
                }
            } else if shared {
                fix()
            } else {
                FstabVerdict::Warn {
                    why: format!("UUID={u} is neither the old nor the new root's UUID"),
                }
            }
        }
        Spec::Label(l) => {
            let is_new = id.new_label.as_deref() == Some(l.as_str());
            let shared = id.old_label.as_deref() == Some(l.as_str());
            if is_new && (!shared || id.old_reidentified) {
                FstabVerdict::Ok {
                    why: format!("LABEL={l} names only the new root"),
                }
            } else if is_new {
                FstabVerdict::Warn {
                    why: format!(
                        "LABEL={l} is carried by both roots (--keep-old-identity): a reboot may \
                         mount either; relabel one of them"
                    ),
                }
            } else if shared {
                fix()
            } else {
                FstabVerdict::Warn {
                    why: format!("LABEL={l} is neither the old nor the new root's label"),
                }
            }
        }
        Spec::Path(p) => match (id.spec_is_old_device, id.spec_is_new_device) {
            (Some(true), _) => fix(),
            (_, Some(true)) => FstabVerdict::Ok {
                why: format!("{} is the new root device", p.display()),
            },
            _ => FstabVerdict::Warn {
                why: format!(
                    "{} is neither the old nor the new root device (or cannot be resolved now)",
                    p.display()
                ),
            },
        },
        Spec::Partition(s) | Spec::Other(s) => FstabVerdict::Warn {
            why: format!("{s}: check by hand that it names the new root"),
        },
    }
}

/// What tells one process's login session from another's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMark {
    /// Its pid.
    pub pid: u32,
    /// Its cgroup v2 path (`/user.slice/user-0.slice/session-3.scope`).
    pub cgroup: Option<String>,
    /// Its audit login session (`/proc/PID/sessionid`; `u32::MAX` = none).
    pub audit_session: Option<u32>,
}

/// A cgroup that is a logind login session (`.../session-N.scope`).
fn is_login_scope(cgroup: &str) -> bool {
    cgroup
        .rsplit('/')
        .next()
        .is_some_and(|leaf| leaf.starts_with("session-") && leaf.ends_with(".scope"))
}

/// Does `p` belong to the login session of `me` (whose ancestors are
/// `ancestors`)? Yes when it is `me` or one of its ancestors (the shell, the
/// sshd session process), or shares its logind session scope
/// (`session-N.scope`: what logind ends when the user logs out). Only when
/// `me` is in no session scope (no logind) does the audit login session
/// (`/proc/PID/sessionid`) stand in for it. The process session (`setsid`)
/// proves nothing.
pub fn in_own_session(me: &SessionMark, ancestors: &[u32], p: &SessionMark) -> bool {
    if p.pid == me.pid || ancestors.contains(&p.pid) {
        return true;
    }
    match (&me.cgroup, &p.cgroup) {
        (Some(a), Some(b)) if is_login_scope(a) => a == b,
        _ => {
            let audit = me.audit_session.filter(|s| *s != u32::MAX);
            audit.is_some() && p.audit_session == audit
        }
    }
}

/// Who still holds the old root, from the point of view of one login.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseWait {
    /// Holders in the caller's own login session: pid and command.
    pub own: Vec<(u32, String)>,
    /// Every other holder: pid and command.
    pub others: Vec<(u32, String)>,
}

impl ReleaseWait {
    /// Only the caller's own session holds it: logging out releases it.
    pub fn only_own_session(&self) -> bool {
        !self.own.is_empty() && self.others.is_empty()
    }
}

/// Split holders (mark and command) into the caller's own session and the rest.
pub fn split_holders(
    me: &SessionMark,
    ancestors: &[u32],
    holders: &[(SessionMark, String)],
) -> ReleaseWait {
    let mut w = ReleaseWait::default();
    for (m, comm) in holders {
        if in_own_session(me, ancestors, m) {
            w.own.push((m.pid, comm.clone()));
        } else {
            w.others.push((m.pid, comm.clone()));
        }
    }
    w
}

/// What the new root device is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootKind {
    /// A plain disk or partition (or loop device).
    Plain,
    /// An LVM logical volume (device-mapper uuid `LVM-...`).
    Lvm,
    /// An md RAID array.
    Md,
    /// Another device-mapper target (crypt, ...).
    DeviceMapper,
}

/// Facts about the boot setup of the new root (tools found on it, the device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFacts {
    /// Initramfs generators found, by name (`update-initramfs`, `dracut`, `mkinitcpio`).
    pub initramfs_tools: Vec<String>,
    /// GRUB's config command found (`update-grub`, `grub-mkconfig`, `grub2-mkconfig`).
    pub grub_mkconfig: Option<String>,
    /// GRUB's install command found (`grub-install`, `grub2-install`).
    pub grub_install: Option<String>,
    /// The GRUB config file that exists (`/boot/grub/grub.cfg`, `/boot/grub2/grub.cfg`).
    pub grub_cfg: Option<PathBuf>,
    /// What the new root is built on.
    pub root_kind: Option<RootKind>,
    /// `lvm` found on the new root.
    pub has_lvm: bool,
    /// `mdadm` found on the new root.
    pub has_mdadm: bool,
    /// `root=` of the running kernel's command line.
    pub cmdline_root: Option<String>,
    /// Whether `root=` resolves to the old root (by device path, or by a
    /// UUID/LABEL only the old root has after finish).
    pub cmdline_root_is_old: bool,
    /// `--bootloader DEV`.
    pub bootloader: Option<PathBuf>,
}

/// Commands to run (in order) and notes for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPlan {
    /// Each command as argv.
    pub commands: Vec<Vec<String>>,
    /// What the operator must know or do by hand.
    pub notes: Vec<String>,
}

/// What must be regenerated so the machine boots from the new root.
pub fn plan_boot(f: &BootFacts) -> BootPlan {
    let mut p = BootPlan::default();
    let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    match f.root_kind {
        Some(RootKind::Lvm) => {
            p.notes.push(
                "the new root is an LVM volume: the initramfs must activate it (lvm2 hooks)".into(),
            );
            if !f.has_lvm {
                p.notes
                    .push("lvm is not installed on the new root: install lvm2 first".into());
            }
        }
        Some(RootKind::Md) => {
            p.notes.push(
                "the new root is an md array: the initramfs must assemble it (mdadm hooks, mdadm.conf)"
                    .into(),
            );
            if !f.has_mdadm {
                p.notes
                    .push("mdadm is not installed on the new root: install mdadm first".into());
            }
        }
        Some(RootKind::DeviceMapper) => p
            .notes
            .push("the new root is a device-mapper device: the initramfs must set it up".into()),
        _ => {}
    }
    let initramfs = f.initramfs_tools.first().map(String::as_str);
    match initramfs {
        Some("update-initramfs") => p
            .commands
            .push(argv(&["update-initramfs", "-u", "-k", "all"])),
        Some("dracut") => p
            .commands
            .push(argv(&["dracut", "--regenerate-all", "--force"])),
        Some("mkinitcpio") => p.commands.push(argv(&["mkinitcpio", "-P"])),
        _ => p.notes.push(
            "no initramfs generator found (update-initramfs, dracut, mkinitcpio): if the kernel \
             boots with an initramfs, regenerate it by hand"
                .into(),
        ),
    }
    if let (Some(dev), Some(install)) = (&f.bootloader, &f.grub_install) {
        p.commands
            .push(vec![install.clone(), dev.display().to_string()]);
    } else if f.bootloader.is_some() {
        p.notes
            .push("--bootloader given but no grub-install on the new root".into());
    }
    match (&f.grub_mkconfig, &f.grub_cfg) {
        (Some(u), _) if u == "update-grub" => p.commands.push(argv(&["update-grub"])),
        (Some(m), Some(cfg)) => p
            .commands
            .push(vec![m.clone(), "-o".into(), cfg.display().to_string()]),
        (Some(m), None) => p.notes.push(format!(
            "{m} found but no /boot/grub/grub.cfg or /boot/grub2/grub.cfg: regenerate the config by hand"
        )),
        (None, _) => p.notes.push(
            "no GRUB found: make your bootloader pass the new root (root=UUID=... or root=LABEL=...) by hand"
                .into(),
        ),
    }
    if f.bootloader.is_none() && f.grub_install.is_some() {
        p.notes.push(
            "the boot loader itself is not reinstalled: when the new root is on another disk, \
             run finish with --bootloader DISK (or grub-install DISK)"
                .into(),
        );
    }
    if let Some(r) = &f.cmdline_root {
        if f.cmdline_root_is_old {
            p.notes.push(format!(
                "the running kernel was booted with root={r}, which is the old root: the \
                 regenerated boot configuration must point at the new one before a reboot"
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const FSTAB: &str = "# /etc/fstab\n\
        /dev/vda1  /      ext4  errors=remount-ro 0 1\n\
        UUID=1234-ABCD /boot/efi vfat umask=0077 0 1\n\
        \t/dev/vdb1\t/srv\\040data\text4\tdefaults\t0\t2\n";

    fn id() -> RootIdentity {
        RootIdentity {
            old_uuid: Some("aaaa".into()),
            old_label: Some("root".into()),
            new_uuid: Some("aaaa".into()),
            new_label: Some("root".into()),
            old_reidentified: true,
            new_device: "/dev/mapper/vg-root".into(),
            spec_is_old_device: None,
            spec_is_new_device: None,
        }
    }

    #[test]
    fn parses_fstab_with_escapes_and_tabs() {
        let e = parse_fstab(FSTAB);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].spec, "/dev/vda1");
        assert_eq!(e[0].line, 1);
        assert_eq!(e[2].file, "/srv data");
        assert_eq!(parse_spec("UUID=\"AbC\""), Spec::Uuid("abc".into()));
        assert_eq!(parse_spec("LABEL=root"), Spec::Label("root".into()));
        assert!(matches!(parse_spec("PARTUUID=x"), Spec::Partition(_)));
        assert!(matches!(parse_spec("tmpfs"), Spec::Other(_)));
    }

    #[test]
    fn device_path_of_the_old_root_is_fixed_to_the_uuid() {
        let mut i = id();
        i.spec_is_old_device = Some(true);
        let v = check_fstab(FSTAB, &i);
        let FstabVerdict::Fix {
            old_spec,
            new_spec,
            new_text,
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!(old_spec, "/dev/vda1");
        assert_eq!(new_spec, "UUID=aaaa");
        // Only the spec changed; every other byte is as it was.
        assert_eq!(new_text, FSTAB.replacen("/dev/vda1", "UUID=aaaa", 1));
        // With the old identity kept, the UUID is ambiguous: the device path.
        i.old_reidentified = false;
        let FstabVerdict::Fix { new_spec, .. } = check_fstab(FSTAB, &i) else {
            panic!()
        };
        assert_eq!(new_spec, "/dev/mapper/vg-root");
    }

    #[test]
    fn uuid_and_label_entries() {
        let t = "UUID=AAAA / ext4 defaults 0 1\n";
        assert!(matches!(check_fstab(t, &id()), FstabVerdict::Ok { .. }));
        let mut keep = id();
        keep.old_reidentified = false;
        assert!(matches!(check_fstab(t, &keep), FstabVerdict::Warn { .. }));
        // A file-level copy has its own UUID: the old one in fstab is fixed.
        let mut other = id();
        other.new_uuid = Some("bbbb".into());
        let v = check_fstab(t, &other);
        assert!(
            matches!(&v, FstabVerdict::Fix { new_spec, new_text, .. }
                if new_spec == "UUID=bbbb" && new_text == "UUID=bbbb / ext4 defaults 0 1\n"),
            "{v:?}"
        );
        assert!(matches!(
            check_fstab("UUID=cccc / ext4 d 0 1\n", &id()),
            FstabVerdict::Warn { .. }
        ));
        assert!(matches!(
            check_fstab("LABEL=root / ext4 d 0 1\n", &id()),
            FstabVerdict::Ok { .. }
        ));
        assert!(matches!(
            check_fstab("LABEL=root / ext4 d 0 1\n", &keep),
            FstabVerdict::Warn { .. }
        ));
        assert_eq!(check_fstab("# nothing\n", &id()), FstabVerdict::NoRootEntry);
        let mut newdev = id();
        newdev.spec_is_new_device = Some(true);
        assert!(matches!(
            check_fstab("/dev/mapper/vg-root / ext4 d 0 1\n", &newdev),
            FstabVerdict::Ok { .. }
        ));
        assert!(matches!(
            check_fstab("/dev/sdz9 / ext4 d 0 1\n", &id()),
            FstabVerdict::Warn { .. }
        ));
    }

    #[test]
    fn boot_plans() {
        let debian_lvm = BootFacts {
            initramfs_tools: vec!["update-initramfs".into()],
            grub_mkconfig: Some("update-grub".into()),
            grub_install: Some("grub-install".into()),
            grub_cfg: Some("/boot/grub/grub.cfg".into()),
            root_kind: Some(RootKind::Lvm),
            has_lvm: false,
            cmdline_root: Some("/dev/vda1".into()),
            cmdline_root_is_old: true,
            bootloader: Some("/dev/vdb".into()),
            ..BootFacts::default()
        };
        let p = plan_boot(&debian_lvm);
        assert_eq!(
            p.commands,
            vec![
                vec!["update-initramfs", "-u", "-k", "all"],
                vec!["grub-install", "/dev/vdb"],
                vec!["update-grub"],
            ]
        );
        let notes = p.notes.join("\n");
        assert!(
            notes.contains("LVM") && notes.contains("install lvm2"),
            "{notes}"
        );
        assert!(notes.contains("root=/dev/vda1"), "{notes}");

        let fedora_md = BootFacts {
            initramfs_tools: vec!["dracut".into()],
            grub_mkconfig: Some("grub2-mkconfig".into()),
            grub_cfg: Some("/boot/grub2/grub.cfg".into()),
            root_kind: Some(RootKind::Md),
            has_mdadm: true,
            ..BootFacts::default()
        };
        let p = plan_boot(&fedora_md);
        assert_eq!(
            p.commands,
            vec![
                vec!["dracut", "--regenerate-all", "--force"],
                vec!["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"],
            ]
        );
        assert!(p.notes.iter().any(|n| n.contains("md array")));
        assert!(!p.notes.iter().any(|n| n.contains("install mdadm")));

        let bare = plan_boot(&BootFacts::default());
        assert!(bare.commands.is_empty());
        assert!(
            bare.notes
                .iter()
                .any(|n| n.contains("no initramfs generator"))
        );
        assert!(bare.notes.iter().any(|n| n.contains("no GRUB")));
    }

    #[test]
    fn own_session_is_recognised_by_ancestry_scope_or_audit_session() {
        let scope = "/user.slice/user-0.slice/session-3.scope";
        let me = SessionMark {
            pid: 900,
            cgroup: Some(scope.into()),
            audit_session: Some(3),
        };
        let mark = |pid, cg: Option<&str>, audit| SessionMark {
            pid,
            cgroup: cg.map(str::to_owned),
            audit_session: audit,
        };
        let holders = vec![
            (mark(850, None, None), "bash".to_owned()), // parent shell
            (mark(840, Some(scope), Some(3)), "sshd".to_owned()), // same scope
            (
                mark(870, Some("/system.slice/x.service"), Some(3)),
                "tail".to_owned(),
            ), // same audit login, but a service now: not this session's
            (
                mark(
                    880,
                    Some("/user.slice/user-0.slice/session-4.scope"),
                    Some(4),
                ),
                "bash".to_owned(),
            ), // a second login of root
            (
                mark(
                    890,
                    Some("/user.slice/user-0.slice/user@0.service/init.scope"),
                    Some(u32::MAX),
                ),
                "systemd".to_owned(),
            ),
        ];
        let w = split_holders(&me, &[850, 800], &holders);
        let pids = |v: &[(u32, String)]| v.iter().map(|(p, _)| *p).collect::<Vec<_>>();
        assert_eq!(pids(&w.own), [850, 840]);
        assert_eq!(pids(&w.others), [870, 880, 890]);
        assert!(!w.only_own_session());
        let w = split_holders(&me, &[850], &holders[..2]);
        assert!(w.only_own_session());
        // Without logind (no session scope), the audit session stands in.
        let bare = SessionMark {
            pid: 900,
            cgroup: Some("/".into()),
            audit_session: Some(3),
        };
        let w = split_holders(&bare, &[], &holders);
        assert_eq!(pids(&w.own), [840, 870]);
        // Nothing holds it: not "only own session" (nothing to wait for).
        assert!(!split_holders(&me, &[], &[]).only_own_session());
        // No audit session (u32::MAX) and a non-session cgroup prove nothing.
        let anon = mark(1, Some("/system.slice/reroot.service"), Some(u32::MAX));
        let other = mark(2, Some("/system.slice/reroot.service"), Some(u32::MAX));
        assert!(!in_own_session(&anon, &[], &other));
    }
}
