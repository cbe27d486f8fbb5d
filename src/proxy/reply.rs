//! Replies sipshard generates itself (errors, registrar answers, OPTIONS keepalives).
//!
//! A reply copies Via (all of them, in order), From, To, Call-ID and CSeq from the request
//! (RFC 3261 section 8.2.6.2), adds `received`/`rport` to the top Via as a server transport
//! would (section 18.2.1, RFC 3581), and a deterministic To tag. It is built from a parsed
//! message, or, when the message failed to parse, from a tolerant line scan
//! ([`ReplySource::salvage`]) so that a malformed request still gets a useful 400.

use std::net::{IpAddr, SocketAddr};

use super::branch::local_tag;
use super::keep;
use crate::sip::header::{trim, HeaderName};
use crate::sip::params::HeaderParams;
use crate::sip::write::{push_ip, push_uint};
use crate::sip::{Message, Source, Span, Target, Via};

/// At most this many Via lines are copied into a reply; a request with more is not answered.
const MAX_VIA_LINES: usize = 32;

/// Where the pieces of a reply come from.
pub struct ReplySource<'a> {
    buf: &'a [u8],
    parts: Parts,
    top_via: Via<'a>,
    /// The top Via's `rport` (RFC 3581), looked up once: the destination and the reply's Via
    /// both need it.
    rport: Option<Option<u16>>,
}

/// The header values a reply copies, as spans into the request.
struct Parts {
    via_lines: [Span; MAX_VIA_LINES],
    via_count: usize,
    from: Span,
    to: Span,
    call_id: Span,
    cseq: Span,
}

impl Default for Parts {
    fn default() -> Self {
        Parts {
            via_lines: [Span::EMPTY; MAX_VIA_LINES],
            via_count: 0,
            from: Span::EMPTY,
            to: Span::EMPTY,
            call_id: Span::EMPTY,
            cseq: Span::EMPTY,
        }
    }
}

impl Parts {
    /// Record one header value; `None` when there are too many Via lines to answer.
    fn take(&mut self, name: HeaderName, value: Span) -> Option<()> {
        match name {
            HeaderName::Via => {
                *self.via_lines.get_mut(self.via_count)? = value;
                self.via_count += 1;
            }
            HeaderName::From if self.from.is_empty() => self.from = value,
            HeaderName::To if self.to.is_empty() => self.to = value,
            HeaderName::CallId if self.call_id.is_empty() => self.call_id = value,
            HeaderName::CSeq if self.cseq.is_empty() => self.cseq = value,
            _ => {}
        }
        Some(())
    }
}

impl<'a> ReplySource<'a> {
    /// From a parsed request. `None` when it has no usable top Via (then it cannot be answered).
    pub fn from_message(msg: &Message<'a>) -> Option<ReplySource<'a>> {
        let top_via = msg.top_via().ok()?;
        let mut parts = Parts::default();
        for f in msg.fields() {
            parts.take(f.name, f.value)?;
        }
        Some(ReplySource {
            buf: msg.buf(),
            parts,
            rport: top_via.rport(),
            top_via,
        })
    }

    /// From a request that failed to parse: scan its lines without trusting anything but the
    /// top Via, which must parse (it is where the answer goes).
    pub fn salvage(buf: &'a [u8]) -> Option<ReplySource<'a>> {
        let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
        let mut lines = buf[start..].split(|&b| b == b'\n');
        let first = lines.next()?;
        if first.len() >= 4 && first[..4].eq_ignore_ascii_case(b"SIP/") {
            return None; // a response is never answered
        }
        let mut top_via = None;
        let mut parts = Parts::default();
        for line in lines {
            let content = trim(buf, Span::within(buf, line, 0));
            if content.is_empty() {
                break;
            }
            let text = content.of(buf);
            // Continuation lines were unfolded by the parser's first pass, or are skipped.
            let Some(colon) = memchr::memchr(b':', text) else {
                continue;
            };
            if matches!(line.first(), Some(b' ' | b'\t')) {
                continue;
            }
            let name = HeaderName::from_bytes(trim(buf, content.sub(0, colon)).of(buf));
            let value = trim(buf, content.sub(colon + 1, text.len()));
            if name == HeaderName::Via && top_via.is_none() {
                let first_value = crate::sip::header::CommaSplit::new(buf, value).next()?;
                top_via = Some(Via::parse(buf, first_value, 0)?);
            }
            parts.take(name, value)?;
        }
        let top_via = top_via?;
        Some(ReplySource {
            buf,
            parts,
            rport: top_via.rport(),
            top_via,
        })
    }

    pub fn top_via(&self) -> &Via<'a> {
        &self.top_via
    }

    /// Where a reply to this request goes (RFC 3261 section 18.2.2, RFC 3581 section 4): on
    /// a stream, back over the connection the request came on; over UDP, the source address
    /// and port when `rport` was asked for, else the source address and the sent-by port.
    pub fn destination(&self, src: Source) -> Target {
        if src.transport.is_stream() || self.rport.is_some() {
            src.back_to(src.addr)
        } else {
            let port = self.top_via.port_or_default();
            src.back_to(SocketAddr::new(src.addr.ip(), port))
        }
    }

    /// Write the reply into `out` (cleared first). `extra` holds additional header lines, each
    /// terminated by CRLF. `reason` is the reason phrase.
    pub fn compose(
        &self,
        out: &mut Vec<u8>,
        code: u16,
        reason: &str,
        src: SocketAddr,
        extra: &[u8],
        keep: Option<u32>,
    ) {
        out.clear();
        let b = self.buf;
        out.extend_from_slice(b"SIP/2.0 ");
        push_uint(out, code);
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (i, line) in self.parts.via_lines[..self.parts.via_count]
            .iter()
            .enumerate()
        {
            out.extend_from_slice(b"Via: ");
            if i == 0 {
                self.write_top_via(out, *line, src, keep);
            } else {
                out.extend_from_slice(line.of(b));
            }
            out.extend_from_slice(b"\r\n");
        }
        for (name, span) in [(&b"From: "[..], self.parts.from), (b"To: ", self.parts.to)] {
            if span.is_empty() {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(span.of(b));
            if name == b"To: " && code > 100 && !has_tag(span.of(b)) {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(&self.local_tag());
            }
            out.extend_from_slice(b"\r\n");
        }
        for (name, span) in [
            (&b"Call-ID: "[..], self.parts.call_id),
            (b"CSeq: ", self.parts.cseq),
        ] {
            if !span.is_empty() {
                out.extend_from_slice(name);
                out.extend_from_slice(span.of(b));
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(extra);
        out.extend_from_slice(b"Server: sipshard\r\nContent-Length: 0\r\n\r\n");
    }

    /// The deterministic tag for this request's locally generated replies.
    pub fn local_tag(&self) -> [u8; 18] {
        let from_tag = from_tag(self.parts.from.of(self.buf));
        let cseq = cseq_number(self.parts.cseq.of(self.buf));
        local_tag(
            self.parts.call_id.of(self.buf),
            from_tag,
            cseq,
            self.top_via.branch().unwrap_or(&[]),
        )
    }

    /// The request's top Via as the reply carries it (the rest of its line copied as is): a
    /// bare `rport` given the source port, a bare `keep` given `keep` seconds when this reply
    /// negotiates keep-alives (RFC 6223), `received` added as RFC 3261 section 18.2.1 and RFC
    /// 3581 say.
    fn write_top_via(&self, out: &mut Vec<u8>, line: Span, src: SocketAddr, keep: Option<u32>) {
        let b = self.buf;
        let via = &self.top_via;
        let elem = via.span;
        out.extend_from_slice(Span::new(line.start as usize, elem.start as usize).of(b));
        let text = elem.of(b);
        // Valueless parameters given a value, in the order they appear.
        let rport = (self.rport == Some(None))
            .then(|| Some((rport_name_end(via, text)?, u32::from(src.port()))))
            .flatten();
        let keep = keep.and_then(|secs| Some((keep::value_at(via, text)?, secs)));
        let mut values = [rport, keep];
        values.sort_unstable_by_key(|v| v.map(|(at, _)| at));
        let mut copied = 0;
        for (at, value) in values.into_iter().flatten() {
            out.extend_from_slice(&text[copied..at]);
            out.push(b'=');
            push_uint(out, value);
            copied = at;
        }
        out.extend_from_slice(&text[copied..]);
        if via.received().is_none() && (self.rport.is_some() || !host_is(via, src.ip())) {
            out.extend_from_slice(b";received=");
            push_ip(out, src.ip());
        }
        out.extend_from_slice(Span::new(elem.end as usize, line.end as usize).of(b));
    }

    /// The method of the request's CSeq (empty when it has none).
    pub fn cseq_method(&self) -> &[u8] {
        let cseq = self.parts.cseq.of(self.buf);
        let digits = cseq.iter().take_while(|b| b.is_ascii_digit()).count();
        cseq[digits..].trim_ascii()
    }
}

/// Offset within the Via element just after the `rport` parameter name.
pub fn rport_name_end(via: &Via<'_>, elem: &[u8]) -> Option<usize> {
    via.rport_at(elem).map(|p| p.name_end)
}

/// True when the Via's sent-by host is literally `ip`.
pub fn host_is(via: &Via<'_>, ip: IpAddr) -> bool {
    via.host.ip() == Some(ip)
}

fn has_tag(to: &[u8]) -> bool {
    find_tag(to).is_some()
}

fn find_tag(v: &[u8]) -> Option<&[u8]> {
    // Parameters follow the closing '>' (or the whole value for an addr-spec).
    let params_at = match memchr::memrchr(b'>', v) {
        Some(gt) => gt + 1,
        None => 0,
    };
    let tail = &v[params_at..];
    let semi = memchr::memchr(b';', tail)?;
    HeaderParams::new(&tail[semi + 1..])
        .find(|(n, _)| n.eq_ignore_ascii_case(b"tag"))
        .and_then(|(_, v)| v)
}

fn from_tag(from: &[u8]) -> &[u8] {
    find_tag(from).unwrap_or(&[])
}

fn cseq_number(cseq: &[u8]) -> u32 {
    cseq.iter()
        .take_while(|b| b.is_ascii_digit())
        .try_fold(0u32, |acc, &d| {
            acc.checked_mul(10)?.checked_add((d - b'0') as u32)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP pc.example.com:5062;branch=z9hG4bKa;rport, SIP/2.0/UDP 192.0.2.9\r\nVia: SIP/2.0/UDP 192.0.2.8\r\nFrom: <sip:a@example.com>;tag=f1\r\nTo: <sip:x@example.com>\r\nCall-ID: c1\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn reply_copies_headers_and_marks_top_via() {
        let mut b = REQ.as_bytes().to_vec();
        let m = Message::parse(&mut b).unwrap();
        let s = ReplySource::from_message(&m).unwrap();
        let src: SocketAddr = "192.0.2.55:40000".parse().unwrap();
        assert_eq!(s.destination(Source::udp(src)), Target::udp(src));
        let mut out = Vec::new();
        s.compose(&mut out, 404, "Not Found", src, b"X-Extra: 1\r\n", None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("SIP/2.0 404 Not Found\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP pc.example.com:5062;branch=z9hG4bKa;rport=40000;received=192.0.2.55, SIP/2.0/UDP 192.0.2.9\r\nVia: SIP/2.0/UDP 192.0.2.8\r\n"), "{text}");
        assert!(text.contains("To: <sip:x@example.com>;tag=sS"));
        assert!(text.contains("CSeq: 5 OPTIONS\r\n"));
        assert!(text.contains("X-Extra: 1\r\n"));
        // The reply parses and its tag is deterministic.
        let mut again = Vec::new();
        s.compose(&mut again, 404, "Not Found", src, b"X-Extra: 1\r\n", None);
        assert_eq!(text.as_bytes(), &again[..]);
        let mut o = text.into_bytes();
        let r = Message::parse(&mut o).unwrap();
        assert_eq!(r.status(), Some(404));
        assert_eq!(r.vias().count(), 3);
    }

    #[test]
    fn a_valueless_keep_gets_the_interval_beside_rport_in_either_order() {
        let src: SocketAddr = "192.0.2.55:40000".parse().unwrap();
        for (params, written) in [
            ("keep;rport", "keep=29;rport=40000;received=192.0.2.55"),
            ("rport;keep", "rport=40000;keep=29;received=192.0.2.55"),
            ("keep=15", "keep=15;received=192.0.2.55"),
        ] {
            let req = REQ.replace(
                "branch=z9hG4bKa;rport",
                &format!("branch=z9hG4bKa;{params}"),
            );
            let mut b = req.into_bytes();
            let m = Message::parse(&mut b).unwrap();
            let s = ReplySource::from_message(&m).unwrap();
            assert_eq!(s.cseq_method(), b"OPTIONS");
            let mut out = Vec::new();
            s.compose(&mut out, 200, "OK", src, b"", Some(29));
            let text = String::from_utf8(out).unwrap();
            let top = format!("Via: SIP/2.0/UDP pc.example.com:5062;branch=z9hG4bKa;{written},");
            assert!(text.contains(&top), "{params}: {text}");
            let mut without = Vec::new();
            s.compose(&mut without, 200, "OK", src, b"", None);
            let text = String::from_utf8(without).unwrap();
            assert!(!text.contains("keep=29"), "{params}: {text}");
        }
    }

    #[test]
    fn salvage_answers_a_broken_request_but_not_a_response() {
        let broken = REQ.replace("Content-Length: 0", "Content-Length: 999");
        let s = ReplySource::salvage(broken.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.compose(
            &mut out,
            400,
            "Bad Request",
            "192.0.2.55:40000".parse().unwrap(),
            b"",
            None,
        );
        let mut o = out;
        let r = Message::parse(&mut o).unwrap();
        assert_eq!(r.call_id().unwrap(), b"c1");
        assert!(ReplySource::salvage(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a\r\n\r\n").is_none());
        assert!(ReplySource::salvage(b"INVITE x SIP/2.0\r\nFrom: a\r\n\r\n").is_none());
        assert!(ReplySource::salvage(b"INVITE x SIP/2.0\r\nVia: garbage\r\n\r\n").is_none());
    }
}
