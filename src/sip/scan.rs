//! The byte searches of the parser, 16 bytes a step with SSE2 where the build has it (every
//! x86-64 target does), `memchr` or a byte loop elsewhere.
//!
//! Why not `memchr` everywhere: what the parser searches is short (a header line of 40 to 80
//! bytes, a URI, a quoted nonce), and for a haystack that short the call through memchr's
//! run-time CPU dispatch costs more than the search; measured with callgrind, about 75
//! instructions a header line against about 25 here.
//!
//! The header section is not searched line by line: [`LineEnds`] classifies it 64 bytes at a
//! time into two bitmasks, line feeds and bytes no header may hold, and the scan walks the set
//! bits (one `trailing_zeros` a line instead of a search started afresh for every line, and no
//! second pass over the section for the byte check).

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

/// Position of the first `needle` among the 16 bytes of `block`.
#[inline]
pub fn first_of_16(block: &[u8; 16], needle: u8) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::first_of_16(block, needle)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        block.iter().position(|&b| b == needle)
    }
}

/// Whether `block[i] | fold[i] == text[i]` for each `i < n` (`n` at most 16): a
/// case-insensitive compare with a lowercase `text` when `fold` is 0x20 at its letters and 0
/// elsewhere (an uppercase letter is the lowercase one without 0x20; no other byte ORed with
/// 0x20 gives a lowercase letter but that letter itself).
#[inline]
pub fn eq_folded_16(block: &[u8; 16], fold: &[u8; 16], text: &[u8; 16], n: usize) -> bool {
    debug_assert!(n <= 16);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::eq_folded_16(block, fold, text, n)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        eq_folded_scalar(block, fold, text, n)
    }
}

/// [`eq_folded_16`] a byte at a time: the fallback and the tests' reference.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
pub fn eq_folded_scalar(block: &[u8; 16], fold: &[u8; 16], text: &[u8; 16], n: usize) -> bool {
    (0..n).all(|i| block[i] | fold[i] == text[i])
}

/// Control characters other than HT and LF, and DEL: no header section may hold one, but for a
/// CR directly before an LF (a `CRLF` terminator, or one that unfolding turns into spaces).
#[inline]
fn is_control(b: u8) -> bool {
    (b < b' ' && b != b'\t' && b != b'\n') || b == 0x7f
}

/// Width of a [`LineEnds`] window: one bit a byte in a `u64`.
const WINDOW: usize = 64;

/// The masks of `bytes`: bit `i` of `.0` is set when `bytes[i]` is LF, bit `i` of `.1` when it
/// is a control byte ([`is_control`]). A byte at a time: the fallback and the tests' reference.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
pub fn window_scalar(bytes: &[u8; WINDOW]) -> (u64, u64) {
    let (mut lf, mut control) = (0u64, 0u64);
    for (i, &b) in bytes.iter().enumerate() {
        lf |= u64::from(b == b'\n') << i;
        control |= u64::from(is_control(b)) << i;
    }
    (lf, control)
}

#[inline(always)]
fn window(bytes: &[u8; WINDOW]) -> (u64, u64) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::window(bytes)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        window_scalar(bytes)
    }
}

/// The LFs of the 64 bytes of `buf` from `at`, and the bytes among them that no header section
/// may hold: control bytes, except those directly before an LF (the byte after the window
/// included). Whether such an excused byte is the CR it must be is checked with the line that
/// ends there ([`LineEnds::next`]), which reads it anyway; checking it here would take a third
/// mask. Past the end of `buf` the window is padded with spaces, which set no bit.
#[inline(always)]
fn window_at(buf: &[u8], at: usize) -> (u64, u64) {
    let ((lf, control), next) = match buf.get(at..at + WINDOW) {
        Some(bytes) => (
            window(bytes.try_into().expect("64 bytes")),
            buf.get(at + WINDOW),
        ),
        None => (last_window(buf, at), None),
    };
    let before_lf = (lf >> 1) | (u64::from(next == Some(&b'\n')) << (WINDOW - 1));
    (lf, control & !before_lf)
}

/// [`window`] of the fewer than 64 bytes of `buf` from `at`, padded with spaces. Out of line:
/// once a datagram at most.
#[cold]
fn last_window(buf: &[u8], at: usize) -> (u64, u64) {
    let mut padded = [b' '; WINDOW];
    let tail = &buf[at.min(buf.len())..];
    padded[..tail.len()].copy_from_slice(tail);
    window(&padded)
}

/// `n` (at most 64) low bits set.
#[inline]
fn low_bits(n: usize) -> u64 {
    if n >= WINDOW {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The line feeds of a buffer in order, and whether any byte since a chosen position is one no
/// header section may hold (a control byte but for the CR of a CRLF), from masks computed 64
/// bytes at a time.
///
/// It holds no borrow: each call takes the buffer, so that the caller may edit it in between.
/// Edits must not add or remove LFs or control bytes in a window already classified, nor change
/// the byte before an LF not yet returned; the header scan's edits (unfolding a terminator into
/// spaces, moving a colon) only touch bytes at or before the LF last returned, or write `:`, SP
/// and HT over `:`, SP and HT.
pub struct LineEnds {
    /// Where the current window starts.
    at: usize,
    /// The LFs of the current window not yet returned.
    lf: u64,
    /// The bad bytes of the current window (see [`window_at`]). Bit 0 also stands for any bad
    /// byte found earlier (in an earlier window, or before an LF): it lies before every position
    /// asked about later, and [`check_from`](Self::check_from) forgets it with the rest.
    bad: u64,
    checked_from: usize,
}

impl LineEnds {
    /// Start at `buf[from..]`, checking bytes from `from` on.
    #[inline]
    pub fn new(buf: &[u8], from: usize) -> LineEnds {
        let (lf, bad) = window_at(buf, from);
        LineEnds {
            at: from,
            lf,
            bad,
            checked_from: from,
        }
    }

    /// The position of the next LF and whether a CR precedes it, `None` past the end of `buf`.
    #[inline(always)]
    pub fn next(&mut self, buf: &[u8]) -> Option<(usize, bool)> {
        while self.lf == 0 {
            let earlier = u64::from(self.bad != 0);
            self.at += WINDOW;
            if self.at >= buf.len() {
                return None;
            }
            (self.lf, self.bad) = window_at(buf, self.at);
            self.bad |= earlier;
        }
        let nl = self.at + self.lf.trailing_zeros() as usize;
        self.lf &= self.lf - 1;
        let crlf = nl > 0 && buf[nl - 1] == b'\r';
        if !crlf {
            self.check_before_bare_lf(buf, nl);
        }
        Some((nl, crlf))
    }

    /// A control byte the window excused for standing before the LF at `nl` is bad after all
    /// when it is not a CR (the caller has seen that it is not). Rare: most lines end in CRLF.
    #[cold]
    fn check_before_bare_lf(&mut self, buf: &[u8], nl: usize) {
        if nl > self.checked_from && is_control(buf[nl - 1]) {
            self.bad |= 1;
        }
    }

    /// Forget the bad bytes before `pos`, which is just after the LF last returned.
    #[inline]
    pub fn check_from(&mut self, pos: usize) {
        self.checked_from = pos;
        self.bad &= !low_bits(pos - self.at);
    }

    /// Whether a bad byte lies between the position checking started from and `end`, which is
    /// just after the LF last returned.
    #[inline]
    pub fn bad_before(&self, end: usize) -> bool {
        self.bad & low_bits(end - self.at) != 0
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    use super::WINDOW;

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

    /// [`super::window_scalar`] 16 bytes a step.
    #[inline(always)]
    pub fn window(bytes: &[u8; WINDOW]) -> (u64, u64) {
        let (mut lf, mut control) = (0u64, 0u64);
        for (k, chunk) in bytes.chunks_exact(LANES).enumerate() {
            let v = load(chunk);
            // SAFETY: register-only SSE2 operations; SSE2 is enabled for this build.
            let (lf_lanes, control_lanes) = unsafe {
                let eq = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
                let is_lf = eq(b'\n');
                // b <= 0x1F, unsigned: min(b, 0x1F) == b.
                let low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
                let allowed = _mm_or_si128(eq(b'\t'), is_lf);
                let control = _mm_or_si128(_mm_andnot_si128(allowed, low), eq(0x7f));
                (_mm_movemask_epi8(is_lf), _mm_movemask_epi8(control))
            };
            lf |= u64::from(lf_lanes as u16) << (k * LANES);
            control |= u64::from(control_lanes as u16) << (k * LANES);
        }
        (lf, control)
    }

    /// [`super::first_of_16`].
    #[inline(always)]
    pub fn first_of_16(block: &[u8; LANES], needle: u8) -> Option<usize> {
        let m = match_mask(block, [needle; 3]);
        (m != 0).then(|| m.trailing_zeros() as usize)
    }

    /// [`super::eq_folded_16`].
    #[inline(always)]
    pub fn eq_folded_16(
        block: &[u8; LANES],
        fold: &[u8; LANES],
        text: &[u8; LANES],
        n: usize,
    ) -> bool {
        let (v, fold, text) = (load(block), load(fold), load(text));
        // SAFETY: register-only SSE2 operations; SSE2 is enabled for this build.
        let eq = unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_or_si128(v, fold), text)) } as u32;
        let want = (1u32 << n) - 1;
        eq & want == want
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

    /// What [`LineEnds`] should report, byte by byte: each LF with whether a bad byte lies
    /// between `check_from` and it.
    fn line_ends_reference(buf: &[u8], check_from: usize) -> Vec<(usize, bool)> {
        let bad = |i: usize| {
            let crlf = buf[i] == b'\r' && buf.get(i + 1) == Some(&b'\n');
            is_control(buf[i]) && !crlf
        };
        (0..buf.len())
            .filter(|&i| buf[i] == b'\n')
            .map(|nl| (nl, (check_from.min(nl + 1)..=nl).any(bad)))
            .collect()
    }

    /// [`LineEnds`] from `from`, checking from after the first LF (as the parser uses it: the
    /// start line is not checked).
    fn line_ends(buf: &[u8], from: usize) -> Vec<(usize, bool)> {
        let mut lines = LineEnds::new(buf, from);
        let mut out = Vec::new();
        while let Some((nl, crlf)) = lines.next(buf) {
            assert_eq!(crlf, nl > 0 && buf[nl - 1] == b'\r');
            if out.is_empty() {
                lines.check_from(nl + 1);
            }
            out.push((nl, lines.bad_before(nl + 1)));
        }
        out
    }

    #[test]
    fn examples() {
        assert_eq!(
            find_byte3(b',', b'"', b'<', b"a; b=\"x\" <c>, d, e, f, g"),
            Some(5)
        );
        assert_eq!(line_ends(b"", 0), vec![]);
        assert_eq!(
            line_ends(b"S\x01\nVia: x\r\n\t\r\n", 0),
            vec![(2, false), (10, false), (13, false)]
        );
        assert_eq!(
            line_ends(b"S\nV\r\r\n\n", 0),
            vec![(1, false), (5, true), (6, true)]
        );
        let mut long = vec![b'x'; 200];
        long[63] = b'\r';
        long[64] = b'\n';
        long[127] = b'\r';
        long[129] = b'\n';
        long[199] = b'\n';
        assert_eq!(
            line_ends(&long, 0),
            vec![(64, false), (129, true), (199, true)]
        );
        assert_eq!(first_of_16(b"Via: SIP/2.0/UDP", b':'), Some(3));
        assert_eq!(first_of_16(b"0123456789abcdef", b':'), None);
        let (fold, text) = (
            *b"\x20\x20\x20\0\0\0\0\0\0\0\0\0\0\0\0\0",
            *b"via:\0\0\0\0\0\0\0\0\0\0\0\0",
        );
        assert!(eq_folded_16(b"VIa: SIP/2.0/UDP", &fold, &text, 4));
        assert!(!eq_folded_16(b"VIa; SIP/2.0/UDP", &fold, &text, 4));
        assert!(!eq_folded_16(b"V1a: SIP/2.0/UDP", &fold, &text, 4));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn finds_agree_with_memchr(hay in prop::collection::vec(any_byte(), 0..100)) {
            prop_assert_eq!(find_byte(b':', &hay), memchr::memchr(b':', &hay));
            prop_assert_eq!(find_byte2(b'a', b'\t', &hay), memchr::memchr2(b'a', b'\t', &hay));
            prop_assert_eq!(
                find_byte3(b'b', b' ', b'\r', &hay),
                memchr::memchr3(b'b', b' ', b'\r', &hay)
            );
        }

        #[test]
        fn windows_agree_with_the_scalar_masks(
            bytes in prop::collection::vec(any_byte(), WINDOW)
        ) {
            let bytes: &[u8; WINDOW] = bytes[..].try_into().unwrap();
            prop_assert_eq!(window(bytes), window_scalar(bytes));
        }

        #[test]
        fn line_ends_agree_with_a_byte_loop(
            buf in prop::collection::vec(any_byte(), 0..300),
            from in 0usize..40,
        ) {
            let from = from.min(buf.len());
            let expected = line_ends_reference(&buf, 0);
            let first = expected.iter().position(|&(nl, _)| nl >= from);
            let expected = match first {
                None => vec![],
                Some(k) => {
                    let checked = line_ends_reference(&buf, expected[k].0 + 1);
                    checked[k..].to_vec()
                }
            };
            prop_assert_eq!(line_ends(&buf, from), expected);
        }

        #[test]
        fn folded_compares_agree_with_a_byte_loop(
            block in prop::collection::vec(any_byte(), 16),
            text in prop::collection::vec(any_byte(), 16),
            fold in prop::collection::vec(prop::sample::select(&[0u8, 0x20][..]), 16),
            n in 0usize..=16,
        ) {
            let (block, text, fold) = (
                block[..].try_into().unwrap(),
                text[..].try_into().unwrap(),
                fold[..].try_into().unwrap(),
            );
            prop_assert_eq!(
                eq_folded_16(block, fold, text, n),
                eq_folded_scalar(block, fold, text, n)
            );
            prop_assert_eq!(first_of_16(block, b':'), block.iter().position(|&b| b == b':'));
        }
    }
}
