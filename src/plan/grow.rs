//! How big the filesystem on a fresh copy should become: the device size or
//! a requested size, rounded down to whole blocks; shrinking is refused.
//!
//! Pure: takes the filesystem's and the device's sizes, returns a decision.

use crate::error::{Error, Result};

/// What `grow` knows before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrowFacts {
    /// Current filesystem size in bytes.
    pub fs_bytes: u64,
    /// Filesystem block size in bytes (> 0).
    pub block_size: u32,
    /// Size of the device holding it.
    pub device_bytes: u64,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum GrowDecision {
    /// The filesystem already has the wanted size.
    AlreadyThatSize {
        /// Its size in bytes.
        bytes: u64,
    },
    /// Grow to this size.
    Grow {
        /// New size in bytes (a whole number of blocks).
        bytes: u64,
        /// New size in filesystem blocks.
        blocks: u64,
    },
}

/// Decide the new size. `requested` is in bytes (`--size`), `None` for the
/// whole device.
pub fn decide(f: &GrowFacts, requested: Option<u64>) -> Result<GrowDecision> {
    let bs = u64::from(f.block_size);
    if bs == 0 {
        return Err(Error::corrupt("the filesystem's block size is 0"));
    }
    if f.device_bytes < f.fs_bytes {
        return Err(Error::corrupt(format!(
            "the filesystem is {} bytes but its device only {} bytes: the copy is truncated",
            f.fs_bytes, f.device_bytes
        ))
        .hint("copy again onto a device at least as large as the source filesystem"));
    }
    let wanted = match requested {
        None => f.device_bytes,
        Some(0) => return Err(Error::invalid("--size 0 makes no sense")),
        Some(n) if n > f.device_bytes => {
            return Err(Error::refused(format!(
                "--size {n} is larger than the device ({} bytes)",
                f.device_bytes
            ))
            .hint("leave out --size to grow to the whole device"));
        }
        Some(n) => n,
    };
    let blocks = wanted.checked_div(bs).unwrap_or(0);
    let bytes = blocks.saturating_mul(bs);
    if bytes < f.fs_bytes {
        return Err(Error::refused(format!(
            "{bytes} bytes is smaller than the filesystem ({} bytes); grow never shrinks",
            f.fs_bytes
        ))
        .hint(
            "a block copy keeps the source's layout, so shrinking needs a file-level copy \
onto a new, smaller filesystem (not done by reroot yet); to grow, give a size at least as \
large as the filesystem or leave out --size",
        ));
    }
    if bytes == f.fs_bytes {
        return Ok(GrowDecision::AlreadyThatSize { bytes });
    }
    Ok(GrowDecision::Grow { bytes, blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const MIB: u64 = 1 << 20;
    fn facts(fs: u64, dev: u64) -> GrowFacts {
        GrowFacts {
            fs_bytes: fs,
            block_size: 4096,
            device_bytes: dev,
        }
    }

    #[test]
    fn grows_to_the_device_or_the_requested_size() {
        assert_eq!(
            decide(&facts(256 * MIB, 512 * MIB), None).unwrap(),
            GrowDecision::Grow {
                bytes: 512 * MIB,
                blocks: 131_072
            }
        );
        assert_eq!(
            decide(&facts(256 * MIB, 512 * MIB), Some(300 * MIB)).unwrap(),
            GrowDecision::Grow {
                bytes: 300 * MIB,
                blocks: 76_800
            }
        );
        // Rounded down to whole blocks.
        assert_eq!(
            decide(&facts(256 * MIB, 512 * MIB), Some(300 * MIB + 100)).unwrap(),
            GrowDecision::Grow {
                bytes: 300 * MIB,
                blocks: 76_800
            }
        );
        // A device that is not a whole number of blocks.
        assert_eq!(
            decide(&facts(256 * MIB, 512 * MIB + 512), None).unwrap(),
            GrowDecision::Grow {
                bytes: 512 * MIB,
                blocks: 131_072
            }
        );
    }

    #[test]
    fn same_size_is_nothing_to_do() {
        assert_eq!(
            decide(&facts(256 * MIB, 256 * MIB), None).unwrap(),
            GrowDecision::AlreadyThatSize { bytes: 256 * MIB }
        );
        assert_eq!(
            decide(&facts(256 * MIB, 512 * MIB), Some(256 * MIB + 4095)).unwrap(),
            GrowDecision::AlreadyThatSize { bytes: 256 * MIB }
        );
    }

    #[test]
    fn refuses_shrinking_oversizing_and_truncated_copies() {
        let e = decide(&facts(256 * MIB, 512 * MIB), Some(128 * MIB)).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Refused(_)), "{e}");
        assert!(e.hint_text().unwrap().contains("file-level copy"));
        let e = decide(&facts(256 * MIB, 512 * MIB), Some(1024 * MIB)).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Refused(_)), "{e}");
        let e = decide(&facts(512 * MIB, 256 * MIB), None).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Corrupt(_)), "{e}");
        let e = decide(&facts(256 * MIB, 512 * MIB), Some(0)).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)), "{e}");
        let zero_bs = GrowFacts {
            block_size: 0,
            ..facts(1, 2)
        };
        assert!(decide(&zero_bs, None).is_err());
    }
}
