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
