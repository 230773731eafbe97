//! End-to-end tests of the copy engine on regular files (no root needed):
//! both engines, mirror, delta, verify naming a corrupted offset.

use super::*;
use std::os::unix::fs::FileExt;

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
        ..CopyOptions::default()
    }
}

fn scratch() -> tempfile::TempDir {
    // /var/tmp is a disk filesystem (O_DIRECT works); fall back to the default.
    tempfile::tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

fn copy_mirror_and_verify(engine: EngineKind) {
    let d = scratch();
    let size = (1 << 20) + (12 << 10); // not a multiple of the chunk size
    let src = image(d.path(), "src", size, 42);
    let a = blank(d.path(), "a", size as u64);
    let b = blank(d.path(), "b", 2 << 20);
    let r = match copy(
        &src,
        &[a.clone(), b.clone()],
        &opts(engine),
        &EventSink::none(),
    ) {
        Ok(r) => r,
        Err(e) if engine == EngineKind::Uring && e.to_string().contains("io_uring") => {
            return eprintln!("SKIP: {e}");
        }
        Err(e) => panic!("{e}"),
    };
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
    let d = scratch();
    let src = image(d.path(), "src", 256 << 10, 9);
    let t = blank(d.path(), "t", 256 << 10);
    let mut o = opts(EngineKind::Uring);
    o.verify = VerifyMode::Hash;
    let Ok(r) = copy(&src, std::slice::from_ref(&t), &o, &EventSink::none()) else {
        return eprintln!("SKIP: io_uring unavailable");
    };
    assert_eq!(r.bytes_read, 256 << 10, "no readback");
    assert!(!r.digest.is_empty());
    o.verify = VerifyMode::None;
    let r2 = copy(&src, std::slice::from_ref(&t), &o, &EventSink::none()).unwrap();
    assert!(r2.digest.is_empty());
    assert_eq!(std::fs::read(&t).unwrap(), std::fs::read(&src).unwrap());
}
