//! `/etc/fstab` and the way it (and the kernel's `root=`) names a device:
//! [`DeviceRef`] is `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`, a `/dev`
//! path (the `/dev/disk/by-uuid/...` family folded into the tags they
//! mean), a device number, or something else (`tmpfs`, `server:/export`).
//!
//! fstab fields are unescaped like mountinfo's (`\040` is a space); tag
//! values may be quoted (libmount accepts `UUID="..."`). A malformed line is
//! kept as a problem, not an error: mount skips it too. Imports `probe::mountinfo`.

use std::path::{Path, PathBuf};

use super::mountinfo::unescape;
use crate::error::{Error, Result};

/// How a device is named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "by", content = "value", rename_all = "kebab-case")]
pub enum DeviceRef {
    /// `UUID=...`: the filesystem's UUID (lowercase).
    Uuid(String),
    /// `LABEL=...`: the filesystem's label.
    Label(String),
    /// `PARTUUID=...`: the partition table entry's UUID (lowercase).
    PartUuid(String),
    /// `PARTLABEL=...`: the GPT partition name.
    PartLabel(String),
    /// A device path (`/dev/sda1`, `/dev/mapper/vg-root`, `/dev/disk/by-id/...`).
    Path(PathBuf),
    /// A device number (`root=8:1`, `root=801`).
    DevNo {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Anything else: pseudo filesystems, network sources, `ZFS=...`.
    Other(String),
}

/// Strip one pair of surrounding double or single quotes.
fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// Decode udev's `\xNN` escapes in `/dev/disk/by-label` names.
pub fn decode_udev_escapes(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(v) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl DeviceRef {
    /// Parse an fstab `fs_spec` (already unescaped) or a `root=` value in its
    /// common forms.
    pub fn parse(spec: &str) -> Self {
        let tag = |name: &str| {
            spec.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| unquote(v).to_owned())
        };
        if let Some(v) = tag("UUID") {
            return Self::Uuid(v.to_ascii_lowercase());
        }
        if let Some(v) = tag("LABEL") {
            return Self::Label(v);
        }
        if let Some(v) = tag("PARTUUID") {
            // root=PARTUUID=.../PARTNROFF=1: the uuid part names the partition.
            let uuid = v.split('/').next().unwrap_or_default();
            return Self::PartUuid(uuid.to_ascii_lowercase());
        }
        if let Some(v) = tag("PARTLABEL") {
            return Self::PartLabel(v);
        }
        if let Some(rest) = spec.strip_prefix("/dev/disk/") {
            if let Some((dir, name)) = rest.split_once('/') {
                let name = decode_udev_escapes(name);
                match dir {
                    "by-uuid" => return Self::Uuid(name.to_ascii_lowercase()),
                    "by-label" => return Self::Label(name),
                    "by-partuuid" => return Self::PartUuid(name.to_ascii_lowercase()),
                    "by-partlabel" => return Self::PartLabel(name),
                    _ => {}
                }
            }
        }
        if spec.starts_with("/dev/") {
            return Self::Path(PathBuf::from(spec));
        }
        Self::Other(spec.to_owned())
    }

    /// Short text for messages, as it would appear in fstab.
    pub fn describe(&self) -> String {
        match self {
            Self::Uuid(v) => format!("UUID={v}"),
            Self::Label(v) => format!("LABEL={v}"),
            Self::PartUuid(v) => format!("PARTUUID={v}"),
            Self::PartLabel(v) => format!("PARTLABEL={v}"),
            Self::Path(p) => p.display().to_string(),
            Self::DevNo { major, minor } => format!("{major}:{minor}"),
            Self::Other(s) => s.clone(),
        }
    }
}

/// One fstab entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FstabEntry {
    /// 1-based line number.
    pub line: usize,
    /// `fs_spec`, unescaped.
    pub spec: String,
    /// What `fs_spec` names.
    pub device: DeviceRef,
    /// `fs_file`: the mount point (or `none`/`swap`).
    pub file: PathBuf,
    /// `fs_vfstype`.
    pub vfstype: String,
    /// `fs_mntops`, split at commas.
    pub options: Vec<String>,
    /// `fs_freq` (0 when absent).
    pub freq: u32,
    /// `fs_passno` (0 when absent).
    pub passno: u32,
}

/// A parsed fstab.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Fstab {
    /// Entries in file order.
    pub entries: Vec<FstabEntry>,
    /// Lines that could not be parsed: (line number, why). mount skips them.
    pub problems: Vec<(usize, String)>,
}

impl Fstab {
    /// The entry mounted on `/` (the last one wins, as for mount).
    pub fn root_entry(&self) -> Option<&FstabEntry> {
        self.entries.iter().rev().find(|e| e.file == Path::new("/"))
    }
}

/// Parse fstab text.
pub fn parse(text: &str) -> Fstab {
    let mut tab = Fstab::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        if fields.len() < 2 {
            tab.problems
                .push((line, "fewer than 2 fields (spec and mount point)".into()));
            continue;
        }
        let num = |n: usize| -> std::result::Result<u32, String> {
            match fields.get(n) {
                None => Ok(0),
                Some(f) => f
                    .parse()
                    .map_err(|_| format!("field {} is not a number: {f:?}", n + 1)),
            }
        };
        let (freq, passno) = match (num(4), num(5)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                tab.problems.push((line, e));
                continue;
            }
        };
        let spec = unescape(fields[0]);
        tab.entries.push(FstabEntry {
            line,
            device: DeviceRef::parse(&spec),
            spec,
            file: PathBuf::from(unescape(fields[1])),
            vfstype: fields
                .get(2)
                .map_or_else(|| "auto".to_owned(), |s| unescape(s)),
            options: fields.get(3).map_or_else(
                || vec!["defaults".to_owned()],
                |s| s.split(',').map(unescape).collect(),
            ),
            freq,
            passno,
        });
    }
    tab
}

/// Read and parse the fstab at `path` (normally `/etc/fstab`). A missing
/// file is an empty fstab (containers, some initramfs-only systems).
pub fn read(path: &Path) -> Result<Fstab> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Fstab::default()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FSTAB: &str = "\
# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=2E1FDD67-A13D-45AF-B916-94DA3DAA38B6 /               ext4    errors=remount-ro 0       1
# /boot was on /dev/sda1 during installation
PARTUUID=6c2b0a8f-01  /boot           ext2    defaults        0       2
LABEL=my\\040data /srv/my\\040data xfs defaults,nofail 0 0
/dev/mapper/vg-swap none            swap    sw              0       0
tmpfs /tmp tmpfs mode=1777
server:/export /mnt/nfs nfs defaults 0 0
   
bogus
/dev/sdb1 /x ext4 defaults zero 0
/dev/disk/by-label/old\\x20root /old ext4
";

    #[test]
    fn parses_a_debian_style_fstab() {
        let t = parse(FSTAB);
        assert_eq!(t.entries.len(), 7);
        let root = t.root_entry().unwrap();
        assert_eq!(root.line, 4);
        assert_eq!(
            root.device,
            DeviceRef::Uuid("2e1fdd67-a13d-45af-b916-94da3daa38b6".into())
        );
        assert_eq!(root.vfstype, "ext4");
        assert_eq!(root.options, ["errors=remount-ro"]);
        assert_eq!((root.freq, root.passno), (0, 1));
        let data = &t.entries[2];
        assert_eq!(data.device, DeviceRef::Label("my data".into()));
        assert_eq!(data.file, PathBuf::from("/srv/my data"));
        assert_eq!(data.options, ["defaults", "nofail"]);
        assert_eq!(
            t.entries[1].device,
            DeviceRef::PartUuid("6c2b0a8f-01".into())
        );
        assert_eq!(
            t.entries[3].device,
            DeviceRef::Path("/dev/mapper/vg-swap".into())
        );
        assert_eq!(t.entries[4].device, DeviceRef::Other("tmpfs".into()));
        assert_eq!((t.entries[4].freq, t.entries[4].passno), (0, 0));
        assert_eq!(
            t.entries[5].device,
            DeviceRef::Other("server:/export".into())
        );
        assert_eq!(t.entries[6].device, DeviceRef::Label("old root".into()));
        let lines: Vec<usize> = t.problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, [12, 13], "{:?}", t.problems);
        assert!(t.problems[1].1.contains("zero"), "{:?}", t.problems);
    }

    #[test]
    fn device_refs() {
        assert_eq!(
            DeviceRef::parse("UUID=\"ABC\""),
            DeviceRef::Uuid("abc".into())
        );
        assert_eq!(
            DeviceRef::parse("label='x y'"),
            DeviceRef::Label("x y".into())
        );
        assert_eq!(
            DeviceRef::parse("PARTUUID=00112233-4455/PARTNROFF=1"),
            DeviceRef::PartUuid("00112233-4455".into())
        );
        assert_eq!(
            DeviceRef::parse("PARTLABEL=root"),
            DeviceRef::PartLabel("root".into())
        );
        assert_eq!(
            DeviceRef::parse("/dev/disk/by-uuid/ABCD-1234"),
            DeviceRef::Uuid("abcd-1234".into())
        );
        assert_eq!(
            DeviceRef::parse("/dev/disk/by-label/old\\x20root"),
            DeviceRef::Label("old root".into())
        );
        assert_eq!(
            DeviceRef::parse("/dev/disk/by-partuuid/X-1"),
            DeviceRef::PartUuid("x-1".into())
        );
        assert_eq!(
            DeviceRef::parse("/dev/disk/by-id/ata-FOO-part1"),
            DeviceRef::Path("/dev/disk/by-id/ata-FOO-part1".into())
        );
        assert_eq!(
            DeviceRef::parse("/dev/sda1"),
            DeviceRef::Path("/dev/sda1".into())
        );
        assert_eq!(
            DeviceRef::parse("ZFS=rpool/ROOT"),
            DeviceRef::Other("ZFS=rpool/ROOT".into())
        );
        assert_eq!(DeviceRef::parse(""), DeviceRef::Other(String::new()));
        assert_eq!(DeviceRef::parse("UUID="), DeviceRef::Uuid(String::new()));
        assert_eq!(decode_udev_escapes("a\\x2fb\\xzz\\x4"), "a/b\\xzz\\x4");
    }

    #[test]
    fn root_entry_is_the_last_for_slash() {
        let t = parse("/dev/sda1 / ext4 defaults 0 1\n/dev/sda2 / ext4 defaults 0 1\n");
        assert_eq!(t.root_entry().unwrap().line, 2);
        assert!(parse("# nothing\n").root_entry().is_none());
    }

    #[test]
    fn missing_file_is_empty() {
        let t = read(Path::new("/nonexistent/reroot/fstab")).unwrap();
        assert!(t.entries.is_empty());
    }
}
