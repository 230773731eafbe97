//! The refusals that keep data safe: given [`DeviceFacts`] of a source and
//! its targets, decide what must not be written, each [`Refusal`] with the
//! device, a one-line reason and a hint saying what to do next.
//!
//! Pure: facts in, refusals out, no I/O. Imports `probe::device` types and
//! `error`. Used by `copy`/`verify` before they open anything for writing,
//! by `check --target`, and by `bench` for its scratch devices.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Stage};
use crate::probe::device::{DeviceFacts, DeviceKind, MountUse, Span};

/// Which safety rule refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The source is mounted read-write: its contents change under the copy.
    SourceMountedRw,
    /// The target (or one of its partitions) is mounted.
    Mounted,
    /// A dm/md device (or, for an image, a loop device) is stacked on the target.
    Held,
    /// Another process has the target open exclusively.
    Exclusive,
    /// The target cannot be written.
    ReadOnly,
    /// The target is the source.
    SameAsSource,
    /// The target and the source share storage.
    Overlap,
    /// Two targets are the same or share storage.
    TargetsOverlap,
    /// The target is smaller than what must be written.
    TooSmall,
    /// The target carries a filesystem, LVM, md, swap or partition-table signature.
    Signature,
    /// A `--delta`/`--resume` target that does not hold an earlier copy of the source.
    NotACopy,
}

/// One refusal: which device, why, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The device as the user named it.
    pub device: PathBuf,
    /// The rule.
    pub rule: Rule,
    /// One line: what is wrong.
    pub reason: String,
    /// One line: what to do next.
    pub hint: String,
}

impl Refusal {
    fn new(dev: &DeviceFacts, rule: Rule, reason: String, hint: String) -> Self {
        Self {
            device: dev.path.clone(),
            rule,
            reason,
            hint,
        }
    }

    /// This refusal as an [`Error`] of kind `Refused` (exit code 3).
    pub fn to_error(&self, stage: Stage) -> Error {
        Error::refused(self.reason.clone())
            .stage(stage)
            .device(&self.device)
            .hint(self.hint.clone())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\n  hint: {}",
            self.device.display(),
            self.reason,
            self.hint
        )
    }
}

/// `Ok(())` when nothing was refused; otherwise one `Refused` error naming
/// the first device, with every refusal's device, reason and hint in it.
pub fn into_result(refusals: &[Refusal], stage: Stage) -> Result<()> {
    match refusals {
        [] => Ok(()),
        [one] => Err(one.to_error(stage)),
        [first, ..] => {
            // Name each refusal's device only when they are not all the same one.
            let one_device = refusals.iter().all(|r| r.device == first.device);
            let tag = |r: &Refusal, text: &str| {
                if one_device {
                    text.to_string()
                } else {
                    format!("{}: {text}", r.device.display())
                }
            };
            let reasons: Vec<String> = refusals.iter().map(|r| tag(r, &r.reason)).collect();
            let mut hints: Vec<String> = Vec::new();
            for h in refusals.iter().map(|r| tag(r, &r.hint)) {
                if !hints.contains(&h) {
                    hints.push(h);
                }
            }
            Err(Error::refused(reasons.join("; "))
                .stage(stage)
                .device(&first.device)
                .hint(hints.join("\n  hint: ")))
        }
    }
}

/// Bytes a copy of `source` needs on a target: the size its filesystem
/// claims (first signature that says), else the whole device.
pub fn needed_bytes(source: &DeviceFacts) -> u64 {
    source
        .signatures
        .iter()
        .find_map(|s| s.fs_bytes)
        .unwrap_or(source.size)
}

/// "512 MiB", "1.5 GiB", "4095 bytes".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("EiB", 60),
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    for (unit, shift) in UNITS {
        let scale = 1u64 << shift;
        if bytes >= scale {
            return if bytes.trailing_zeros() >= shift {
                format!("{} {unit}", bytes >> shift)
            } else {
                #[allow(clippy::cast_precision_loss)] // one decimal for a human
                let v = bytes as f64 / scale as f64;
                format!("{v:.1} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

/// The first place two footprints meet: (span of `a`, start, end).
fn first_overlap<'a>(a: &'a [Span], b: &[Span]) -> Option<(&'a Span, u64, u64)> {
    a.iter().find_map(|x| {
        b.iter()
            .find_map(|y| x.intersect(y).map(|(s, e)| (x, s, e)))
    })
}

fn where_(span: &Span, start: u64, end: u64) -> String {
    if end == u64::MAX {
        format!("{} from byte {start}", span.name)
    } else {
        format!("bytes {start}..{end} of {}", span.name)
    }
}

/// The source must not change while it is read: refuse a read-write mount
/// (a read-only mount is fine). For `copy` and `verify`.
pub fn check_source(source: &DeviceFacts) -> Vec<Refusal> {
    let Some(m) = source.mounted_rw() else {
        return Vec::new();
    };
    let subject = match mount_subject(source, m) {
        s if s.is_empty() => "the source is".to_string(),
        s => format!("the source's {s}is"),
    };
    let mp = m.mount_point.display();
    let hint = if m.mount_point == Path::new("/") && m.pid.is_none() {
        "it is the running root: run `reroot quiesce` first (or copy a snapshot)".to_string()
    } else {
        format!("unmount it (`umount {mp}`) or remount it read-only (`mount -o remount,ro {mp}`)")
    };
    vec![Refusal::new(
        source,
        Rule::SourceMountedRw,
        format!(
            "{subject} {}: its contents would change while it is read",
            m.describe()
        ),
        hint,
    )]
}

fn mount_hint(dev: &DeviceFacts) -> String {
    let cmds: Vec<String> = dev
        .mounts
        .iter()
        .map(|m| match m.pid {
            None => format!("`umount {}`", m.mount_point.display()),
            Some(pid) => format!("`nsenter -t {pid} -m umount {}`", m.mount_point.display()),
        })
        .collect();
    format!("unmount it ({}) or pick another device", cmds.join(", "))
}

/// Whose mount `m` is, seen from `dev`: `""` (its own), `"its partition
/// loop1p1 "`, or `"loop device /dev/loop5 stacked on it "`.
fn mount_subject(dev: &DeviceFacts, m: &MountUse) -> String {
    if dev.name.as_deref() == Some(m.device.as_str()) {
        String::new()
    } else if dev.partitions.contains(&m.device) {
        format!("its partition {} ", m.device)
    } else {
        let what = match dev.holders.iter().find(|h| h.name == m.device) {
            Some(h) => h.describe(),
            None => format!("/dev/{}", m.device),
        };
        format!("{what} stacked on it ")
    }
}

fn mount_reason(dev: &DeviceFacts) -> String {
    let parts: Vec<String> = dev
        .mounts
        .iter()
        .map(|m| match mount_subject(dev, m) {
            s if s.is_empty() => m.describe(),
            s => format!("{s}is {}", m.describe()),
        })
        .collect();
    parts.join("; ")
}

fn holder_hint(dev: &DeviceFacts) -> String {
    let h = &dev.holders[0];
    if let Some(dm) = &h.dm_name {
        format!(
            "it is used by device-mapper device {dm}: remove it (`dmsetup remove {dm}`, or `vgchange -an` for LVM) or pick another device"
        )
    } else if h.name.starts_with("md") {
        format!(
            "it is part of {}: stop the array (`mdadm --stop /dev/{}`) or pick another device",
            h.name, h.name
        )
    } else if h.name.starts_with("loop") {
        format!(
            "detach it (`losetup -d /dev/{}`) or pick another {}",
            h.name,
            if dev.kind == DeviceKind::File {
                "file"
            } else {
                "device"
            }
        )
    } else {
        format!("release it from {} or pick another device", h.name)
    }
}

fn signature_refusal(dev: &DeviceFacts) -> Option<Refusal> {
    if dev.signatures.is_empty() {
        return None;
    }
    let sigs: Vec<String> = dev.signatures.iter().map(|s| s.describe()).collect();
    let all = sigs.join(" and ");
    Some(Refusal::new(
        dev,
        Rule::Signature,
        format!("carries {} {all}", article(&all)),
        format!(
            "make sure nothing on it is needed, then use --force to overwrite the {all} (or wipe it with `wipefs -a {}`)",
            dev.path.display()
        ),
    ))
}

fn article(s: &str) -> &'static str {
    match s.chars().next() {
        Some(c) if "aeioAEIO".contains(c) => "an",
        Some('L' | 'M') => "an", // "an LVM2", "an MBR"
        _ => "a",
    }
}

/// Same device, shared storage, or one stored on the other.
fn against_source(source: &DeviceFacts, target: &DeviceFacts) -> Option<Refusal> {
    let src = source.path.display();
    if target.same_as(source) {
        return Some(Refusal::new(
            target,
            Rule::SameAsSource,
            format!("is the source {src} itself"),
            "give a different target device".into(),
        ));
    }
    if let Some((span, s, e)) = first_overlap(&target.footprint, &source.footprint) {
        return Some(Refusal::new(
            target,
            Rule::Overlap,
            format!("overlaps the source {src}: both use {}", where_(span, s, e)),
            "pick a target that shares no storage with the source".into(),
        ));
    }
    if let Some((span, s, e)) = first_overlap(&target.host_footprint, &source.footprint) {
        return Some(Refusal::new(
            target,
            Rule::Overlap,
            format!(
                "is stored on the source {src} ({}): writing it would change the source",
                where_(span, s, e)
            ),
            "put the target on another filesystem or device".into(),
        ));
    }
    if let Some((span, s, e)) = first_overlap(&source.host_footprint, &target.footprint) {
        return Some(Refusal::new(
            target,
            Rule::Overlap,
            format!(
                "holds the source {src}'s backing file ({}): writing it would destroy the source",
                where_(span, s, e)
            ),
            "pick a target that does not hold the source".into(),
        ));
    }
    None
}

/// The rules for one target: against the source when there is one, then on its own.
fn check_one(
    source: Option<&DeviceFacts>,
    target: &DeviceFacts,
    needed_bytes: u64,
    force: bool,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    if let Some(source) = source {
        out.extend(against_source(source, target));
    }
    if !target.mounts.is_empty() {
        out.push(Refusal::new(
            target,
            Rule::Mounted,
            mount_reason(target),
            mount_hint(target),
        ));
    }
    if !target.holders.is_empty() {
        let held: Vec<String> = target
            .holders
            .iter()
            .map(|h| {
                if target.name.as_deref() == Some(h.of.as_str())
                    || (target.kind == DeviceKind::File
                        && h.of == target.path.display().to_string())
                {
                    format!("held by {}", h.describe())
                } else if target.partitions.contains(&h.of) {
                    format!("its partition {} is held by {}", h.of, h.describe())
                } else {
                    format!("held by {} (stacked on {})", h.describe(), h.of)
                }
            })
            .collect();
        out.push(Refusal::new(
            target,
            Rule::Held,
            held.join("; "),
            holder_hint(target),
        ));
    }
    if target.exclusive_busy && target.mounts.is_empty() && target.holders.is_empty() {
        out.push(Refusal::new(
            target,
            Rule::Exclusive,
            "is opened exclusively by another process (open with O_EXCL fails with EBUSY)".into(),
            format!(
                "find it with `fuser -v {}` and stop it, or pick another device",
                target.path.display()
            ),
        ));
    }
    if target.read_only {
        let hint = match target.kind {
            DeviceKind::Block => format!(
                "make it writable (`blockdev --setrw {}`) or pick another device",
                target.path.display()
            ),
            DeviceKind::File => {
                "make it writable (its mode, and its filesystem mounted read-write) or pick another file"
                    .into()
            }
        };
        out.push(Refusal::new(
            target,
            Rule::ReadOnly,
            "is read-only".into(),
            hint,
        ));
    }
    if target.size < needed_bytes {
        // reroot never shrinks (`reroot grow` only grows): say what works.
        let shrink = "reroot does not shrink filesystems; to make the source smaller, copy it \
                      to a big enough image first and shrink that copy offline \
                      (`e2fsck -f IMG && resize2fs -M IMG`), then copy the image";
        let hint = match target.kind {
            DeviceKind::Block => format!(
                "use a target of at least {needed_bytes} bytes (a bigger device, or extend it: \
                 `lvextend -L {needed_bytes}b`); {shrink}"
            ),
            DeviceKind::File => format!(
                "grow it (`truncate -s {needed_bytes} {}`); {shrink}",
                target.path.display()
            ),
        };
        out.push(Refusal::new(
            target,
            Rule::TooSmall,
            format!(
                "is {} ({} bytes) but the filesystem needs {} ({needed_bytes} bytes)",
                human_bytes(target.size),
                target.size,
                human_bytes(needed_bytes)
            ),
            hint,
        ));
    }
    if !force {
        out.extend(signature_refusal(target));
    }
    out
}

/// The target rules only, for every target: not mounted, held, opened
/// exclusively or read-only; not the source nor overlapping it (nor each
/// other); at least `needed_bytes`; no signature unless `force`.
/// This is `check --target`, where the source is still the live root.
pub fn check_targets(
    source: &DeviceFacts,
    targets: &[DeviceFacts],
    needed_bytes: u64,
    force: bool,
) -> Vec<Refusal> {
    targets_rules(Some(source), targets, needed_bytes, force)
}

/// Devices about to be overwritten with no source to protect (`bench`'s
/// scratch targets): not mounted, held, opened exclusively or read-only,
/// not overlapping each other, no signature unless `force`.
pub fn check_scratch(targets: &[DeviceFacts], force: bool) -> Vec<Refusal> {
    targets_rules(None, targets, 0, force)
}

fn targets_rules(
    source: Option<&DeviceFacts>,
    targets: &[DeviceFacts],
    needed_bytes: u64,
    force: bool,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        // A target given twice: say so once, not every rule again.
        if let Some(first) = targets[..i].iter().find(|e| t.same_as(e)) {
            out.push(Refusal::new(
                t,
                Rule::TargetsOverlap,
                format!("is the same device as the target {}", first.path.display()),
                "give each target once, on storage no other target uses".into(),
            ));
            continue;
        }
        out.extend(check_one(source, t, needed_bytes, force));
        for earlier in &targets[..i] {
            if let Some((span, s, e)) = first_overlap(&t.footprint, &earlier.footprint) {
                out.push(Refusal::new(
                    t,
                    Rule::TargetsOverlap,
                    format!(
                        "overlaps the target {}: both use {}",
                        earlier.path.display(),
                        where_(span, s, e)
                    ),
                    "give each target once, on storage no other target uses".into(),
                ));
            }
        }
    }
    out
}

/// Everything `reroot copy SRC DST...` must refuse: the source mounted
/// read-write, and every target rule.
pub fn check_copy(
    source: &DeviceFacts,
    targets: &[DeviceFacts],
    needed_bytes: u64,
    force: bool,
) -> Vec<Refusal> {
    let mut out = check_source(source);
    out.extend(check_targets(source, targets, needed_bytes, force));
    out
}

/// A delta pass (`--delta`, `--resume`) writes only where the target
/// differs, so it expects an earlier copy of this very source there: every
/// signature on the target must be one of the source's (same kind, place,
/// UUID and filesystem size). A target with no signature is fine (nothing
/// on it to lose, as for a plain copy). `--force` skips this rule.
pub fn check_delta(source: &DeviceFacts, targets: &[DeviceFacts]) -> Vec<Refusal> {
    let mut out = Vec::new();
    for t in targets {
        let Some(foreign) = t.signatures.iter().find(|ts| {
            !source.signatures.iter().any(|ss| {
                ss.kind == ts.kind
                    && ss.offset == ts.offset
                    && ss.uuid == ts.uuid
                    && ss.fs_bytes == ts.fs_bytes
            })
        }) else {
            continue;
        };
        let src_sig = match source.signatures.first() {
            Some(s) => s.describe(),
            None => "no signature".into(),
        };
        out.push(Refusal::new(
            t,
            Rule::NotACopy,
            format!(
                "carries {} {} that is not an earlier copy of the source {} ({src_sig}): a --delta or --resume pass would overwrite it",
                article(&foreign.describe()),
                foreign.describe(),
                source.path.display()
            ),
            format!(
                "check that {} is the right target; to overwrite it, copy without --delta/--resume and with --force (or wipe it with `wipefs -a {}`)",
                t.path.display(),
                t.path.display()
            ),
        ));
    }
    out
}

/// `reroot verify SRC DST` writes nothing, but compares only stable data:
/// neither side may be mounted read-write, and they must be two devices.
pub fn check_verify(source: &DeviceFacts, target: &DeviceFacts) -> Vec<Refusal> {
    let mut out = check_source(source);
    if let Some(m) = target.mounted_rw() {
        let mp = m.mount_point.display();
        out.push(Refusal::new(
            target,
            Rule::Mounted,
            format!(
                "is {}: its contents may change while it is verified",
                m.describe()
            ),
            format!(
                "unmount it (`umount {mp}`) or remount it read-only (`mount -o remount,ro {mp}`)"
            ),
        ));
    }
    if target.same_as(source) {
        out.push(Refusal::new(
            target,
            Rule::SameAsSource,
            format!("is the source {} itself", source.path.display()),
            "give the copy to verify as the second device".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::device::{DevNo, Holder, StorageId};
    use crate::probe::signature::{Signature, SignatureKind};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn dev(n: u32) -> DevNo {
        DevNo { major: 7, minor: n }
    }

    /// A loop-like block device `/dev/loopN` of `size` over its own file.
    fn block(n: u32, size: u64) -> DeviceFacts {
        let mut f = DeviceFacts::new(format!("/dev/loop{n}"), DeviceKind::Block, size);
        f.name = Some(format!("loop{n}"));
        f.rdev = Some(dev(n));
        f.footprint = vec![Span {
            on: StorageId::Disk { dev: dev(n) },
            name: format!("loop{n}"),
            start: 0,
            len: size,
        }];
        f
    }

    fn file_span(ino: u64, start: u64, len: u64) -> Span {
        Span {
            on: StorageId::File {
                dev: DevNo {
                    major: 254,
                    minor: 1,
                },
                ino,
            },
            name: format!("/var/tmp/{ino}.img"),
            start,
            len,
        }
    }

    fn mount(device: &str, at: &str, ro: bool, pid: Option<u32>) -> MountUse {
        MountUse {
            device: device.into(),
            mount_point: at.into(),
            fstype: "ext4".into(),
            read_only: ro,
            pid,
        }
    }

    fn rules(r: &[Refusal]) -> Vec<Rule> {
        r.iter().map(|r| r.rule).collect()
    }

    #[test]
    fn clean_copy_is_allowed() {
        let src = block(0, GIB);
        let dst = block(1, 2 * GIB);
        assert!(check_copy(&src, &[dst], GIB, false).is_empty());
        assert!(into_result(&[], Stage::Copy).is_ok());
    }

    #[test]
    fn source_mounted_rw_is_refused_ro_is_fine() {
        let mut src = block(0, GIB);
        src.mounts = vec![mount("loop0", "/mnt/src", true, None)];
        assert!(check_copy(&src, &[block(1, GIB)], GIB, false).is_empty());
        src.mounts.push(mount("loop0", "/srv", false, None));
        let r = check_copy(&src, &[block(1, GIB)], GIB, false);
        assert_eq!(rules(&r), [Rule::SourceMountedRw]);
        assert_eq!(r[0].device, Path::new("/dev/loop0"));
        assert!(r[0].reason.contains("/srv"), "{}", r[0].reason);
        assert!(r[0].hint.contains("mount -o remount,ro /srv"));
        src.mounts = vec![mount("loop0", "/", false, None)];
        let r = check_source(&src);
        assert!(r[0].hint.contains("reroot quiesce"), "{}", r[0].hint);
    }

    #[test]
    fn mounted_target_names_every_mount() {
        let src = block(0, GIB);
        let mut dst = block(1, GIB);
        dst.partitions = vec!["loop1p1".into()];
        dst.mounts = vec![
            mount("loop1", "/mnt/a", true, None),
            mount("loop1p1", "/b", false, Some(42)),
        ];
        dst.exclusive_busy = true; // implied by the mount: not reported twice
        let r = check_copy(&src, &[dst], GIB, false);
        assert_eq!(rules(&r), [Rule::Mounted]);
        assert!(r[0].reason.contains("mounted at /mnt/a (ext4, read-only)"));
        assert!(
            r[0].reason
                .contains("its partition loop1p1 is mounted at /b")
        );
        assert!(r[0].hint.contains("`umount /mnt/a`"));
        assert!(r[0].hint.contains("nsenter -t 42 -m umount /b"));
    }

    #[test]
    fn held_target_hints_per_holder_kind() {
        let src = block(0, GIB);
        for (holder, dm, want) in [
            ("md0", None, "it is part of md0: stop the array"),
            ("dm-0", Some("vg-root"), "dmsetup remove vg-root"),
            ("loop9", None, "losetup -d /dev/loop9"),
        ] {
            let mut dst = block(1, GIB);
            dst.holders = vec![Holder {
                name: holder.into(),
                dm_name: dm.map(String::from),
                of: "loop1".into(),
                offset: 0,
            }];
            dst.exclusive_busy = true;
            let r = check_copy(&src, &[dst], GIB, false);
            assert_eq!(rules(&r), [Rule::Held]);
            assert!(r[0].hint.contains(want), "{}", r[0].hint);
            assert!(r[0].reason.starts_with("held by"), "{}", r[0].reason);
        }
        let mut dst = block(1, GIB);
        dst.partitions = vec!["loop1p2".into()];
        dst.holders = vec![Holder {
            name: "md1".into(),
            dm_name: None,
            of: "loop1p2".into(),
            offset: 0,
        }];
        let r = check_targets(&src, &[dst], GIB, false);
        assert_eq!(
            r[0].reason,
            "its partition loop1p2 is held by md RAID device md1"
        );
        // Issue 11: stacked further up, and mounted there.
        let mut dst = block(1, GIB);
        dst.holders = vec![
            Holder {
                name: "loop5".into(),
                dm_name: None,
                of: "loop1".into(),
                offset: MIB,
            },
            Holder {
                name: "dm-2".into(),
                dm_name: Some("up".into()),
                of: "loop5".into(),
                offset: 0,
            },
        ];
        dst.mounts = vec![mount("dm-2", "/mnt/y", true, None)];
        let r = check_targets(&src, &[dst.clone()], GIB, false);
        assert_eq!(rules(&r), [Rule::Mounted, Rule::Held]);
        assert_eq!(
            r[0].reason,
            "device-mapper device up (dm-2) stacked on it is mounted at /mnt/y (ext4, read-only)"
        );
        assert_eq!(
            r[1].reason,
            "held by loop device /dev/loop5 (at byte 1048576); \
             held by device-mapper device up (dm-2) (stacked on loop5)"
        );
        // A source whose stacked device is mounted read-write is refused.
        dst.mounts[0].read_only = false;
        let r = check_source(&dst);
        assert_eq!(rules(&r), [Rule::SourceMountedRw]);
        assert!(
            r[0].reason.starts_with(
                "the source's device-mapper device up (dm-2) stacked on it is mounted at /mnt/y"
            ),
            "{}",
            r[0].reason
        );
    }

    #[test]
    fn exclusive_open_alone_is_refused() {
        let mut dst = block(1, GIB);
        dst.exclusive_busy = true;
        let r = check_copy(&block(0, GIB), &[dst], GIB, false);
        assert_eq!(rules(&r), [Rule::Exclusive]);
        assert!(r[0].hint.contains("fuser -v /dev/loop1"));
    }

    #[test]
    fn read_only_target() {
        let mut dst = block(1, GIB);
        dst.read_only = true;
        let r = check_copy(&block(0, GIB), &[dst], GIB, false);
        assert_eq!(rules(&r), [Rule::ReadOnly]);
        assert!(r[0].hint.contains("blockdev --setrw /dev/loop1"));
        let mut f = DeviceFacts::new("/var/tmp/t.img", DeviceKind::File, GIB);
        f.read_only = true;
        f.ino = 5;
        let r = check_copy(&block(0, GIB), &[f], GIB, false);
        assert_eq!(rules(&r), [Rule::ReadOnly]);
        assert!(r[0].hint.contains("another file"));
    }

    #[test]
    fn same_device_and_same_file() {
        let src = block(0, GIB);
        let mut dst = block(0, GIB);
        dst.path = "/dev/disk/by-id/x".into();
        let r = check_copy(&src, &[dst], GIB, false);
        assert_eq!(rules(&r), [Rule::SameAsSource]);
        assert_eq!(r[0].device, Path::new("/dev/disk/by-id/x"));
        assert_eq!(r[0].reason, "is the source /dev/loop0 itself");

        let mut a = DeviceFacts::new("/var/tmp/a.img", DeviceKind::File, GIB);
        a.ino = 9;
        let mut b = a.clone();
        b.path = "/var/tmp/../tmp/a.img".into();
        assert_eq!(
            rules(&check_copy(&a, &[b], GIB, false)),
            [Rule::SameAsSource]
        );
    }

    #[test]
    fn partition_overlaps_its_disk() {
        let disk = block(0, GIB);
        let mut part = block(1, 512 * MIB);
        part.path = "/dev/loop0p1".into();
        part.footprint.push(Span {
            on: StorageId::Disk { dev: dev(0) },
            name: "loop0".into(),
            start: MIB,
            len: 512 * MIB,
        });
        let r = check_copy(&disk, &[part.clone()], MIB, false);
        assert_eq!(rules(&r), [Rule::Overlap]);
        assert_eq!(
            r[0].reason,
            format!(
                "overlaps the source /dev/loop0: both use bytes {}..{} of loop0",
                MIB,
                513 * MIB
            )
        );
        // And the other way round.
        assert_eq!(
            rules(&check_copy(&part, &[disk], MIB, false)),
            [Rule::Overlap]
        );
    }

    #[test]
    fn loops_over_one_file_overlap_only_where_windows_meet() {
        let mut a = block(0, 8 * MIB);
        a.footprint.push(file_span(7, 0, 8 * MIB));
        let mut b = block(1, 8 * MIB);
        b.footprint.push(file_span(7, 8 * MIB, 8 * MIB));
        assert!(check_copy(&a, &[b.clone()], MIB, false).is_empty());
        b.footprint[1].start = 4 * MIB;
        let r = check_copy(&a, &[b], MIB, false);
        assert_eq!(rules(&r), [Rule::Overlap]);
        assert!(r[0].reason.contains("/var/tmp/7.img"), "{}", r[0].reason);
    }

    #[test]
    fn loop_over_a_file_vs_that_file() {
        let mut lp = block(0, 8 * MIB);
        lp.footprint.push(file_span(7, 0, 8 * MIB));
        let mut f = DeviceFacts::new("/var/tmp/7.img", DeviceKind::File, 8 * MIB);
        f.ino = 7;
        f.footprint = vec![file_span(7, 0, 8 * MIB)];
        assert_eq!(
            rules(&check_copy(&lp, &[f.clone()], MIB, false)),
            [Rule::Overlap]
        );
        assert_eq!(rules(&check_copy(&f, &[lp], MIB, false)), [Rule::Overlap]);
    }

    #[test]
    fn dm_over_the_other_device() {
        let src = block(0, GIB);
        let mut dm = block(3, GIB);
        dm.path = "/dev/mapper/vg-lv".into();
        dm.footprint.push(Span {
            on: StorageId::Disk { dev: dev(0) },
            name: "loop0".into(),
            start: 0,
            len: GIB,
        });
        assert_eq!(rules(&check_copy(&src, &[dm], GIB, false)), [Rule::Overlap]);
    }

    #[test]
    fn image_file_on_the_source_filesystem_and_source_on_the_target() {
        let src = block(0, GIB);
        let mut img = DeviceFacts::new("/mnt/src/t.img", DeviceKind::File, GIB);
        img.ino = 12;
        img.footprint = vec![file_span(12, 0, GIB)];
        img.host_footprint = src.footprint.clone();
        let r = check_copy(&src, &[img], GIB, false);
        assert_eq!(rules(&r), [Rule::Overlap]);
        assert!(
            r[0].reason.contains("is stored on the source"),
            "{}",
            r[0].reason
        );

        // Source loop over a file that lives on the target device.
        let mut src = block(0, GIB);
        src.host_footprint = block(1, GIB).footprint;
        let r = check_copy(&src, &[block(1, GIB)], GIB, false);
        assert_eq!(rules(&r), [Rule::Overlap]);
        assert!(
            r[0].reason.contains("would destroy the source"),
            "{}",
            r[0].reason
        );
    }

    #[test]
    fn targets_must_not_overlap_each_other() {
        let src = block(0, GIB);
        let a = block(1, GIB);
        let mut a2 = block(1, GIB);
        a2.path = "/dev/disk/by-id/a".into();
        let r = check_copy(&src, &[a.clone(), block(2, GIB), a2], GIB, false);
        assert_eq!(rules(&r), [Rule::TargetsOverlap]);
        assert_eq!(r[0].device, Path::new("/dev/disk/by-id/a"));
        assert!(r[0].reason.contains("same device as the target /dev/loop1"));

        let mut p = block(5, 100 * MIB);
        p.footprint.push(Span {
            on: StorageId::Disk { dev: dev(1) },
            name: "loop1".into(),
            start: 0,
            len: 100 * MIB,
        });
        let r = check_copy(&src, &[a, p], MIB, false);
        assert_eq!(rules(&r), [Rule::TargetsOverlap]);
        assert!(r[0].reason.contains("overlaps the target /dev/loop1"));
    }

    #[test]
    fn too_small_says_both_sizes() {
        let r = check_copy(&block(0, GIB), &[block(1, 512 * MIB)], GIB, false);
        assert_eq!(rules(&r), [Rule::TooSmall]);
        assert_eq!(
            r[0].reason,
            "is 512 MiB (536870912 bytes) but the filesystem needs 1 GiB (1073741824 bytes)"
        );
        // Issue 11: the hint sent the user to `reroot grow` to shrink the source.
        assert!(!r[0].hint.contains("reroot grow"), "{}", r[0].hint);
        assert!(r[0].hint.contains("resize2fs -M IMG"), "{}", r[0].hint);
        assert!(
            r[0].hint.contains("reroot does not shrink"),
            "{}",
            r[0].hint
        );
        // Exactly enough is fine.
        assert!(check_copy(&block(0, GIB), &[block(1, GIB)], GIB, false).is_empty());
        let mut f = DeviceFacts::new("/var/tmp/t.img", DeviceKind::File, MIB);
        f.ino = 3;
        let r = check_copy(&block(0, GIB), &[f], GIB, false);
        assert!(r[0].hint.contains("truncate -s 1073741824 /var/tmp/t.img"));
    }

    /// Issue 11: `--delta` overwrote any filesystem (`mkfs.xfs -L precious
    /// $T; reroot copy --delta $SRC $T` exited 0).
    #[test]
    fn delta_onto_a_foreign_filesystem_is_refused() {
        let ext4 = |uuid: &str, bytes: u64| Signature {
            kind: SignatureKind::Ext4,
            offset: 1080,
            uuid: Some(uuid.into()),
            label: Some("root".into()),
            detail: None,
            fs_bytes: Some(bytes),
        };
        let mut src = block(0, GIB);
        src.signatures = vec![ext4("aa", GIB)];
        // Blank target (an interrupted first pass wrote nothing yet): fine.
        let mut dst = block(1, GIB);
        assert!(check_delta(&src, std::slice::from_ref(&dst)).is_empty());
        // An earlier copy: same UUID and size (the label may have changed).
        dst.signatures = vec![ext4("aa", GIB)];
        dst.signatures[0].label = Some("copy".into());
        assert!(check_delta(&src, std::slice::from_ref(&dst)).is_empty());
        // Another filesystem, or the same UUID with another geometry.
        for other in [
            ext4("bb", GIB),
            ext4("aa", GIB / 2),
            Signature {
                kind: SignatureKind::Xfs,
                offset: 0,
                uuid: Some("aa".into()),
                label: Some("precious".into()),
                detail: None,
                fs_bytes: Some(GIB),
            },
        ] {
            dst.signatures = vec![other];
            let r = check_delta(&src, std::slice::from_ref(&dst));
            assert_eq!(rules(&r), [Rule::NotACopy]);
            assert!(
                r[0].reason
                    .contains("is not an earlier copy of the source /dev/loop0"),
                "{}",
                r[0].reason
            );
            assert!(r[0].hint.contains("--force"), "{}", r[0].hint);
        }
        // A source with no signature: anything on the target is foreign.
        src.signatures.clear();
        assert_eq!(rules(&check_delta(&src, &[dst])), [Rule::NotACopy]);
    }

    #[test]
    fn signature_refused_unless_force() {
        let mut dst = block(1, GIB);
        dst.signatures = vec![Signature {
            kind: SignatureKind::Ext4,
            offset: 1080,
            uuid: Some("0a0b".into()),
            label: Some("old".into()),
            detail: None,
            fs_bytes: Some(GIB),
        }];
        let r = check_copy(&block(0, GIB), &[dst.clone()], GIB, false);
        assert_eq!(rules(&r), [Rule::Signature]);
        assert_eq!(
            r[0].reason,
            "carries an ext4 signature (UUID 0a0b, label \"old\")"
        );
        assert!(
            r[0].hint
                .contains("use --force to overwrite the ext4 signature (UUID 0a0b, label \"old\")")
        );
        assert!(check_copy(&block(0, GIB), &[dst.clone()], GIB, true).is_empty());
        dst.signatures[0].kind = SignatureKind::Lvm2Member;
        let r = check_copy(&block(0, GIB), &[dst], GIB, false);
        assert!(
            r[0].reason
                .starts_with("carries an LVM2 physical volume signature")
        );
        // Force does not override anything else.
        let mut dst = block(1, GIB);
        dst.read_only = true;
        assert_eq!(
            rules(&check_copy(&block(0, GIB), &[dst], GIB, true)),
            [Rule::ReadOnly]
        );
    }

    #[test]
    fn verify_rules() {
        let mut src = block(0, GIB);
        let mut dst = block(1, GIB);
        dst.signatures = vec![Signature {
            kind: SignatureKind::Ext4,
            offset: 1080,
            uuid: None,
            label: None,
            detail: None,
            fs_bytes: None,
        }];
        dst.mounts = vec![mount("loop1", "/mnt/c", true, None)];
        assert!(
            check_verify(&src, &dst).is_empty(),
            "ro mounts and signatures are fine"
        );
        dst.mounts[0].read_only = false;
        src.mounts = vec![mount("loop0", "/mnt/s", false, None)];
        assert_eq!(
            rules(&check_verify(&src, &dst)),
            [Rule::SourceMountedRw, Rule::Mounted]
        );
        assert_eq!(
            rules(&check_verify(&block(0, GIB), &block(0, GIB))),
            [Rule::SameAsSource]
        );
    }

    #[test]
    fn many_refusals_become_one_error() {
        let mut dst = block(1, MIB);
        dst.read_only = true;
        let r = check_copy(&block(0, GIB), &[dst], GIB, false);
        assert_eq!(r.len(), 2);
        let e = into_result(&r, Stage::Copy).unwrap_err();
        assert!(matches!(e.kind(), crate::ErrorKind::Refused(_)));
        let s = e.to_string();
        assert!(
            s.starts_with("copy: /dev/loop1: refused: is read-only; is 1 MiB"),
            "{s}"
        );
        assert_eq!(e.context().device.as_deref(), Some(Path::new("/dev/loop1")));
        let one = into_result(&r[..1], Stage::Copy).unwrap_err();
        assert_eq!(
            one.to_string().lines().next(),
            Some("copy: /dev/loop1: refused: is read-only")
        );
        assert!(
            r[0].to_string()
                .starts_with("/dev/loop1: is read-only\n  hint: ")
        );
    }

    #[test]
    fn refusals_of_several_devices_name_each() {
        let mut a = block(1, GIB);
        a.read_only = true;
        let mut b = block(2, GIB);
        b.read_only = true;
        let r = check_copy(&block(0, GIB), &[a, b], GIB, false);
        let e = into_result(&r, Stage::Copy).unwrap_err();
        assert!(
            e.to_string()
                .contains("refused: /dev/loop1: is read-only; /dev/loop2: is read-only"),
            "{e}"
        );
        assert_eq!(e.hint_text().unwrap().matches("hint:").count(), 1);
    }

    #[test]
    fn a_target_given_twice_is_one_refusal() {
        let mut t = block(1, MIB);
        t.read_only = true;
        let r = check_copy(&block(0, GIB), &[t.clone(), t], GIB, false);
        assert_eq!(
            rules(&r),
            [Rule::ReadOnly, Rule::TooSmall, Rule::TargetsOverlap]
        );
    }

    #[test]
    fn scratch_targets_have_no_source_rules() {
        let mut a = block(1, MIB);
        a.mounts = vec![mount("loop1", "/x", true, None)];
        let mut b = block(2, MIB);
        b.signatures = vec![Signature {
            kind: SignatureKind::Swap,
            offset: 4086,
            uuid: None,
            label: None,
            detail: None,
            fs_bytes: None,
        }];
        let c = block(2, MIB);
        let r = check_scratch(&[a, b.clone(), c], false);
        assert_eq!(
            rules(&r),
            [Rule::Mounted, Rule::Signature, Rule::TargetsOverlap]
        );
        assert!(check_scratch(&[b], true).is_empty());
    }

    #[test]
    fn human_sizes_and_needed_bytes() {
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(human_bytes(512 * MIB), "512 MiB");
        assert_eq!(human_bytes(GIB + GIB / 2), "1.5 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        let mut s = block(0, GIB);
        assert_eq!(needed_bytes(&s), GIB);
        s.signatures = vec![Signature {
            kind: SignatureKind::Ext4,
            offset: 1080,
            uuid: None,
            label: None,
            detail: None,
            fs_bytes: Some(100 * MIB),
        }];
        assert_eq!(needed_bytes(&s), 100 * MIB);
    }
}
