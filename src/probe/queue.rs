//! Block-queue limits from sysfs (`/sys/class/block/NAME/queue/...`), for
//! the device itself or, for a partition, its disk (partitions have no
//! `queue/` of their own).

use super::SysRoot;
use super::device::DeviceFacts;

/// `queue/write_zeroes_max_bytes`: the largest `REQ_OP_WRITE_ZEROES` the
/// device accepts; 0 when it has none (then `BLKZEROOUT` falls back to
/// writing zero pages, which moves as much data as a copy). `None` when
/// sysfs does not say (not a block device, no sysfs).
pub fn write_zeroes_max_bytes(root: &SysRoot, facts: &DeviceFacts) -> Option<u64> {
    let name = facts
        .partition
        .as_ref()
        .map(|p| p.disk.clone())
        .or_else(|| facts.name.clone())?;
    let path = root
        .sys("class/block")
        .join(name)
        .join("queue/write_zeroes_max_bytes");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::device::{DeviceKind, PartitionOf};

    #[test]
    fn reads_the_device_or_its_disk() {
        let dir = tempfile::tempdir().unwrap();
        crate::probe::fixture::put(
            dir.path(),
            "sys/class/block/loop3/queue/write_zeroes_max_bytes",
            "4294966784\n",
        );
        crate::probe::fixture::put(
            dir.path(),
            "sys/class/block/sda/queue/write_zeroes_max_bytes",
            "0\n",
        );
        let root = SysRoot::under(dir.path());
        let mut f = DeviceFacts::new("/dev/loop3", DeviceKind::Block, 1 << 20);
        f.name = Some("loop3".into());
        assert_eq!(write_zeroes_max_bytes(&root, &f), Some(4_294_966_784));
        f.name = Some("sda1".into());
        f.partition = Some(PartitionOf {
            disk: "sda".into(),
            number: Some(1),
            start: 0,
            size: 1 << 20,
        });
        assert_eq!(write_zeroes_max_bytes(&root, &f), Some(0));
        f.partition = None;
        f.name = None;
        assert_eq!(write_zeroes_max_bytes(&root, &f), None);
    }
}
