//! Fuzz the migration journal's parser: whatever the bytes, `parse` must
//! return without panicking; what it accepts must re-encode to exactly the
//! bytes of its valid lines, number its records 1, 2, 3, ... with `started`
//! first and only there, and fold into a summary whose stages are the
//! request's. A prefix of an accepted journal is accepted too (a write cut
//! short only loses its last line).
//!
//! Shared by the cargo-fuzz target `fuzz_targets/journal.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::exec::journal::{Entry, encode, parse, summarize};

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let Ok(p) = parse(data) else {
        return false;
    };
    assert!(p.valid_len <= data.len());
    let again: String = p
        .records
        .iter()
        .map(|r| encode(r).expect("an accepted record encodes"))
        .collect();
    assert_eq!(
        again.as_bytes(),
        &data[..p.valid_len],
        "canonical re-encoding"
    );
    assert_eq!(p.torn_tail, p.valid_len < data.len());
    for (i, r) in p.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(matches!(r.entry, Entry::Started { .. }), i == 0);
    }
    if !p.records.is_empty() {
        let s = summarize(&p.records).expect("parsed records summarize");
        for st in reroot::plan::migrate::stages(&s.request.choices) {
            assert!(s.stage(st).is_some(), "stage {st} listed");
        }
        if let Some(w) = s.read_only_seconds(u64::MAX) {
            assert!(w >= 0.0);
        }
    }
    // Every line boundary of an accepted journal is an accepted prefix.
    if let Some(cut) = data[..p.valid_len].iter().rposition(|&b| b == b'\n') {
        let head = &data[..cut];
        if let Some(prev) = head.iter().rposition(|&b| b == b'\n') {
            let q = parse(&data[..=prev]).expect("a prefix of whole lines parses");
            assert_eq!(q.records.len() + 1, p.records.len());
        }
    }
    !p.records.is_empty()
}
