//! Command-line behaviour: help texts, exit codes, `--json` errors.

use crate::common::reroot;

#[test]
fn help_lists_every_command() {
    let out = reroot().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "map",
        "copy",
        "verify",
        "check",
        "quiesce",
        "resume-services",
        "grow",
        "pivot",
        "finish",
        "migrate",
        "status",
        "bench",
        "demo",
    ] {
        assert!(text.contains(cmd), "--help does not mention {cmd}:\n{text}");
    }
    assert!(
        text.contains("Exit codes"),
        "--help should document exit codes"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = reroot().arg("map").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = reroot().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 11: `map` on a directory or a missing path exited 5 (I/O error)
/// with the errno text twice; it is the user's mistake: exit 3, said once.
#[test]
fn map_on_a_directory_or_missing_path() {
    let dir = crate::common::scratch();
    let missing = dir.path().join("missing.img");
    for (path, says) in [
        (dir.path(), "is a directory"),
        (missing.as_path(), "does not exist"),
    ] {
        let out = crate::common::reroot()
            .arg("map")
            .arg(path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert_eq!(err.matches(says).count(), 1, "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains("os error"), "{err}");
    }
}
