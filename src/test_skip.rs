//! The one way a unit test skips: [`skip`] prints why, and under
//! `REROOT_TEST_STRICT=1` (set by `.ci/run`) fails the test with that reason
//! instead, so a CI run cannot be green while tests silently did nothing.
//! `tests/integration/common.rs` holds its twin for the integration binary
//! (which cannot see `cfg(test)` items); keep the two identical in behaviour.
//!
//! A capability the CI machine's kernel lacks can be allowed by test name in
//! `REROOT_TEST_ALLOW_SKIP` (comma-separated; `.ci/run` sets it only after
//! probing the capability itself). Every skip is also appended to
//! `REROOT_TEST_SKIP_LOG` when set, so `.ci/run` can list them.

use std::io::Write;

/// Report that the calling test cannot run here, and why. Returns (the
/// caller then returns) unless strict mode is on, where it panics with
/// `reason`. Skip only on the missing capability itself, never on any error.
pub fn skip(reason: &str) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("?");
    let allowed = std::env::var("REROOT_TEST_ALLOW_SKIP").is_ok_and(|list| {
        list.split(',')
            .any(|t| !t.is_empty() && (test == t || test.ends_with(&format!("::{t}"))))
    });
    if std::env::var_os("REROOT_TEST_STRICT").is_some_and(|v| v == "1") && !allowed {
        panic!("{test} cannot run here and REROOT_TEST_STRICT=1 forbids skipping: {reason}");
    }
    if let Some(log) = std::env::var_os("REROOT_TEST_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{test}: {reason}");
        }
    }
    eprintln!("SKIP {test}: {reason}");
}

/// Why io_uring cannot be used at all here, or `None` when it can: the
/// kernel lacks it (`ENOSYS`) or refuses it (`EPERM`: seccomp, or the
/// `kernel.io_uring_disabled` sysctl). Any other failure of
/// `io_uring_setup` is a real problem and panics.
pub fn io_uring_missing() -> Option<String> {
    match io_uring::IoUring::new(2) {
        Ok(_) => None,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
            Some(format!("io_uring_setup is not available here: {e}"))
        }
        Err(e) => panic!("io_uring_setup failed for another reason than a missing io_uring: {e}"),
    }
}
