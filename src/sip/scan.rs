//! The byte searches of the parser, 16 bytes a step with SSE2 where the build has it (every
//! x86-64 target does), `memchr` elsewhere.
//!
//! Why not `memchr` everywhere: what the parser searches is short (a header line of 40 to 80
//! bytes, a URI, a quoted nonce), and for a haystack that short the call through memchr's
//! run-time CPU dispatch costs more than the search; measured with callgrind, about 75
//! instructions a header line against about 25 here. The control-byte count was a fold the
//! compiler vectorised less well.

/// Position of the first LF in `hay`.
#[inline]
pub fn find_lf(hay: &[u8]) -> Option<usize> {
    find_byte(b'\n', hay)
}

/// Position of the first `needle` in `hay` (what `memchr::memchr` returns).
#[inline]
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::find(hay, [needle; 3])
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        memchr::memchr(needle, hay)
    }
}

/// Position of the first `a` or `b` in `hay` (what `memchr::memchr2` returns).
#[inline]
pub fn find_byte2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::find(hay, [a, b, b])
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        memchr::memchr2(a, b, hay)
    }
}

/// Position of the first `a`, `b` or `c` in `hay` (what `memchr::memchr3` returns).
#[inline]
pub fn find_byte3(a: u8, b: u8, c: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::find(hay, [a, b, c])
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        memchr::memchr3(a, b, c, hay)
    }
}

/// Number of bytes of `section` that are control characters other than HT and LF (CR included),
/// or DEL: a valid header section has exactly one per CRLF terminator.
#[inline]
pub fn control_bytes(section: &[u8]) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::control_bytes(section)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        control_bytes_scalar(section)
    }
}

/// [`control_bytes`] a byte at a time: the fallback, the short tails and the tests' reference.
pub fn control_bytes_scalar(section: &[u8]) -> usize {
    section.iter().filter(|&&b| is_control(b)).count()
}

#[inline]
fn is_control(b: u8) -> bool {
    (b < b' ' && b != b'\t' && b != b'\n') || b == 0x7f
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi64, _mm_add_epi8, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cvtsi128_si64,
        _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_sad_epu8,
        _mm_set1_epi8, _mm_setzero_si128, _mm_srli_si128, _mm_sub_epi8, _mm_subs_epu8,
    };

    use super::control_bytes_scalar;

    const LANES: usize = 16;

    /// The 16 bytes of `chunk` as a vector.
    #[inline(always)]
    fn load(chunk: &[u8]) -> __m128i {
        let chunk: &[u8; LANES] = chunk.try_into().expect("a 16-byte chunk");
        // SAFETY: `chunk` is 16 readable bytes and `_mm_loadu_si128` has no alignment
        // requirement; SSE2, the intrinsic's target feature, is enabled for this build (the
        // `cfg` on this module).
        unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) }
    }

    /// One bit per byte of `chunk` equal to one of `needles`.
    #[inline(always)]
    fn match_mask(chunk: &[u8], needles: [u8; 3]) -> u32 {
        let v = load(chunk);
        // SAFETY: register-only SSE2 operations; SSE2 is enabled for this build.
        unsafe {
            let eq = |n: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(n as i8));
            let any = _mm_or_si128(_mm_or_si128(eq(needles[0]), eq(needles[1])), eq(needles[2]));
            _mm_movemask_epi8(any) as u32
        }
    }

    /// The first byte of `hay` equal to one of `needles` (repeat a needle to look for fewer).
    #[inline(always)]
    pub fn find(hay: &[u8], needles: [u8; 3]) -> Option<usize> {
        if hay.len() < LANES {
            return hay.iter().position(|b| needles.contains(b));
        }
        let mut at = 0;
        while at + LANES <= hay.len() {
            let m = match_mask(&hay[at..at + LANES], needles);
            if m != 0 {
                return Some(at + m.trailing_zeros() as usize);
            }
            at += LANES;
        }
        if at == hay.len() {
            return None;
        }
        // The last partial chunk, read as the last 16 bytes: the bytes it shares with the
        // chunks above match nothing, so its first match is the answer.
        let last = hay.len() - LANES;
        let m = match_mask(&hay[last..], needles);
        (m != 0).then(|| last + m.trailing_zeros() as usize)
    }

    /// 0xFF for every byte of `v` that is a control byte (see [`super::control_bytes`]).
    #[inline(always)]
    fn control_lanes(v: __m128i) -> __m128i {
        // SAFETY: register-only SSE2 operations; SSE2 is enabled for this build.
        unsafe {
            // b <= 0x1F, unsigned: max(b, 0x1F) == 0x1F.
            let low = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
            let allowed = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
            );
            let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
            _mm_or_si128(_mm_andnot_si128(allowed, low), del)
        }
    }

    /// Add to the byte counters `acc` one for each control byte of `v`, computed as "at most
    /// 0x1F, or DEL" minus "HT or LF" (HT and LF are at most 0x1F): fewer operations than
    /// [`control_lanes`]. A lane that matches is 0xFF, i.e. -1; each lane's net count stays
    /// within 0..=255 for up to 255 chunks.
    #[inline(always)]
    fn count_control_lanes(acc: __m128i, v: __m128i) -> __m128i {
        // SAFETY: register-only SSE2 operations; SSE2 is enabled for this build.
        unsafe {
            let low = _mm_cmpeq_epi8(_mm_subs_epu8(v, _mm_set1_epi8(0x1f)), _mm_setzero_si128());
            let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
            let allowed = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
            );
            _mm_add_epi8(_mm_sub_epi8(_mm_sub_epi8(acc, low), del), allowed)
        }
    }

    /// The sum of the 16 byte counters of `acc`.
    #[inline(always)]
    fn horizontal_sum(acc: __m128i) -> usize {
        // SAFETY: register-only SSE2 operations; SSE2 is enabled for this build.
        unsafe {
            let sums = _mm_sad_epu8(acc, _mm_setzero_si128());
            _mm_cvtsi128_si64(_mm_add_epi64(sums, _mm_srli_si128(sums, 8))) as usize
        }
    }

    pub fn control_bytes(section: &[u8]) -> usize {
        let mut pairs = section.chunks_exact(2 * LANES);
        let mut total = 0;
        // Two chunks a step (the loop overhead is a third of a step's instructions). Each lane
        // of the byte-wide counters gains at most 2 a step: a horizontal sum every 127 steps.
        loop {
            // SAFETY: register-only SSE2 operation; SSE2 is enabled for this build.
            let mut acc = unsafe { _mm_setzero_si128() };
            let mut steps = 0;
            for pair in pairs.by_ref().take(127) {
                acc = count_control_lanes(acc, load(&pair[..LANES]));
                acc = count_control_lanes(acc, load(&pair[LANES..]));
                steps += 1;
            }
            total += horizontal_sum(acc);
            if steps < 127 {
                break;
            }
        }
        total + control_bytes_tail(section, pairs.remainder().len())
    }

    /// The control bytes among the last `rest` (< 32) bytes of `section`.
    fn control_bytes_tail(section: &[u8], mut rest: usize) -> usize {
        let end = section.len();
        let mut total = 0;
        if rest >= LANES {
            total += control_mask(&section[end - rest..end - rest + LANES]).count_ones() as usize;
            rest -= LANES;
        }
        if rest == 0 {
            return total;
        }
        if end < LANES {
            return total + control_bytes_scalar(&section[end - rest..]);
        }
        // Read as the last 16 bytes; only the top `rest` lanes are new.
        total + (control_mask(&section[end - LANES..]) >> (LANES - rest)).count_ones() as usize
    }

    /// One bit per control byte of `chunk`.
    #[inline(always)]
    fn control_mask(chunk: &[u8]) -> u32 {
        // SAFETY: register-only SSE2 operation; SSE2 is enabled for this build.
        unsafe { _mm_movemask_epi8(control_lanes(load(chunk))) as u32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => prop::sample::select(&b"ab: \t\r\n"[..]),
            1 => any::<u8>(),
        ]
    }

    #[test]
    fn examples() {
        assert_eq!(find_lf(b""), None);
        assert_eq!(find_lf(b"abc\n"), Some(3));
        assert_eq!(find_lf(&[b'x'; 40]), None);
        assert_eq!(find_lf(&[b'x'; 32]), None);
        let mut long = vec![b'x'; 40];
        long[33] = b'\n';
        long[39] = b'\n';
        assert_eq!(find_lf(&long), Some(33));
        assert_eq!(
            find_byte3(b',', b'"', b'<', b"a; b=\"x\" <c>, d, e, f, g"),
            Some(5)
        );
        assert_eq!(control_bytes(b"Via: x\r\n\t\r\n"), 2);
        assert_eq!(control_bytes(&[0x7f; 600]), 600);
        assert_eq!(control_bytes(&[0x80; 600]), 0);
        assert_eq!(control_bytes(&[0x00; 5000]), 5000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn finds_agree_with_memchr(hay in prop::collection::vec(any_byte(), 0..100)) {
            prop_assert_eq!(find_lf(&hay), memchr::memchr(b'\n', &hay));
            prop_assert_eq!(find_byte(b':', &hay), memchr::memchr(b':', &hay));
            prop_assert_eq!(find_byte2(b'a', b'\t', &hay), memchr::memchr2(b'a', b'\t', &hay));
            prop_assert_eq!(
                find_byte3(b'b', b' ', b'\r', &hay),
                memchr::memchr3(b'b', b' ', b'\r', &hay)
            );
        }

        #[test]
        fn control_bytes_agree_with_the_scalar_count(
            section in prop::collection::vec(any_byte(), 0..5000)
        ) {
            prop_assert_eq!(control_bytes(&section), control_bytes_scalar(&section));
        }
    }
}
