//! On-disk signatures that mean "something lives here": filesystems (ext2/3/4,
//! xfs, btrfs, vfat, ntfs, iso9660), LVM2 physical volumes, md RAID members,
//! swap, and GPT/MBR partition tables. Each is found by its magic at the
//! offset the kernel or blkid looks at, with its UUID and label when it has one.
//!
//! Reads only through [`ReadAt`] (tests feed byte vectors); imports `ext`
//! for that trait and nothing else. A read past the end is "no signature".

use std::io;

use crate::ext::ReadAt;

/// What kind of signature; serialized as blkid's `TYPE`/`PTTYPE` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs)]
pub enum SignatureKind {
    #[serde(rename = "ext2")]
    Ext2,
    #[serde(rename = "ext3")]
    Ext3,
    #[serde(rename = "ext4")]
    Ext4,
    #[serde(rename = "xfs")]
    Xfs,
    #[serde(rename = "btrfs")]
    Btrfs,
    #[serde(rename = "LVM2_member")]
    Lvm2Member,
    #[serde(rename = "linux_raid_member")]
    LinuxRaidMember,
    #[serde(rename = "swap")]
    Swap,
    #[serde(rename = "vfat")]
    Vfat,
    #[serde(rename = "ntfs")]
    Ntfs,
    #[serde(rename = "iso9660")]
    Iso9660,
    #[serde(rename = "gpt")]
    Gpt,
    #[serde(rename = "dos")]
    Mbr,
}

impl SignatureKind {
    /// A short human name: "ext4", "LVM2 physical volume", ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Ext2 => "ext2",
            Self::Ext3 => "ext3",
            Self::Ext4 => "ext4",
            Self::Xfs => "xfs",
            Self::Btrfs => "btrfs",
            Self::Lvm2Member => "LVM2 physical volume",
            Self::LinuxRaidMember => "md RAID member",
            Self::Swap => "swap",
            Self::Vfat => "vfat",
            Self::Ntfs => "ntfs",
            Self::Iso9660 => "iso9660",
            Self::Gpt => "GPT partition table",
            Self::Mbr => "MBR partition table",
        }
    }
}

/// One signature found on a device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signature {
    /// What it is.
    pub kind: SignatureKind,
    /// Byte offset of the magic.
    pub offset: u64,
    /// Filesystem / PV / array / disk UUID, when the format has one.
    pub uuid: Option<String>,
    /// Label or array name, when set.
    pub label: Option<String>,
    /// Extra detail: md metadata version, partition count.
    pub detail: Option<String>,
    /// Size the filesystem claims, in bytes, when the superblock says.
    pub fs_bytes: Option<u64>,
}

impl Signature {
    fn new(kind: SignatureKind, offset: u64) -> Self {
        Self {
            kind,
            offset,
            uuid: None,
            label: None,
            detail: None,
            fs_bytes: None,
        }
    }

    /// "ext4 signature (UUID 0a1b..., label \"root\")", for messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{} signature", self.kind.name());
        let mut parts = Vec::new();
        if let Some(d) = &self.detail {
            parts.push(d.clone());
        }
        if let Some(u) = &self.uuid {
            parts.push(format!("UUID {u}"));
        }
        if let Some(l) = &self.label {
            parts.push(format!("label {l:?}"));
        }
        if parts.is_empty() {
            parts.push(format!("at byte {}", self.offset));
        }
        s.push_str(&format!(" ({})", parts.join(", ")));
        s
    }
}

/// A read inside the device failed while looking for signatures.
#[derive(Debug, thiserror::Error)]
#[error("reading {len} bytes at byte offset {offset}: {source}")]
pub struct ReadError {
    /// Where the failed read started.
    pub offset: u64,
    /// How many bytes it asked for.
    pub len: usize,
    /// The error.
    #[source]
    pub source: io::Error,
}

type Result<T> = std::result::Result<T, ReadError>;

/// Read `len` bytes at `off`, or `None` when that range is not inside `size`.
fn read<R: ReadAt + ?Sized>(dev: &R, size: u64, off: u64, len: usize) -> Result<Option<Vec<u8>>> {
    if off.checked_add(len as u64).is_none_or(|end| end > size) {
        return Ok(None);
    }
    let mut buf = vec![0u8; len];
    match dev.read_exact_at(&mut buf, off) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(source) => Err(ReadError {
            offset: off,
            len,
            source,
        }),
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// 16 bytes as 8-4-4-4-12 hex (byte order as stored: ext, xfs, btrfs, md).
fn uuid(b: &[u8]) -> Option<String> {
    if b.iter().all(|&c| c == 0) {
        return None;
    }
    let h: String = b.iter().map(|c| format!("{c:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A GPT GUID: the first three fields are little-endian.
fn guid(b: &[u8]) -> Option<String> {
    let mut s = [0u8; 16];
    s.copy_from_slice(&b[..16]);
    s[0..4].reverse();
    s[4..6].reverse();
    s[6..8].reverse();
    uuid(&s)
}

/// A NUL- or space-padded label; `None` when empty.
fn label(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

// ext2/3/4 feature bits (fs/ext4/ext4.h).
const EXT3_FEATURE_COMPAT_HAS_JOURNAL: u32 = 0x4;
const EXT4_INCOMPAT_EXT4_ONLY: u32 = 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x8000;
const EXT4_RO_COMPAT_EXT4_ONLY: u32 = 0x8 | 0x10 | 0x20 | 0x40 | 0x200 | 0x400;
const EXT4_FEATURE_INCOMPAT_64BIT: u32 = 0x80;

fn ext<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Option<Signature>> {
    let Some(sb) = read(dev, size, 1024, 1024)? else {
        return Ok(None);
    };
    if le16(&sb, 0x38) != 0xEF53 {
        return Ok(None);
    }
    let compat = le32(&sb, 0x5C);
    let incompat = le32(&sb, 0x60);
    let ro_compat = le32(&sb, 0x64);
    let kind =
        if incompat & EXT4_INCOMPAT_EXT4_ONLY != 0 || ro_compat & EXT4_RO_COMPAT_EXT4_ONLY != 0 {
            SignatureKind::Ext4
        } else if compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL != 0 {
            SignatureKind::Ext3
        } else {
            SignatureKind::Ext2
        };
    let mut s = Signature::new(kind, 1080);
    s.uuid = uuid(&sb[0x68..0x78]);
    s.label = label(&sb[0x78..0x88]);
    let log = le32(&sb, 0x18);
    let mut blocks = u64::from(le32(&sb, 0x4));
    if incompat & EXT4_FEATURE_INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(&sb, 0x150)) << 32;
    }
    if log <= 6 {
        s.fs_bytes = blocks.checked_mul(1024u64 << log);
    }
    Ok(Some(s))
}

fn xfs<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Option<Signature>> {
    let Some(sb) = read(dev, size, 0, 120)? else {
        return Ok(None);
    };
    if &sb[0..4] != b"XFSB" {
        return Ok(None);
    }
    let mut s = Signature::new(SignatureKind::Xfs, 0);
    s.uuid = uuid(&sb[32..48]);
    s.label = label(&sb[108..120]);
    s.fs_bytes = be64(&sb, 8).checked_mul(u64::from(be32(&sb, 4)));
    Ok(Some(s))
}

const BTRFS_SUPER: u64 = 65536;

fn btrfs<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Option<Signature>> {
    let Some(sb) = read(dev, size, BTRFS_SUPER, 0x12b + 256)? else {
        return Ok(None);
    };
    if &sb[64..72] != b"_BHRfS_M" {
        return Ok(None);
    }
    let mut s = Signature::new(SignatureKind::Btrfs, BTRFS_SUPER + 64);
    s.uuid = uuid(&sb[32..48]);
    s.label = label(&sb[0x12b..0x12b + 256]);
    s.fs_bytes = Some(le64(&sb, 0x70));
    Ok(Some(s))
}

/// LVM2: a label "LABELONE" in one of the first four sectors, type "LVM2 001".
fn lvm2<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Option<Signature>> {
    for sector in 0u64..4 {
        let at = sector * 512;
        let Some(b) = read(dev, size, at, 512)? else {
            return Ok(None);
        };
        if &b[0..8] != b"LABELONE" || &b[24..32] != b"LVM2 001" {
            continue;
        }
        let mut s = Signature::new(SignatureKind::Lvm2Member, at);
        // pv_header follows at offset_xl inside the label sector: 32 uuid chars.
        let off = usize::try_from(le32(&b, 20)).unwrap_or(usize::MAX);
        if let Some(id) = off.checked_add(32).and_then(|end| b.get(off..end)) {
            if id.iter().all(u8::is_ascii_alphanumeric) {
                let id = String::from_utf8_lossy(id);
                // LVM prints 6-4-4-4-4-4-6.
                let cuts = [6, 10, 14, 18, 22, 26];
                let mut out = String::new();
                for (i, c) in id.chars().enumerate() {
                    if cuts.contains(&i) {
                        out.push('-');
                    }
                    out.push(c);
                }
                s.uuid = Some(out);
            }
        }
        return Ok(Some(s));
    }
    Ok(None)
}

const MD_MAGIC: u32 = 0xa92b_4efc;

/// md RAID: 1.1 at 0, 1.2 at 4 KiB, 1.0 at the end minus 8 KiB (4 KiB
/// aligned), 0.90 in the last 64 KiB-aligned 64 KiB.
fn md<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Vec<Signature>> {
    let mut found = Vec::new();
    let sectors = size / 512;
    let mut v1 = vec![(0u64, "1.1"), (4096, "1.2")];
    if sectors >= 16 {
        v1.push((((sectors - 16) & !7) * 512, "1.0"));
    }
    for (at, version) in v1 {
        let Some(b) = read(dev, size, at, 64)? else {
            continue;
        };
        if le32(&b, 0) == MD_MAGIC && le32(&b, 4) == 1 {
            let mut s = Signature::new(SignatureKind::LinuxRaidMember, at);
            s.detail = Some(format!("metadata {version}"));
            s.uuid = uuid(&b[16..32]);
            s.label = label(&b[32..64]);
            found.push(s);
        }
    }
    if size >= 2 * 65536 {
        let at = (size & !65535) - 65536;
        if let Some(b) = read(dev, size, at, 64)? {
            if le32(&b, 0) == MD_MAGIC && le32(&b, 4) == 0 && le32(&b, 8) == 90 {
                let mut s = Signature::new(SignatureKind::LinuxRaidMember, at);
                s.detail = Some("metadata 0.90".into());
                let mut id = Vec::with_capacity(16);
                for word in [5, 13, 14, 15] {
                    id.extend_from_slice(&b[word * 4..word * 4 + 4]);
                }
                s.uuid = uuid(&id);
                found.push(s);
            }
        }
    }
    Ok(found)
}

/// Swap: "SWAPSPACE2" (or the old "SWAP-SPACE") in the last 10 bytes of the
/// first page, for the page sizes Linux uses.
fn swap<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Option<Signature>> {
    for page in [4096u64, 8192, 16384, 65536] {
        let Some(m) = read(dev, size, page - 10, 10)? else {
            return Ok(None);
        };
        if m != b"SWAPSPACE2" && m != b"SWAP-SPACE" {
            continue;
        }
        let mut s = Signature::new(SignatureKind::Swap, page - 10);
        if m == b"SWAPSPACE2" {
            if let Some(h) = read(dev, size, 1024, 48)? {
                s.uuid = uuid(&h[12..28]);
                s.label = label(&h[28..44]);
            }
        }
        return Ok(Some(s));
    }
    Ok(None)
}

/// vfat, ntfs and MBR all live in sector 0; a FAT or NTFS boot sector also
/// ends in 0x55AA, so an MBR is reported only when sector 0 is neither.
fn sector0<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Vec<Signature>> {
    let Some(b) = read(dev, size, 0, 512)? else {
        return Ok(Vec::new());
    };
    if &b[3..11] == b"NTFS    " {
        let mut s = Signature::new(SignatureKind::Ntfs, 3);
        s.uuid = Some(format!("{:016X}", le64(&b, 0x48)));
        return Ok(vec![s]);
    }
    let boot = b[510] == 0x55 && b[511] == 0xAA;
    let fat32 = &b[82..87] == b"FAT32";
    let fat16 = &b[54..57] == b"FAT";
    if boot && (fat32 || fat16) {
        let (at, id) = if fat32 { (82, 67) } else { (54, 39) };
        let mut s = Signature::new(SignatureKind::Vfat, at);
        let serial = le32(&b, id);
        s.uuid = Some(format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff));
        s.label = label(&b[id + 4..id + 15]).filter(|l| l != "NO NAME");
        return Ok(vec![s]);
    }
    if !boot {
        return Ok(Vec::new());
    }
    let mut parts = 0;
    let mut protective = false;
    for i in 0..4 {
        let e = &b[446 + 16 * i..446 + 16 * (i + 1)];
        if e[0] != 0 && e[0] != 0x80 {
            return Ok(Vec::new()); // not a partition table
        }
        if e[4] != 0 {
            parts += 1;
            protective |= e[4] == 0xEE;
        }
    }
    if parts == 0 || protective {
        return Ok(Vec::new()); // boot code only, or the GPT's protective MBR
    }
    let mut s = Signature::new(SignatureKind::Mbr, 510);
    s.detail = Some(format!("{parts} partition(s)"));
    let id = le32(&b, 440);
    if id != 0 {
        s.uuid = Some(format!("{id:08x}"));
    }
    Ok(vec![s])
}

/// GPT header "EFI PART" at LBA 1 (512-byte or 4 KiB sectors).
fn gpt<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Option<Signature>> {
    for at in [512u64, 4096] {
        let Some(h) = read(dev, size, at, 92)? else {
            return Ok(None);
        };
        if &h[0..8] == b"EFI PART" {
            let mut s = Signature::new(SignatureKind::Gpt, at);
            s.uuid = guid(&h[56..72]);
            return Ok(Some(s));
        }
    }
    Ok(None)
}

fn iso9660<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Option<Signature>> {
    let Some(b) = read(dev, size, 32768, 72)? else {
        return Ok(None);
    };
    if &b[1..6] != b"CD001" {
        return Ok(None);
    }
    let mut s = Signature::new(SignatureKind::Iso9660, 32769);
    s.label = label(&b[40..72]);
    Ok(Some(s))
}

/// Every signature on a device of `size` bytes, in on-disk order of
/// importance (filesystems, volume managers, swap, partition tables).
/// Errors only when a read inside the device fails.
pub fn detect<R: ReadAt + ?Sized>(dev: &R, size: u64) -> Result<Vec<Signature>> {
    let mut found = Vec::new();
    found.extend(ext(dev, size)?);
    found.extend(xfs(dev, size)?);
    found.extend(btrfs(dev, size)?);
    found.extend(lvm2(dev, size)?);
    found.extend(md(dev, size)?);
    found.extend(swap(dev, size)?);
    found.extend(sector0(dev, size)?);
    found.extend(iso9660(dev, size)?);
    found.extend(gpt(dev, size)?);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(size: usize) -> Vec<u8> {
        vec![0u8; size]
    }

    fn put(img: &mut [u8], at: usize, bytes: &[u8]) {
        img[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn kinds(img: &[u8]) -> Vec<SignatureKind> {
        detect(img, img.len() as u64)
            .unwrap()
            .iter()
            .map(|s| s.kind)
            .collect()
    }

    #[test]
    fn blank_and_tiny_devices_have_none() {
        assert!(kinds(&image(1 << 20)).is_empty());
        assert!(kinds(&image(0)).is_empty());
        assert!(kinds(&image(700)).is_empty());
    }

    #[test]
    fn ext_flavours_uuid_label_and_size() {
        let mut img = image(1 << 20);
        put(&mut img, 1080, &0xEF53u16.to_le_bytes());
        put(&mut img, 1024 + 4, &256u32.to_le_bytes()); // blocks
        put(&mut img, 1024 + 0x18, &2u32.to_le_bytes()); // 4 KiB blocks
        let id: Vec<u8> = (1..=16).collect();
        put(&mut img, 1024 + 0x68, &id);
        put(&mut img, 1024 + 0x78, b"root\0");
        let s = &detect(&img, img.len() as u64).unwrap()[0];
        assert_eq!(s.kind, SignatureKind::Ext2);
        assert_eq!(s.offset, 1080);
        assert_eq!(
            s.uuid.as_deref(),
            Some("01020304-0506-0708-090a-0b0c0d0e0f10")
        );
        assert_eq!(s.label.as_deref(), Some("root"));
        assert_eq!(s.fs_bytes, Some(1 << 20));
        assert!(s.describe().contains("ext2 signature"));
        assert!(s.describe().contains("label \"root\""));
        put(&mut img, 1024 + 0x5C, &4u32.to_le_bytes());
        assert_eq!(kinds(&img), [SignatureKind::Ext3]);
        put(&mut img, 1024 + 0x60, &0x40u32.to_le_bytes());
        assert_eq!(kinds(&img), [SignatureKind::Ext4]);
    }

    #[test]
    fn xfs_btrfs_iso() {
        let mut img = image(1 << 20);
        put(&mut img, 0, b"XFSB");
        put(&mut img, 4, &4096u32.to_be_bytes());
        put(&mut img, 8, &100u64.to_be_bytes());
        put(&mut img, 108, b"data");
        let s = &detect(&img, img.len() as u64).unwrap()[0];
        assert_eq!(
            (s.kind, s.fs_bytes, s.label.as_deref()),
            (SignatureKind::Xfs, Some(409_600), Some("data"))
        );

        let mut img = image(1 << 20);
        put(&mut img, 65536 + 64, b"_BHRfS_M");
        put(&mut img, 65536 + 0x12b, b"pool");
        let s = &detect(&img, img.len() as u64).unwrap()[0];
        assert_eq!(
            (s.kind, s.offset, s.label.as_deref()),
            (SignatureKind::Btrfs, 65600, Some("pool"))
        );

        let mut img = image(1 << 20);
        put(&mut img, 32769, b"CD001");
        put(&mut img, 32768 + 40, b"DISC                            ");
        let s = &detect(&img, img.len() as u64).unwrap()[0];
        assert_eq!(
            (s.kind, s.label.as_deref()),
            (SignatureKind::Iso9660, Some("DISC"))
        );
    }

    #[test]
    fn lvm2_label_in_sector_one() {
        let mut img = image(1 << 20);
        put(&mut img, 512, b"LABELONE");
        put(&mut img, 512 + 20, &32u32.to_le_bytes());
        put(&mut img, 512 + 24, b"LVM2 001");
        put(&mut img, 512 + 32, b"abcdefghijklmnopqrstuvwxyz012345");
        let s = &detect(&img, img.len() as u64).unwrap()[0];
        assert_eq!(s.kind, SignatureKind::Lvm2Member);
        assert_eq!(s.offset, 512);
        assert_eq!(
            s.uuid.as_deref(),
            Some("abcdef-ghij-klmn-opqr-stuv-wxyz-012345")
        );
        // A label with another type is not LVM2.
        put(&mut img, 512 + 24, b"LVM1 001");
        assert!(kinds(&img).is_empty());
    }

    #[test]
    fn md_every_metadata_version() {
        let size = (1 << 20) + 3 * 512; // not 64 KiB aligned
        for (at, version) in [
            (0usize, "1.1"),
            (4096, "1.2"),
            ((((size / 512) - 16) & !7) * 512, "1.0"),
        ] {
            let mut img = image(size);
            put(&mut img, at, &MD_MAGIC.to_le_bytes());
            put(&mut img, at + 4, &1u32.to_le_bytes());
            put(&mut img, at + 32, b"host:0");
            let s = detect(&img, size as u64).unwrap();
            assert_eq!(s.len(), 1, "{version}");
            assert_eq!(s[0].kind, SignatureKind::LinuxRaidMember);
            assert_eq!(s[0].offset, at as u64);
            assert_eq!(
                s[0].detail.as_deref(),
                Some(&*format!("metadata {version}"))
            );
            assert_eq!(s[0].label.as_deref(), Some("host:0"));
        }
        let mut img = image(size);
        let at = (size & !65535) - 65536;
        put(&mut img, at, &MD_MAGIC.to_le_bytes());
        put(&mut img, at + 8, &90u32.to_le_bytes());
        put(&mut img, at + 20, &[0xaa; 4]);
        let s = detect(&img, size as u64).unwrap();
        assert_eq!(s[0].detail.as_deref(), Some("metadata 0.90"));
        assert!(s[0].uuid.as_deref().unwrap().starts_with("aaaaaaaa-0000"));
    }

    #[test]
    fn swap_at_each_page_size() {
        for page in [4096usize, 65536] {
            let mut img = image(1 << 20);
            put(&mut img, page - 10, b"SWAPSPACE2");
            put(&mut img, 1024 + 28, b"swp");
            let s = &detect(&img, img.len() as u64).unwrap()[0];
            assert_eq!(
                (s.kind, s.offset, s.label.as_deref()),
                (SignatureKind::Swap, page as u64 - 10, Some("swp"))
            );
        }
        let mut img = image(1 << 20);
        put(&mut img, 4086, b"SWAP-SPACE");
        assert_eq!(kinds(&img), [SignatureKind::Swap]);
    }

    #[test]
    fn sector_zero_fat_ntfs_mbr() {
        let mut img = image(1 << 20);
        put(&mut img, 510, &[0x55, 0xAA]);
        put(&mut img, 82, b"FAT32   ");
        put(&mut img, 67, &0x1234_abcdu32.to_le_bytes());
        put(&mut img, 71, b"BOOT       ");
        let s = &detect(&img, img.len() as u64).unwrap()[0];
        assert_eq!(
            (s.kind, s.uuid.as_deref(), s.label.as_deref()),
            (SignatureKind::Vfat, Some("1234-ABCD"), Some("BOOT"))
        );

        let mut img = image(1 << 20);
        put(&mut img, 3, b"NTFS    ");
        put(&mut img, 510, &[0x55, 0xAA]);
        assert_eq!(kinds(&img), [SignatureKind::Ntfs]);

        let mut img = image(1 << 20);
        put(&mut img, 510, &[0x55, 0xAA]);
        assert!(kinds(&img).is_empty(), "boot signature without partitions");
        put(&mut img, 446 + 4, &[0x83]);
        put(&mut img, 446 + 16 + 4, &[0x82]);
        let s = &detect(&img, img.len() as u64).unwrap()[0];
        assert_eq!(s.kind, SignatureKind::Mbr);
        assert_eq!(s.detail.as_deref(), Some("2 partition(s)"));
        put(&mut img, 446, &[0x13]); // bad status byte: not a table
        assert!(kinds(&img).is_empty());
    }

    #[test]
    fn gpt_hides_its_protective_mbr() {
        let mut img = image(1 << 20);
        put(&mut img, 510, &[0x55, 0xAA]);
        put(&mut img, 446 + 4, &[0xEE]);
        put(&mut img, 512, b"EFI PART");
        put(
            &mut img,
            512 + 56,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        );
        let s = detect(&img, img.len() as u64).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, SignatureKind::Gpt);
        assert_eq!(
            s[0].uuid.as_deref(),
            Some("04030201-0605-0807-090a-0b0c0d0e0f10")
        );
    }

    #[test]
    fn garbage_with_planted_magics_never_panics() {
        // What the fuzz target checks, on a deterministic sample.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let magics: [(usize, &[u8]); 8] = [
            (1080, &[0x53, 0xEF]),
            (0, b"XFSB"),
            (65600, b"_BHRfS_M"),
            (512, b"LABELONE"),
            (4086, b"SWAPSPACE2"),
            (510, &[0x55, 0xAA]),
            (4096, &[0xfc, 0x4e, 0x2b, 0xa9]),
            (512, b"EFI PART"),
        ];
        for round in 0..300 {
            let len = usize::try_from(next() % 140_000).unwrap();
            let mut img: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            for (at, m) in magics.iter().filter(|_| next() % 2 == 0) {
                if at + m.len() <= img.len() {
                    put(&mut img, *at, m);
                }
            }
            for s in detect(&img, len as u64).unwrap() {
                assert!(s.offset < len as u64, "round {round}: {s:?}");
                assert!(s.label.as_deref().is_none_or(|l| !l.is_empty()));
            }
        }
    }

    #[test]
    fn read_errors_are_reported_with_offset() {
        struct Failing;
        impl ReadAt for Failing {
            fn read_exact_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
            fn size(&self) -> io::Result<u64> {
                Ok(1 << 20)
            }
        }
        let e = detect(&Failing, 1 << 20).unwrap_err();
        assert_eq!(e.offset, 1024);
        assert!(e.to_string().contains("at byte offset 1024"), "{e}");
    }
}
