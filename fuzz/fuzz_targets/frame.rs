#![no_main]
//! Arbitrary bytes through the stream framer, cut into reads at arbitrary places.
//!
//! The input is `max_message` (2 bytes, little-endian), a seed for the read sizes (1 byte), then
//! the bytes of the stream. A transport is simulated: reads arrive, frames are taken off the
//! front of the buffer, an error closes the connection. Checked:
//!
//! - nothing panics;
//! - a frame never claims more than the buffer holds, nor a message more than `max_message`;
//! - the cut changes nothing: each answer is `Partial` or the answer for the whole rest of the
//!   stream at once (the stateless `frame`), and once every byte has arrived it is that answer;
//! - a ping is `\r\n\r\n`, a skip one CR/LF or a CRLF;
//! - each message parses with the datagram parser without panicking, and when it parses, the
//!   parser frames it to the same length (the two agree on the header end and Content-Length);
//!   when it does not, the error is not one the framer should have caught;
//! - a connection's `Inbound` (which frames where a read landed and copies only an incomplete
//!   tail) fed the same reads hands over the same messages, and the same error, as framing
//!   the whole stream.

use libfuzzer_sys::fuzz_target;
use sipshard::sip::frame::frame;
use sipshard::sip::{ConnId, Frame, Framer, Message, ParseError, PING};
use sipshard::transport::tcp::conn::{Conn, Event, Inbound};

fuzz_target!(|data: &[u8]| {
    let [lo, hi, seed, ref stream @ ..] = *data else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([lo, hi]));
    check_inbound(stream, max, seed);
    let mut reads = ReadSizes::new(seed);
    let mut framer = Framer::new(max);
    // `stream[at..received]` is the buffer: what arrived and was not yet taken off.
    let (mut at, mut received) = (0, 0);
    let mut expected = frame(stream, max);
    while received < stream.len() {
        received = (received + reads.next()).min(stream.len());
        loop {
            let buf = &stream[at..received];
            let got = framer.frame(buf);
            if received == stream.len() {
                assert_eq!(got, expected, "all bytes are in");
            }
            let f = match got {
                Ok(Frame::Partial) => break,
                Ok(f) => f,
                Err(e) => {
                    assert_eq!(Err(e), expected);
                    assert!(matches!(e.status(), 400 | 513), "{e:?}");
                    return;
                }
            };
            assert_eq!(got, expected, "a complete frame is the same however cut");
            check(f, buf, max);
            at += f.consumed();
            expected = frame(&stream[at..], max);
        }
    }
});

/// The invariants of one complete frame at the front of `buf`.
fn check(f: Frame, buf: &[u8], max: usize) {
    let len = f.consumed();
    assert!(0 < len && len <= buf.len());
    let bytes = &buf[..len];
    match f {
        Frame::Ping { .. } => assert_eq!(bytes, PING),
        Frame::Skip { .. } => {
            assert!(
                bytes == b"\r\n" || bytes == b"\r" || bytes == b"\n",
                "{bytes:?}"
            )
        }
        Frame::Message { .. } => {
            assert!(len <= max);
            assert!(!matches!(bytes[0], b'\r' | b'\n'));
            parse_framed(bytes);
        }
        Frame::Partial => unreachable!(),
    }
}

/// What a connection hands over: a message, or the error that broke the stream.
#[derive(Debug, PartialEq)]
enum Out {
    Message(Vec<u8>),
    Broken(ParseError),
}

/// `Inbound` fed `stream` in the reads of `seed` against the whole stream framed at once.
fn check_inbound(stream: &[u8], max: usize, seed: u8) {
    let mut expected = Vec::new();
    let mut at = 0;
    loop {
        match frame(&stream[at..], max) {
            Ok(Frame::Partial) => break,
            Ok(f) => {
                if let Frame::Message { len } = f {
                    expected.push(Out::Message(stream[at..at + len].to_vec()));
                }
                at += f.consumed();
            }
            Err(e) => {
                expected.push(Out::Broken(e));
                break;
            }
        }
    }
    let conn = Conn::new(ConnId(1), "127.0.0.1:5060".parse().unwrap(), 0, usize::MAX);
    let mut inbound = Inbound::new(max);
    let mut got = Vec::new();
    let mut on_event = |ev: Event<'_>| match ev {
        Event::Message(m) => got.push(Out::Message(m.to_vec())),
        Event::Broken(_, e) => got.push(Out::Broken(e)),
    };
    let (mut reads, mut received) = (ReadSizes::new(seed), 0);
    while received < stream.len() {
        let end = (received + reads.next()).min(stream.len());
        if inbound.feed(&conn, &stream[received..end], &mut on_event).is_err() {
            break;
        }
        received = end;
    }
    assert_eq!(got, expected, "Inbound frames as the whole stream does");
}

/// A framed message through the datagram parser.
fn parse_framed(bytes: &[u8]) {
    let mut copy = bytes.to_vec();
    match Message::parse(&mut copy) {
        Ok(m) => assert_eq!(m.framed_len(), bytes.len(), "parser and framer agree"),
        Err(e) => assert!(
            !matches!(
                e,
                ParseError::Empty
                    | ParseError::UnterminatedHeaders
                    | ParseError::TruncatedBody
                    | ParseError::BadContentLength
                    | ParseError::ConflictingContentLength
                    | ParseError::TooLarge
            ),
            "framed, yet the parser says {e:?}"
        ),
    }
}

/// Read sizes from a seed: mostly small (down to one byte a read), sometimes large.
struct ReadSizes(u32);

impl ReadSizes {
    fn new(seed: u8) -> ReadSizes {
        ReadSizes(u32::from(seed).wrapping_mul(0x9e37_79b9) | 1)
    }

    fn next(&mut self) -> usize {
        // xorshift32
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        match self.0 % 8 {
            0 => 1 + (self.0 >> 8) as usize % 1024,
            _ => 1 + (self.0 >> 8) as usize % 8,
        }
    }
}
