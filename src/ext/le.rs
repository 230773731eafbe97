//! Little-endian field access on on-disk structures held in byte slices.
//!
//! Callers name fields by their kernel offset constants; a read past the end
//! of the slice yields 0 instead of panicking (callers size their buffers to
//! the structure, so that only happens on a caller bug, caught in debug).

/// A view of an on-disk structure: fields are read at explicit offsets.
#[derive(Clone, Copy)]
pub(crate) struct Le<'a>(pub(crate) &'a [u8]);

impl Le<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let got = off
            .checked_add(N)
            .and_then(|end| self.0.get(off..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok());
        debug_assert!(
            got.is_some(),
            "field at {off}+{N} outside a {}-byte structure",
            self.0.len()
        );
        got.unwrap_or([0; N])
    }

    /// The byte at `off`.
    pub(crate) fn u8(&self, off: usize) -> u8 {
        self.bytes::<1>(off)[0]
    }

    /// The little-endian u16 at `off`.
    pub(crate) fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.bytes(off))
    }

    /// The little-endian u32 at `off`.
    pub(crate) fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes(off))
    }

    /// `N` raw bytes at `off`.
    pub(crate) fn array<const N: usize>(&self, off: usize) -> [u8; N] {
        self.bytes(off)
    }

    /// A `lo` u32 and an optional `hi` u32 combined, as the kernel's
    /// `ext4_*_lo`/`_hi` pairs (`hi` only read when `wide`).
    pub(crate) fn lo_hi(&self, lo: usize, hi: usize, wide: bool) -> u64 {
        let h = if wide { u64::from(self.u32(hi)) } else { 0 };
        (h << 32) | u64::from(self.u32(lo))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let le = Le(&b);
        assert_eq!(le.u8(0), 1);
        assert_eq!(le.u16(0), 0x0201);
        assert_eq!(le.u32(1), 0x0504_0302);
        assert_eq!(le.lo_hi(0, 4, true), 0x0807_0605_0403_0201);
        assert_eq!(le.lo_hi(0, 4, false), 0x0403_0201);
    }
}
