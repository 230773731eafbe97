//! Unit tests of `bench` on regular files (no root needed).

use super::*;
use crate::plan::bench::{Method, Op};

fn image(dir: &Path, name: &str, size: usize, seed: u8) -> PathBuf {
    let p = dir.join(name);
    let data: Vec<u8> = (0..size)
        .map(|i| {
            u8::try_from(i % 256)
                .unwrap()
                .wrapping_mul(31)
                .wrapping_add(seed)
        })
        .collect();
    std::fs::write(&p, data).unwrap();
    p
}

fn quick(only: &[Method]) -> BenchOptions {
    BenchOptions {
        seconds: 10.0,
        bytes: Some(1 << 20),
        runs: 2,
        only: only.to_vec(),
        hash_threads: 1,
        ..BenchOptions::default()
    }
}

#[test]
fn read_only_bench_fills_every_row() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = image(dir.path(), "src", 2 << 20, 1);
    let r = run(
        &src,
        None,
        &quick(&[Method::Direct, Method::Threads, Method::Buffered]),
        &EventSink::none(),
    )
    .unwrap();
    assert_eq!(r.rows.len(), 3);
    for row in &r.rows {
        assert_eq!(row.strategy.op, Op::Read);
        assert_eq!(row.error, None);
        assert_eq!(row.samples.len(), 2);
        assert!(row.samples.iter().all(|s| s.bytes == 1 << 20), "{row:?}");
        assert!(row.mb_per_s.unwrap().median > 0.0);
    }
    assert_eq!(r.rows.iter().filter(|r| r.best).count(), 1);
    assert!(r.best.read.is_some() && r.best.copy.is_none());
    assert_eq!(r.settings.limit, 1 << 20);
    assert!(r.target.is_none());
}

#[test]
fn a_target_needs_confirmation_and_is_left_alone_without_it() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = image(dir.path(), "src", 1 << 20, 1);
    let dst = image(dir.path(), "dst", 1 << 20, 2);
    let before = std::fs::read(&dst).unwrap();
    let e = run(&src, Some(&dst), &quick(&[]), &EventSink::none()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Refused(_)), "{e}");
    assert!(e.to_string().contains("--yes"), "{e}");
    assert_eq!(std::fs::read(&dst).unwrap(), before);
}

#[test]
fn the_source_is_never_a_target() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = image(dir.path(), "src", 1 << 20, 1);
    let mut o = quick(&[]);
    o.confirmed = true;
    let e = run(&src, Some(&src), &o, &EventSink::none()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Refused(_)), "{e}");
}

#[test]
fn copy_rows_write_the_source_bytes_within_the_limit() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = image(dir.path(), "src", 3 << 20, 1);
    let dst = image(dir.path(), "dst", 2 << 20, 2);
    let mut o = quick(&[Method::Direct, Method::CopyFileRange, Method::Splice]);
    o.confirmed = true;
    o.bytes = None; // the limit is the smaller device
    o.runs = 1;
    let r = run(&src, Some(&dst), &o, &EventSink::none()).unwrap();
    assert_eq!(r.settings.limit, 2 << 20);
    let ids: Vec<&str> = r.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "read/direct/1M",
            "copy/direct/1M",
            "copy/copy-file-range/1M",
            "copy/splice/1M"
        ]
    );
    for row in &r.rows {
        assert_eq!(row.error, None, "{}", row.id);
        assert_eq!(row.samples[0].bytes, 2 << 20, "{}", row.id);
    }
    assert!(r.best.copy.is_some());
    let s = std::fs::read(&src).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), s[..2 << 20]);
}

#[test]
fn bad_settings_are_invalid_input() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = image(dir.path(), "src", 1 << 20, 1);
    for o in [
        BenchOptions {
            seconds: 0.0,
            ..quick(&[])
        },
        BenchOptions {
            runs: 0,
            ..quick(&[])
        },
        BenchOptions {
            bytes: Some(100),
            ..quick(&[])
        },
        // Only a copy method, but no target: nothing to measure.
        quick(&[Method::Splice]),
    ] {
        let e = run(&src, None, &o, &EventSink::none()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)), "{e}");
    }
}

fn report_for(src: &Path, with_target: bool, qd: u32) -> BenchReport {
    let dir = src.parent().unwrap();
    let mut r = run(src, None, &quick(&[Method::Direct]), &EventSink::none()).unwrap();
    r.tuning = Some(Tuning {
        queue_depth: qd,
        chunk_size: 256 << 10,
        from: "x".into(),
        mb_per_s: 1.0,
        best_mb_per_s: 1.0,
    });
    if with_target {
        let mut t = r.source.clone();
        t.canonical = dir.join("target");
        r.target = Some(t);
    }
    r
}

#[test]
fn saved_results_replace_per_pair_and_prefer_copy_tests() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = image(dir.path(), "src", 1 << 20, 1);
    let file = dir.path().join("state/bench.json");
    saved::save(&file, &report_for(&src, false, 4)).unwrap();
    saved::save(&file, &report_for(&src, true, 8)).unwrap();
    saved::save(&file, &report_for(&src, false, 32)).unwrap(); // replaces the first
    let s = saved::load(&file).unwrap();
    assert_eq!(s.results.len(), 2);
    let canonical = std::fs::canonicalize(&src).unwrap();
    let found = saved::find(&s, &canonical, 1 << 20).unwrap();
    assert_eq!(found.tuning.as_ref().unwrap().queue_depth, 8);
    assert!(
        saved::find(&s, &canonical, 12345).is_none(),
        "size must match"
    );
    // copy --tune takes it.
    let t = tune(&src, Some(&file), &EventSink::none()).unwrap();
    assert_eq!((t.queue_depth, t.chunk_size), (8, 256 << 10));
    assert!(matches!(
        t.source,
        TuneSource::Saved {
            copy_tests: true,
            ..
        }
    ));
}

#[test]
fn a_missing_or_broken_file_means_a_probe() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = image(dir.path(), "src", 4 << 20, 1);
    let t = tune(
        &src,
        Some(&dir.path().join("none.json")),
        &EventSink::none(),
    )
    .unwrap();
    // The probe runs on io_uring: it falls back to the defaults only where
    // io_uring itself is missing.
    match (&t.source, crate::test_skip::io_uring_missing()) {
        (TuneSource::Probe, None) => {
            assert!([4, 16, 64].contains(&t.queue_depth));
            assert!([256 << 10, 1 << 20, 4 << 20].contains(&t.chunk_size));
        }
        (TuneSource::Defaults, Some(_)) => assert_eq!(t.queue_depth, copy::DEFAULT_QUEUE_DEPTH),
        other => panic!("{other:?}"),
    }
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{not json").unwrap();
    assert!(saved::load(&broken).is_err());
    let t = tune(&src, Some(&broken), &EventSink::none()).unwrap();
    assert!(!matches!(t.source, TuneSource::Saved { .. }));
    // Saving over a broken file replaces it.
    saved::save(&broken, &report_for(&src, false, 4)).unwrap();
    assert_eq!(saved::load(&broken).unwrap().results.len(), 1);
}

#[test]
fn default_path_is_absolute() {
    assert!(saved::default_path().is_absolute());
    assert!(saved::default_path().ends_with("reroot/bench.json"));
}
