//! The kernel command line (`/proc/cmdline`): parameters split as the kernel
//! splits them (whitespace, except inside double quotes, which are removed;
//! everything after `--` goes to init), and `root=` as a [`DeviceRef`].
//!
//! The kernel itself understands `root=/dev/...`, `PARTUUID=`, `PARTLABEL=`,
//! `MAJ:MIN` and hex device numbers; `UUID=` and `LABEL=` are resolved by the
//! initramfs. Imports `probe::fstab` (for [`DeviceRef`]).

use super::SysRoot;
use super::fstab::DeviceRef;
use crate::error::{Error, Result};

/// A parsed kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cmdline {
    /// `key` or `key=value` parameters for the kernel, in order.
    pub params: Vec<(String, Option<String>)>,
    /// Arguments after `--` (passed to init).
    pub init_args: Vec<String>,
}

impl Cmdline {
    /// The value of the last `key=` (the kernel keeps the last `root=`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The raw `root=` value.
    pub fn root_text(&self) -> Option<&str> {
        self.get("root")
    }

    /// What `root=` names, if present.
    pub fn root(&self) -> Option<DeviceRef> {
        self.root_text().map(parse_root)
    }
}

/// Interpret a `root=` value the way the kernel and initramfs do.
pub fn parse_root(v: &str) -> DeviceRef {
    if let Some((maj, min)) = v.split_once(':') {
        if let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) {
            return DeviceRef::DevNo { major, minor };
        }
    }
    if !v.is_empty() && v.len() <= 8 && v.chars().all(|c| c.is_ascii_hexdigit()) {
        // A bare hex number is a device number in the kernel's new_encode_dev
        // format: 801 is 8:1. (A device name like "sda1" is not all hex.)
        if let Ok(dev) = u32::from_str_radix(v, 16) {
            let major = (dev & 0xfff00) >> 8;
            let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
            return DeviceRef::DevNo { major, minor };
        }
    }
    if v == "/dev/nfs" {
        return DeviceRef::Other(v.to_owned());
    }
    let r = DeviceRef::parse(v);
    match r {
        // The kernel also accepts a bare device name: root=sda1.
        DeviceRef::Other(ref s)
            if !s.is_empty()
                && !s.contains(['=', ':', '/'])
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) =>
        {
            DeviceRef::Path(format!("/dev/{s}").into())
        }
        r => r,
    }
}

/// Split command-line text into parameters.
pub fn parse(text: &str) -> Cmdline {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    let mut line = Cmdline::default();
    let mut it = words.into_iter();
    for w in it.by_ref() {
        if w == "--" {
            break;
        }
        match w.split_once('=') {
            Some((k, v)) => line.params.push((k.to_owned(), Some(v.to_owned()))),
            None => line.params.push((w, None)),
        }
    }
    line.init_args = it.collect();
    line
}

/// Read `/proc/cmdline`.
pub fn read(root: &SysRoot) -> Result<Cmdline> {
    let path = root.proc("cmdline");
    let bytes =
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kernel() {
        let c = parse(
            "BOOT_IMAGE=/vmlinuz-6.1.0-18-amd64 root=UUID=2e1fdd67-a13d-45af-b916-94da3daa38b6 ro \
quiet acpi_osi=\"Windows 2020\" dyndbg=\"file x.c +p\" -- single foo\n",
        );
        assert_eq!(
            c.root(),
            Some(DeviceRef::Uuid(
                "2e1fdd67-a13d-45af-b916-94da3daa38b6".into()
            ))
        );
        assert_eq!(c.get("acpi_osi"), Some("Windows 2020"));
        assert_eq!(c.get("dyndbg"), Some("file x.c +p"));
        assert!(c.params.contains(&("ro".into(), None)));
        assert_eq!(c.init_args, ["single", "foo"]);
        assert_eq!(c.get("single"), None);
    }

    #[test]
    fn last_root_wins_and_absent_root_is_none() {
        let c = parse("root=/dev/sda1 root=/dev/vda2");
        assert_eq!(c.root(), Some(DeviceRef::Path("/dev/vda2".into())));
        assert_eq!(parse("quiet splash").root(), None);
        assert_eq!(parse("").params.len(), 0);
        assert_eq!(parse("\"unterminated root=x").params.len(), 1);
    }

    #[test]
    fn root_forms() {
        assert_eq!(parse_root("8:1"), DeviceRef::DevNo { major: 8, minor: 1 });
        assert_eq!(parse_root("801"), DeviceRef::DevNo { major: 8, minor: 1 });
        assert_eq!(
            parse_root("fd00"),
            DeviceRef::DevNo {
                major: 253,
                minor: 0
            }
        );
        assert_eq!(parse_root("sda1"), DeviceRef::Path("/dev/sda1".into()));
        assert_eq!(
            parse_root("/dev/nvme0n1p2"),
            DeviceRef::Path("/dev/nvme0n1p2".into())
        );
        assert_eq!(
            parse_root("PARTUUID=6c2b0a8f-02"),
            DeviceRef::PartUuid("6c2b0a8f-02".into())
        );
        assert_eq!(parse_root("LABEL=root"), DeviceRef::Label("root".into()));
        assert_eq!(parse_root("/dev/nfs"), DeviceRef::Other("/dev/nfs".into()));
        assert_eq!(
            parse_root("ZFS=rpool/ROOT/debian"),
            DeviceRef::Other("ZFS=rpool/ROOT/debian".into())
        );
        assert_eq!(
            parse_root("live:CDLABEL=x"),
            DeviceRef::Other("live:CDLABEL=x".into())
        );
        assert_eq!(parse_root(""), DeviceRef::Other(String::new()));
    }

    #[test]
    fn reads_proc_cmdline_from_a_fixture() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("proc")).unwrap();
        std::fs::write(d.path().join("proc/cmdline"), "root=/dev/sda1 ro\n").unwrap();
        let c = read(&SysRoot::under(d.path())).unwrap();
        assert_eq!(c.root(), Some(DeviceRef::Path("/dev/sda1".into())));
        assert!(read(&SysRoot::under(&d.path().join("nope"))).is_err());
    }
}
