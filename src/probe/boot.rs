//! What the next boot will find: the target's block stack read from sysfs
//! ([`target_layers`], [`root_disks`]) and the boot tooling of a root tree
//! ([`readiness_facts`]: initramfs generator, LVM/md/crypt tools and their
//! initramfs hooks, mdadm.conf, crypttab, one initramfs image per kernel).
//! Listing the images (running `lsinitramfs`) is left to `exec`.
//!
//! Reads only: sysfs through [`SysRoot`], the root tree through a path, so
//! tests point both at fixtures.

use std::fs;
use std::path::{Path, PathBuf};

use super::SysRoot;
use super::device::{names_in as names, partition_of, read_trim};

/// How the machine was booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// Legacy BIOS: GRUB lives in the boot sector (and the gap or a BIOS
    /// boot partition) of each disk.
    Bios,
    /// UEFI (`/sys/firmware/efi` exists): GRUB lives on the ESP.
    Uefi,
}
use serde::{Deserialize, Serialize};

/// One layer of the target's block stack, top (what is mounted) first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Layer {
    /// An LVM logical volume (device-mapper uuid `LVM-...`).
    Lvm {
        /// `VG/LV`.
        name: String,
    },
    /// An md array.
    Md {
        /// `/dev/md0`, `/dev/md/root`.
        device: PathBuf,
        /// The array's UUID as mdadm prints it (`xxxxxxxx:xxxxxxxx:...`).
        uuid: String,
    },
    /// A dm-crypt mapping (device-mapper uuid `CRYPT-...`).
    Crypt {
        /// The mapping's name (`/dev/mapper/NAME`).
        name: String,
    },
}

/// The initramfs generator the system uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    /// Debian and Ubuntu: `update-initramfs`, listed by `lsinitramfs`.
    InitramfsTools,
    /// Fedora, RHEL, SUSE: `dracut`, listed by `lsinitrd`.
    Dracut,
    /// Arch: `mkinitcpio`, listed by `lsinitcpio`.
    Mkinitcpio,
}

/// The initramfs image of one installed kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initramfs {
    /// The kernel release (`6.1.0-18-amd64`).
    pub kernel: String,
    /// The image (`/boot/initrd.img-6.1.0-18-amd64`).
    pub path: PathBuf,
    /// The paths it holds (from [`parse_listing`]), or `None` when it could
    /// not be listed.
    pub listing: Option<Vec<String>>,
}

/// Facts about the system that will boot from the new root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootReadinessFacts {
    /// The target's stack, top first; empty for a plain disk or partition.
    pub layers: Vec<Layer>,
    /// The generator in use, if any is installed.
    pub generator: Option<Generator>,
    /// `lvm` and the generator's LVM hook are installed.
    pub lvm_tools: bool,
    /// `mdadm` and the generator's md hook are installed.
    pub mdadm_tools: bool,
    /// `cryptsetup` and its initramfs hook are installed.
    pub crypt_tools: bool,
    /// The text of `/etc/mdadm/mdadm.conf` (or `/etc/mdadm.conf`), if any.
    pub mdadm_conf: Option<String>,
    /// The text of `/etc/crypttab`, if any.
    pub crypttab: Option<String>,
    /// One entry per installed kernel.
    pub initramfs: Vec<Initramfs>,
}

/// Device-mapper's escaping of `VG-LV` names: a `-` inside either part is
/// doubled, so the single `-` separates them.
fn lvm_name(dm_name: &str) -> String {
    let mut vg = String::new();
    let mut chars = dm_name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '-' {
            if chars.peek() == Some(&'-') {
                chars.next();
                vg.push('-');
            } else {
                let lv: String = chars.collect();
                return format!("{vg}/{}", lv.replace("--", "-"));
            }
        } else {
            vg.push(c);
        }
    }
    vg
}

/// The md array's UUID from udev's `/dev/disk/by-id/md-uuid-*` links.
fn md_uuid(sys: &SysRoot, name: &str) -> Option<String> {
    let dir = sys.dev_dir.join("disk/by-id");
    names(&dir).into_iter().find_map(|n| {
        let uuid = n.strip_prefix("md-uuid-")?;
        let target = fs::read_link(dir.join(&n)).ok()?;
        (target.file_name()?.to_str()? == name).then(|| uuid.to_owned())
    })
}

/// The stack under block device `name` (a kernel name: `dm-3`, `md0`), top
/// first, each layer once: LVM volumes, md arrays, dm-crypt mappings.
/// Partitions and plain disks add no layer.
pub fn target_layers(sys: &SysRoot, name: &str) -> Vec<Layer> {
    let mut out = Vec::new();
    let mut todo = vec![name.to_owned()];
    // A stack is a few levels deep; the bound keeps a looping fixture finite.
    let mut budget = 64_u32;
    while let Some(n) = todo.pop() {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        let dir = sys.sys(format!("class/block/{n}"));
        let layer = if n.starts_with("dm-") {
            let uuid = read_trim(&dir.join("dm/uuid")).unwrap_or_default();
            let dm_name = read_trim(&dir.join("dm/name")).unwrap_or_else(|| n.clone());
            if uuid.starts_with("LVM-") {
                Some(Layer::Lvm {
                    name: lvm_name(&dm_name),
                })
            } else if uuid.starts_with("CRYPT-") {
                Some(Layer::Crypt { name: dm_name })
            } else {
                None
            }
        } else if n.starts_with("md") {
            Some(Layer::Md {
                device: sys.dev_dir.join(&n),
                uuid: md_uuid(sys, &n).unwrap_or_default(),
            })
        } else {
            None
        };
        if let Some(l) = layer {
            if !out.contains(&l) {
                out.push(l);
            }
        }
        // Slaves in reverse so the first is examined first.
        todo.extend(names(&dir.join("slaves")).into_iter().rev());
    }
    out
}

/// The whole disks at the bottom of `name`'s stack (each half of a RAID1,
/// each PV's disk), sorted, without duplicates: the disks a BIOS may boot
/// the new root from.
pub fn root_disks(sys: &SysRoot, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![name.to_owned()];
    let mut budget = 256_u32;
    while let Some(n) = todo.pop() {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        let slaves = names(&sys.sys(format!("class/block/{n}/slaves")));
        if slaves.is_empty() {
            let disk = partition_of(sys, &n).map_or(n, |p| p.disk);
            let path = sys.dev_dir.join(disk);
            if !out.contains(&path) {
                out.push(path);
            }
        } else {
            todo.extend(slaves);
        }
    }
    out.sort();
    out
}

/// The first of `rels` that exists under `root`.
fn any_exists(root: &Path, rels: &[&str]) -> bool {
    rels.iter().any(|r| root.join(r).exists())
}

/// The boot tooling of the root tree at `root` for a target with `layers`.
/// Initramfs listings are left `None`: `exec` fills them in.
pub fn readiness_facts(root: &Path, layers: Vec<Layer>) -> BootReadinessFacts {
    let generator = if any_exists(
        root,
        &["usr/sbin/update-initramfs", "sbin/update-initramfs"],
    ) {
        Some(Generator::InitramfsTools)
    } else if any_exists(root, &["usr/bin/dracut", "usr/sbin/dracut", "sbin/dracut"]) {
        Some(Generator::Dracut)
    } else if any_exists(root, &["usr/bin/mkinitcpio"]) {
        Some(Generator::Mkinitcpio)
    } else {
        None
    };
    // Each tool counts only with the generator's hook that puts it in the image.
    let hook = |initramfs_tools: &str, dracut: &str, mkinitcpio: &str| match generator {
        Some(Generator::InitramfsTools) => root
            .join("usr/share/initramfs-tools/hooks")
            .join(initramfs_tools)
            .exists(),
        Some(Generator::Dracut) => root.join("usr/lib/dracut/modules.d").join(dracut).exists(),
        Some(Generator::Mkinitcpio) => root
            .join("usr/lib/initcpio/install")
            .join(mkinitcpio)
            .exists(),
        None => false,
    };
    let lvm_tools =
        any_exists(root, &["usr/sbin/lvm", "sbin/lvm"]) && hook("lvm2", "90lvm", "lvm2");
    let mdadm_tools = any_exists(root, &["usr/sbin/mdadm", "sbin/mdadm"])
        && hook("mdadm", "90mdraid", "mdadm_udev");
    let crypt_tools = any_exists(root, &["usr/sbin/cryptsetup", "sbin/cryptsetup"])
        && hook("cryptroot", "90crypt", "encrypt");
    let mdadm_conf = ["etc/mdadm/mdadm.conf", "etc/mdadm.conf"]
        .iter()
        .find_map(|r| fs::read_to_string(root.join(r)).ok());
    let crypttab = fs::read_to_string(root.join("etc/crypttab")).ok();
    let mut kernels = names(&root.join("usr/lib/modules"));
    if kernels.is_empty() {
        kernels = names(&root.join("lib/modules"));
    }
    let initramfs = match generator {
        Some(Generator::Mkinitcpio) => vec![Initramfs {
            kernel: "linux".into(),
            path: PathBuf::from("/boot/initramfs-linux.img"),
            listing: None,
        }],
        Some(g) => kernels
            .into_iter()
            .map(|k| {
                let file = match g {
                    Generator::Dracut => format!("initramfs-{k}.img"),
                    _ => format!("initrd.img-{k}"),
                };
                Initramfs {
                    path: Path::new("/boot").join(file),
                    kernel: k,
                    listing: None,
                }
            })
            .collect(),
        None => Vec::new(),
    };
    BootReadinessFacts {
        layers,
        generator,
        lvm_tools,
        mdadm_tools,
        crypt_tools,
        mdadm_conf,
        crypttab,
        initramfs,
    }
}

/// BIOS or UEFI: UEFI when the kernel exposes `/sys/firmware/efi`.
pub fn firmware(sys: &SysRoot) -> Firmware {
    if sys.sys("firmware/efi").is_dir() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    }
}

/// The value of debconf question `name` in `config.dat` text (stanzas of
/// `Field: value` lines separated by blank lines), when it has one.
pub fn debconf_value(config_dat: &str, name: &str) -> Option<String> {
    let mut in_stanza = false;
    for line in config_dat.lines() {
        if line.trim().is_empty() {
            in_stanza = false;
        } else if let Some(n) = line.strip_prefix("Name:") {
            in_stanza = n.trim() == name;
        } else if in_stanza {
            if let Some(v) = line.strip_prefix("Value:") {
                let v = v.trim();
                return (!v.is_empty()).then(|| v.to_owned());
            }
        }
    }
    None
}

/// GRUB's install devices as debconf records them for the root tree at
/// `root` (`grub-pc/install_devices`), split on commas.
pub fn grub_debconf_devices(root: &Path) -> Vec<PathBuf> {
    fs::read_to_string(root.join("var/cache/debconf/config.dat"))
        .ok()
        .and_then(|t| debconf_value(&t, "grub-pc/install_devices"))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a boot sector (the first 512 bytes of a disk) holds GRUB's boot.img:
/// it carries the string `GRUB` in its code (the "GRUB " of its error messages).
pub fn is_grub_boot_sector(sector: &[u8]) -> bool {
    sector.len() >= 512
        && sector[510..512] == [0x55, 0xaa]
        && sector[..440].windows(4).any(|w| w == b"GRUB")
}

/// The whole disks in sysfs (not partitions, loop, ram, zram, md or dm
/// devices) whose boot sector holds GRUB.
pub fn grub_boot_disks(sys: &SysRoot) -> Vec<PathBuf> {
    use std::io::Read;
    let mut out = Vec::new();
    for name in names(&sys.sys("block")) {
        if ["loop", "ram", "zram", "md", "dm-", "sr", "nbd"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let dev = sys.dev_dir.join(&name);
        let mut sector = [0u8; 512];
        let ok = fs::File::open(&dev)
            .and_then(|mut f| f.read_exact(&mut sector))
            .is_ok();
        if ok && is_grub_boot_sector(&sector) {
            out.push(dev);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::{link, put};

    #[test]
    fn dm_names_unescape_to_vg_and_lv() {
        assert_eq!(lvm_name("sys-root"), "sys/root");
        assert_eq!(lvm_name("my--vg-lv--x"), "my-vg/lv-x");
        assert_eq!(lvm_name("novolume"), "novolume");
    }

    /// LVM volume dm-0 on md0, a RAID1 of sda2 and sdb2.
    fn lvm_on_raid1(t: &Path) -> SysRoot {
        put(t, "sys/class/block/dm-0/dm/uuid", "LVM-abc\n");
        put(t, "sys/class/block/dm-0/dm/name", "sys-root\n");
        fs_dir(t, "sys/class/block/dm-0/slaves/md0");
        fs_dir(t, "sys/class/block/md0/slaves/sda2");
        fs_dir(t, "sys/class/block/md0/slaves/sdb2");
        for (disk, part) in [("sda", "sda2"), ("sdb", "sdb2")] {
            put(t, &format!("sys/devices/{disk}/{part}/partition"), "2\n");
            put(t, &format!("sys/devices/{disk}/{part}/start"), "2048\n");
            put(t, &format!("sys/devices/{disk}/{part}/size"), "2048\n");
            link(
                t,
                &format!("sys/class/block/{part}"),
                t.join(format!("sys/devices/{disk}/{part}")),
            );
        }
        link(t, "dev/disk/by-id/md-uuid-1111:2222:3333:4444", "../../md0");
        SysRoot::under(t)
    }

    fn fs_dir(t: &Path, rel: &str) {
        fs::create_dir_all(t.join(rel)).unwrap();
    }

    #[test]
    fn a_stack_reads_top_first_down_to_its_disks() {
        let t = tempfile::tempdir().unwrap();
        let sys = lvm_on_raid1(t.path());
        assert_eq!(
            target_layers(&sys, "dm-0"),
            vec![
                Layer::Lvm {
                    name: "sys/root".into()
                },
                Layer::Md {
                    device: t.path().join("dev/md0"),
                    uuid: "1111:2222:3333:4444".into()
                }
            ]
        );
        assert_eq!(
            root_disks(&sys, "dm-0"),
            vec![t.path().join("dev/sda"), t.path().join("dev/sdb")]
        );
        assert!(target_layers(&sys, "sda2").is_empty());
        assert_eq!(root_disks(&sys, "sda2"), vec![t.path().join("dev/sda")]);
    }

    #[test]
    fn a_debian_root_with_lvm2_but_not_mdadm() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for f in [
            "usr/sbin/update-initramfs",
            "usr/sbin/lvm",
            "usr/share/initramfs-tools/hooks/lvm2",
            "usr/sbin/mdadm",
            "lib/modules/6.1.0-18-amd64/modules.dep",
            "lib/modules/6.1.0-17-amd64/modules.dep",
        ] {
            put(r, f, "");
        }
        put(r, "etc/mdadm/mdadm.conf", "ARRAY /dev/md0 UUID=1:2:3:4\n");
        let f = readiness_facts(r, vec![]);
        assert_eq!(f.generator, Some(Generator::InitramfsTools));
        assert!(f.lvm_tools);
        assert!(
            !f.mdadm_tools,
            "mdadm without its initramfs hook does not count"
        );
        assert!(!f.crypt_tools);
        assert_eq!(
            f.mdadm_conf.as_deref(),
            Some("ARRAY /dev/md0 UUID=1:2:3:4\n")
        );
        let paths: Vec<_> = f.initramfs.iter().map(|i| i.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("/boot/initrd.img-6.1.0-17-amd64"),
                "/boot/initrd.img-6.1.0-18-amd64".into()
            ]
        );
    }

    #[test]
    fn no_generator_means_no_images() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "lib/modules/6.1/modules.dep", "");
        let f = readiness_facts(t.path(), vec![]);
        assert_eq!(f.generator, None);
        assert!(f.initramfs.is_empty());
    }

    #[test]
    fn debconf_stanzas_give_grub_install_devices() {
        let dat = "Name: grub-pc/install_devices_empty\nTemplate: x\nValue: false\n\n\
                   Name: grub-pc/install_devices\nTemplate: grub-pc/install_devices\n\
                   Value: /dev/disk/by-id/ata-A, /dev/vdb\nOwners: grub-pc\n\n\
                   Name: other\nValue: x\n";
        assert_eq!(
            debconf_value(dat, "grub-pc/install_devices").as_deref(),
            Some("/dev/disk/by-id/ata-A, /dev/vdb")
        );
        assert_eq!(debconf_value(dat, "missing"), None);
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "var/cache/debconf/config.dat", dat);
        assert_eq!(
            grub_debconf_devices(t.path()),
            vec![PathBuf::from("/dev/disk/by-id/ata-A"), "/dev/vdb".into()]
        );
    }

    #[test]
    fn a_grub_boot_sector_is_recognised() {
        let mut s = [0u8; 512];
        s[510] = 0x55;
        s[511] = 0xaa;
        assert!(!is_grub_boot_sector(&s));
        s[0x180..0x184].copy_from_slice(b"GRUB");
        assert!(is_grub_boot_sector(&s));
        s[511] = 0;
        assert!(!is_grub_boot_sector(&s), "no boot signature");
        assert!(!is_grub_boot_sector(&s[..100]));
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("sys/block/sda")).unwrap();
        fs::create_dir_all(t.path().join("sys/block/loop0")).unwrap();
        s[511] = 0xaa;
        put(t.path(), "dev/sda", "");
        fs::write(t.path().join("dev/sda"), s).unwrap();
        fs::write(t.path().join("dev/loop0"), s).unwrap();
        let sys = SysRoot::under(t.path());
        assert_eq!(grub_boot_disks(&sys), vec![t.path().join("dev/sda")]);
        assert_eq!(firmware(&sys), Firmware::Bios);
        fs::create_dir_all(t.path().join("sys/firmware/efi")).unwrap();
        assert_eq!(firmware(&sys), Firmware::Uefi);
    }
}
