//! Identifiers and message text shared by the client and answering sides.
//!
//! # Finding a call in O(1)
//!
//! Every identifier we mint carries the slot of the call table it belongs to and the slot's
//! generation: `<nonce>.<slot>.<gen>` in hex. The nonce is random per worker and run, so
//! identifiers of an earlier run (or another generator) never match. Responses to our requests
//! come back with our Via branch (`z9hG4bK<nonce>.<slot>.<gen>.<seq>`, RFC 3261 section
//! 8.1.1.7), and in-dialog requests to our UAS carry the To tag we gave (section 12.2.2), so both
//! sides find their state by indexing, never by hashing strings. `seq` only keeps the branches
//! of one call's transactions distinct.

use std::net::SocketAddr;

use sipshard::sip::{HeaderName, Message, Transport};

use crate::writer::{parse_hex, W};

/// The branch magic cookie (RFC 3261 section 8.1.1.7).
pub const COOKIE: &[u8] = b"z9hG4bK";

/// A slot reference decoded from a branch or tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id {
    pub slot: u32,
    pub gen: u32,
}

/// `<nonce>.<slot>.<gen>`.
#[inline]
pub fn write_id(w: &mut W<'_>, nonce: u32, id: Id) {
    w.hex(nonce as u64)
        .b(b".")
        .hex(id.slot as u64)
        .b(b".")
        .hex(id.gen as u64);
}

/// Decode `<nonce>.<slot>.<gen>[.<anything>]`, checking the nonce.
#[inline]
pub fn parse_id(s: &[u8], nonce: u32) -> Option<Id> {
    let mut parts = s.splitn(4, |&b| b == b'.');
    let n = parse_hex(parts.next()?)?;
    let slot = parse_hex(parts.next()?)?;
    let gen = parse_hex(parts.next()?)?;
    if n != nonce as u64 || slot > u32::MAX as u64 || gen > u32::MAX as u64 {
        return None;
    }
    Some(Id {
        slot: slot as u32,
        gen: gen as u32,
    })
}

/// `host:port` of a Contact URI, with `;transport=tcp` when the socket is a connection (a URI
/// without the parameter means UDP, RFC 3263 section 4.1).
#[inline]
pub fn write_contact_host(w: &mut W<'_>, local: Local) {
    w.addr(local.addr);
    if local.transport != Transport::Udp {
        w.b(b";transport=").s(local.transport.name());
    }
}

/// The branch of the first Via value of a Via header line, found without parsing the whole Via
/// (the hot path of every response): the text after `branch=` up to the next delimiter. Only
/// our own branches are decoded from it, so a lookalike elsewhere cannot match a live call.
#[inline]
pub fn top_branch(via_line: &[u8]) -> Option<&[u8]> {
    // The first value ends at the first comma (a branch never contains one).
    let first = via_line.split(|&b| b == b',').next()?;
    let at = memchr::memmem::find(first, b"branch=")?;
    let rest = &first[at + 7..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Decode one of our branches.
#[inline]
pub fn parse_branch(branch: &[u8], nonce: u32) -> Option<Id> {
    parse_id(branch.strip_prefix(COOKIE)?, nonce)
}

/// Where this side is reached: a socket's address and the transport it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// `Via: SIP/2.0/UDP <local>;rport;branch=z9hG4bK<id>.<seq>` (RFC 3581 `rport` asks the next
/// hop to answer to the port we sent from, which is the port we listen on anyway; over TCP
/// the answer comes back on the connection).
#[inline]
pub fn write_via(w: &mut W<'_>, local: Local, nonce: u32, id: Id, seq: u32) {
    w.b(b"Via: SIP/2.0/").b(local.transport.via_token()).b(b" ");
    w.addr(local.addr).b(b";rport;branch=");
    w.b(COOKIE);
    write_id(w, nonce, id);
    w.b(b".").hex(seq as u64).crlf();
}

pub fn reason(code: u16) -> &'static [u8] {
    match code {
        100 => b"Trying",
        180 => b"Ringing",
        183 => b"Session Progress",
        200 => b"OK",
        404 => b"Not Found",
        480 => b"Temporarily Unavailable",
        481 => b"Call/Transaction Does Not Exist",
        486 => b"Busy Here",
        488 => b"Not Acceptable Here",
        500 => b"Server Internal Error",
        501 => b"Not Implemented",
        503 => b"Service Unavailable",
        603 => b"Decline",
        _ => b"Status",
    }
}

/// The session description our INVITEs and 200s carry (RFC 4566; RFC 3665 section 3.1 shows the
/// same shape). It is fixed per socket, so it is written once and copied.
pub fn sdp(local: SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(200);
    let mut w = W::new(&mut v);
    let fam = if local.is_ipv4() { "IP4" } else { "IP6" };
    w.b(b"v=0\r\no=sipshard-load 1 1 IN ")
        .s(fam)
        .b(b" ")
        .ip(local.ip());
    w.b(b"\r\ns=-\r\nc=IN ").s(fam).b(b" ").ip(local.ip());
    w.b(b"\r\nt=0 0\r\nm=audio ")
        .dec(10000 + local.port() as u64 % 50000)
        .b(b" RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n");
    v
}

/// What an answer copies from the request (RFC 3261 section 8.2.6.2).
pub struct Answer<'m, 'a> {
    pub req: &'m Message<'a>,
    pub code: u16,
    /// To tag to add when the request's To has none (`<nonce>.<slot>.<gen>`).
    pub to_tag: Option<(u32, Id)>,
    /// Copy Record-Route (responses that establish a dialog, section 12.1.1).
    pub record_route: bool,
    /// `Contact: <sip:user@local>` (dialog-establishing responses, section 12.1.1).
    pub contact: Option<Local>,
    /// Body as `application/sdp`.
    pub sdp: Option<&'m [u8]>,
    /// Extra header lines, CRLF-terminated.
    pub extra: &'m [u8],
}

impl Answer<'_, '_> {
    pub fn write(&self, w: &mut W<'_>) {
        let req = self.req;
        w.b(b"SIP/2.0 ")
            .dec(self.code as u64)
            .b(b" ")
            .b(reason(self.code))
            .crlf();
        for f in req.fields() {
            match f.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    copy_line(w, req, f.line)
                }
                HeaderName::RecordRoute if self.record_route => copy_line(w, req, f.line),
                HeaderName::To => {
                    w.b(b"To: ").b(req.bytes(f.value));
                    if let Some((nonce, id)) = self.to_tag {
                        if !req.to().is_ok_and(|t| t.tag().is_some()) {
                            w.b(b";tag=");
                            write_id(w, nonce, id);
                        }
                    }
                    w.crlf();
                }
                _ => {}
            }
        }
        if let Some(local) = self.contact {
            w.b(b"Contact: <sip:");
            if let Some(user) = req.request_uri().and_then(|u| u.user) {
                w.b(user).b(b"@");
            }
            write_contact_host(w, local);
            w.b(b">").crlf();
        }
        w.b(self.extra);
        match self.sdp {
            Some(body) => {
                w.b(b"Content-Type: application/sdp\r\nContent-Length: ")
                    .dec(body.len() as u64)
                    .b(b"\r\n\r\n")
                    .b(body);
            }
            None => {
                w.b(b"Content-Length: 0\r\n\r\n");
            }
        }
    }
}

/// Copy a header line as received, making sure it ends with CRLF.
fn copy_line(w: &mut W<'_>, req: &Message<'_>, line: sipshard::sip::Span) {
    let b = req.bytes(line);
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    let b = b.strip_suffix(b"\r").unwrap_or(b);
    w.b(b).crlf();
}

/// The host and port a URI designates, when its host is an IP literal (we resolve no names:
/// a load generator must not measure DNS).
pub fn uri_addr(uri: &sipshard::sip::Uri<'_>) -> Option<SocketAddr> {
    let ip = uri.host?.ip()?;
    Some(SocketAddr::new(ip, uri.port_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_check_the_nonce() {
        let mut v = Vec::new();
        let id = Id {
            slot: 0x1234,
            gen: 7,
        };
        let mut local = Local {
            addr: "127.0.0.1:5060".parse().unwrap(),
            transport: Transport::Udp,
        };
        write_via(&mut W::new(&mut v), local, 0xabcdef, id, 3);
        assert_eq!(
            v,
            b"Via: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKabcdef.1234.7.3\r\n"
        );
        local.transport = Transport::Tcp;
        v.clear();
        write_via(&mut W::new(&mut v), local, 0xabcdef, id, 3);
        assert!(v.starts_with(b"Via: SIP/2.0/TCP 127.0.0.1:5060;rport;"));
        v.clear();
        write_contact_host(&mut W::new(&mut v), local);
        assert_eq!(v, b"127.0.0.1:5060;transport=tcp");
        assert_eq!(parse_branch(b"z9hG4bKabcdef.1234.7.3", 0xabcdef), Some(id));
        assert_eq!(parse_branch(b"z9hG4bKabcdef.1234.7.3", 0xabcdee), None);
        assert_eq!(parse_branch(b"z9hG4bKabcdef.1234", 0xabcdef), None);
        assert_eq!(parse_branch(b"abcdef.1234.7", 0xabcdef), None);
        assert_eq!(parse_id(b"abcdef.1234.7", 0xabcdef), Some(id));
        assert_eq!(parse_id(b"abcdef.123456789.7", 0xabcdef), None);
        assert_eq!(
            top_branch(b"SIP/2.0/UDP 127.0.0.1:5060;rport=5060;branch=z9hG4bKa.1.2.3;received=x"),
            Some(&b"z9hG4bKa.1.2.3"[..])
        );
        assert_eq!(
            top_branch(b"SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
            Some(&b"z9hG4bK1"[..])
        );
        assert_eq!(
            top_branch(b"SIP/2.0/UDP a, SIP/2.0/UDP b;branch=z9hG4bK2"),
            None
        );
    }

    #[test]
    fn answer_copies_what_rfc3261_says() {
        let mut req = b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
Record-Route: <sip:p1;lr>\r\n\
From: <sip:a@x>;tag=1\r\n\
To: <sip:bob@127.0.0.1>\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Subject: dropped\r\n\
Content-Length: 0\r\n\r\n"
            .to_vec();
        let m = Message::parse(&mut req).unwrap();
        let mut out = Vec::new();
        Answer {
            req: &m,
            code: 200,
            to_tag: Some((1, Id { slot: 2, gen: 3 })),
            record_route: true,
            contact: Some(Local {
                addr: "127.0.0.1:5070".parse().unwrap(),
                transport: Transport::Udp,
            }),
            sdp: Some(b"v=0\r\n"),
            extra: b"",
        }
        .write(&mut W::new(&mut out));
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
Record-Route: <sip:p1;lr>\r\n\
From: <sip:a@x>;tag=1\r\n\
To: <sip:bob@127.0.0.1>;tag=1.2.3\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@127.0.0.1:5070>\r\n\
Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
        );
        let mut out2 = out.clone();
        let r = Message::parse(&mut out2).unwrap();
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.to().unwrap().tag(), Some(&b"1.2.3"[..]));
    }

    #[test]
    fn sdp_parses_as_a_body() {
        let s = sdp("127.0.0.1:5060".parse().unwrap());
        let text = String::from_utf8(s).unwrap();
        assert!(text.starts_with("v=0\r\n"));
        assert!(text.contains("c=IN IP4 127.0.0.1\r\n"));
    }
}
