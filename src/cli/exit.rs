//! Exit codes, one per kind of outcome a script may want to tell apart.
//! The table is repeated in the README; keep both in sync.

use std::process::ExitCode;

use reroot::ErrorKind;

/// How `reroot` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done, nothing to report.
    Success = 0,
    /// An unexpected failure (a bug, or an error with no better code).
    Failure = 1,
    /// Bad command line (clap uses 2 as well).
    Usage = 2,
    /// A safety check refused, or `check` found blockers: nothing was changed.
    Refused = 3,
    /// Verification found a difference between source and target.
    Mismatch = 4,
    /// A read or write failed (the message names device and offset).
    Io = 5,
    /// The filesystem is corrupt, unsupported, or needs journal recovery.
    Filesystem = 6,
    /// An external tool (e2fsck, resize2fs, systemctl, ...) failed or is missing.
    Tool = 7,
    /// The system is busy (e.g. the remount to read-only failed).
    Busy = 8,
    /// `migrate`: done up to releasing the old root, which only the
    /// operator's own login session still holds; the worker finishes by
    /// itself once that session ends (or `reroot finish` from a new login).
    Pending = 10,
    /// Interrupted by a signal or the operator.
    Interrupted = 130,
}

impl Exit {
    /// The exit code for a library error.
    pub fn of(kind: &ErrorKind) -> Self {
        match kind {
            ErrorKind::Corrupt(_) | ErrorKind::Incompatible(_) | ErrorKind::NeedsRecovery(_) => {
                Exit::Filesystem
            }
            ErrorKind::Refused(_) => Exit::Refused,
            ErrorKind::Mismatch(_) => Exit::Mismatch,
            ErrorKind::Io(_) => Exit::Io,
            ErrorKind::Tool(_) => Exit::Tool,
            ErrorKind::InvalidInput(_) => Exit::Usage,
            ErrorKind::Busy(_) => Exit::Busy,
            ErrorKind::Interrupted(_) => Exit::Interrupted,
            _ => Exit::Failure,
        }
    }

    /// A short name for JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Failure => "failure",
            Exit::Usage => "usage",
            Exit::Refused => "refused",
            Exit::Mismatch => "mismatch",
            Exit::Io => "io",
            Exit::Filesystem => "filesystem",
            Exit::Tool => "tool",
            Exit::Busy => "busy",
            Exit::Pending => "pending",
            Exit::Interrupted => "interrupted",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_documented_codes() {
        assert_eq!(Exit::of(&ErrorKind::Refused("x".into())) as u8, 3);
        assert_eq!(Exit::of(&ErrorKind::Mismatch("x".into())) as u8, 4);
        assert_eq!(Exit::of(&ErrorKind::Io("x".into())) as u8, 5);
        assert_eq!(Exit::of(&ErrorKind::Corrupt("x".into())) as u8, 6);
        assert_eq!(Exit::of(&ErrorKind::NeedsRecovery("x".into())) as u8, 6);
        assert_eq!(Exit::of(&ErrorKind::Tool("x".into())) as u8, 7);
        assert_eq!(Exit::of(&ErrorKind::Busy("x".into())) as u8, 8);
    }
}
