//! Pure decisions of a filesystem transform (`copy --mkfs`): the target
//! type and its `mkfs` command line (identity: the source's UUID and label,
//! xfs labels at most 12 bytes), whether the source's used bytes and inodes
//! fit the target before anything is written, which inode flags a copy
//! carries over, and the fstab options valid for the new type.
//!
//! No I/O; imports `error` only.

use crate::error::{Error, Result};

/// A filesystem type `copy --mkfs` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MkfsType {
    /// ext2 (`mkfs.ext2`).
    Ext2,
    /// ext3 (`mkfs.ext3`).
    Ext3,
    /// ext4 (`mkfs.ext4`).
    Ext4,
    /// XFS (`mkfs.xfs`).
    Xfs,
    /// Btrfs (`mkfs.btrfs`).
    Btrfs,
}

impl MkfsType {
    /// The name `mount -t` and fstab use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ext2 => "ext2",
            Self::Ext3 => "ext3",
            Self::Ext4 => "ext4",
            Self::Xfs => "xfs",
            Self::Btrfs => "btrfs",
        }
    }

    /// Parse a type name (`ext4`, `xfs`, ...).
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Ext2, Self::Ext3, Self::Ext4, Self::Xfs, Self::Btrfs]
            .into_iter()
            .find(|t| t.name() == s)
    }

    /// True for ext2/3/4.
    pub fn is_ext(self) -> bool {
        matches!(self, Self::Ext2 | Self::Ext3 | Self::Ext4)
    }

    /// The mkfs program.
    pub fn program(self) -> &'static str {
        match self {
            Self::Ext2 => "mkfs.ext2",
            Self::Ext3 => "mkfs.ext3",
            Self::Ext4 => "mkfs.ext4",
            Self::Xfs => "mkfs.xfs",
            Self::Btrfs => "mkfs.btrfs",
        }
    }

    /// The package that ships [`program`](Self::program).
    pub fn package(self) -> &'static str {
        match self {
            Self::Ext2 | Self::Ext3 | Self::Ext4 => "e2fsprogs",
            Self::Xfs => "xfsprogs",
            Self::Btrfs => "btrfs-progs",
        }
    }

    /// Longest label the type stores, in bytes.
    pub fn max_label(self) -> usize {
        match self {
            Self::Ext2 | Self::Ext3 | Self::Ext4 => 16,
            Self::Xfs => 12,
            Self::Btrfs => 255,
        }
    }

    /// Mount options the copy mounts the new filesystem with (`nouuid`: an
    /// xfs copy with the source's UUID could not be mounted next to it).
    pub fn copy_mount_data(self) -> &'static str {
        match self {
            Self::Xfs => "nouuid",
            _ => "",
        }
    }
}

impl std::fmt::Display for MkfsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the new filesystem is called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MkfsIdentity {
    /// UUID to give it; `None`: mkfs picks a random one (`--new-uuid`).
    pub uuid: Option<String>,
    /// Label (possibly cut to the type's limit).
    pub label: String,
    /// Set when the source's label did not fit and was cut: what to tell.
    pub label_cut: Option<String>,
}

/// The identity of the new filesystem: the source's UUID unless `new_uuid`,
/// and the source's label, cut to the type's limit at a character boundary
/// (with a note saying so; the caller decides whether that is acceptable).
pub fn identity(kind: MkfsType, src_uuid: &str, src_label: &str, new_uuid: bool) -> MkfsIdentity {
    let max = kind.max_label();
    let mut label = src_label.to_owned();
    let mut label_cut = None;
    if label.len() > max {
        let mut end = max;
        while !label.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        label.truncate(end);
        label_cut = Some(format!(
            "the source's label {src_label:?} is {} bytes; {kind} labels hold at most {max}, \
so the new filesystem is labelled {label:?} (LABEL= entries in fstab or on the kernel \
command line must follow)",
            src_label.len()
        ));
    }
    MkfsIdentity {
        uuid: (!new_uuid && !src_uuid.is_empty()).then(|| src_uuid.to_owned()),
        label,
        label_cut,
    }
}

/// The mkfs arguments (after the program name) for `dev`. `inodes`: an ext
/// inode count to ask for (`-N`), when the default would be too few.
pub fn mkfs_args(kind: MkfsType, id: &MkfsIdentity, inodes: Option<u64>, dev: &str) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    match kind {
        MkfsType::Ext2 | MkfsType::Ext3 | MkfsType::Ext4 => {
            // 4 KiB blocks even on small targets (mke2fs' "small" type would
            // pick 1 KiB, where a 3 KB xattr no longer fits).
            a.extend(["-F", "-q", "-b", "4096"].map(String::from));
            if let Some(u) = &id.uuid {
                a.extend(["-U".into(), u.clone()]);
            }
            if !id.label.is_empty() {
                a.extend(["-L".into(), id.label.clone()]);
            }
            match inodes {
                Some(n) => a.extend(["-N".into(), n.to_string()]),
                None => a.extend(["-i".into(), "16384".into()]),
            }
        }
        MkfsType::Xfs => {
            a.extend(["-f", "-q"].map(String::from));
            if let Some(u) = &id.uuid {
                a.extend(["-m".into(), format!("uuid={u}")]);
            }
            if !id.label.is_empty() {
                a.extend(["-L".into(), id.label.clone()]);
            }
        }
        MkfsType::Btrfs => {
            a.extend(["-f", "-q"].map(String::from));
            if let Some(u) = &id.uuid {
                a.extend(["-U".into(), u.clone()]);
            }
            if !id.label.is_empty() {
                a.extend(["-L".into(), id.label.clone()]);
            }
        }
    }
    a.push(dev.to_owned());
    a
}

/// What the source holds, from `statvfs` of its mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SourceUsage {
    /// Bytes in use (`(f_blocks - f_bfree) * f_frsize`).
    pub used_bytes: u64,
    /// Inodes in use (`f_files - f_ffree`); 0 when the filesystem does not count them.
    pub used_inodes: u64,
}

/// The outcome of [`fit`]: how much of the target the copy is expected to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Fit {
    /// Bytes the new filesystem's own metadata is expected to take.
    pub overhead_bytes: u64,
    /// Bytes the copy needs in all (data, overhead, margin).
    pub needed_bytes: u64,
    /// Size of the target device.
    pub target_bytes: u64,
    /// ext only: the inode count to ask mkfs for (`-N`) when its default
    /// (one per 16 KiB) would be too few.
    pub ext_inodes: Option<u64>,
}

/// Smallest filesystem each mkfs accepts (mkfs.xfs since 5.19 refuses under 300 MB).
fn min_size(kind: MkfsType) -> u64 {
    match kind {
        MkfsType::Xfs => 300_000_000,
        MkfsType::Btrfs => 114 << 20,
        _ => 8 << 20,
    }
}

/// The ext journal mke2fs makes for a filesystem of `bytes` (4 KiB blocks,
/// `ext2fs_default_journal_size`).
fn ext_journal(bytes: u64) -> u64 {
    let blocks = bytes / 4096;
    let j: u64 = match blocks {
        0..2048 => 0,
        2048..32768 => 1024,
        32768..262_144 => 4096,
        262_144..524_288 => 8192,
        524_288..4_194_304 => 16384,
        4_194_304..8_388_608 => 32768,
        8_388_608..16_777_216 => 65536,
        16_777_216..33_554_432 => 131_072,
        _ => 262_144,
    };
    j.saturating_mul(4096)
}

/// Decide, before anything is written, whether `usage` fits a new `kind`
/// filesystem on a device of `target_bytes`: data plus the new filesystem's
/// metadata (journal or log, inode tables, btrfs' duplicated metadata where
/// small files live inline) plus a 3% margin. Refuses with what is needed.
pub fn fit(kind: MkfsType, usage: SourceUsage, target_bytes: u64) -> Result<Fit> {
    let inodes = usage.used_inodes;
    let pct = |b: u64, p: u64| (b / 100).saturating_mul(p);
    let mut ext_inodes = None;
    let overhead = match kind {
        MkfsType::Ext2 | MkfsType::Ext3 | MkfsType::Ext4 => {
            let default_inodes = target_bytes / 16384;
            // A quarter more than in use, so the new root can still grow.
            let want = inodes.saturating_add(inodes / 4).saturating_add(1024);
            let count = if want > default_inodes {
                ext_inodes = Some(want);
                want
            } else {
                default_inodes
            };
            let journal = if kind == MkfsType::Ext2 {
                0
            } else {
                ext_journal(target_bytes)
            };
            // 256-byte inodes, plus bitmaps, descriptors and reserved GDT.
            count
                .saturating_mul(256)
                .saturating_add(journal)
                .saturating_add(pct(target_bytes, 2))
        }
        // The log (64 MiB from 300 MB up), 512-byte inodes allocated in
        // chunks, allocation-group headers.
        MkfsType::Xfs => (64u64 << 20)
            .saturating_add(inodes.saturating_mul(512))
            .saturating_add(pct(target_bytes, 1)),
        // Metadata chunks (DUP on one device: twice), where files up to
        // 2 KiB live inline: count about 1 KiB twice per inode.
        MkfsType::Btrfs => (128u64 << 20)
            .saturating_add(inodes.saturating_mul(2048))
            .saturating_add(pct(target_bytes, 1)),
    };
    let needed = usage
        .used_bytes
        .saturating_add(overhead)
        .saturating_add(pct(usage.used_bytes, 3));
    let f = Fit {
        overhead_bytes: overhead,
        needed_bytes: needed,
        target_bytes,
        ext_inodes,
    };
    let mb = |b: u64| b / 1_000_000;
    if target_bytes < min_size(kind) {
        return Err(Error::refused(format!(
            "the target holds {} MB; mkfs.{kind} needs at least {} MB",
            mb(target_bytes),
            mb(min_size(kind))
        ))
        .hint("use a larger target or another filesystem type"));
    }
    if needed > target_bytes {
        return Err(Error::refused(format!(
            "the source uses {} MB in {} inodes; a new {kind} filesystem would need about {} MB \
({} MB of its own metadata), but the target holds {} MB",
            mb(usage.used_bytes),
            inodes,
            mb(needed),
            mb(overhead),
            mb(target_bytes)
        ))
        .hint("free space on the source, or use a larger target; nothing was written"));
    }
    Ok(f)
}

/// After mkfs, the real free space and inodes of the new filesystem must
/// hold the source's used bytes and inodes (xfs and btrfs allocate inodes
/// on demand and report a large free count).
pub fn fit_after_mkfs(
    kind: MkfsType,
    usage: SourceUsage,
    free_bytes: u64,
    free_inodes: u64,
) -> Result<()> {
    if usage.used_bytes > free_bytes {
        return Err(Error::refused(format!(
            "the new {kind} filesystem has {} MB free, the source uses {} MB",
            free_bytes / 1_000_000,
            usage.used_bytes / 1_000_000
        ))
        .hint("use a larger target; only mkfs was written"));
    }
    if usage.used_inodes > free_inodes {
        return Err(Error::refused(format!(
            "the new {kind} filesystem has {free_inodes} free inodes, the source uses {}",
            usage.used_inodes
        ))
        .hint("use a larger target; only mkfs was written"));
    }
    Ok(())
}

/// `FS_IMMUTABLE_FL`.
pub const FS_IMMUTABLE_FL: u32 = 0x0000_0010;
/// `FS_APPEND_FL`.
pub const FS_APPEND_FL: u32 = 0x0000_0020;

/// Inode flags a user sets with `chattr` and a copy carries over:
/// secrm, unrm, compr, sync, immutable, append, nodump, noatime, nocomp,
/// journal-data, notail, dirsync, topdir, nocow, projinherit. Flags the
/// filesystem sets itself (extents, htree index, inline data, huge file,
/// encryption, verity, casefold) are not copied and not compared.
pub const FS_COPY_FLAGS: u32 = 0x0000_0001 // FS_SECRM_FL
    | 0x0000_0002 // FS_UNRM_FL
    | 0x0000_0004 // FS_COMPR_FL
    | 0x0000_0008 // FS_SYNC_FL
    | FS_IMMUTABLE_FL
    | FS_APPEND_FL
    | 0x0000_0040 // FS_NODUMP_FL
    | 0x0000_0080 // FS_NOATIME_FL
    | 0x0000_0400 // FS_NOCOMP_FL
    | 0x0000_4000 // FS_JOURNAL_DATA_FL
    | 0x0000_8000 // FS_NOTAIL_FL
    | 0x0001_0000 // FS_DIRSYNC_FL
    | 0x0002_0000 // FS_TOPDIR_FL
    | 0x0080_0000 // FS_NOCOW_FL
    | 0x2000_0000; // FS_PROJINHERIT_FL

/// Flags set last, after contents, links and every other attribute: once
/// set, nothing else may change the inode.
pub const FS_LAST_FLAGS: u32 = FS_IMMUTABLE_FL | FS_APPEND_FL;

/// chattr letters of the flags in `flags` (for loss reports).
pub fn flag_letters(flags: u32) -> String {
    const L: [(u32, char); 15] = [
        (0x1, 's'),
        (0x2, 'u'),
        (0x4, 'c'),
        (0x8, 'S'),
        (0x10, 'i'),
        (0x20, 'a'),
        (0x40, 'd'),
        (0x80, 'A'),
        (0x400, 'm'),
        (0x4000, 'j'),
        (0x8000, 't'),
        (0x1_0000, 'D'),
        (0x2_0000, 'T'),
        (0x80_0000, 'C'),
        (0x2000_0000, 'P'),
    ];
    L.iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// fstab options for the new root of type `kind`, from the old entry's:
/// options every type understands are kept, those specific to another type
/// (ext's `errors=remount-ro`, `data=ordered`, xfs' `inode64`, btrfs'
/// `subvol=`) are dropped. Returns the options and the dropped ones.
pub fn fstab_options(kind: MkfsType, old: &str) -> (String, Vec<String>) {
    const GENERIC: [&str; 20] = [
        "defaults", "ro", "rw", "auto", "noauto", "user", "nouser", "users", "owner", "nofail",
        "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async", "_netdev", "lazytime",
    ];
    const TIMES: [&str; 6] = [
        "atime",
        "noatime",
        "relatime",
        "norelatime",
        "strictatime",
        "nodiratime",
    ];
    let ext_only = |o: &str| {
        o.starts_with("errors=")
            || o.starts_with("data=")
            || o.starts_with("commit=")
            || o.starts_with("journal")
            || o.starts_with("barrier")
            || o.starts_with("stripe=")
            || matches!(
                o,
                "user_xattr" | "acl" | "noacl" | "nouser_xattr" | "discard" | "nodiscard"
            )
    };
    let mut keep = Vec::new();
    let mut dropped = Vec::new();
    for o in old.split(',').filter(|o| !o.is_empty()) {
        let generic = GENERIC.contains(&o) || TIMES.contains(&o) || o.starts_with("x-");
        let ok = generic
            || match kind {
                MkfsType::Ext2 | MkfsType::Ext3 | MkfsType::Ext4 => ext_only(o),
                MkfsType::Xfs => {
                    matches!(o, "discard" | "nodiscard" | "inode64" | "noquota")
                        || o.starts_with("logbufs=")
                        || o.starts_with("allocsize=")
                }
                MkfsType::Btrfs => {
                    matches!(o, "discard" | "nodiscard" | "ssd" | "nossd" | "autodefrag")
                        || o.starts_with("compress")
                        || o.starts_with("space_cache")
                        || o.starts_with("commit=")
                }
            };
        if ok {
            keep.push(o.to_owned());
        } else {
            dropped.push(o.to_owned());
        }
    }
    if keep.is_empty() {
        keep.push("defaults".to_owned());
    }
    if kind.is_ext() && !keep.iter().any(|o| o.starts_with("errors=")) {
        keep.push("errors=remount-ro".to_owned());
    }
    (keep.join(","), dropped)
}

/// The new root's `/etc/fstab`: the line mounting `/` gets the new type,
/// options valid for it ([`fstab_options`]), pass number 0 for xfs and
/// btrfs (their fsck helpers do nothing at boot) and, when the UUID
/// changed, `UUID=new` for `UUID=old`. Other lines, comments and spacing
/// of untouched lines are kept. Returns the text and what changed.
pub fn rewrite_fstab(
    text: &str,
    kind: MkfsType,
    uuid_change: Option<(&str, &str)>,
) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len().saturating_add(64));
    let mut notes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_root = !line.trim_start().starts_with('#') && fields.get(1) == Some(&"/");
        if !is_root {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut spec = fields.first().copied().unwrap_or_default().to_owned();
        if let Some((old, new)) = uuid_change {
            if spec.eq_ignore_ascii_case(&format!("UUID={old}")) {
                spec = format!("UUID={new}");
            }
        }
        let (opts, dropped) = fstab_options(kind, fields.get(3).copied().unwrap_or("defaults"));
        let freq = fields.get(4).copied().unwrap_or("0");
        let pass = if kind.is_ext() {
            fields.get(5).copied().unwrap_or("1")
        } else {
            "0"
        };
        let new = format!("{spec} / {} {opts} {freq} {pass}", kind.name());
        notes.push(format!("/etc/fstab: {line:?} -> {new:?}"));
        if !dropped.is_empty() {
            notes.push(format!(
                "/etc/fstab: dropped options {} ({} does not know them)",
                dropped.join(","),
                kind
            ));
        }
        out.push_str(&new);
        out.push('\n');
    }
    (out, notes)
}

/// What the boot chain needs to mount a root of type `kind` (for `check`).
pub fn boot_needs(kind: MkfsType) -> &'static str {
    match kind {
        MkfsType::Ext2 | MkfsType::Ext3 | MkfsType::Ext4 => {
            "every initramfs and GRUB read ext2/3/4"
        }
        MkfsType::Xfs => {
            "the initramfs needs the xfs module (and xfs_repair for fsck: xfsprogs installed \
before `update-initramfs -u` / `dracut -f`); GRUB 2.06+ reads xfs v5 with the nrext64 and \
bigtime features only from 2.12: check `grub-install --version`"
        }
        MkfsType::Btrfs => {
            "the initramfs needs the btrfs module (btrfs-progs installed before `update-initramfs \
-u` / `dracut -f`); GRUB reads btrfs, but not a /boot on raid5/6 or with zstd before 2.04"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [
            MkfsType::Ext2,
            MkfsType::Ext3,
            MkfsType::Ext4,
            MkfsType::Xfs,
            MkfsType::Btrfs,
        ] {
            assert_eq!(MkfsType::from_name(t.name()), Some(t));
        }
        assert_eq!(MkfsType::from_name("zfs"), None);
    }

    #[test]
    fn identity_keeps_uuid_and_cuts_xfs_labels() {
        let id = identity(MkfsType::Ext4, "u-1", "rootfs", false);
        assert_eq!(id.uuid.as_deref(), Some("u-1"));
        assert_eq!(id.label, "rootfs");
        assert!(id.label_cut.is_none());
        let id = identity(MkfsType::Xfs, "u-1", "a-very-long-root", true);
        assert_eq!(id.uuid, None);
        assert_eq!(id.label, "a-very-long-");
        assert!(id.label_cut.unwrap().contains("at most 12"));
        // Never cut inside a character.
        let id = identity(MkfsType::Xfs, "", "ééééééé", false);
        assert_eq!(id.label, "éééééé");
        assert_eq!(id.uuid, None);
    }

    #[test]
    fn mkfs_command_lines() {
        let id = identity(MkfsType::Xfs, "0f0e", "root", false);
        assert_eq!(
            mkfs_args(MkfsType::Xfs, &id, None, "/dev/x"),
            ["-f", "-q", "-m", "uuid=0f0e", "-L", "root", "/dev/x"]
        );
        let id = identity(MkfsType::Ext4, "0f0e", "", false);
        assert_eq!(
            mkfs_args(MkfsType::Ext4, &id, Some(5000), "/dev/x"),
            [
                "-F", "-q", "-b", "4096", "-U", "0f0e", "-N", "5000", "/dev/x"
            ]
        );
        let id = identity(MkfsType::Btrfs, "0f0e", "r", true);
        assert_eq!(
            mkfs_args(MkfsType::Btrfs, &id, None, "/dev/x"),
            ["-f", "-q", "-L", "r", "/dev/x"]
        );
    }

    #[test]
    fn fit_counts_bytes_and_inodes() {
        let gb = 1u64 << 30;
        let small = SourceUsage {
            used_bytes: 200 << 20,
            used_inodes: 10_000,
        };
        let f = fit(MkfsType::Ext4, small, gb).unwrap();
        assert!(f.needed_bytes < gb && f.ext_inodes.is_none());
        // Many tiny files: ext needs more inodes than its default gives.
        let tiny = SourceUsage {
            used_bytes: 400 << 20,
            used_inodes: 100_000,
        };
        let f = fit(MkfsType::Ext4, tiny, gb).unwrap();
        assert_eq!(f.ext_inodes, Some(100_000 + 25_000 + 1024));
        // Too much data.
        let big = SourceUsage {
            used_bytes: gb,
            used_inodes: 10,
        };
        let e = fit(MkfsType::Xfs, big, gb).unwrap_err();
        assert!(e.to_string().contains("would need"), "{e}");
        // Too many inodes for btrfs' inline metadata.
        let many = SourceUsage {
            used_bytes: 100 << 20,
            used_inodes: 600_000,
        };
        assert!(fit(MkfsType::Btrfs, many, gb).is_err());
        // xfs below its minimum.
        assert!(fit(MkfsType::Xfs, small, 256 << 20).is_err());
        assert!(fit_after_mkfs(MkfsType::Xfs, small, 300 << 20, 1 << 20).is_ok());
        assert!(fit_after_mkfs(MkfsType::Ext4, small, 300 << 20, 9_999).is_err());
    }

    #[test]
    fn flag_masks() {
        assert_eq!(flag_letters(FS_LAST_FLAGS), "ia");
        assert_eq!(
            FS_COPY_FLAGS & 0x0008_0000,
            0,
            "extents are the filesystem's own"
        );
        assert_eq!(flag_letters(0x80_0040), "dC");
    }

    #[test]
    fn fstab_options_follow_the_type() {
        let (o, d) = fstab_options(MkfsType::Xfs, "errors=remount-ro,noatime");
        assert_eq!(o, "noatime");
        assert_eq!(d, ["errors=remount-ro"]);
        let (o, d) = fstab_options(MkfsType::Ext4, "defaults,inode64");
        assert_eq!(o, "defaults,errors=remount-ro");
        assert_eq!(d, ["inode64"]);
        let (o, _) = fstab_options(MkfsType::Btrfs, "subvol=@,compress=zstd");
        assert_eq!(o, "compress=zstd");
        assert!(!boot_needs(MkfsType::Xfs).is_empty());
    }

    #[test]
    fn fstab_root_line_gets_the_new_type() {
        let text = "# comment\nUUID=aa /  ext4  errors=remount-ro,noatime 0 1\n\
UUID=bb /boot ext4 defaults 0 2\n";
        let (t, notes) = rewrite_fstab(text, MkfsType::Xfs, None);
        assert_eq!(
            t,
            "# comment\nUUID=aa / xfs noatime 0 0\nUUID=bb /boot ext4 defaults 0 2\n"
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        let (t, _) = rewrite_fstab(text, MkfsType::Btrfs, Some(("aa", "cc")));
        assert!(t.contains("UUID=cc / btrfs noatime 0 0\n"), "{t}");
        let (t, notes) = rewrite_fstab("/dev/sda1 / ext3 defaults 0 1\n", MkfsType::Ext4, None);
        assert_eq!(t, "/dev/sda1 / ext4 defaults,errors=remount-ro 0 1\n");
        assert_eq!(notes.len(), 1);
    }
}
