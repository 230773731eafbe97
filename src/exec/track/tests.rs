use super::*;

fn bio(major: u32, minor: u32, rwbs: &str, sector: u64, nr: u32) -> BioQueue {
    BioQueue {
        dev: DevNo { major, minor },
        rwbs: rwbs.into(),
        sector,
        nr_sector: nr,
    }
}

#[test]
fn a_partitions_writes_are_placed_in_the_partition() {
    // loop0p1 (259:0) starts at sector 2048 of loop0 (7:0), 40000 sectors long.
    let t = Traced {
        dev: DevNo {
            major: 259,
            minor: 0,
        },
        disk: Some(DevNo { major: 7, minor: 0 }),
        base: 2048 * 512,
        len: 40000 * 512,
    };
    assert_eq!(
        t.filter(),
        "(dev == 271581184 || dev == 7340032) && !(rwbs ~ \"*R*\")"
    );
    // Reported on the disk, after the remap (kernels since the bdev rework).
    assert_eq!(
        t.map(&bio(7, 0, "WS", 2128, 8)),
        Extent::new(80 * 512, 4096)
    );
    // Reported on the partition itself (older kernels).
    assert_eq!(t.map(&bio(259, 0, "W", 80, 8)), Extent::new(80 * 512, 4096));
    // Another partition of the same disk, before and after ours.
    assert_eq!(t.map(&bio(7, 0, "W", 8, 8)), None);
    assert_eq!(t.map(&bio(7, 0, "W", 2048 + 40000, 8)), None);
    // Straddling the end is clipped; reads and empty flushes change nothing.
    assert_eq!(
        t.map(&bio(7, 0, "W", 2048 + 39996, 8)),
        Extent::new(39996 * 512, 4 * 512)
    );
    assert_eq!(t.map(&bio(7, 0, "R", 2128, 8)), None);
    assert_eq!(t.map(&bio(7, 0, "FWS", 0, 0)), None);
    // Discards and write-zeroes count.
    assert!(t.map(&bio(7, 0, "DS", 2128, 8)).is_some());
    assert!(t.map(&bio(7, 0, "N", 2128, 8)).is_some());
    // Other devices never.
    assert_eq!(t.map(&bio(8, 0, "W", 2128, 8)), None);
}

#[test]
fn a_whole_device_filters_on_itself() {
    let t = Traced {
        dev: DevNo { major: 7, minor: 3 },
        disk: None,
        base: 0,
        len: 1 << 20,
    };
    assert_eq!(t.filter(), "(dev == 7340035) && !(rwbs ~ \"*R*\")");
    assert_eq!(t.map(&bio(7, 3, "W", 0, 8)), Extent::new(0, 4096));
    assert_eq!(t.map(&bio(7, 3, "W", 1 << 20, 8)), None);
}

#[test]
fn stale_instances_of_dead_processes_go_and_others_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = tmp.path().join("instances");
    let root = SysRoot::under(tmp.path());
    fs::create_dir_all(root.proc("4242")).unwrap();
    for n in [
        "reroot-4242-0".to_string(),
        "reroot-999999-1".into(),
        format!("reroot-{}-0", std::process::id()),
        "someone-else".into(),
    ] {
        fs::create_dir_all(inst.join(n)).unwrap();
    }
    assert_eq!(
        remove_stale_in(&inst, &root),
        vec!["reroot-999999-1".to_string()]
    );
    let mut left: Vec<String> = fs::read_dir(&inst)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want = vec![
        "reroot-4242-0".to_string(),
        format!("reroot-{}-0", std::process::id()),
        "someone-else".into(),
    ];
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn no_block_device_is_not_tracked() {
    let f = DeviceFacts::new("/var/tmp/x.img", DeviceKind::File, 1 << 20);
    let e = Traced::of(&f, &SysRoot::live()).unwrap_err();
    assert!(e.reason.contains("not a block device"), "{e}");
}
