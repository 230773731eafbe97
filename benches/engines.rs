//! Both engines copying a 256 MiB file to another file through the real
//! pipeline (O_DIRECT, hashing on), at several queue depths and chunk
//! sizes. Files live in /var/tmp (a disk filesystem, so O_DIRECT works).
//! The numbers depend on the disk and on what else runs; the peer script
//! (`tools/bench-peers.sh`) is the reference for the copy targets.
//! Run: `cargo bench --bench engines`.

#![allow(clippy::cast_possible_truncation)] // benchmark set-up sizes are small constants

use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reroot::exec::copy::{Access, Device, EngineKind, Pass, PassConfig, Pipeline, io};
use reroot::exec::event::EventSink;
use reroot::plan::copy::{PlanInput, plan_copy};
use reroot::sys::buf::BufPool;
use reroot::units::ExtentList;

const SIZE: u64 = 256 << 20;

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir_in("/var/tmp").expect("scratch dir in /var/tmp");
    let src = dir.path().join("src");
    let dst = dir.path().join("dst");
    let mut data = vec![0u8; SIZE as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&src, &data).expect("write source");
    std::fs::File::create(&dst)
        .and_then(|f| f.set_len(SIZE))
        .expect("create target");
    (dir, src, dst)
}

fn engines(c: &mut Criterion) {
    let (_dir, src, dst) = setup();
    let mut g = c.benchmark_group("copy_256MiB_file");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(SIZE));
    let used = ExtentList::whole(SIZE);
    for (kind, qd, chunk) in [
        (EngineKind::Sync, 1usize, 1usize << 20),
        (EngineKind::Uring, 4, 1 << 20),
        (EngineKind::Uring, 16, 256 << 10),
        (EngineKind::Uring, 16, 1 << 20),
        (EngineKind::Uring, 32, 1 << 20),
        (EngineKind::Uring, 8, 4 << 20),
    ] {
        let (s, _) = Device::open(&src, Access::Read, true).expect("open source");
        let (d, _) = Device::open(&dst, Access::Write, true).expect("open target");
        let plan = plan_copy(&PlanInput {
            used: &used,
            source_size: SIZE,
            target_sizes: &[SIZE],
            align: 4096,
            chunk_size: chunk as u64,
            max_gap: 0,
        })
        .expect("plan");
        let pool = BufPool::new(qd, chunk, 4096).expect("pool");
        let io = match io::engine(kind, &[&s.file, &d.file], qd, Some(pool.mem())) {
            Ok(io) => io,
            Err(e) => {
                eprintln!("skipping {kind:?}: {e}");
                continue;
            }
        };
        let mut pipe = Pipeline::new(io, pool, 1, 2).expect("pipeline");
        let paths = [src.clone(), dst.clone()];
        let cfg = PassConfig {
            paths: &paths,
            queue_depth: qd,
            phase: "copy",
        };
        let mut table = vec![0u64; plan.chunks as usize];
        let id = format!("{}_qd{}_{}K", kind.name(), qd, chunk >> 10);
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                pipe.run(
                    &plan,
                    Pass::Copy { hash: true },
                    &cfg,
                    &mut table,
                    &EventSink::none(),
                )
                .expect("copy pass");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
