use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;
use crate::sip::Message;

const MAX: usize = 64 * 1024;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
l: 0\r\n\
\r\n";

/// A request with `headers` (each line with its CRLF) and `body`.
fn request(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("OPTIONS sip:a@example.com SIP/2.0\r\n{headers}\r\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// Every frame of `buf` with a fresh framer per frame, then the final error or `Partial`.
fn frames(buf: &[u8], max: usize) -> (Vec<Frame>, Result<Frame, ParseError>) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match frame(&buf[at..], max) {
            Ok(Frame::Partial) => return (out, Ok(Frame::Partial)),
            Ok(f) => {
                out.push(f);
                at += f.consumed();
            }
            Err(e) => return (out, Err(e)),
        }
    }
}

/// A frame and its bytes, as taken off the front of the buffer.
type Taken = (Frame, Vec<u8>);

/// What a transport does: `chunks` arrive one after the other; each complete frame is taken off
/// the front of the buffer with its bytes. Stops at the first error.
fn stream(chunks: &[&[u8]], max: usize) -> (Vec<Taken>, Result<(), ParseError>) {
    let mut framer = Framer::new(max);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.frame(&buf) {
                Ok(Frame::Partial) => break,
                Ok(f) => out.push((f, buf.drain(..f.consumed()).collect())),
                Err(e) => return (out, Err(e)),
            }
        }
    }
    (out, Ok(()))
}

#[test]
fn one_message() {
    assert_eq!(frame(INVITE, MAX), Ok(Frame::Message { len: INVITE.len() }));
    assert_eq!(frame(OK, MAX), Ok(Frame::Message { len: OK.len() }));
}

#[test]
fn pipelined_messages_in_one_buffer() {
    let buf = [INVITE, OK, PING, INVITE, b"\r\n", OK, b"INV"].concat();
    let (got, end) = frames(&buf, MAX);
    assert_eq!(
        got,
        [
            Frame::Message { len: INVITE.len() },
            Frame::Message { len: OK.len() },
            Frame::Ping { len: 4 },
            Frame::Message { len: INVITE.len() },
            Frame::Skip { len: 2 },
            Frame::Message { len: OK.len() },
        ]
    );
    assert_eq!(end, Ok(Frame::Partial));
}

#[test]
fn complete_exactly_when_the_last_byte_arrives() {
    for msg in [INVITE, OK] {
        // One byte a read, through one framer.
        let mut framer = Framer::new(MAX);
        for n in 1..msg.len() {
            assert_eq!(framer.frame(&msg[..n]), Ok(Frame::Partial), "{n}");
        }
        assert_eq!(framer.frame(msg), Ok(Frame::Message { len: msg.len() }));
        // Two reads, split at every offset, the second bringing the next message too.
        let two = [msg, msg].concat();
        for cut in 1..msg.len() {
            let (got, end) = stream(&[&two[..cut], &two[cut..]], MAX);
            assert_eq!(got.len(), 2, "{cut}");
            assert!(got.iter().all(|(_, bytes)| bytes == msg));
            assert_eq!(end, Ok(()));
            // And the stateless function agrees on every prefix.
            assert_eq!(frame(&msg[..cut], MAX), Ok(Frame::Partial), "{cut}");
        }
    }
}

#[test]
fn keepalives() {
    assert_eq!(frame(PING, MAX), Ok(Frame::Ping { len: 4 }));
    // What could still become a ping waits.
    for prefix in [&b"\r"[..], b"\r\n", b"\r\n\r"] {
        assert_eq!(frame(prefix, MAX), Ok(Frame::Partial));
    }
    // A pong (or stray CRLF) before a message is skipped, as are bare CRs and LFs.
    assert_eq!(
        frame(&[b"\r\n", OK].concat(), MAX),
        Ok(Frame::Skip { len: 2 })
    );
    assert_eq!(frame(b"\r\n\rX", MAX), Ok(Frame::Skip { len: 2 }));
    assert_eq!(frame(b"\n\r\n\r\n", MAX), Ok(Frame::Skip { len: 1 }));
    assert_eq!(frame(b"\rX", MAX), Ok(Frame::Skip { len: 1 }));
    // Three CRLFs: a ping, then a CRLF that waits for the next message.
    let (got, end) = frames(b"\r\n\r\n\r\n", MAX);
    assert_eq!(
        (got, end),
        (vec![Frame::Ping { len: 4 }], Ok(Frame::Partial))
    );
    // A ping cut anywhere is still one ping; pings are not messages, so no limit applies.
    let (got, end) = stream(&[b"\r", b"\n\r", b"\n", OK], 3);
    assert_eq!(got[0], (Frame::Ping { len: 4 }, PING.to_vec()));
    assert_eq!(end, Err(ParseError::TooLarge));
    let (got, _) = stream(&[b"\r\n", b"\r\n", OK], MAX);
    let kinds: Vec<Frame> = got.into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        kinds,
        [Frame::Ping { len: 4 }, Frame::Message { len: OK.len() }]
    );
}

#[test]
fn missing_content_length() {
    let e = frame(&request("Via: SIP/2.0/TCP h\r\n", b""), MAX).unwrap_err();
    assert_eq!(e, ParseError::Missing(Required::ContentLength));
    assert_eq!(e.status(), 400);
    assert_eq!(e.reason(), "Bad Request - Missing Content-Length");
    // No header at all; and a name that only starts like it.
    let bare = b"OPTIONS sip:a@example.com SIP/2.0\r\n\r\n";
    assert_eq!(frame(bare, MAX), Err(e));
    let longer = request("Content-Lengthy: 0\r\nX-l: 0\r\n", b"");
    assert_eq!(frame(&longer, MAX), Err(e));
}

#[test]
fn content_length_forms() {
    for header in [
        "Content-Length: 2\r\n",
        "content-length:2\r\n",
        "CONTENT-LENGTH: \t2 \t\r\n",
        "l: 2\r\n",
        "L:2\r\n",
        "Content-Length : 2\r\n",
        "l\t:\t2\r\n",
        "Content-Length:\r\n 2\r\n",
        "Content-Length: 2\r\n\t\r\n",
    ] {
        let m = request(header, b"hi");
        assert_eq!(
            frame(&m, MAX),
            Ok(Frame::Message { len: m.len() }),
            "{header:?}"
        );
        // The datagram parser finds the same body.
        let mut copy = m.clone();
        let parsed = Message::parse(&mut copy).unwrap();
        assert_eq!(parsed.framed_len(), m.len(), "{header:?}");
        assert_eq!(parsed.bytes(parsed.body), b"hi");
    }
}

#[test]
fn bad_content_length() {
    for header in [
        "Content-Length: -2\r\n",
        "Content-Length: 2x\r\n",
        "Content-Length: 0x2\r\n",
        "Content-Length:\r\n",
        "Content-Length: 1 2\r\n",
        "Content-Length: 1\r\n 2\r\n",
        "Content-Length: 99999999999999999999\r\n",
        "l: +2\r\n",
    ] {
        let m = request(header, b"hi");
        assert_eq!(
            frame(&m, MAX),
            Err(ParseError::BadContentLength),
            "{header:?}"
        );
        let mut copy = m.clone();
        assert_eq!(
            Message::parse(&mut copy).err(),
            Some(ParseError::BadContentLength),
            "{header:?}"
        );
    }
    let two = request("Content-Length: 2\r\nl: 3\r\n", b"hi!");
    let e = frame(&two, MAX).unwrap_err();
    assert_eq!(e, ParseError::ConflictingContentLength);
    // Equal values too: one framing, read one way by every element on the path.
    let same = request("Content-Length: 2\r\nl: 2\r\n", b"hi");
    assert_eq!(frame(&same, MAX), Err(ParseError::ConflictingContentLength));
    assert_eq!(
        (e.status(), e.reason()),
        (400, "Bad Request - Repeated Content-Length")
    );
}

#[test]
fn too_large() {
    // The whole message counts, headers and body: exactly the limit is fine, one more is not.
    let m = request("Content-Length: 10\r\n", b"0123456789");
    assert_eq!(frame(&m, m.len()), Ok(Frame::Message { len: m.len() }));
    let e = frame(&m, m.len() - 1).unwrap_err();
    assert_eq!(
        (e, e.status(), e.reason()),
        (ParseError::TooLarge, 513, "Message Too Large")
    );
    // Known from the header section alone, before the body arrives.
    let head = &m[..m.len() - 10];
    assert_eq!(frame(head, m.len() - 1), Err(ParseError::TooLarge));
    // A huge Content-Length does not overflow.
    let huge = request("Content-Length: 9999999999999999999\r\n", b"");
    assert_eq!(frame(&huge, MAX), Err(ParseError::TooLarge));
    // A header section that reaches the limit without ending.
    let endless = request("X: 1\r\n", b"");
    let unended = &endless[..endless.len() - 2];
    assert_eq!(frame(unended, unended.len() + 1), Ok(Frame::Partial));
    assert_eq!(frame(unended, unended.len()), Err(ParseError::TooLarge));
    // Its terminator ending one byte past the limit.
    assert_eq!(
        frame(&endless, endless.len() - 1),
        Err(ParseError::TooLarge)
    );
}

#[test]
fn body_bytes_that_look_like_a_header_end() {
    let body = b"\r\n\r\nINVITE sip:x SIP/2.0\r\n\r\n\n\n";
    let m = request(&format!("Content-Length: {}\r\n", body.len()), body);
    let buf = [&m[..], OK, &m[..]].concat();
    let (got, end) = frames(&buf, MAX);
    assert_eq!(
        got,
        [
            Frame::Message { len: m.len() },
            Frame::Message { len: OK.len() },
            Frame::Message { len: m.len() },
        ]
    );
    assert_eq!(end, Ok(Frame::Partial));
}

#[test]
fn bare_line_feeds_as_the_datagram_parser_accepts_them() {
    let lf = b"OPTIONS sip:a@example.com SIP/2.0\nl: 2\n\nhi";
    let mixed = b"OPTIONS sip:a@example.com SIP/2.0\r\nl: 2\n\r\nhi";
    let empty_section = b"OPTIONS sip:a@example.com SIP/2.0\n\n";
    for m in [&lf[..], mixed] {
        assert_eq!(frame(m, MAX), Ok(Frame::Message { len: m.len() }));
        let mut copy = m.to_vec();
        assert_eq!(Message::parse(&mut copy).unwrap().framed_len(), m.len());
    }
    assert_eq!(
        frame(empty_section, MAX),
        Err(ParseError::Missing(Required::ContentLength))
    );
    // A lone CR is not a line end.
    assert_eq!(
        frame(b"OPTIONS sip:a@example.com SIP/2.0\r\nl: 0\r\r\r\n", MAX),
        Ok(Frame::Partial)
    );
}

#[test]
fn a_slow_header_section_is_searched_once() {
    // A peer sending one byte a read up to the limit: each call resumes where the last one
    // stopped (at most the LF and CR before the end are looked at again), so the work is
    // linear in the bytes received.
    let mut buf = b"INVITE sip:a@example.com SIP/2.0\r\n".to_vec();
    let filler = b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    while buf.len() < MAX {
        buf.extend_from_slice(filler);
    }
    let mut framer = Framer::new(MAX);
    for n in 1..MAX {
        assert_eq!(framer.frame(&buf[..n]), Ok(Frame::Partial));
        match framer.state {
            State::Head { searched } => assert!(searched + 2 >= n, "{searched} of {n}"),
            State::Body { .. } => unreachable!(),
        }
    }
    assert_eq!(framer.frame(&buf[..MAX]), Err(ParseError::TooLarge));
    // The framer starts afresh after an error.
    assert_eq!(framer.frame(OK), Ok(Frame::Message { len: OK.len() }));
}

#[test]
fn a_slow_body_costs_nothing_more() {
    let m = request("Content-Length: 1000\r\n", &[b'x'; 1000]);
    let head = m.len() - 1000;
    let mut framer = Framer::new(MAX);
    assert_eq!(framer.frame(&m[..head]), Ok(Frame::Partial));
    assert_eq!(framer.state, State::Body { len: m.len() });
    for n in head..m.len() {
        assert_eq!(framer.frame(&m[..n]), Ok(Frame::Partial));
    }
    assert_eq!(framer.frame(&m), Ok(Frame::Message { len: m.len() }));
    assert_eq!(framer.state, START);
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// What precedes a message on the stream.
#[derive(Clone, Copy, Debug)]
enum Before {
    Nothing,
    Ping,
    Pong,
}

/// A random valid message: a request or response line, some headers in random case with
/// Content-Length (full or compact) among them, bare LF or CRLF line ends, and a
/// body of any bytes, often holding the header terminator.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let start = prop::sample::select(vec![
        "INVITE sip:bob@example.com SIP/2.0",
        "REGISTER sip:example.com SIP/2.0",
        "SIP/2.0 200 OK",
        "SIP/2.0 180 Ringing",
    ]);
    let other = prop::sample::select(vec![
        "Via: SIP/2.0/TCP h.example.com;branch=z9hG4bK1",
        "v: SIP/2.0/TLS h.example.com;branch=z9hG4bK2",
        "From: <sip:a@example.com>;tag=1",
        "Call-ID: abc@h",
        "CSeq: 1 INVITE",
        "Subject: a\r\n folded line",
        "X-Content-Length: 9",
        "Contact: <sip:a@h>",
    ]);
    let name = prop::sample::select(vec![
        "Content-Length: ",
        "content-length:",
        "CONTENT-LENGTH : ",
        "l: ",
        "L:",
    ]);
    let body_byte = prop_oneof![
        3 => any::<u8>(),
        2 => Just(b'\r'),
        2 => Just(b'\n'),
    ];
    (
        start,
        prop::collection::vec(other, 0..6),
        name,
        any::<prop::sample::Index>(),
        prop::collection::vec(body_byte, 0..80),
        any::<bool>(),
    )
        .prop_map(|(start, lines, name, at, body, bare_lf)| {
            let mut lines: Vec<String> = lines.into_iter().map(String::from).collect();
            let at = at.index(lines.len() + 1);
            lines.insert(at, format!("{name}{}", body.len()));
            let eol = if bare_lf { "\n" } else { "\r\n" };
            let mut text = String::from(start) + eol;
            for line in lines {
                text += &line.replace("\r\n", eol);
                text += eol;
            }
            text += eol;
            let mut bytes = text.into_bytes();
            bytes.extend_from_slice(&body);
            bytes
        })
}

fn before() -> impl Strategy<Value = Before> {
    prop_oneof![
        4 => Just(Before::Nothing),
        1 => Just(Before::Ping),
        1 => Just(Before::Pong),
    ]
}

/// `stream` cut at the (sorted, deduplicated) positions `cuts`.
fn cut<'a>(stream: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

proptest! {
    #![proptest_config(config(2000))]

    /// Messages (with keep-alives between them) concatenated and cut at random come out of the
    /// framer exactly as they went in, and parse as datagrams to the same length.
    #[test]
    fn random_messages_cut_at_random_are_recovered(
        items in prop::collection::vec((before(), message()), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut whole = Vec::new();
        let mut expected = Vec::new();
        for (before, msg) in &items {
            match before {
                Before::Nothing => {}
                Before::Ping => expected.push((Frame::Ping { len: 4 }, PING.to_vec())),
                Before::Pong => expected.push((Frame::Skip { len: 2 }, PONG.to_vec())),
            }
            let keepalive: &[u8] = match before {
                Before::Nothing => b"",
                Before::Ping => PING,
                Before::Pong => PONG,
            };
            whole.extend_from_slice(keepalive);
            whole.extend_from_slice(msg);
            expected.push((Frame::Message { len: msg.len() }, msg.clone()));
        }
        let (got, end) = stream(&cut(&whole, &cuts), MAX);
        prop_assert_eq!(end, Ok(()));
        prop_assert_eq!(&got, &expected);
        for (f, bytes) in got {
            if let Frame::Message { len } = f {
                let mut copy = bytes.clone();
                let parsed = Message::parse(&mut copy);
                prop_assert_eq!(parsed.map(|m| m.framed_len()).ok(), Some(len));
            }
        }
    }

    /// On any bytes, how they are cut into reads changes nothing: the frames are those of the
    /// whole stream framed at once, and each prefix of a frame is `Partial`.
    #[test]
    fn any_bytes_frame_alike_however_cut(
        bytes in prop::collection::vec(prop_oneof![
            4 => any::<u8>(),
            2 => Just(b'\r'),
            2 => Just(b'\n'),
            1 => prop::sample::select(&b"l:0123456789 "[..]),
        ], 0..300),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        max in 0usize..400,
    ) {
        let (whole, whole_end) = frames(&bytes, max);
        let (got, end) = stream(&cut(&bytes, &cuts), max);
        let got: Vec<Frame> = got.into_iter().map(|(f, _)| f).collect();
        prop_assert_eq!(&got, &whole);
        match whole_end {
            Ok(_) => prop_assert_eq!(end, Ok(())),
            Err(e) => prop_assert_eq!(end, Err(e)),
        }
    }
}
