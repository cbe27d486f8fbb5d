//! The fields the generator mutates: where each lives in the base messages, its grammar, and
//! what the proxy must do with a message whose value of it is wrong (its policy). The header
//! rules say what a doubled or a missing header line must lead to.

use super::base::Base;
use super::grammar::Kind;

/// What the proxy owes a message with a mutated value of a field (issue 19's strict rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// An element of the request line: anything not in the grammar is refused, line breaks of
    /// any kind (folding too) included.
    StartLine,
    /// A header value the proxy checks: malformed values, control bytes and broken lines are
    /// refused; a legal fold, an injected well-formed header or an early end of the header
    /// section may go either way.
    Strict,
    /// A header the proxy only carries: forwarded with the value's bytes unchanged, unless the
    /// value breaks the line structure or holds control bytes (the parser may refuse those).
    Carried,
    /// The body: forwarded byte for byte, whatever it holds.
    Body,
}

/// One mutated field.
pub struct Field {
    /// The name in reports: the slot's name.
    pub name: &'static str,
    pub kind: Kind,
    pub policy: Policy,
    /// The bases that have it (the REGISTER has no method to mutate, no carried headers).
    pub bases: &'static [Base],
    /// Written before every mutated value (an optional element's delimiter, such as `:` before
    /// a port), so that the value alone is what the grammar judges.
    pub prefix: &'static str,
    /// The valid value mutations start from, when the slot's default is empty or is the
    /// sender's placeholder.
    pub seed: Option<&'static str>,
    /// The header line the value fills on its own (`Subject`), for carried fields: what the
    /// forwarded message must hold unchanged.
    pub line: Option<&'static str>,
    /// Delimiters inside the value that are doubled and removed.
    pub delimiters: &'static [u8],
    /// The enclosing element whose grammar judges a part of it (`via.branch`: the whole Via,
    /// where a `;` in the branch starts another parameter instead of breaking anything).
    pub whole: Option<(&'static str, Kind)>,
}

const BOTH: &[Base] = &[Base::Invite, Base::Register];
const INVITE: &[Base] = &[Base::Invite];
const REGISTER: &[Base] = &[Base::Register];

const fn field(name: &'static str, kind: Kind, policy: Policy, bases: &'static [Base]) -> Field {
    Field {
        name,
        kind,
        policy,
        bases,
        prefix: "",
        seed: None,
        line: None,
        delimiters: b"",
        whole: None,
    }
}

/// A part of the element `slot`, judged as a whole of `kind`.
const fn part(
    name: &'static str,
    kind: Kind,
    policy: Policy,
    bases: &'static [Base],
    slot: &'static str,
    whole: Kind,
) -> Field {
    Field {
        whole: Some((slot, whole)),
        ..field(name, kind, policy, bases)
    }
}

const PORT: Kind = Kind::Number { min: 1, max: 65535 };
const BYTE: Kind = Kind::Number { min: 0, max: 255 };
const U32: Kind = Kind::Number {
    min: 0,
    max: u32::MAX as u128,
};
/// Expires: digits; a value above 2^32-1 means 2^32-1 (RFC 3261 section 10.2.1.1 and 25), so
/// overflowing digit strings are still valid.
const DELTA: Kind = Kind::Number {
    min: 0,
    max: u128::MAX,
};

use Policy::{Body, Carried, StartLine, Strict};

pub const FIELDS: &[Field] = &[
    field("method", Kind::Method, StartLine, INVITE),
    Field {
        delimiters: b":@;",
        ..field("ruri", Kind::Uri, StartLine, BOTH)
    },
    part(
        "ruri.scheme",
        Kind::Scheme,
        StartLine,
        BOTH,
        "ruri",
        Kind::Uri,
    ),
    part(
        "ruri.user",
        Kind::User,
        StartLine,
        INVITE,
        "ruri",
        Kind::Uri,
    ),
    part("ruri.host", Kind::Host, StartLine, BOTH, "ruri", Kind::Uri),
    Field {
        prefix: ":",
        seed: Some("5060"),
        ..part("ruri.port", PORT, StartLine, BOTH, "ruri", Kind::Uri)
    },
    Field {
        delimiters: b";=",
        ..part(
            "ruri.params",
            Kind::UriParams,
            StartLine,
            BOTH,
            "ruri",
            Kind::Uri,
        )
    },
    Field {
        delimiters: b"/.",
        ..field("version", Kind::Exact("SIP/2.0"), StartLine, BOTH)
    },
    Field {
        seed: Some("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-whole;rport"),
        delimiters: b"/ :;=",
        ..field("via", Kind::Via, Strict, BOTH)
    },
    part(
        "via.protocol",
        Kind::Exact("SIP"),
        Strict,
        BOTH,
        "via",
        Kind::Via,
    ),
    Field {
        delimiters: b".",
        ..part(
            "via.version",
            Kind::Exact("2.0"),
            Strict,
            BOTH,
            "via",
            Kind::Via,
        )
    },
    Field {
        seed: Some("UDP"),
        ..part("via.transport", Kind::Token, Strict, BOTH, "via", Kind::Via)
    },
    Field {
        seed: Some("127.0.0.1"),
        delimiters: b".",
        ..part("via.host", Kind::Host, Strict, BOTH, "via", Kind::Via)
    },
    Field {
        seed: Some("5060"),
        ..part("via.port", PORT, Strict, BOTH, "via", Kind::Via)
    },
    part("via.branch", Kind::Token, Strict, BOTH, "via", Kind::Via),
    Field {
        delimiters: b".",
        ..part("via.received", Kind::Ip, Strict, BOTH, "via", Kind::Via)
    },
    Field {
        prefix: "rport=",
        seed: Some("5060"),
        ..part("via.rport", PORT, Strict, BOTH, "via", Kind::Via)
    },
    part("via.maddr", Kind::Host, Strict, BOTH, "via", Kind::Via),
    part("via.ttl", BYTE, Strict, BOTH, "via", Kind::Via),
    Field {
        delimiters: b"/ :;=",
        ..field("via2", Kind::Via, Strict, BOTH)
    },
    Field {
        delimiters: b" ",
        ..field("cseq", Kind::CSeq, Strict, BOTH)
    },
    part(
        "cseq.number",
        Kind::Number {
            min: 0,
            max: (1 << 31) - 1,
        },
        Strict,
        BOTH,
        "cseq",
        Kind::CSeq,
    ),
    part(
        "cseq.method",
        Kind::Method,
        Strict,
        BOTH,
        "cseq",
        Kind::CSeq,
    ),
    Field {
        delimiters: b"@",
        ..field("call-id", Kind::CallId, Strict, BOTH)
    },
    Field {
        delimiters: b"<>:@",
        ..part(
            "from.addr",
            Kind::NameAddr,
            Strict,
            BOTH,
            "from",
            Kind::FromTo,
        )
    },
    Field {
        delimiters: b":@",
        ..part("from.uri", Kind::Uri, Strict, BOTH, "from", Kind::FromTo)
    },
    part("from.tag", Kind::Token, Strict, BOTH, "from", Kind::FromTo),
    Field {
        delimiters: b"<>:@",
        ..part("to.addr", Kind::NameAddr, Strict, BOTH, "to", Kind::FromTo)
    },
    Field {
        delimiters: b":@",
        ..part("to.uri", Kind::Uri, Strict, BOTH, "to", Kind::FromTo)
    },
    Field {
        prefix: ";tag=",
        seed: Some("b1"),
        ..part("to.tag", Kind::Token, Strict, BOTH, "to", Kind::FromTo)
    },
    field("max-forwards", BYTE, Strict, BOTH),
    field("content-length", U32, Strict, BOTH),
    Field {
        seed: Some("<sip:bob@127.0.0.1:5060>"),
        delimiters: b"<>:@",
        ..field("register.contact", Kind::Contact, Strict, REGISTER)
    },
    field("register.expires", DELTA, Strict, REGISTER),
    Field {
        line: Some("Contact"),
        delimiters: b"<>:@",
        ..field("invite.contact", Kind::Contact, Carried, INVITE)
    },
    Field {
        line: Some("Expires"),
        ..field("invite.expires", DELTA, Carried, INVITE)
    },
    Field {
        line: Some("Subject"),
        ..field("subject", Kind::Text, Carried, INVITE)
    },
    Field {
        line: Some("User-Agent"),
        delimiters: b"/",
        ..field("user-agent", Kind::Text, Carried, INVITE)
    },
    Field {
        line: Some("X-Mutation"),
        delimiters: b" ",
        ..field("x-header", Kind::Text, Carried, INVITE)
    },
    Field {
        delimiters: b"=\r\n",
        ..field("body", Kind::Body, Body, INVITE)
    },
];

/// What a doubled or missing header line must lead to.
pub struct HeaderRule {
    pub name: &'static str,
    pub bases: &'static [Base],
    /// The same line twice.
    pub doubled: Expect,
    /// A second line with another valid value, when there is one to write.
    pub differing: Option<(&'static str, Expect)>,
    /// Every line of it removed: over a datagram, and over a stream (Content-Length).
    pub missing: Expect,
    pub missing_on_stream: Expect,
}

pub use super::Expect;
use super::Expect::{Carry, Either, Refuse};

const fn rule(
    name: &'static str,
    bases: &'static [Base],
    doubled: Expect,
    missing: Expect,
) -> HeaderRule {
    HeaderRule {
        name,
        bases,
        doubled,
        differing: None,
        missing,
        missing_on_stream: missing,
    }
}

pub const HEADERS: &[HeaderRule] = &[
    // Two identical Via lines are legal (a loop check may still refuse them); no Via at all
    // leaves nowhere to answer: refused, most likely by a counted drop.
    rule("Via", BOTH, Either, Refuse),
    HeaderRule {
        differing: Some(("Max-Forwards: 69", Refuse)),
        ..rule("Max-Forwards", BOTH, Refuse, Either)
    },
    HeaderRule {
        differing: Some(("From: <sip:mallory@example.net>;tag=m", Refuse)),
        ..rule("From", BOTH, Refuse, Refuse)
    },
    HeaderRule {
        differing: Some(("To: <sip:mallory@example.net>", Refuse)),
        ..rule("To", BOTH, Refuse, Refuse)
    },
    HeaderRule {
        differing: Some(("Call-ID: other@example.net", Refuse)),
        ..rule("Call-ID", BOTH, Refuse, Refuse)
    },
    HeaderRule {
        differing: Some(("CSeq: 2 INVITE", Refuse)),
        ..rule("CSeq", INVITE, Refuse, Refuse)
    },
    HeaderRule {
        differing: Some(("CSeq: 2 REGISTER", Refuse)),
        ..rule("CSeq", REGISTER, Refuse, Refuse)
    },
    // Without Content-Length a datagram's body is the rest of it (RFC 3261 section 18.3); a
    // stream cannot be framed without it.
    HeaderRule {
        differing: Some(("Content-Length: 0", Refuse)),
        missing_on_stream: Refuse,
        ..rule("Content-Length", BOTH, Refuse, Either)
    },
    rule("Contact", REGISTER, Either, Either),
    rule("Expires", REGISTER, Either, Either),
    rule("Contact", INVITE, Carry, Either),
    rule("Expires", INVITE, Carry, Either),
    rule("Subject", INVITE, Carry, Either),
    rule("User-Agent", INVITE, Carry, Either),
    rule("X-Mutation", INVITE, Carry, Either),
];
