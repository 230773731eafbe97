//! Will the system still find its root after the move? Given how fstab and
//! the kernel command line name the root, the names of the source and the
//! target, and whether the copy gets a new UUID, decide per reference
//! whether it keeps working or breaks, and what to change.
//!
//! A block copy carries the filesystem's UUID and label, so `UUID=` and
//! `LABEL=` keep working with an identical copy (and `UUID=` breaks with
//! `--new-uuid`). Device paths and numbers name the device, which changes.
//! `PARTUUID=`/`PARTLABEL=` name the partition table entry, not the
//! filesystem: a block copy does not carry them, so they break unless the
//! target partition has the same one. Pure; imports `probe` types only.

use crate::probe::cmdline::Cmdline;
use crate::probe::device::DevNo;
use crate::probe::devlinks::DeviceNames;
use crate::probe::fs_superblock::{ExtDetails, FsKind};
use crate::probe::fstab::{DeviceRef, Fstab};

/// Where a reference to the root was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "in", rename_all = "kebab-case")]
pub enum RefOrigin {
    /// `/etc/fstab`, the entry for `/`.
    Fstab {
        /// 1-based line number.
        line: usize,
    },
    /// `root=` on the kernel command line.
    Cmdline,
}

/// One reference to the root device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootRef {
    /// Where it is.
    pub origin: RefOrigin,
    /// What it names.
    pub device: DeviceRef,
}

/// The references to the root in fstab (its `/` entry) and on the kernel
/// command line (`root=`), for whichever of the two was read.
pub fn root_refs(fstab: Option<&Fstab>, cmdline: Option<&Cmdline>) -> Vec<RootRef> {
    let mut refs = Vec::new();
    if let Some(e) = fstab.and_then(Fstab::root_entry) {
        refs.push(RootRef {
            origin: RefOrigin::Fstab { line: e.line },
            device: e.device.clone(),
        });
    }
    if let Some(device) = cmdline.and_then(Cmdline::root) {
        refs.push(RootRef {
            origin: RefOrigin::Cmdline,
            device,
        });
    }
    refs
}

/// Everything the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct IdentityFacts<'a> {
    /// References to the root (fstab's `/` entry, `root=`).
    pub refs: &'a [RootRef],
    /// The kernel command line was read (so no `Cmdline` ref means no `root=`).
    pub cmdline_read: bool,
    /// fstab was read (so no `Fstab` ref means no entry for `/`).
    pub fstab_read: bool,
    /// The root's current device.
    pub source: &'a DeviceNames,
    /// The device it moves to, when known. Its `fs_uuid`/`fs_label` are
    /// ignored: after the copy they are the source's (or a new UUID).
    pub target: Option<&'a DeviceNames>,
    /// The root filesystem's type, when known.
    pub fstype: Option<FsKind>,
    /// The copy gets a new UUID.
    pub new_uuid: bool,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing; nothing to do.
    Info,
    /// Fix it before rebooting into the new root.
    Warning,
    /// The move must not start: after it, a reboot would mount the old root
    /// (the kernel command line names the old device itself, which no
    /// re-identification of its filesystem changes).
    Blocker,
}

/// What happens to a reference after the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// It will find the new root.
    Keeps,
    /// It will still name the old device (or nothing).
    Breaks,
    /// Two devices answer to it until one is re-identified.
    Ambiguous,
    /// reroot cannot tell.
    Unknown,
}

/// One conclusion, with advice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What happens.
    pub outcome: Outcome,
    /// Where the reference is (none for general findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<RefOrigin>,
    /// The reference as written (`UUID=...`, `/dev/sda1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// What reroot concluded.
    pub message: String,
    /// What to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

fn answers_to_path(d: &DeviceNames, p: &std::path::Path) -> bool {
    d.path == p || d.device_names.iter().any(|n| n == p)
}

fn place(o: RefOrigin) -> String {
    match o {
        RefOrigin::Fstab { line } => format!("/etc/fstab line {line}"),
        RefOrigin::Cmdline => "the kernel command line".to_owned(),
    }
}

/// How to change a reference at `o` from `from` to `to`.
fn change(o: RefOrigin, from: &str, to: &str) -> String {
    match o {
        RefOrigin::Fstab { line } => {
            format!("edit /etc/fstab line {line}: replace `{from}` with `{to}`")
        }
        RefOrigin::Cmdline => format!(
            "set root={to} instead of root={from} in the bootloader configuration \
(GRUB_CMDLINE_LINUX in /etc/default/grub, or the boot entry), then regenerate it \
(update-grub / grub2-mkconfig); the running kernel's command line only changes at the next boot"
        ),
    }
}

/// What a breaking reference should become.
fn replacement(f: &IdentityFacts<'_>) -> String {
    match (&f.source.fs_uuid, f.new_uuid) {
        (Some(u), false) => format!("UUID={u}"),
        _ => "UUID=<the copy's new UUID, printed by `reroot copy --new-uuid`>".to_owned(),
    }
}

fn finding(
    severity: Severity,
    outcome: Outcome,
    r: &RootRef,
    message: String,
    advice: Option<String>,
) -> Finding {
    Finding {
        severity,
        outcome,
        origin: Some(r.origin),
        reference: Some(r.device.describe()),
        message,
        advice,
    }
}

fn decide_ref(f: &IdentityFacts<'_>, r: &RootRef) -> Finding {
    use Outcome::{Breaks, Keeps, Unknown};
    use Severity::{Info, Warning};
    let at = place(r.origin);
    let text = r.device.describe();
    // The kernel's root= naming the old device (not its filesystem) would
    // mount the old root at the next boot whatever reroot does to the old
    // filesystem's identity; reroot does not edit bootloader configurations
    // (GRUB, systemd-boot, extlinux, a hypervisor's -append), so the move is
    // refused until root= names the filesystem.
    let names_old_device = r.origin == RefOrigin::Cmdline
        && matches!(
            r.device,
            DeviceRef::Path(_)
                | DeviceRef::DevNo { .. }
                | DeviceRef::PartUuid(_)
                | DeviceRef::PartLabel(_)
        );
    let breaks = |why: String| {
        let to = replacement(f);
        if names_old_device {
            return finding(
                Severity::Blocker,
                Breaks,
                r,
                format!(
                    "{at} names the root as `{text}`: {why}; after the move a reboot would mount \
the OLD root, whatever reroot does to its filesystem"
                ),
                Some(format!(
                    "{}; reboot once so the running kernel uses it, then migrate",
                    change(r.origin, &text, &to)
                )),
            );
        }
        finding(
            Warning,
            Breaks,
            r,
            format!("{at} names the root as `{text}`: {why}"),
            Some(change(r.origin, &text, &to)),
        )
    };
    let unknown = |what: &str| {
        finding(
            Warning,
            Unknown,
            r,
            format!("{at} names the root as `{text}`, which is not the source's {what}"),
            Some("check that this entry is meant for the root and still valid".to_owned()),
        )
    };
    let target = f.target;
    match &r.device {
        DeviceRef::Uuid(u) => {
            if f.source.fs_uuid.as_deref() != Some(u.as_str()) {
                return unknown("filesystem UUID");
            }
            if f.new_uuid {
                let mut b = breaks(
                    "with --new-uuid the copy gets a new UUID, so this would still find the \
old root"
                        .to_owned(),
                );
                if let Some(a) = b.advice.as_mut() {
                    a.push_str(
                        "; then regenerate the initramfs (update-initramfs -u / dracut -f), \
which may embed the UUID; or copy without --new-uuid",
                    );
                }
                b
            } else {
                finding(
                    Info,
                    Keeps,
                    r,
                    format!("{at} names the root by filesystem UUID; the identical copy keeps it"),
                    None,
                )
            }
        }
        DeviceRef::Label(l) => {
            if f.source.fs_label.as_deref() != Some(l.as_str()) {
                return unknown("label");
            }
            finding(
                Info,
                Keeps,
                r,
                format!(
                    "{at} names the root by label; the copy keeps it, but so does the old root \
until it is relabelled (`reroot finish` does it)"
                ),
                None,
            )
        }
        DeviceRef::PartUuid(p) | DeviceRef::PartLabel(p) => {
            let is_uuid = matches!(r.device, DeviceRef::PartUuid(_));
            let of = |d: &DeviceNames| {
                if is_uuid {
                    d.partuuid.clone()
                } else {
                    d.partlabel.clone()
                }
            };
            if target.and_then(of).as_deref() == Some(p.as_str()) {
                return finding(
                    Info,
                    Keeps,
                    r,
                    format!("{at} names the root by partition; the target partition answers to it"),
                    None,
                );
            }
            if of(f.source).as_deref() == Some(p.as_str()) {
                return breaks(
                    "that names the partition table entry, not the filesystem, and a block copy \
does not carry it to the target"
                        .to_owned(),
                );
            }
            unknown(if is_uuid {
                "partition UUID"
            } else {
                "partition label"
            })
        }
        DeviceRef::Path(p) => {
            if target.is_some_and(|t| answers_to_path(t, p)) {
                return finding(
                    Info,
                    Keeps,
                    r,
                    format!("{at} names the target device itself"),
                    None,
                );
            }
            if answers_to_path(f.source, p) {
                return breaks(
                    "a device path names the device, and the root moves to another one".to_owned(),
                );
            }
            unknown("device")
        }
        DeviceRef::DevNo { major, minor } => {
            let n = DevNo {
                major: *major,
                minor: *minor,
            };
            if target.and_then(|t| t.devno) == Some(n) {
                return finding(
                    Info,
                    Keeps,
                    r,
                    format!("{at} names the target's device number"),
                    None,
                );
            }
            if f.source.devno == Some(n) {
                return breaks(
                    "a device number names the device, and the root moves to another one"
                        .to_owned(),
                );
            }
            unknown("device number")
        }
        DeviceRef::Other(s) => finding(
            Info,
            Unknown,
            r,
            format!("{at} names the root as `{s}`, which reroot cannot interpret"),
            Some("check it will find the new root".to_owned()),
        ),
    }
}

/// Decide every finding: one per reference, then general ones.
pub fn decide(f: &IdentityFacts<'_>) -> Vec<Finding> {
    let mut out: Vec<Finding> = f.refs.iter().map(|r| decide_ref(f, r)).collect();
    let general = |severity, outcome, message: String, advice: Option<&str>| Finding {
        severity,
        outcome,
        origin: None,
        reference: None,
        message,
        advice: advice.map(str::to_owned),
    };
    if f.cmdline_read && !f.refs.iter().any(|r| r.origin == RefOrigin::Cmdline) {
        out.push(general(
            Severity::Info,
            Outcome::Unknown,
            "the kernel command line has no root=: the initramfs or systemd-gpt-auto-generator \
picks the root"
                .to_owned(),
            Some("check it will pick the new device at the next boot"),
        ));
    }
    if f.fstab_read
        && !f
            .refs
            .iter()
            .any(|r| matches!(r.origin, RefOrigin::Fstab { .. }))
    {
        out.push(general(
            Severity::Info,
            Outcome::Unknown,
            "/etc/fstab has no entry for /".to_owned(),
            Some(
                "nothing to change in /etc/fstab: the root is found from the kernel command \
line (root=) or by the initramfs, so check that it names the new device",
            ),
        ));
    }
    if !f.new_uuid {
        if let Some(u) = &f.source.fs_uuid {
            let label = f
                .source
                .fs_label
                .as_deref()
                .filter(|l| !l.is_empty())
                .map(|l| format!(" and label {l:?}"))
                .unwrap_or_default();
            out.push(general(
                Severity::Info,
                Outcome::Ambiguous,
                format!(
                    "after the copy, source and target share UUID {u}{label}: lookups by UUID or \
label may find either until the old root is re-identified"
                ),
                Some("let `reroot finish` re-identify the old root; do not reboot with both attached before that"),
            ));
        }
        match f.fstype {
            Some(FsKind::Xfs) => out.push(general(
                Severity::Info,
                Outcome::Ambiguous,
                "xfs mounts a second filesystem with a mounted one's UUID only with -o nouuid"
                    .to_owned(),
                None,
            )),
            Some(FsKind::Btrfs) => out.push(general(
                Severity::Warning,
                Outcome::Ambiguous,
                "kernels before 6.7 refuse to mount a btrfs device whose fsid a mounted one has"
                    .to_owned(),
                Some("on such kernels copy with --new-uuid"),
            )),
            _ => {}
        }
    }
    out
}

/// What can be changed on the old root while it is still mounted (right
/// after the pivot), and what must wait until it is unmounted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OnlinePlan {
    /// Give it the label [`OLD_LABEL`] now (`tune2fs -L` works on a mounted
    /// ext filesystem: through `FS_IOC_SETFSLABEL` on a read-write mount, by
    /// rewriting the primary superblock, which a read-only mount never
    /// writes back, otherwise).
    pub relabel: bool,
    /// Give it a new UUID now (`tune2fs -U random`), or why that must wait.
    pub new_uuid_now: std::result::Result<(), String>,
}

/// The label the old root gets.
pub const OLD_LABEL: &str = "oldroot";

/// `EXT4_FEATURE_RO_COMPAT_GDT_CSUM` (uninit_bg): group descriptor checksums
/// seeded from the UUID.
const EXT_RO_COMPAT_GDT_CSUM: u32 = 0x0010;

/// Decide what re-identifying the mounted old root may do now. Only ext2/3/4
/// is changed while mounted. The UUID of a mounted ext filesystem can change
/// only when no checksum is seeded from it: without `metadata_csum` and
/// `uninit_bg`, or with `metadata_csum_seed` (the kernel's
/// `EXT4_IOC_SETFSUUID` has the same rule and also needs a read-write
/// mount). reroot never turns `metadata_csum_seed` on: GRUB before 2.06
/// cannot read such a filesystem.
pub fn online_plan(kind: FsKind, ext: Option<&ExtDetails>, label: &str) -> OnlinePlan {
    let later = |why: &str| Err(why.to_owned());
    match (kind, ext) {
        (FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4, Some(e)) => OnlinePlan {
            relabel: label != OLD_LABEL,
            new_uuid_now: if e.stable_inodes() {
                later("it has the stable_inodes feature: its UUID may never change")
            } else if e.uuid_change_rewrites_checksums() {
                later(
                    "metadata_csum without metadata_csum_seed: a new UUID rewrites every \
checksum, which tune2fs does only on an unmounted filesystem",
                )
            } else if !e.csum_seed() && e.feature_ro_compat & EXT_RO_COMPAT_GDT_CSUM != 0 {
                later(
                    "uninit_bg: a new UUID rewrites the group descriptor checksums, which \
tune2fs does only on an unmounted filesystem",
                )
            } else {
                Ok(())
            },
        },
        (FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4, None) => OnlinePlan {
            relabel: false,
            new_uuid_now: later("its ext superblock could not be read"),
        },
        (FsKind::Xfs, _) => OnlinePlan {
            relabel: false,
            new_uuid_now: later("xfs_admin changes label and UUID only when unmounted"),
        },
        (FsKind::Btrfs, _) => OnlinePlan {
            relabel: false,
            new_uuid_now: later("btrfstune changes the fsid only when unmounted"),
        },
    }
}

/// Whether a name (`LABEL=x`, `UUID=y`) finds the new root only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameTarget {
    /// Only the new root answers to it.
    NewOnly,
    /// Both the old and the new root answer to it: a reboot may find either.
    Both,
    /// Only the old root answers to it: a reboot lands on the old root.
    OldOnly,
    /// Neither (or reroot cannot tell).
    Neither,
}

/// One name of the root and where it leads now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NameStatus {
    /// `LABEL=rootfs`, `UUID=...`, `/dev/vda2`.
    pub name: String,
    /// Where it is used: `filesystem`, `kernel command line`, `/etc/fstab line N`.
    pub used_by: String,
    /// Where it leads.
    pub target: NameTarget,
    /// What is left to do, when it does not lead to the new root only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
}

/// The identity of one filesystem, as [`names_status`] compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedFs {
    /// Filesystem UUID (lowercase).
    pub uuid: Option<String>,
    /// Label.
    pub label: Option<String>,
    /// `major:minor` of its device.
    pub devno: Option<(u32, u32)>,
}

/// Where each name of the root leads: the new root's label and UUID
/// themselves, then each reference (kernel `root=`, fstab's `/` entry;
/// device paths resolved by the caller to `major:minor` in `resolved`).
/// `shutdown_guard` says whether something re-identifies the old root at
/// shutdown at the latest.
pub fn names_status(
    old: &NamedFs,
    new: &NamedFs,
    refs: &[(RootRef, Option<(u32, u32)>)],
    shutdown_guard: bool,
) -> Vec<NameStatus> {
    let when = if shutdown_guard {
        "the old root gets a new UUID when it is unmounted: by `reroot finish`, or at the next \
shutdown at the latest (unit reroot-oldroot-guard)"
    } else {
        "run `reroot finish` (after logging out and in again) before rebooting: nothing \
re-identifies the old root at shutdown on this system"
    };
    let by = |o: Option<&str>, n: Option<&str>, v: &str| match (o == Some(v), n == Some(v)) {
        (true, true) => NameTarget::Both,
        (false, true) => NameTarget::NewOnly,
        (true, false) => NameTarget::OldOnly,
        (false, false) => NameTarget::Neither,
    };
    let status = |name: String, used_by: String, target: NameTarget, what: &str| NameStatus {
        name,
        used_by,
        target,
        left: match target {
            NameTarget::NewOnly => None,
            NameTarget::Both => Some(what.to_owned()),
            NameTarget::OldOnly => Some(
                "a reboot would mount the OLD root: change this reference to the new root's \
UUID or label before rebooting"
                    .to_owned(),
            ),
            NameTarget::Neither => Some("it names neither root: check it".to_owned()),
        },
    };
    let mut out = Vec::new();
    if let Some(l) = new.label.as_deref().filter(|l| !l.is_empty()) {
        out.push(status(
            format!("LABEL={l}"),
            "filesystem".into(),
            by(old.label.as_deref(), Some(l), l),
            "relabel the old root (`tune2fs -L oldroot DEV`)",
        ));
    }
    if let Some(u) = &new.uuid {
        out.push(status(
            format!("UUID={u}"),
            "filesystem".into(),
            by(old.uuid.as_deref(), Some(u), u),
            when,
        ));
    }
    for (r, resolved) in refs {
        let used_by = place(r.origin);
        let (target, what) = match &r.device {
            DeviceRef::Label(l) => (
                by(old.label.as_deref(), new.label.as_deref(), l),
                "relabel the old root (`tune2fs -L oldroot DEV`)",
            ),
            DeviceRef::Uuid(u) => (by(old.uuid.as_deref(), new.uuid.as_deref(), u), when),
            DeviceRef::Path(_) | DeviceRef::DevNo { .. } => {
                let d = match (&r.device, resolved) {
                    (DeviceRef::DevNo { major, minor }, _) => Some((*major, *minor)),
                    (_, d) => *d,
                };
                let t = match d {
                    Some(d) if Some(d) == new.devno => NameTarget::NewOnly,
                    Some(d) if Some(d) == old.devno => NameTarget::OldOnly,
                    _ => NameTarget::Neither,
                };
                (t, "")
            }
            DeviceRef::PartUuid(_) | DeviceRef::PartLabel(_) | DeviceRef::Other(_) => {
                (NameTarget::Neither, "")
            }
        };
        out.push(status(r.device.describe(), used_by, target, what));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fstab::{self, DeviceRef};

    const UUID: &str = "2e1fdd67-a13d-45af-b916-94da3daa38b6";

    fn source() -> DeviceNames {
        DeviceNames {
            path: "/dev/sda1".into(),
            devno: Some(DevNo { major: 8, minor: 1 }),
            fs_uuid: Some(UUID.into()),
            fs_label: Some("root".into()),
            partuuid: Some("6c2b0a8f-01".into()),
            partlabel: Some("linux".into()),
            device_names: vec!["/dev/disk/by-id/ata-OLD-part1".into()],
        }
    }

    fn target() -> DeviceNames {
        DeviceNames {
            path: "/dev/dm-0".into(),
            devno: Some(DevNo {
                major: 253,
                minor: 0,
            }),
            device_names: vec!["/dev/mapper/vg-root".into(), "/dev/vg/root".into()],
            ..DeviceNames::default()
        }
    }

    fn one(r: DeviceRef, origin: RefOrigin, new_uuid: bool) -> Finding {
        let refs = [RootRef { origin, device: r }];
        let (s, t) = (source(), target());
        let f = IdentityFacts {
            refs: &refs,
            cmdline_read: false,
            fstab_read: false,
            source: &s,
            target: Some(&t),
            fstype: Some(FsKind::Ext4),
            new_uuid,
        };
        decide(&f).remove(0)
    }

    const FSTAB: RefOrigin = RefOrigin::Fstab { line: 4 };

    #[test]
    fn uuid_keeps_working_unless_new_uuid() {
        let keep = one(DeviceRef::Uuid(UUID.into()), FSTAB, false);
        assert_eq!(
            (keep.severity, keep.outcome),
            (Severity::Info, Outcome::Keeps)
        );
        let broke = one(DeviceRef::Uuid(UUID.into()), FSTAB, true);
        assert_eq!(
            (broke.severity, broke.outcome),
            (Severity::Warning, Outcome::Breaks)
        );
        let advice = broke.advice.unwrap();
        assert!(advice.contains("/etc/fstab line 4"), "{advice}");
        assert!(advice.contains("new UUID"), "{advice}");
        assert!(advice.contains("initramfs"), "{advice}");
        let stray = one(DeviceRef::Uuid("0000".into()), FSTAB, false);
        assert_eq!(
            (stray.severity, stray.outcome),
            (Severity::Warning, Outcome::Unknown)
        );
    }

    #[test]
    fn label_keeps_working_either_way() {
        for new_uuid in [false, true] {
            let f = one(
                DeviceRef::Label("root".into()),
                RefOrigin::Cmdline,
                new_uuid,
            );
            assert_eq!(f.outcome, Outcome::Keeps);
            assert!(f.message.contains("relabelled"), "{}", f.message);
        }
        assert_eq!(
            one(DeviceRef::Label("other".into()), FSTAB, false).outcome,
            Outcome::Unknown
        );
    }

    #[test]
    fn device_paths_and_numbers_break() {
        let f = one(
            DeviceRef::Path("/dev/sda1".into()),
            RefOrigin::Cmdline,
            false,
        );
        // root= naming the old device: a reboot would land on the old root
        // whatever happens to its filesystem, so the move is refused.
        assert_eq!(
            (f.severity, f.outcome),
            (Severity::Blocker, Outcome::Breaks)
        );
        assert!(f.message.contains("OLD root"), "{}", f.message);
        let advice = f.advice.unwrap();
        assert!(advice.contains(&format!("root=UUID={UUID}")), "{advice}");
        assert!(advice.contains("update-grub"), "{advice}");
        assert!(advice.contains("reboot once"), "{advice}");
        let f = one(
            DeviceRef::Path("/dev/disk/by-id/ata-OLD-part1".into()),
            FSTAB,
            false,
        );
        // In fstab it is only a warning: the kernel mounts / from root=, and
        // `reroot finish` rewrites the entry.
        assert_eq!(
            (f.severity, f.outcome),
            (Severity::Warning, Outcome::Breaks)
        );
        assert!(f.advice.unwrap().contains(&format!("with `UUID={UUID}`")));
        let f = one(
            DeviceRef::DevNo { major: 8, minor: 1 },
            RefOrigin::Cmdline,
            false,
        );
        assert_eq!(f.outcome, Outcome::Breaks);
        // Naming the target already (an admin who prepared the move) keeps working.
        assert_eq!(
            one(DeviceRef::Path("/dev/mapper/vg-root".into()), FSTAB, false).outcome,
            Outcome::Keeps
        );
        assert_eq!(
            one(
                DeviceRef::DevNo {
                    major: 253,
                    minor: 0
                },
                RefOrigin::Cmdline,
                false
            )
            .outcome,
            Outcome::Keeps
        );
        assert_eq!(
            one(DeviceRef::Path("/dev/sdz9".into()), FSTAB, false).outcome,
            Outcome::Unknown
        );
    }

    #[test]
    fn partition_names_do_not_travel_with_a_block_copy() {
        let f = one(
            DeviceRef::PartUuid("6c2b0a8f-01".into()),
            RefOrigin::Cmdline,
            false,
        );
        assert_eq!(
            (f.severity, f.outcome),
            (Severity::Blocker, Outcome::Breaks)
        );
        assert!(f.message.contains("partition table entry"), "{}", f.message);
        let f = one(DeviceRef::PartLabel("linux".into()), FSTAB, false);
        assert_eq!(f.outcome, Outcome::Breaks);
        // A target partition given the same PARTUUID keeps it working.
        let refs = [RootRef {
            origin: FSTAB,
            device: DeviceRef::PartUuid("6c2b0a8f-01".into()),
        }];
        let s = source();
        let t = DeviceNames {
            partuuid: Some("6c2b0a8f-01".into()),
            ..target()
        };
        let f = IdentityFacts {
            refs: &refs,
            cmdline_read: false,
            fstab_read: false,
            source: &s,
            target: Some(&t),
            fstype: None,
            new_uuid: false,
        };
        assert_eq!(decide(&f)[0].outcome, Outcome::Keeps);
    }

    #[test]
    fn others_are_unknown_info() {
        let f = one(
            DeviceRef::Other("ZFS=rpool/ROOT".into()),
            RefOrigin::Cmdline,
            false,
        );
        assert_eq!((f.severity, f.outcome), (Severity::Info, Outcome::Unknown));
    }

    #[test]
    fn general_findings_from_parsed_fstab_and_cmdline() {
        // End to end over the parsers: fstab by UUID, root= by device path.
        let tab = fstab::parse(&format!("UUID={UUID} / ext4 defaults 0 1\n"));
        let cmd = crate::probe::cmdline::parse("root=/dev/sda1 ro quiet");
        let refs = root_refs(Some(&tab), Some(&cmd));
        assert_eq!(root_refs(None, None), []);
        let (s, t) = (source(), target());
        let mut facts = IdentityFacts {
            refs: &refs,
            cmdline_read: true,
            fstab_read: true,
            source: &s,
            target: Some(&t),
            fstype: Some(FsKind::Xfs),
            new_uuid: false,
        };
        let fs = decide(&facts);
        let outcomes: Vec<_> = fs.iter().map(|f| (f.origin, f.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                (Some(RefOrigin::Fstab { line: 1 }), Outcome::Keeps),
                (Some(RefOrigin::Cmdline), Outcome::Breaks),
                (None, Outcome::Ambiguous), // twins until finish
                (None, Outcome::Ambiguous), // xfs nouuid
            ]
        );
        assert!(
            fs[2].message.contains("label \"root\""),
            "{}",
            fs[2].message
        );

        facts.new_uuid = true;
        facts.refs = &[];
        facts.fstype = Some(FsKind::Btrfs);
        let fs = decide(&facts);
        let msgs: Vec<&str> = fs.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(fs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("no root="), "{msgs:?}");
        assert!(msgs[1].contains("no entry for /"), "{msgs:?}");
        // Issue 11: `check --target` printed "... no entry for / ->" and nothing.
        let advice = fs[1].advice.as_deref().unwrap_or_default();
        assert!(
            advice.contains("nothing to change in /etc/fstab"),
            "{advice}"
        );
        assert!(
            fs.iter()
                .all(|f| f.advice.as_deref().is_some_and(|a| !a.is_empty()))
        );

        facts.new_uuid = false;
        let fs = decide(&facts);
        assert!(
            fs.iter()
                .any(|f| f.severity == Severity::Warning && f.message.contains("6.7"))
        );
        // Without a target, device paths still break.
        facts.target = None;
        let r = [RootRef {
            origin: RefOrigin::Cmdline,
            device: DeviceRef::Path("/dev/sda1".into()),
        }];
        facts.refs = &r;
        assert_eq!(decide(&facts)[0].outcome, Outcome::Breaks);
    }

    fn ext(incompat: u32, ro_compat: u32, compat: u32) -> ExtDetails {
        ExtDetails {
            blocks_count: 1000,
            feature_compat: compat,
            feature_incompat: incompat,
            feature_ro_compat: ro_compat,
            state: 1,
            mtime: 0,
            lastcheck: 0,
        }
    }

    #[test]
    fn online_plan_changes_the_uuid_only_when_no_checksum_follows_it() {
        use crate::probe::fs_superblock::{
            EXT_COMPAT_STABLE_INODES, EXT_INCOMPAT_CSUM_SEED, EXT_RO_COMPAT_METADATA_CSUM,
        };
        // mkfs.ext4's default today: metadata_csum, no seed -> label now, UUID later.
        let p = online_plan(
            FsKind::Ext4,
            Some(&ext(0, EXT_RO_COMPAT_METADATA_CSUM, 0)),
            "rootfs",
        );
        assert!(p.relabel);
        let why = p.new_uuid_now.unwrap_err();
        assert!(why.contains("metadata_csum_seed"), "{why}");
        // With the seed (set by the admin, never by reroot) the UUID can change now.
        let p = online_plan(
            FsKind::Ext4,
            Some(&ext(EXT_INCOMPAT_CSUM_SEED, EXT_RO_COMPAT_METADATA_CSUM, 0)),
            "rootfs",
        );
        assert_eq!(p.new_uuid_now, Ok(()));
        // uninit_bg seeds the group descriptor checksums from the UUID.
        let p = online_plan(FsKind::Ext4, Some(&ext(0, 0x0010, 0)), "rootfs");
        assert!(p.new_uuid_now.unwrap_err().contains("uninit_bg"));
        // No checksums at all: now.
        assert_eq!(
            online_plan(FsKind::Ext3, Some(&ext(0, 0, 0)), "x").new_uuid_now,
            Ok(())
        );
        let p = online_plan(
            FsKind::Ext4,
            Some(&ext(0, 0, EXT_COMPAT_STABLE_INODES)),
            "x",
        );
        assert!(p.new_uuid_now.unwrap_err().contains("stable_inodes"));
        // Already relabelled (a second run): nothing to relabel.
        assert!(!online_plan(FsKind::Ext4, Some(&ext(0, 0, 0)), OLD_LABEL).relabel);
        // xfs and btrfs are left for finish.
        for k in [FsKind::Xfs, FsKind::Btrfs] {
            let p = online_plan(k, None, "rootfs");
            assert!(!p.relabel && p.new_uuid_now.is_err());
        }
    }

    #[test]
    fn names_status_after_the_online_relabel() {
        let old = NamedFs {
            uuid: Some(UUID.into()),
            label: Some(OLD_LABEL.into()),
            devno: Some((254, 2)),
        };
        let new = NamedFs {
            uuid: Some(UUID.into()),
            label: Some("rootfs".into()),
            devno: Some((254, 16)),
        };
        let refs = [
            (
                RootRef {
                    origin: RefOrigin::Cmdline,
                    device: DeviceRef::Label("rootfs".into()),
                },
                None,
            ),
            (
                RootRef {
                    origin: FSTAB,
                    device: DeviceRef::Uuid(UUID.into()),
                },
                None,
            ),
            (
                RootRef {
                    origin: RefOrigin::Fstab { line: 5 },
                    device: DeviceRef::Path("/dev/vda2".into()),
                },
                Some((254, 2)),
            ),
        ];
        let st = names_status(&old, &new, &refs, true);
        let t: Vec<(&str, NameTarget)> = st.iter().map(|s| (s.name.as_str(), s.target)).collect();
        let uuid = format!("UUID={UUID}");
        assert_eq!(
            t,
            [
                ("LABEL=rootfs", NameTarget::NewOnly),
                (uuid.as_str(), NameTarget::Both),
                ("LABEL=rootfs", NameTarget::NewOnly),
                (uuid.as_str(), NameTarget::Both),
                ("/dev/vda2", NameTarget::OldOnly),
            ]
        );
        assert!(st[0].left.is_none());
        assert!(st[1].left.as_deref().unwrap().contains("shutdown"));
        assert_eq!(st[2].used_by, "the kernel command line");
        // Without a shutdown guard the operator must run finish before a reboot.
        let st = names_status(&old, &new, &refs[..0], false);
        assert!(st[1].left.as_deref().unwrap().contains("before rebooting"));
        // After finish: every name leads to the new root only.
        let done = NamedFs {
            uuid: Some("11111111-2222-3333-4444-555555555555".into()),
            ..old
        };
        assert!(
            names_status(&done, &new, &refs[..2], true)
                .iter()
                .all(|s| s.target == NameTarget::NewOnly && s.left.is_none())
        );
    }
}
