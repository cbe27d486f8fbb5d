//! Header names and multi-value splitting.
//!
//! Names are recognised once, when the message is indexed, by length and then a case-insensitive
//! compare (the approach of Kamailio's `parse_hname2.c`); compact forms (RFC 3261 section 7.3.3 and
//! later RFCs) map to the same name, so nothing downstream ever sees `v` or `i`.

use super::span::Span;

/// The headers the proxy, registrar and authenticator interpret. Everything else is `Other` and
/// is only located, never interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    ContentEncoding,
    Contact,
    Route,
    RecordRoute,
    Expires,
    MinExpires,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Allow,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Subject,
    Event,
    AllowEvents,
    ReferTo,
    ReferredBy,
    SessionExpires,
    AcceptContact,
    RejectContact,
    RequestDisposition,
    Identity,
    IdentityInfo,
    Other,
}

impl HeaderName {
    /// Every name in declaration order, `Other` last (the length makes a new variant missing
    /// here a compile error).
    pub const ALL: [HeaderName; HeaderName::Other as usize + 1] = {
        use HeaderName::*;
        [
            Via,
            From,
            To,
            CallId,
            CSeq,
            MaxForwards,
            ContentLength,
            ContentType,
            ContentEncoding,
            Contact,
            Route,
            RecordRoute,
            Expires,
            MinExpires,
            Require,
            ProxyRequire,
            Supported,
            Unsupported,
            Allow,
            Authorization,
            ProxyAuthorization,
            WwwAuthenticate,
            ProxyAuthenticate,
            Subject,
            Event,
            AllowEvents,
            ReferTo,
            ReferredBy,
            SessionExpires,
            AcceptContact,
            RejectContact,
            RequestDisposition,
            Identity,
            IdentityInfo,
            Other,
        ]
    };

    /// Recognise a header name, full or compact, ignoring ASCII case.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'k' => Supported,
                b's' => Subject,
                b'o' => Event,
                b'u' => AllowEvents,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'x' => SessionExpires,
                b'a' => AcceptContact,
                b'j' => RejectContact,
                b'd' => RequestDisposition,
                b'y' => Identity,
                b'n' => IdentityInfo,
                _ => Other,
            };
        }
        // Group by length first so each name costs at most a few compares.
        let candidates: &[(&[u8], HeaderName)] = match name.len() {
            2 => &[(b"to", To)],
            3 => &[(b"via", Via)],
            4 => &[(b"from", From), (b"cseq", CSeq)],
            5 => &[(b"route", Route), (b"allow", Allow), (b"event", Event)],
            7 => &[
                (b"call-id", CallId),
                (b"contact", Contact),
                (b"expires", Expires),
                (b"require", Require),
                (b"subject", Subject),
            ],
            8 => &[(b"refer-to", ReferTo), (b"identity", Identity)],
            9 => &[(b"supported", Supported)],
            11 => &[
                (b"unsupported", Unsupported),
                (b"min-expires", MinExpires),
                (b"referred-by", ReferredBy),
            ],
            12 => &[
                (b"max-forwards", MaxForwards),
                (b"content-type", ContentType),
                (b"record-route", RecordRoute),
                (b"allow-events", AllowEvents),
            ],
            13 => &[
                (b"authorization", Authorization),
                (b"proxy-require", ProxyRequire),
                (b"identity-info", IdentityInfo),
            ],
            14 => &[
                (b"content-length", ContentLength),
                (b"accept-contact", AcceptContact),
                (b"reject-contact", RejectContact),
            ],
            15 => &[(b"session-expires", SessionExpires)],
            16 => &[
                (b"www-authenticate", WwwAuthenticate),
                (b"content-encoding", ContentEncoding),
            ],
            18 => &[(b"proxy-authenticate", ProxyAuthenticate)],
            19 => &[
                (b"proxy-authorization", ProxyAuthorization),
                (b"request-disposition", RequestDisposition),
            ],
            _ => &[],
        };
        for (full, id) in candidates {
            if full.eq_ignore_ascii_case(name) {
                return *id;
            }
        }
        Other
    }

    /// True for headers whose value is a comma-separated list that may also span several lines
    /// (RFC 3261 section 7.3.1). Headers with a quoted-comma syntax of their own (Authorization,
    /// WWW-Authenticate, ...) are not split.
    pub fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Require
                | ProxyRequire
                | Supported
                | Unsupported
                | Allow
                | AllowEvents
                | AcceptContact
                | RejectContact
        )
    }

    /// The canonical long name, used when the proxy writes a header.
    pub fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            ContentEncoding => "Content-Encoding",
            Contact => "Contact",
            Route => "Route",
            RecordRoute => "Record-Route",
            Expires => "Expires",
            MinExpires => "Min-Expires",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Supported => "Supported",
            Unsupported => "Unsupported",
            Allow => "Allow",
            Authorization => "Authorization",
            ProxyAuthorization => "Proxy-Authorization",
            WwwAuthenticate => "WWW-Authenticate",
            ProxyAuthenticate => "Proxy-Authenticate",
            Subject => "Subject",
            Event => "Event",
            AllowEvents => "Allow-Events",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            SessionExpires => "Session-Expires",
            AcceptContact => "Accept-Contact",
            RejectContact => "Reject-Contact",
            RequestDisposition => "Request-Disposition",
            Identity => "Identity",
            IdentityInfo => "Identity-Info",
            Other => "",
        }
    }
}

/// Iterator over the comma-separated elements of one header value, skipping commas inside
/// double quotes (with backslash escapes) and angle brackets. Each element is trimmed of
/// surrounding whitespace; empty elements (`a,,b`) are skipped.
pub struct CommaSplit<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> CommaSplit<'a> {
    /// Split `span` of `buf`.
    pub fn new(buf: &'a [u8], span: Span) -> CommaSplit<'a> {
        let end = (span.end as usize).min(buf.len());
        CommaSplit {
            buf,
            pos: (span.start as usize).min(end),
            end,
        }
    }
}

impl Iterator for CommaSplit<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            let start = self.pos;
            let mut in_quotes = false;
            let mut in_angle = false;
            let mut i = start;
            while i < self.end {
                let b = self.buf[i];
                if in_quotes {
                    if b == b'\\' {
                        i += 1;
                    } else if b == b'"' {
                        in_quotes = false;
                    }
                } else if b == b'"' {
                    in_quotes = true;
                } else if b == b'<' {
                    in_angle = true;
                } else if b == b'>' {
                    in_angle = false;
                } else if b == b',' && !in_angle {
                    break;
                }
                i += 1;
            }
            let stop = i.min(self.end);
            self.pos = stop + 1;
            let element = trim(self.buf, Span::new(start, stop));
            if !element.is_empty() {
                return Some(element);
            }
        }
    }
}

/// Trim linear whitespace (SP, HT, and the CR/LF left by in-place unfolding) from both ends.
pub fn trim(buf: &[u8], span: Span) -> Span {
    let mut s = span.start as usize;
    let mut e = (span.end as usize).min(buf.len());
    while s < e && is_lws(buf[s]) {
        s += 1;
    }
    while e > s && is_lws(buf[e - 1]) {
        e -= 1;
    }
    Span::new(s, e)
}

#[inline]
pub fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
pub const fn is_token(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"vIa"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"CALL-ID"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"m"), HeaderName::Contact);
        assert_eq!(
            HeaderName::from_bytes(b"Record-route"),
            HeaderName::RecordRoute
        );
        assert_eq!(HeaderName::from_bytes(b"X-Custom"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
    }

    #[test]
    fn every_long_name_round_trips() {
        for (i, &h) in HeaderName::ALL.iter().enumerate() {
            assert_eq!(h as usize, i);
            if h != HeaderName::Other {
                assert_eq!(
                    HeaderName::from_bytes(h.as_str().as_bytes()),
                    h,
                    "{}",
                    h.as_str()
                );
            }
        }
    }

    fn split(s: &str) -> Vec<&str> {
        let b = s.as_bytes();
        CommaSplit::new(b, Span::new(0, b.len()))
            .map(|sp| std::str::from_utf8(sp.of(b)).unwrap())
            .collect()
    }

    #[test]
    fn comma_split_respects_quotes_and_brackets() {
        assert_eq!(split("a, b ,c"), vec!["a", "b", "c"]);
        assert_eq!(
            split("\"Doe, J\" <sip:j@x;a=1,2>;q=0.5, <sip:k@y>"),
            vec!["\"Doe, J\" <sip:j@x;a=1,2>;q=0.5", "<sip:k@y>"]
        );
        assert_eq!(
            split("\"a\\\",b\" <sip:x>, y"),
            vec!["\"a\\\",b\" <sip:x>", "y"]
        );
        assert_eq!(split(" , ,a,, "), vec!["a"]);
        assert_eq!(split(""), Vec::<&str>::new());
    }
}
