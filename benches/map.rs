//! Map parsing throughput on 1 TiB filesystems (8192 groups of 128 MiB),
//! made by the real mkfs.ext4 on sparse files (about 1.1 GiB of disk each,
//! kept under /var/tmp/reroot-bench between runs):
//!
//! - `default`: ext4 defaults (metadata_csum, flex_bg): most groups are
//!   BLOCK_UNINIT, so the work is descriptors, their CRC-32C and the
//!   computed metadata of uninitialized groups.
//! - `all-bitmaps`: `-O ^metadata_csum,^uninit_bg`: every group's bitmap is
//!   on disk, so all 8192 bitmaps (32 MiB) are read and scanned.
//! - `all-bitmaps/cold`: the same after dropping the image's page cache
//!   (`posix_fadvise(DONTNEED)`, this file only), to see the read cost.
//!
//! Run: `cargo bench --bench map`. Skips (prints why) without mkfs.ext4.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reroot::ext::{MapOptions, read_map};

const SIZE: u64 = 1 << 40;

/// The image for `name`, made with `mkfs_opts` unless it already exists.
fn image(name: &str, mkfs_opts: &[&str]) -> Option<PathBuf> {
    let dir = PathBuf::from("/var/tmp/reroot-bench");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("map-1t-{name}.img"));
    if path.exists() {
        return Some(path);
    }
    let tmp = path.with_extension("tmp");
    File::create(&tmp).ok()?.set_len(SIZE).ok()?;
    let ok = Command::new("mkfs.ext4")
        .args(["-F", "-q"])
        .args(mkfs_opts)
        .arg(&tmp)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("bench map: mkfs.ext4 failed or is missing; skipping {name}");
        let _ = std::fs::remove_file(&tmp);
        return None;
    }
    std::fs::rename(&tmp, &path).ok()?;
    Some(path)
}

fn drop_cache(f: &File) {
    let _ = nix::fcntl::posix_fadvise(
        f.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

fn bench_map(c: &mut Criterion) {
    let mut group = c.benchmark_group("map-1TiB");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let opts = MapOptions::default();
    for (name, mkfs_opts) in [
        ("default", &[][..]),
        ("all-bitmaps", &["-O", "^metadata_csum,^uninit_bg"][..]),
    ] {
        let Some(path) = image(name, mkfs_opts) else {
            continue;
        };
        let f = File::open(&path).expect("open bench image");
        let m = read_map(&f, &opts).expect("bench image maps");
        eprintln!(
            "bench map {name}: {} groups, {} BLOCK_UNINIT, {} ranges, {} bytes used",
            m.geometry.groups_count,
            m.geometry.block_uninit_groups,
            m.used.len(),
            m.used.total_bytes()
        );
        group.bench_function(name, |b| b.iter(|| read_map(&f, &opts).expect("maps")));
        if name == "all-bitmaps" {
            group.bench_function(format!("{name}/cold"), |b| {
                b.iter_batched(
                    || drop_cache(&f),
                    |()| read_map(&f, &opts).expect("maps"),
                    criterion::BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_map);
criterion_main!(benches);
