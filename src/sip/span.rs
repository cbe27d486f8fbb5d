//! Byte ranges into the datagram: the currency of the zero-copy message layer.
//!
//! The parser records positions, not slices, so that the index outlives the shared borrow of the
//! buffer and the rewriter can later take the same buffer mutably.

/// A half-open byte range `[start, end)` relative to the start of the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    #[inline]
    pub fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }

    /// The bytes this span covers in `buf`; empty when out of range (never panics).
    #[inline]
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    /// The sub-span `[from, to)` counted from this span's start.
    #[inline]
    pub fn sub(self, from: usize, to: usize) -> Span {
        Span::new(self.start as usize + from, self.start as usize + to)
    }

    /// Locate `inner`, a subslice of `outer`, as a span shifted by `base`.
    #[inline]
    pub fn within(outer: &[u8], inner: &[u8], base: usize) -> Span {
        let off = inner.as_ptr() as usize - outer.as_ptr() as usize;
        Span::new(base + off, base + off + inner.len())
    }
}
