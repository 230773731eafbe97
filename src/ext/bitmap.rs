//! Block (cluster) bitmaps: finding the runs of set bits, 64 bits at a time,
//! so that a mostly empty or mostly full bitmap costs a few word compares.
//!
//! Pure: scans bytes already read. Bit `i` is bit `i % 8` of byte `i / 8`
//! (ext2's little-endian bit order).

/// Call `f(start, end)` for every maximal run of set bits `[start, end)` in
/// `bitmap`, in increasing order.
pub(crate) fn for_each_run(bitmap: &[u8], mut f: impl FnMut(u64, u64)) {
    let mut run: Option<u64> = None;
    let mut base = 0u64;
    for chunk in bitmap.chunks(8) {
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(chunk) {
            *d = *s;
        }
        let word = u64::from_le_bytes(b);
        let width = 8u64.saturating_mul(chunk.len() as u64);
        scan_word(word, base, width, &mut run, &mut f);
        base = base.saturating_add(width);
    }
    if let Some(s) = run {
        f(s, base);
    }
}

/// Advance the run state over one word holding `width` bits starting at bit
/// `base`. Bits above `width` are zero (the word was zero-padded).
#[inline]
fn scan_word(
    word: u64,
    base: u64,
    width: u64,
    run: &mut Option<u64>,
    f: &mut impl FnMut(u64, u64),
) {
    if word == 0 {
        if let Some(s) = run.take() {
            f(s, base);
        }
        return;
    }
    if word == u64::MAX {
        run.get_or_insert(base);
        return;
    }
    let mut pos = 0u32; // bits of this word consumed
    while u64::from(pos) < width {
        let rest = word.checked_shr(pos).unwrap_or(0);
        if run.is_some() {
            let ones = rest.trailing_ones();
            let end = pos.saturating_add(ones);
            if u64::from(end) >= width {
                return; // the run continues into the next word
            }
            if let Some(s) = run.take() {
                f(s, base.saturating_add(u64::from(end)));
            }
            pos = end;
        } else {
            if rest == 0 {
                return;
            }
            pos = pos.saturating_add(rest.trailing_zeros());
            *run = Some(base.saturating_add(u64::from(pos)));
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn runs(bitmap: &[u8]) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for_each_run(bitmap, |s, e| v.push((s, e)));
        v
    }

    fn naive(bitmap: &[u8]) -> Vec<(u64, u64)> {
        let n = bitmap.len() * 8;
        let bit = |i: usize| bitmap[i / 8] >> (i % 8) & 1 == 1;
        let mut v = Vec::new();
        let mut i = 0;
        while i < n {
            if bit(i) {
                let s = i;
                while i < n && bit(i) {
                    i += 1;
                }
                v.push((s as u64, i as u64));
            } else {
                i += 1;
            }
        }
        v
    }

    #[test]
    fn simple_patterns() {
        assert_eq!(runs(&[0; 16]), vec![]);
        assert_eq!(runs(&[0xFF; 16]), vec![(0, 128)]);
        assert_eq!(runs(&[0x01]), vec![(0, 1)]);
        assert_eq!(runs(&[0x80, 0x01]), vec![(7, 9)]);
        assert_eq!(
            runs(&[0xF0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x0F]),
            vec![(4, 8), (56, 76)]
        );
        assert_eq!(runs(&[0b1010_0101; 3]), naive(&[0b1010_0101; 3]));
    }

    #[test]
    fn matches_naive_on_pseudo_random_bitmaps() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in [1usize, 7, 8, 9, 63, 64, 65, 128, 1000] {
            for density in 0..4 {
                let bm: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        match density {
                            0 => (x & 0xFF) as u8,
                            1 => {
                                if x % 3 == 0 {
                                    0xFF
                                } else {
                                    0
                                }
                            }
                            2 => (x & x >> 8 & 0xFF) as u8,
                            _ => !((x & x >> 8 & 0xFF) as u8),
                        }
                    })
                    .collect();
                assert_eq!(runs(&bm), naive(&bm), "len {len} density {density}");
            }
        }
    }
}
