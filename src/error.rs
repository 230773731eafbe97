//! The library's one error type: what went wrong (`ErrorKind`), where
//! (`Context`: stage, device, byte offset) and what to do next (`hint`).
//!
//! Every stage returns [`Result`]. The binary maps [`ErrorKind`] to an exit
//! code (see `cli/exit.rs` and the README); nothing here prints.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in categories the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// On-disk data contradicts itself: bad magic, sizes that do not add up,
    /// pointers outside the filesystem, a failed checksum.
    #[error("corrupt filesystem: {0}")]
    Corrupt(String),
    /// Valid data that reroot does not handle (an unknown INCOMPAT feature).
    #[error("unsupported: {0}")]
    Incompatible(String),
    /// The filesystem's journal needs recovery, so its bitmaps are stale.
    #[error("filesystem needs journal recovery: {0}")]
    NeedsRecovery(String),
    /// A safety check refused the operation (mounted target, too small, ...).
    #[error("refused: {0}")]
    Refused(String),
    /// Verification found data that differs from the source.
    #[error("verification failed: {0}")]
    Mismatch(String),
    /// A read, write or other system call failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// An external program (e2fsck, resize2fs, systemctl, ...) failed or is missing.
    #[error("external tool: {0}")]
    Tool(String),
    /// The caller asked for something that does not make sense.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The system is in a state that prevents the step (a busy mount, ...).
    #[error("busy: {0}")]
    Busy(String),
    /// The operation was interrupted (signal, user abort).
    #[error("interrupted: {0}")]
    Interrupted(String),
}

/// The stage of reroot that produced an error; shown as a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Stage {
    Map,
    Check,
    Quiesce,
    Copy,
    Verify,
    Grow,
    Pivot,
    Restart,
    Finish,
    Migrate,
    Bench,
    Demo,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Stage::Map => "map",
            Stage::Check => "check",
            Stage::Quiesce => "quiesce",
            Stage::Copy => "copy",
            Stage::Verify => "verify",
            Stage::Grow => "grow",
            Stage::Pivot => "pivot",
            Stage::Restart => "restart",
            Stage::Finish => "finish",
            Stage::Migrate => "migrate",
            Stage::Bench => "bench",
            Stage::Demo => "demo",
        };
        f.write_str(s)
    }
}

/// Where an error happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The stage that failed.
    pub stage: Option<Stage>,
    /// The device or file involved.
    pub device: Option<PathBuf>,
    /// The byte offset on that device.
    pub offset: Option<u64>,
}

/// A reroot error: kind, context, a hint for the operator and the cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: Context,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with no context yet.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            context: Context::default(),
            hint: None,
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::Corrupt`].
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt(msg.into()))
    }

    /// Shorthand for [`ErrorKind::Incompatible`].
    pub fn incompatible(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Incompatible(msg.into()))
    }

    /// Shorthand for [`ErrorKind::Refused`].
    pub fn refused(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused(msg.into()))
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput(msg.into()))
    }

    /// Shorthand for [`ErrorKind::Tool`].
    pub fn tool(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Tool(msg.into()))
    }

    /// An I/O error: `what` says which operation failed, `err` is kept as the source.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        let msg = format!("{}: {}", what.into(), err);
        Self::new(ErrorKind::Io(msg)).with_source(err)
    }

    /// Attach the stage.
    #[must_use]
    pub fn stage(mut self, stage: Stage) -> Self {
        self.context.stage.get_or_insert(stage);
        self
    }

    /// Attach the device or file.
    #[must_use]
    pub fn device(mut self, device: impl AsRef<Path>) -> Self {
        if self.context.device.is_none() {
            self.context.device = Some(device.as_ref().to_path_buf());
        }
        self
    }

    /// Attach the byte offset.
    #[must_use]
    pub fn offset(mut self, offset: u64) -> Self {
        self.context.offset.get_or_insert(offset);
        self
    }

    /// Attach advice: what the operator should do next.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attach the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Where it went wrong.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// What to do next, if known.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(stage) = self.context.stage {
            write!(f, "{stage}: ")?;
        }
        if let Some(dev) = &self.context.device {
            write!(f, "{}: ", dev.display())?;
        }
        write!(f, "{}", self.kind)?;
        if let Some(off) = self.context.offset {
            write!(f, " (at byte offset {off})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_carries_context_and_hint() {
        let e = Error::corrupt("bad magic 0x1234")
            .stage(Stage::Map)
            .device("/dev/loop3")
            .offset(1080)
            .hint("is this an ext2/3/4 filesystem?");
        let s = e.to_string();
        assert_eq!(
            s,
            "map: /dev/loop3: corrupt filesystem: bad magic 0x1234 (at byte offset 1080)\n  hint: is this an ext2/3/4 filesystem?"
        );
    }

    #[test]
    fn first_context_wins() {
        let e = Error::refused("x")
            .device("/dev/a")
            .device("/dev/b")
            .offset(1)
            .offset(2);
        assert_eq!(e.context().device.as_deref(), Some(Path::new("/dev/a")));
        assert_eq!(e.context().offset, Some(1));
    }
}
