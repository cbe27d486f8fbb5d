//! The two valid messages every case starts from, as templates with named slots.
//!
//! A slot `{name}` is filled with the case's mutated value when the case mutates it, else with
//! its default, which may itself hold slots (`{from.addr}` defaults to `<{from.uri}>`, so the
//! brackets and the URI inside them are separate fields). A mutated value is copied literally.
//! The sender's own address is not known until a socket exists (UDP and TCP differ), so the
//! defaults name it with the placeholders of [`SENDER_HOST`], [`SENDER_PORT`] and
//! [`SENDER_TRANSPORT`], filled by [`fill_sender`] at send time; no mutated value holds them.

use std::net::SocketAddr;

pub const SENDER_HOST: &[u8] = b"__SENDER_HOST__";
pub const SENDER_PORT: &[u8] = b"__SENDER_PORT__";
pub const SENDER_TRANSPORT: &[u8] = b"__SENDER_TRANSPORT__";

/// Which valid message a case starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    /// INVITE sip:bob@example.com with an SDP offer: forwarded to bob.
    Invite,
    /// REGISTER for bob at the sender's address: answered by the registrar.
    Register,
}

impl Base {
    pub fn name(self) -> &'static str {
        match self {
            Base::Invite => "INVITE",
            Base::Register => "REGISTER",
        }
    }

    pub fn template(self) -> &'static str {
        match self {
            Base::Invite => INVITE,
            Base::Register => REGISTER,
        }
    }

    /// The slot's default, or `None` when this base has no such slot.
    pub fn default(self, slot: &str) -> Option<&'static str> {
        let own = match self {
            Base::Invite => INVITE_DEFAULTS,
            Base::Register => REGISTER_DEFAULTS,
        };
        own.iter()
            .chain(COMMON_DEFAULTS)
            .find(|(name, _)| *name == slot)
            .map(|(_, value)| *value)
    }

    /// Whether the template names `slot` (directly or in a default).
    pub fn has_slot(self, slot: &str) -> bool {
        let mut seen = Vec::new();
        collect_slots(self, self.template(), &mut seen);
        seen.iter().any(|s| s == slot)
    }
}

/// Every slot reachable from `text` through the defaults.
fn collect_slots(base: Base, text: &str, out: &mut Vec<String>) {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            return;
        };
        let name = &rest[open + 1..open + len];
        out.push(name.to_string());
        if let Some(d) = base.default(name) {
            collect_slots(base, d, out);
        }
        rest = &rest[open + len + 1..];
    }
}

const INVITE: &str = "{method} {ruri} {version}\r\n\
Via: {via}\r\n\
Via: {via2}\r\n\
Max-Forwards: {max-forwards}\r\n\
From: {from}\r\n\
To: {to}\r\n\
Call-ID: {call-id}\r\n\
CSeq: {cseq}\r\n\
Contact: {invite.contact}\r\n\
Expires: {invite.expires}\r\n\
Subject: {subject}\r\n\
User-Agent: {user-agent}\r\n\
X-Mutation: {x-header}\r\n\
Accept: application/sdp\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {content-length}\r\n\
\r\n\
{body}";

const REGISTER: &str = "REGISTER {ruri} {version}\r\n\
Via: {via}\r\n\
Via: {via2}\r\n\
Max-Forwards: {max-forwards}\r\n\
From: {from}\r\n\
To: {to}\r\n\
Call-ID: {call-id}\r\n\
CSeq: {cseq}\r\n\
Contact: {register.contact}\r\n\
Expires: {register.expires}\r\n\
User-Agent: {user-agent}\r\n\
Content-Length: {content-length}\r\n\
\r\n";

const COMMON_DEFAULTS: &[(&str, &str)] = &[
    ("ruri", "{ruri.scheme}:{ruri.userinfo}{ruri.host}{ruri.port}{ruri.params}"),
    ("ruri.scheme", "sip"),
    ("ruri.host", "example.com"),
    ("ruri.port", ""),
    ("ruri.params", ";pvt=1"),
    ("version", "SIP/2.0"),
    (
        "via",
        "{via.protocol}/{via.version}/{via.transport} {via.host}:{via.port};branch={via.branch};received={via.received};{via.rport};maddr={via.maddr};ttl={via.ttl}",
    ),
    ("via.protocol", "SIP"),
    ("via.version", "2.0"),
    ("via.transport", "__SENDER_TRANSPORT__"),
    ("via.host", "__SENDER_HOST__"),
    ("via.port", "__SENDER_PORT__"),
    ("via.branch", "z9hG4bK-mut-{id}"),
    ("via.received", "127.0.0.1"),
    ("via.rport", "rport"),
    ("via.maddr", "127.0.0.1"),
    ("via.ttl", "16"),
    ("via2", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-lower-{id}"),
    ("max-forwards", "70"),
    ("from", "{from.addr};tag={from.tag}"),
    ("to", "{to.addr}{to.tag}"),
    ("from.addr", "<{from.uri}>"),
    ("to.addr", "<{to.uri}>"),
    ("to.tag", ""),
    ("call-id", "mut-{id}@example.org"),
    ("cseq", "{cseq.number} {cseq.method}"),
    ("cseq.number", "1"),
    ("user-agent", "mutation-suite/1.0"),
    ("content-length", "{computed}"),
];

const INVITE_DEFAULTS: &[(&str, &str)] = &[
    ("method", "INVITE"),
    ("ruri.userinfo", "{ruri.user}@"),
    ("ruri.user", "bob"),
    ("from.uri", "sip:alice@example.org"),
    ("from.tag", "a{id}"),
    ("to.uri", "sip:bob@example.com"),
    ("cseq.method", "INVITE"),
    ("invite.contact", "<sip:alice@192.0.2.10:5060>"),
    ("invite.expires", "120"),
    ("subject", "lunch?"),
    ("x-header", "opaque value 1"),
    ("body", "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
];

const REGISTER_DEFAULTS: &[(&str, &str)] = &[
    ("ruri.userinfo", ""),
    ("from.uri", "sip:bob@example.com"),
    ("from.tag", "r{id}"),
    ("to.uri", "sip:bob@example.com"),
    ("cseq.method", "REGISTER"),
    (
        "register.contact",
        "<sip:bob@__SENDER_HOST__:__SENDER_PORT__>",
    ),
    ("register.expires", "3600"),
    ("body", ""),
];

/// The message of case `id` with `overrides` (slot, literal value) and everything else at its
/// default; Content-Length (unless overridden) is the body's length. `None` when the template
/// has no slot of an override's name.
pub fn render(base: Base, overrides: &[(&str, Vec<u8>)], id: usize) -> Option<Vec<u8>> {
    let body = fill(base, "{body}", overrides, id, &[]);
    let length = body.len().to_string().into_bytes();
    let out = fill(base, base.template(), overrides, id, &length);
    overrides
        .iter()
        .all(|(slot, _)| base.has_slot(slot))
        .then_some(out)
}

/// `text` with every slot expanded: an override literally, a default recursively.
fn fill(
    base: Base,
    text: &str,
    overrides: &[(&str, Vec<u8>)],
    id: usize,
    length: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..open]);
        let close = open + rest[open..].find('}').expect("a closed slot");
        let name = &rest[open + 1..close];
        if let Some((_, v)) = overrides.iter().find(|(s, _)| *s == name) {
            out.extend_from_slice(v);
        } else if name == "id" {
            out.extend_from_slice(id.to_string().as_bytes());
        } else if name == "computed" {
            out.extend_from_slice(length);
        } else {
            let d = base
                .default(name)
                .unwrap_or_else(|| panic!("no default for {name}"));
            out.extend_from_slice(&fill(base, d, overrides, id, length));
        }
        rest = &rest[close + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// `bytes` with the sender placeholders replaced by `sender` and `transport` (`UDP`, `TCP`).
pub fn fill_sender(bytes: &[u8], sender: SocketAddr, transport: &str) -> Vec<u8> {
    let host = match sender {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let port = sender.port().to_string();
    let once = replace(bytes, SENDER_HOST, host.as_bytes());
    let twice = replace(&once, SENDER_PORT, port.as_bytes());
    replace(&twice, SENDER_TRANSPORT, transport.as_bytes())
}

/// Every occurrence of `from` in `bytes` replaced by `to`.
pub fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The expanded value of `slot` (defaults and overrides applied), for a field's seed and for
/// the body a case carries.
pub fn slot_value(base: Base, slot: &str, overrides: &[(&str, Vec<u8>)], id: usize) -> Vec<u8> {
    fill(base, &format!("{{{slot}}}"), overrides, id, b"")
}
