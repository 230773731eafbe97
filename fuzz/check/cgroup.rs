//! Fuzz the `/proc/PID/cgroup` parser and the service lookup: any text
//! must parse without panicking; every line it accepts writes back to
//! itself; the service found is named after a unit or OpenRC service with
//! no `/` in it, and the path shown is one of the lines' paths.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/cgroup.rs` and the seed
//! replay in `tests/integration/fuzz_replay.rs` (ordinary `cargo test`).

use reroot::probe::cgroup::{Service, display_path, parse, parse_line, service_of, systemd_unit};

const UNIT_SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];

fn check_service(s: &Service) {
    let name = s.name();
    assert!(!name.is_empty() && !name.contains('/'), "{s:?}");
    assert!(!s.to_string().is_empty());
    match s {
        Service::Systemd { unit, user_unit } => {
            for u in std::iter::once(unit).chain(user_unit) {
                assert!(
                    UNIT_SUFFIXES
                        .iter()
                        .any(|x| u.len() > x.len() && u.ends_with(x)),
                    "{u:?} is not a unit"
                );
                assert!(!u.contains('/'));
            }
            assert_eq!(s.is_stoppable(), unit.ends_with(".service"));
            if user_unit.is_some() {
                assert!(unit.starts_with("user@") && unit.ends_with(".service"));
            }
        }
        Service::Openrc { .. } => assert!(s.is_stoppable()),
    }
}

/// Check one input: panics when an invariant does not hold. Returns
/// whether the parser accepted (some of) it.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let lines = parse(&text);
    assert!(lines.len() <= text.lines().count());
    for l in &lines {
        assert!(!l.controllers.contains(':'));
        let back = format!("{}:{}:{}", l.hierarchy, l.controllers, l.path);
        assert_eq!(
            parse_line(&back).as_ref(),
            Some(l),
            "round trip of {back:?}"
        );
        if let Some(s) = systemd_unit(l.path) {
            check_service(&s);
            assert!(l.path.contains(s.name()));
        }
    }
    if let Some(s) = service_of(&lines) {
        check_service(&s);
    }
    match display_path(&lines) {
        Some(p) => assert!(lines.iter().any(|l| std::ptr::eq(l.path, p))),
        None => assert!(lines.is_empty()),
    }
    !lines.is_empty()
}
