//! xxh3 throughput per chunk size, on one thread and through the hash
//! worker pool: hashing must stay far above disk bandwidth so it never
//! limits a copy. Run: `cargo bench --bench hash`.

#![allow(clippy::cast_possible_truncation)] // benchmark set-up sizes are small constants

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reroot::exec::copy::hash::{Hashers, chunk_hash};
use reroot::sys::buf::BufPool;

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("xxh3_64");
    for size in [64usize << 10, 1 << 20, 4 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size >> 10), &data, |b, d| {
            b.iter(|| chunk_hash(std::hint::black_box(d)))
        });
    }
    g.finish();
}

fn worker_pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("hash_workers_1MiB_x16");
    let (count, size) = (16usize, 1usize << 20);
    g.throughput(Throughput::Bytes((count * size) as u64));
    for threads in [1usize, 2] {
        let mut pool = BufPool::new(count, size, 4096).expect("pool");
        let mut h = Hashers::new(threads, count).expect("hashers");
        g.bench_function(BenchmarkId::from_parameter(threads), |b| {
            b.iter(|| {
                for tag in 0..count as u64 {
                    let mut buf = pool.take().expect("free buffer");
                    buf.set_len(size);
                    h.send(tag, buf).expect("workers alive");
                }
                while let Some(x) = h.recv(None) {
                    pool.put(x.buf);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, one_thread, worker_pool);
criterion_main!(benches);
