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
use crate::probe::fs_superblock::FsKind;
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
    let breaks = |why: String| {
        let to = replacement(f);
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
        assert_eq!(
            (f.severity, f.outcome),
            (Severity::Warning, Outcome::Breaks)
        );
        let advice = f.advice.unwrap();
        assert!(advice.contains(&format!("root=UUID={UUID}")), "{advice}");
        assert!(advice.contains("update-grub"), "{advice}");
        let f = one(
            DeviceRef::Path("/dev/disk/by-id/ata-OLD-part1".into()),
            FSTAB,
            false,
        );
        assert_eq!(f.outcome, Outcome::Breaks);
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
            (Severity::Warning, Outcome::Breaks)
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
}
