//! End-to-end tests of the copy engine on regular files (no root needed):
//! both engines, mirror, delta, verify naming a corrupted offset.

use super::*;
use std::os::unix::fs::FileExt;

use crate::plan::copy::{PlanInput, plan_copy};
use crate::sys::buf::BufPool;
use crate::units::ExtentList;

fn image(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    let mut data = vec![0u8; size];
    let mut x = seed | 1;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = x.to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
    std::fs::write(&p, &data).unwrap();
    p
}

fn blank(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

fn opts(engine: EngineKind) -> CopyOptions {
    CopyOptions {
        full: true,
        engine,
        queue_depth: 4,
        chunk_size: 64 << 10,
        // The sync runs hash inline, the uring runs on two workers: both paths tested.
        hash_threads: if engine == EngineKind::Sync { 0 } else { 2 },
        ..CopyOptions::default()
    }
}

fn scratch() -> tempfile::TempDir {
    // /var/tmp is a disk filesystem (O_DIRECT works); fall back to the default.
    tempfile::tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// True (after [`crate::test_skip::skip`]) when `engine` is io_uring and
/// this kernel has none or forbids it; any other failure is the test's.
fn engine_missing(engine: EngineKind) -> bool {
    if engine != EngineKind::Uring {
        return false;
    }
    let Some(why) = crate::test_skip::io_uring_missing() else {
        return false;
    };
    crate::test_skip::skip(&why);
    true
}

fn copy_mirror_and_verify(engine: EngineKind) {
    if engine_missing(engine) {
        return;
    }
    let d = scratch();
    let size = (1 << 20) + (12 << 10); // not a multiple of the chunk size
    let src = image(d.path(), "src", size, 42);
    let a = blank(d.path(), "a", size as u64);
    let b = blank(d.path(), "b", 2 << 20);
    let r = copy(
        &src,
        &[a.clone(), b.clone()],
        &opts(engine),
        &EventSink::none(),
    )
    .unwrap();
    assert_eq!(r.mismatch_count, 0);
    assert!(r.mismatch_error().is_none());
    assert_eq!(r.bytes_planned, size as u64);
    assert_eq!(r.bytes_written, 2 * size as u64);
    assert_eq!(
        r.bytes_read,
        3 * size as u64,
        "source once, each target read back"
    );
    assert_eq!(r.bytes_verified, 2 * size as u64);
    assert_eq!(r.chunks, 17);
    assert_eq!(r.digest.len(), 16);
    let want = std::fs::read(&src).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), want);
    assert_eq!(&std::fs::read(&b).unwrap()[..size], &want[..]);

    // Same data, same digest, whichever engine.
    let v = verify(&src, &b, &opts(engine), &EventSink::none()).unwrap();
    assert_eq!(v.mismatch_count, 0);
    assert_eq!(v.digest, r.digest);

    // A corrupted byte is found and named.
    let f = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
    f.write_all_at(&[!want[700_001]], 700_001).unwrap();
    drop(f);
    let v = verify(&src, &b, &opts(engine), &EventSink::none()).unwrap();
    assert_eq!(v.mismatch_count, 1);
    let m = &v.mismatches[0];
    assert_eq!(
        (m.device.as_path(), m.offset, m.len),
        (b.as_path(), 655_360, 65_536)
    );
    let e = v.mismatch_error().unwrap();
    assert!(matches!(e.kind(), ErrorKind::Mismatch(_)));
    assert_eq!(e.context().offset, Some(655_360));
    assert!(e.to_string().contains("655360..720896"), "{e}");

    // Delta rewrites exactly that chunk of b, and nothing of a.
    let mut o = opts(engine);
    o.delta = true;
    let r = copy(&src, &[a.clone(), b.clone()], &o, &EventSink::none()).unwrap();
    assert_eq!(r.bytes_written, 65_536);
    assert_eq!(r.bytes_unchanged, 2 * size as u64 - 65_536);
    assert_eq!(r.mismatch_count, 0, "readback after delta is clean");
    assert_eq!(&std::fs::read(&b).unwrap()[..size], &want[..]);
}

#[test]
fn sync_copy_mirror_verify_delta() {
    copy_mirror_and_verify(EngineKind::Sync);
}

#[test]
fn uring_copy_mirror_verify_delta() {
    copy_mirror_and_verify(EngineKind::Uring);
}

#[test]
fn refusals_and_bad_options() {
    let d = scratch();
    let src = image(d.path(), "src", 1 << 20, 1);
    let small = blank(d.path(), "small", 512 << 10);
    let e = copy(&src, &[small], &opts(EngineKind::Sync), &EventSink::none()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Refused(_)), "{e}");
    let e = copy(
        &src,
        std::slice::from_ref(&src),
        &opts(EngineKind::Sync),
        &EventSink::none(),
    )
    .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Refused(_)), "{e}");
    let t = blank(d.path(), "t", 1 << 20);
    let e = copy(
        &src,
        &[t.clone(), t.clone()],
        &opts(EngineKind::Sync),
        &EventSink::none(),
    )
    .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Refused(m) if m.contains("same")),
        "{e}"
    );
    let mut o = opts(EngineKind::Sync);
    o.chunk_size = 3000;
    assert!(matches!(
        copy(&src, std::slice::from_ref(&t), &o, &EventSink::none())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput(_)
    ));
    o.chunk_size = 4096;
    o.queue_depth = 0;
    assert!(copy(&src, &[t], &o, &EventSink::none()).is_err());
}

#[test]
fn hash_mode_and_no_verify() {
    if engine_missing(EngineKind::Uring) {
        return;
    }
    let d = scratch();
    let src = image(d.path(), "src", 256 << 10, 9);
    let t = blank(d.path(), "t", 256 << 10);
    let mut o = opts(EngineKind::Uring);
    o.verify = VerifyMode::Hash;
    let r = copy(&src, std::slice::from_ref(&t), &o, &EventSink::none()).unwrap();
    assert_eq!(r.bytes_read, 256 << 10, "no readback");
    assert!(!r.digest.is_empty());
    o.verify = VerifyMode::None;
    let r2 = copy(&src, std::slice::from_ref(&t), &o, &EventSink::none()).unwrap();
    assert!(r2.digest.is_empty());
    assert_eq!(std::fs::read(&t).unwrap(), std::fs::read(&src).unwrap());
}

fn short_source_stops_with_device_and_offset(engine: EngineKind) {
    if engine_missing(engine) {
        return;
    }
    let d = scratch();
    let src = image(d.path(), "src", 2 << 20, 3);
    let dst = blank(d.path(), "dst", 2 << 20);
    let (s, _) = Device::open(&src, Access::Read, true).unwrap();
    let (t, _) = Device::open(&dst, Access::Write, true).unwrap();
    // The source shrinks after planning: reads past 1 MiB find nothing.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let used = ExtentList::whole(2 << 20);
    let plan = plan_copy(&PlanInput {
        used: &used,
        source_size: 2 << 20,
        target_sizes: &[2 << 20],
        align: 4096,
        chunk_size: 256 << 10,
        max_gap: 0,
    })
    .unwrap();
    let pool = BufPool::new(4, 256 << 10, 4096).unwrap();
    let io = io::engine(engine, &[&s.file, &t.file], 4, Some(pool.mem())).unwrap();
    let mut pipe = Pipeline::new(io, pool, 1, 1).unwrap();
    let paths = [src.clone(), dst.clone()];
    let cfg = PassConfig {
        paths: &paths,
        queue_depth: 4,
        phase: "copy",
    };
    let mut table = vec![0; 8];
    let e = pipe
        .run(
            &plan,
            Pass::Copy { hash: true },
            &cfg,
            &mut table,
            &EventSink::none(),
        )
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Io(m) if m.contains("read failed")),
        "{e}"
    );
    assert_eq!(e.context().device.as_deref(), Some(src.as_path()));
    assert_eq!(e.context().offset, Some(1 << 20));
    let hint = e.hint_text().unwrap();
    assert!(
        hint.contains("every chunk below byte offset 1048576 is complete"),
        "{hint}"
    );
    // What was reported done really is on the target.
    let got = std::fs::read(&dst).unwrap();
    let want = std::fs::read(&src).unwrap();
    assert_eq!(&got[..1 << 20], &want[..]);
}

#[test]
fn sync_read_error_names_device_and_offset() {
    short_source_stops_with_device_and_offset(EngineKind::Sync);
}

#[test]
fn uring_read_error_names_device_and_offset() {
    short_source_stops_with_device_and_offset(EngineKind::Uring);
}
