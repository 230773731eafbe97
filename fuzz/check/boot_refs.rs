//! Fuzz the text parsers of issue 6 with one input: fstab, the kernel
//! command line (and its `root=`), e2fsck's `-C FD` lines and resize2fs's
//! `-p` output; then the identity decision over what they found. Nothing
//! may panic; progress stays within 0..=100 and resize progress only rises.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/boot_refs.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::exec::e2fs::{ResizeParser, ResizeProgress, e2fsck_percent};
use reroot::plan::identity::{IdentityFacts, decide, root_refs};
use reroot::probe::devlinks::DeviceNames;
use reroot::probe::{cmdline, fstab};

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let tab = fstab::parse(&text);
    for e in &tab.entries {
        assert!(e.line >= 1);
        let _ = e.device.describe();
    }
    let line = cmdline::parse(&text);
    let mut accepted = !tab.entries.is_empty() || line.root().is_some();
    for l in text.lines() {
        if let Some(p) = e2fsck_percent(l) {
            accepted = true;
            assert!(p <= 100);
        }
    }
    let mut parser = ResizeParser::new();
    let mut last = 0;
    for chunk in data.chunks(13) {
        for ev in parser.feed(chunk) {
            if let ResizeProgress::Percent(p) = ev {
                assert!(p > last && p <= 100, "{last} then {p}");
                last = p;
                accepted = true;
            }
        }
    }
    let refs = root_refs(Some(&tab), Some(&line));
    let source = DeviceNames {
        path: "/dev/sda1".into(),
        fs_uuid: Some("2e1fdd67-a13d-45af-b916-94da3daa38b6".into()),
        fs_label: Some("root".into()),
        ..DeviceNames::default()
    };
    for new_uuid in [false, true] {
        let facts = IdentityFacts {
            refs: &refs,
            cmdline_read: true,
            fstab_read: true,
            source: &source,
            target: None,
            fstype: None,
            new_uuid,
        };
        assert!(decide(&facts).len() >= refs.len());
    }
    accepted
}
