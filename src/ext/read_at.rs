//! [`ReadAt`]: positional reads from a device, a file or a byte slice.
//!
//! The ext parser reads only through this trait, so tests and fuzzers feed it
//! bytes and the CLI feeds it a device. No `unsafe`, no `sys` imports.

use std::io;

/// Read exactly `buf.len()` bytes at byte `offset`.
pub trait ReadAt {
    /// Fill `buf` from `offset`; a short read (past the end) is an
    /// `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Size in bytes, when known.
    fn size(&self) -> io::Result<u64>;
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let eof = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the image",
            )
        };
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = self.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    /// For block devices `metadata().len()` is 0, so seek to the end instead.
    fn size(&self) -> io::Result<u64> {
        use std::io::Seek;
        let mut f = self;
        let end = f.seek(io::SeekFrom::End(0))?;
        f.seek(io::SeekFrom::Start(0))?;
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reads_and_eof() {
        let data: Vec<u8> = (0u8..16).collect();
        let mut b = [0u8; 4];
        data.read_exact_at(&mut b, 12).unwrap();
        assert_eq!(b, [12, 13, 14, 15]);
        assert_eq!(
            data.read_exact_at(&mut b, 13).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(data.read_exact_at(&mut b, u64::MAX).is_err());
    }
}
