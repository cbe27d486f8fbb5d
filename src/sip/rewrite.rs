//! In-place editing of a message in the buffer it arrived in.
//!
//! A proxy's edits all sit near the top of a message (a new Via, a Record-Route, the Request-URI,
//! Max-Forwards, a popped Route) while the body, usually the largest part, sits at the end. So
//! each edit moves the bytes *before* it: an insertion shifts the start line and the headers
//! above it left into the headroom reserved in front of every receive buffer, a removal shifts
//! them right. The body never moves, nothing is allocated, and Content-Length never changes.
//!
//! Edits are recorded first ([`Edits`], a fixed-capacity list whose inserted text lives in its
//! own small scratch area) while the parsed view borrows the buffer, and applied afterwards
//! ([`Edits::apply`]) with the buffer borrowed mutably.

use std::fmt;

use super::span::Span;
use super::write::{push_ip, push_uint, Sink};

/// The most edits one forwarding decision makes (Via, received, rport, Record-Route, Route pop,
/// Request-URI, Max-Forwards, credentials removal) with room to spare.
pub const MAX_EDITS: usize = 16;
/// Room for inserted text: a Via with a 40-character branch, a Record-Route and a contact URI.
pub const SCRATCH: usize = 1536;

/// Bytes reserved in front of each receive buffer for insertions.
pub const DEFAULT_HEADROOM: usize = 512;

/// Why a set of edits could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditError {
    /// More than [`MAX_EDITS`] edits.
    TooManyEdits,
    /// Inserted text larger than [`SCRATCH`].
    ScratchFull,
    /// Two edits touch the same bytes, or an edit lies outside the message.
    Overlap,
    /// Neither the headroom nor the tailroom can absorb the growth.
    NoRoom,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for EditError {}

/// One edit: replace `span` (possibly empty: an insertion) by `scratch[text]` (possibly
/// empty: a removal). Positions are relative to the start of the message as parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Edit {
    span: Span,
    text: Span,
    /// Recording order: insertions at the same position appear in this order.
    seq: u16,
}

/// A batch of edits to one message.
pub struct Edits {
    edits: [Edit; MAX_EDITS],
    count: usize,
    scratch: [u8; SCRATCH],
    used: usize,
    error: Option<EditError>,
}

impl Default for Edits {
    fn default() -> Self {
        Self::new()
    }
}

impl Edits {
    pub const fn new() -> Edits {
        Edits {
            edits: [Edit {
                span: Span::EMPTY,
                text: Span::EMPTY,
                seq: 0,
            }; MAX_EDITS],
            count: 0,
            scratch: [0; SCRATCH],
            used: 0,
            error: None,
        }
    }

    /// Forget all edits, keeping the storage.
    pub fn clear(&mut self) {
        self.count = 0;
        self.used = 0;
        self.error = None;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Replace the bytes of `span` with `text`.
    pub fn replace(&mut self, span: Span, text: &[u8]) {
        let start = self.used;
        self.write(text);
        self.push(span, start);
    }

    /// Insert `text` at position `at`. Several insertions at one position appear in the order
    /// they were recorded.
    pub fn insert(&mut self, at: usize, text: &[u8]) {
        self.replace(Span::new(at, at), text);
    }

    /// Remove the bytes of `span`.
    pub fn remove(&mut self, span: Span) {
        self.push(span, self.used);
    }

    /// Replace `span` with text written by `f` (formatting straight into the scratch area).
    pub fn replace_with(&mut self, span: Span, f: impl FnOnce(&mut TextWriter<'_>)) {
        let start = self.used;
        f(&mut TextWriter { edits: self });
        self.push(span, start);
    }

    /// Insert text written by `f` at `at`.
    pub fn insert_with(&mut self, at: usize, f: impl FnOnce(&mut TextWriter<'_>)) {
        self.replace_with(Span::new(at, at), f);
    }

    fn write(&mut self, text: &[u8]) {
        match self.scratch.get_mut(self.used..self.used + text.len()) {
            Some(dst) => {
                dst.copy_from_slice(text);
                self.used += text.len();
            }
            None => self.error = Some(EditError::ScratchFull),
        }
    }

    fn push(&mut self, span: Span, text_start: usize) {
        if self.count == MAX_EDITS {
            self.error = Some(EditError::TooManyEdits);
            return;
        }
        self.edits[self.count] = Edit {
            span,
            text: Span::new(text_start, self.used.max(text_start)),
            seq: self.count as u16,
        };
        self.count += 1;
    }

    /// The net change in length once applied.
    pub fn growth(&self) -> isize {
        self.edits[..self.count]
            .iter()
            .map(|e| e.text.len() as isize - e.span.len() as isize)
            .sum()
    }

    /// Apply every edit to `pkt`, whose current contents are the message the spans refer to.
    pub fn apply(&mut self, pkt: &mut PacketBuf) -> Result<(), EditError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let edits = &mut self.edits[..self.count];
        // Back to front, so an edit never disturbs the positions of the ones still to come.
        // Among insertions at one position the last recorded goes in first, so that in the
        // result they read in recording order.
        edits.sort_unstable_by_key(|e| std::cmp::Reverse((e.span.start, e.span.end, e.seq)));
        let msg_len = pkt.len();
        let mut next_start = msg_len;
        for e in edits.iter() {
            // An inverted span is as much outside the message as one past its end.
            if e.span.start > e.span.end || e.span.end as usize > next_start {
                return Err(EditError::Overlap);
            }
            next_start = e.span.start as usize;
        }
        // Check there is room for the whole batch before touching anything.
        let mut need_head = 0isize;
        let mut worst = 0isize;
        for e in edits.iter() {
            need_head += e.text.len() as isize - e.span.len() as isize;
            worst = worst.max(need_head);
        }
        if worst > pkt.start as isize {
            return self.apply_with_tail(pkt, worst);
        }
        // `shift` is how far the prefix has moved so far (negative: left, into the headroom).
        let origin = pkt.start;
        for e in edits.iter() {
            let text = e.text.of(&self.scratch);
            let s = origin + e.span.start as usize;
            let t_end = origin + e.span.end as usize;
            let delta = text.len() as isize - e.span.len() as isize;
            let new_start = (pkt.start as isize - delta) as usize;
            // The part of the message before this edit has already moved by (origin - pkt.start)
            // ... but only edits *after* this one moved it, and those start at or after t_end,
            // so everything before `s` is still at its original place relative to pkt.start.
            let moved = origin as isize - pkt.start as isize;
            let s_now = (s as isize - moved) as usize;
            let e_now = (t_end as isize - moved) as usize;
            debug_assert!(s_now >= pkt.start);
            // A same-length replacement (Max-Forwards 70 -> 69) moves nothing.
            if delta != 0 {
                pkt.data.copy_within(pkt.start..s_now, new_start);
            }
            let text_at = (s_now as isize - delta) as usize;
            pkt.data[text_at..text_at + text.len()].copy_from_slice(text);
            debug_assert_eq!(text_at + text.len(), e_now);
            pkt.start = new_start;
        }
        Ok(())
    }

    /// Fallback when the headroom is too small: apply by moving the tail instead (correct but
    /// moves the body; only reached when an unusually large batch of insertions is requested).
    ///
    /// `worst` is the most the message grows by at any point of the back-to-front pass: that,
    /// not the net growth, is the room needed (a later removal does not make room for an
    /// earlier insertion; checking the net growth let `copy_within` run past the buffer).
    fn apply_with_tail(&mut self, pkt: &mut PacketBuf, worst: isize) -> Result<(), EditError> {
        if pkt.end as isize + worst > pkt.data.len() as isize {
            return Err(EditError::NoRoom);
        }
        // Edits are sorted back to front; moving the suffix of each leaves earlier positions be.
        for e in self.edits[..self.count].iter() {
            let text = e.text.of(&self.scratch);
            let s = pkt.start + e.span.start as usize;
            let t = pkt.start + e.span.end as usize;
            let delta = text.len() as isize - e.span.len() as isize;
            let new_t = (t as isize + delta) as usize;
            pkt.data.copy_within(t..pkt.end, new_t);
            pkt.data[s..s + text.len()].copy_from_slice(text);
            pkt.end = (pkt.end as isize + delta) as usize;
        }
        Ok(())
    }
}

/// Writes formatted text into an [`Edits`] scratch area (`write!` works on it).
pub struct TextWriter<'e> {
    edits: &'e mut Edits,
}

impl TextWriter<'_> {
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.edits.write(b);
        self
    }

    /// Decimal without going through `fmt` (the packet path formats ports and counters).
    pub fn num(&mut self, n: u64) -> &mut Self {
        push_uint(self, n);
        self
    }

    /// An address as written in a Via parameter or URI host (IPv6 in brackets).
    pub fn ip(&mut self, ip: std::net::IpAddr) -> &mut Self {
        push_ip(self, ip);
        self
    }
}

impl Sink for TextWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.edits.write(bytes);
    }
}

impl fmt::Write for TextWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.edits.write(s.as_bytes());
        Ok(())
    }
}

/// A receive buffer with headroom in front of the datagram and tailroom after it.
///
/// `data[start..end]` is the message. Received datagrams land at `headroom`; edits move `start`.
pub struct PacketBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
    headroom: usize,
    /// Largest datagram accepted; the receive slot is one byte longer to detect oversize ones.
    max_datagram: usize,
}

impl PacketBuf {
    /// A buffer able to receive `max_datagram` bytes with `headroom` in front and the same
    /// again behind (for the rare tail fallback).
    pub fn new(max_datagram: usize, headroom: usize) -> PacketBuf {
        PacketBuf {
            data: vec![0u8; headroom + max_datagram + 1 + headroom].into_boxed_slice(),
            start: headroom,
            end: headroom,
            headroom,
            max_datagram,
        }
    }

    /// Build from a message (tests, benches, the load generator).
    pub fn from_message(msg: &[u8], headroom: usize) -> PacketBuf {
        let mut p = PacketBuf::new(msg.len().max(1), headroom);
        p.receive_slot()[..msg.len()].copy_from_slice(msg);
        p.set_received(msg.len());
        p
    }

    /// Reset and return the area a datagram is received into (at most `max_datagram` + 1 bytes,
    /// the extra byte telling an over-long datagram apart).
    pub fn receive_slot(&mut self) -> &mut [u8] {
        self.start = self.headroom;
        self.end = self.headroom;
        &mut self.data[self.headroom..self.headroom + self.max_datagram + 1]
    }

    /// Reset and return the receive slot with `prefix` bytes of the headroom in front of it,
    /// for a receive that writes something of its own before the datagram (a multishot
    /// io_uring receive writes the source address and control messages there): the datagram
    /// then lands where [`receive_slot`](Self::receive_slot) would put it. Once it is
    /// [`set_received`](Self::set_received), [`prefix`](Self::prefix) reads those bytes until
    /// an edit grows the message into the headroom. `None` when `prefix` exceeds the headroom.
    pub fn receive_slot_after(&mut self, prefix: usize) -> Option<&mut [u8]> {
        let from = self.headroom.checked_sub(prefix)?;
        self.start = self.headroom;
        self.end = self.headroom;
        Some(&mut self.data[from..self.headroom + self.max_datagram + 1])
    }

    /// The `n` bytes in front of the received datagram (see
    /// [`receive_slot_after`](Self::receive_slot_after)).
    pub fn prefix(&self, n: usize) -> &[u8] {
        &self.data[self.headroom.saturating_sub(n)..self.headroom]
    }

    pub fn set_received(&mut self, n: usize) {
        self.start = self.headroom;
        self.end = (self.headroom + n).min(self.data.len());
    }

    /// Drop bytes past `len` (trailing octets beyond Content-Length, RFC 3261 section 18.3).
    pub fn truncate(&mut self, len: usize) {
        self.end = self.end.min(self.start + len);
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Replace the contents with `bytes` (locally generated replies reuse the buffer).
    pub fn set_contents(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.data.len() - self.headroom {
            return false;
        }
        self.start = self.headroom;
        self.end = self.headroom + bytes.len();
        self.data[self.start..self.end].copy_from_slice(bytes);
        true
    }

    /// Write access to the area a reply is composed in: everything after the headroom.
    pub fn compose_area(&mut self) -> &mut [u8] {
        self.start = self.headroom;
        self.end = self.headroom;
        let headroom = self.headroom;
        &mut self.data[headroom..]
    }

    /// Set the length of a reply written with [`compose_area`](Self::compose_area).
    pub fn set_composed(&mut self, n: usize) {
        self.start = self.headroom;
        self.end = (self.headroom + n).min(self.data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(msg: &str, f: impl FnOnce(&mut Edits)) -> String {
        let mut p = PacketBuf::from_message(msg.as_bytes(), 64);
        let mut e = Edits::new();
        f(&mut e);
        e.apply(&mut p).unwrap();
        String::from_utf8(p.as_slice().to_vec()).unwrap()
    }

    #[test]
    fn insert_replace_remove() {
        let m = "ABCDEFGHIJ";
        assert_eq!(apply(m, |e| e.insert(3, b"xyz")), "ABCxyzDEFGHIJ");
        assert_eq!(apply(m, |e| e.remove(Span::new(2, 5))), "ABFGHIJ");
        assert_eq!(
            apply(m, |e| e.replace(Span::new(0, 1), b"aa")),
            "aaBCDEFGHIJ"
        );
        assert_eq!(
            apply(m, |e| {
                e.replace(Span::new(8, 10), b"");
                e.insert(0, b"<");
                e.replace(Span::new(4, 5), b"eee");
                e.remove(Span::new(1, 2));
            }),
            "<ACDeeeFGH"
        );
    }

    #[test]
    fn insertions_at_one_position_keep_recording_order() {
        assert_eq!(
            apply("ab", |e| {
                e.insert(1, b"1");
                e.insert(1, b"2");
                e.insert(1, b"3");
            }),
            "a123b"
        );
        // Headroom 2 is too small for 3 bytes: the tail fallback keeps the same order.
        let mut p = PacketBuf::from_message(b"ab", 2);
        let mut e = Edits::new();
        e.insert(1, b"12");
        e.insert(1, b"3");
        e.apply(&mut p).unwrap();
        assert_eq!(p.as_slice(), b"a123b");
    }

    #[test]
    fn body_does_not_move() {
        let msg = b"HEAD\r\n\r\nBODY";
        let mut p = PacketBuf::from_message(msg, 64);
        let body_ptr = p.as_slice()[8..].as_ptr();
        let mut e = Edits::new();
        e.insert(0, b"Via: x\r\n");
        e.apply(&mut p).unwrap();
        assert_eq!(p.as_slice(), b"Via: x\r\nHEAD\r\n\r\nBODY");
        assert_eq!(p.as_slice()[16..].as_ptr(), body_ptr);
    }

    #[test]
    fn falls_back_to_tail_when_headroom_is_short() {
        let mut p = PacketBuf::from_message(b"abcdef", 2);
        let mut e = Edits::new();
        e.insert(1, b"12345");
        assert_eq!(e.apply(&mut p), Err(EditError::NoRoom));
        let mut p = PacketBuf::from_message(b"abcdef", 8);
        let mut e = Edits::new();
        e.insert(1, b"123456789");
        e.apply(&mut p).unwrap();
        assert_eq!(p.as_slice(), b"a123456789bcdef");
    }

    #[test]
    fn overlapping_edits_are_refused() {
        let mut p = PacketBuf::from_message(b"abcdef", 8);
        let mut e = Edits::new();
        e.remove(Span::new(1, 4));
        e.replace(Span::new(3, 5), b"x");
        assert_eq!(e.apply(&mut p), Err(EditError::Overlap));
    }

    #[test]
    fn insertions_at_one_position_keep_the_order_they_were_recorded_in() {
        // Net growth 3, at most 3 on the way: headroom 2 takes the tail fallback, 3 and more the
        // in-place path; both must give the same bytes.
        for headroom in [2, 3, 64] {
            let mut pkt = PacketBuf::from_message(b"0123456789", headroom);
            let mut e = Edits::new();
            e.insert(3, b"A");
            e.insert(3, b"BB");
            e.remove(Span::new(3, 5));
            e.insert(3, b"C");
            e.insert(5, b"D");
            e.apply(&mut pkt).unwrap();
            assert_eq!(pkt.as_slice(), b"012ABBCD56789", "headroom {headroom}");
        }
    }

    #[test]
    fn tail_fallback_checks_the_room_needed_midway_not_just_the_net_growth() {
        // Back to front: +40 at the end first, then -40 at the front. Net growth 0, but the tail
        // fallback needs 40 bytes of room while it works; with 9 it must refuse, not overrun.
        let msg = [b'a'; 100];
        for headroom in [8usize, 39, 40, 64] {
            let mut pkt = PacketBuf::from_message(&msg, headroom);
            let mut e = Edits::new();
            e.insert(90, &[b'X'; 40]);
            e.remove(Span::new(0, 40));
            let r = e.apply(&mut pkt);
            if headroom + 1 >= 40 {
                assert_eq!(r, Ok(()), "headroom {headroom}");
                assert_eq!(pkt.len(), 100);
                assert_eq!(&pkt.as_slice()[50..90], &[b'X'; 40]);
            } else {
                assert_eq!(r, Err(EditError::NoRoom), "headroom {headroom}");
                assert_eq!(pkt.as_slice(), &msg[..]);
            }
        }
    }

    #[test]
    fn an_inverted_span_is_refused_without_panicking() {
        let mut pkt = PacketBuf::from_message(b"abcdef", 8);
        let mut e = Edits::new();
        e.replace(Span { start: 4, end: 2 }, b"xyz");
        assert_eq!(e.apply(&mut pkt), Err(EditError::Overlap));
        assert_eq!(pkt.as_slice(), b"abcdef");
    }

    #[test]
    fn writer_formats() {
        let s = apply("ab", |e| {
            e.insert_with(1, |w| {
                w.bytes(b"[").num(5060).bytes(b"]");
            })
        });
        assert_eq!(s, "a[5060]b");
    }
}
