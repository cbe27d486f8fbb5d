//! The Via header (RFC 3261 section 20.42, RFC 3581 `rport`).
//!
//! ```text
//! via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
//! sent-protocol = protocol-name SLASH protocol-version SLASH transport   (SLASH = SWS "/" SWS)
//! sent-by       = host [ COLON port ]
//! ```

use super::error::{ParseError, Required};
use super::header::{is_token, token_len, CommaSplit, HeaderName};
use super::params;
use super::parse::{parse_u64, Message};
use super::scan::find_byte;
use super::span::Span;
use super::uri::{parse_host, parse_host_prefix, parse_port, Host};

/// The RFC 3261 branch prefix: a branch starting with it is unique per transaction.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    pub protocol: &'a [u8],
    pub version: &'a [u8],
    pub transport: &'a [u8],
    pub host: Host<'a>,
    pub host_raw: &'a [u8],
    pub port: Option<u16>,
    /// Raw parameter text after the first `;`.
    pub params: &'a [u8],
    /// The whole Via value (one comma-separated element) in the message.
    pub span: Span,
    /// Where `sent-by` ends, i.e. where parameters start or would be appended.
    pub sent_by_end: Span,
    /// The header line this value sits on (index into `Message::fields`).
    pub field: usize,
    /// `branch`, `rport` and `received`, found in the parse's pass over the parameters.
    known: KnownParams<'a>,
}

/// The parameters a proxy reads on every message it forwards or answers, found once (the
/// first occurrence of each, as [`params::find`] would find it) instead of a search of the
/// parameter list per question.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct KnownParams<'a> {
    branch: Option<Option<&'a [u8]>>,
    /// With its name as written: where a forwarded request's Via gets its value (RFC 3581),
    /// without a second search of the parameters.
    rport: Option<(&'a [u8], Option<&'a [u8]>)>,
    received: Option<Option<&'a [u8]>>,
}

impl<'a> KnownParams<'a> {
    /// Take note of one parameter of the common form (see [`params::scan_simple_each`]).
    #[inline]
    fn note(&mut self, name: &'a [u8], value: Option<&'a [u8]>) {
        let slot = match name.len() {
            6 if params::eq_lowercase_letters(name, b"branch") => &mut self.branch,
            5 if params::eq_lowercase_letters(name, b"rport") => {
                self.rport.get_or_insert((name, value));
                return;
            }
            8 if params::eq_lowercase_letters(name, b"received") => &mut self.received,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    /// Searched with the general parameter parser (a Via not of the common form).
    fn find(params: &'a [u8]) -> KnownParams<'a> {
        KnownParams {
            branch: params::find(params, b"branch"),
            rport: params::HeaderParams::new(params)
                .find(|(n, _)| n.eq_ignore_ascii_case(b"rport")),
            received: params::find(params, b"received"),
        }
    }
}

/// A Via parameter's place within the Via's text: the offset just after its name, and the end
/// of its value (the same offset when it has none: `rport`, a bare `keep`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamAt {
    pub name_end: usize,
    pub value_end: usize,
}

impl ParamAt {
    /// The place of a parameter found as `name` and `value`, slices of `elem`.
    fn within(elem: &[u8], name: &[u8], value: Option<&[u8]>) -> Option<ParamAt> {
        let name_end = offset_in(elem, name)? + name.len();
        let value_end = match value {
            Some(v) => offset_in(elem, v)? + v.len(),
            None => name_end,
        };
        Some(ParamAt {
            name_end,
            value_end,
        })
    }

    pub fn has_value(&self) -> bool {
        self.value_end > self.name_end
    }
}

/// Where `part`, a slice of `whole`, starts in it (`None` when it is not inside it).
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let off = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (off + part.len() <= whole.len()).then_some(off)
}

impl<'a> Via<'a> {
    /// Parse one Via element located at `span` of `buf`.
    pub fn parse(buf: &'a [u8], span: Span, field: usize) -> Option<Via<'a>> {
        let s = span.of(buf);
        Self::parse_common(s, span, field).or_else(|| Self::parse_general(s, span, field))
    }

    /// The form nearly every Via has, `SIP/2.0/TRANSPORT host[:port][;name[=value]]...` with no
    /// optional whitespace, quotes or IPv6 reference, in one pass. `None` means "not this form"
    /// (the general parser decides); whatever this accepts, the general parser accepts the same
    /// way.
    #[inline]
    fn parse_common(s: &'a [u8], span: Span, field: usize) -> Option<Via<'a>> {
        let rest = s.strip_prefix(b"SIP/2.0/")?;
        let transport_len = token_len(rest);
        if transport_len == 0 || rest.get(transport_len) != Some(&b' ') {
            return None;
        }
        let host_start = 8 + transport_len + 1;
        let (host_len, host) = parse_host_prefix(&s[host_start..])?;
        let host_end = host_start + host_len;
        let mut i = host_end;
        let mut port = None;
        if s.get(i) == Some(&b':') {
            let digits = s[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
            port = Some(parse_port(&s[i + 1..i + 1 + digits])?);
            i += 1 + digits;
        }
        let sent_by_end = i;
        let mut known = KnownParams::default();
        let params = match s.get(i) {
            None => &[][..],
            Some(b';') => {
                let params = &s[i + 1..];
                params::scan_simple_each(params, |name, value| {
                    known.note(name, value);
                    true
                })?;
                params
            }
            Some(_) => return None,
        };
        let base = span.start as usize;
        Some(Via {
            protocol: &s[..3],
            version: &s[4..7],
            transport: &rest[..transport_len],
            host,
            host_raw: &s[host_start..host_end],
            port,
            params,
            span,
            sent_by_end: Span::new(base + sent_by_end, base + sent_by_end),
            field,
            known,
        })
    }

    /// The general parser alone, for the tests that hold the fast path to it.
    #[cfg(test)]
    pub(super) fn parse_general_for_tests(buf: &'a [u8], span: Span) -> Option<Via<'a>> {
        Self::parse_general(span.of(buf), span, 0)
    }

    fn parse_general(s: &'a [u8], span: Span, field: usize) -> Option<Via<'a>> {
        let mut i = 0;
        let mut parts: [&[u8]; 3] = [&[]; 3];
        for (k, part) in parts.iter_mut().enumerate() {
            skip_ws(s, &mut i);
            let start = i;
            i += token_len(&s[i..]);
            *part = &s[start..i];
            if part.is_empty() {
                return None;
            }
            skip_ws(s, &mut i);
            if k < 2 {
                if s.get(i) != Some(&b'/') {
                    return None;
                }
                i += 1;
            }
        }
        // Only SIP 2.0: a response to anything else cannot be routed back reliably by anyone
        // on the path (the ABNF's literals are case-insensitive, RFC 5234 section 2.3).
        if !parts[0].eq_ignore_ascii_case(b"SIP") || parts[1] != b"2.0" {
            return None;
        }
        // LWS before sent-by is mandatory, but skip_ws above already consumed it; require that
        // something separated transport and host.
        if i == 0 || !matches!(s.get(i - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            return None;
        }
        let host_start = i;
        let host_end = if s.get(i) == Some(&b'[') {
            i + find_byte(b']', &s[i..])? + 1
        } else {
            i + s[i..]
                .iter()
                .position(|&b| matches!(b, b':' | b';' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(s.len() - i)
        };
        let host_raw = &s[host_start..host_end];
        let host = parse_host(host_raw)?;
        i = host_end;
        skip_ws(s, &mut i);
        let mut port = None;
        if s.get(i) == Some(&b':') {
            i += 1;
            skip_ws(s, &mut i);
            let p_start = i;
            i += s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            port = Some(parse_port(&s[p_start..i])?);
        }
        let sent_by_end = i;
        skip_ws(s, &mut i);
        let params = match s.get(i) {
            None => &[][..],
            Some(b';') => &s[i + 1..],
            Some(_) => return None,
        };
        if !params::validate(params) {
            return None;
        }
        let base = span.start as usize;
        Some(Via {
            protocol: parts[0],
            version: parts[1],
            transport: parts[2],
            host,
            host_raw,
            port,
            params,
            span,
            sent_by_end: Span::new(base + sent_by_end, base + sent_by_end),
            field,
            known: KnownParams::find(params),
        })
    }

    /// Whether the parameters an element on the path relies on have their syntax: checked
    /// where this Via is relied on (a request's Vias, the Via a response is sent back by),
    /// not by every parse: a response's lower Vias are the next hops' business.
    pub fn params_checked(&self) -> bool {
        // Nearly always of the common form (`;name=value;flag`): one tight pass.
        let mut checked = CheckedParams::default();
        if let Some(ok) = params::scan_simple_each(self.params, |n, v| checked.accept(n, v)) {
            return ok;
        }
        let mut checked = CheckedParams::default();
        let mut all = params::HeaderParams::new(self.params);
        all.by_ref().all(|(n, v)| checked.accept(n, v)) && !all.failed()
    }

    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        params::find(self.params, name)
    }

    /// Where parameter `name` sits within `elem`, this Via's text (`msg.bytes(via.span)`): for
    /// rewriting it in place.
    pub fn param_at(&self, elem: &[u8], name: &[u8]) -> Option<ParamAt> {
        let (n, value) =
            params::HeaderParams::new(self.params).find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        ParamAt::within(elem, n, value)
    }

    /// Where the first `rport` sits within `elem`, this Via's text: [`param_at`](Self::param_at)
    /// for `rport`, from what the parse found.
    pub fn rport_at(&self, elem: &[u8]) -> Option<ParamAt> {
        let (name, value) = self.known.rport?;
        ParamAt::within(elem, name, value)
    }

    #[inline]
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.known.branch.flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie (section 8.1.1.7).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    #[inline]
    pub fn received(&self) -> Option<&'a [u8]> {
        self.known.received.flatten()
    }

    /// `rport` (RFC 3581): `None` absent, `Some(None)` present without value.
    #[inline]
    pub fn rport(&self) -> Option<Option<u16>> {
        self.known.rport.map(|(_, v)| v.and_then(parse_port))
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.param(b"maddr").flatten()
    }

    pub fn ttl(&self) -> Option<u8> {
        self.param(b"ttl")
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
    }

    /// The port the sender listens on: sent-by port or the transport default.
    pub fn port_or_default(&self) -> u16 {
        self.port
            .unwrap_or(if self.transport.eq_ignore_ascii_case(b"TLS") {
                5061
            } else {
                5060
            })
    }
}

/// The Via parameters an element on the path relies on, checked against their syntax (RFC 3261
/// section 20.42, RFC 3581 for `rport`); any other parameter is only carried. A second branch is
/// refused: which of two would a response match?
#[derive(Default)]
struct CheckedParams<'a> {
    branch: Option<&'a [u8]>,
}

impl<'a> CheckedParams<'a> {
    /// Whether this parameter is acceptable (dispatching on the name's length first: most
    /// parameters are the branch, and the rest are seldom any of these).
    #[inline]
    fn accept(&mut self, name: &'a [u8], value: Option<&'a [u8]>) -> bool {
        match name.len() {
            6 if name.eq_ignore_ascii_case(b"branch") => match value {
                Some(v) if v.iter().all(|&b| is_token(b)) => self.branch.replace(v).is_none(),
                _ => false,
            },
            8 if name.eq_ignore_ascii_case(b"received") => value.is_some_and(is_ip_address),
            5 if name.eq_ignore_ascii_case(b"rport") => {
                value.map_or(true, |v| parse_port(v).is_some())
            }
            5 if name.eq_ignore_ascii_case(b"maddr") => {
                value.is_some_and(|v| parse_host(v).is_some())
            }
            3 if name.eq_ignore_ascii_case(b"ttl") => {
                value.is_some_and(|v| v.len() <= 3 && parse_u64(v).is_some_and(|t| t <= 255))
            }
            _ => true,
        }
    }
}

/// `received`: an IPv4 or IPv6 address, the latter bracketed or not (RFC 3261 writes it bare,
/// RFC 5118 section 4.5 shows both in use).
fn is_ip_address(v: &[u8]) -> bool {
    match parse_host(v) {
        Some(Host::V4(_) | Host::V6(_)) => true,
        Some(Host::Name(_)) => false,
        None => std::str::from_utf8(v).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok()),
    }
}

#[inline]
fn skip_ws(s: &[u8], i: &mut usize) {
    *i += s[*i..]
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
}

impl<'a> Message<'a> {
    /// Parse the topmost Via value ([`Message::top_via`] returns it, parsed once).
    pub(super) fn parse_top_via(&self) -> Result<Via<'a>, ParseError> {
        Vias::new(self)
            .next()
            .unwrap_or(Err(ParseError::Missing(Required::Via)))
    }

    /// Every Via value, top first; `Err` on the first malformed one.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        let top = self.top_via();
        let mut rest = Vias::new(self);
        // The top Via is already parsed: start after it. (When it is malformed, step over it
        // and report the error kept with it; when there is no Via at all, report nothing.)
        let first = match top {
            Ok(via) => {
                rest = Vias::after(self, &via);
                Some(top)
            }
            Err(_) => rest.next().map(|_| top),
        };
        first.into_iter().chain(rest)
    }

    /// The Via below the top one, if any (where a response goes next).
    pub fn second_via(&self) -> Option<Result<Via<'a>, ParseError>> {
        self.vias().nth(1)
    }
}

/// The Via values of a message, parsed, top first.
///
/// A Via line nearly always holds one value of the common form: [`Via::parse_common`] on the
/// whole line value settles it without splitting the line at commas first. That is exact: a
/// value `parse_common` accepts has no comma, double quote or `<`, so splitting it would yield
/// the whole (already trimmed) value. Any other line is split and each element parsed, as
/// [`Message::values`] splits it.
struct Vias<'m, 'a> {
    msg: &'m Message<'a>,
    /// The next line to look at.
    next_line: usize,
    /// The line being split, and its split.
    split: Option<(usize, CommaSplit<'a>)>,
}

impl<'m, 'a> Vias<'m, 'a> {
    fn new(msg: &'m Message<'a>) -> Self {
        Vias {
            msg,
            next_line: msg.first_index(HeaderName::Via).unwrap_or(usize::MAX),
            split: None,
        }
    }

    /// The values after `via`, one of this message's.
    fn after(msg: &'m Message<'a>, via: &Via<'a>) -> Self {
        let value = msg.field_at(via.field).value;
        // Split the rest of its line: what lies between `via` and the comma after it is
        // whitespace, which splitting skips as an empty element.
        let split = (via.span.end < value.end).then(|| {
            let rest = Span::new(via.span.end as usize, value.end as usize);
            (via.field, CommaSplit::new(msg.buf(), rest))
        });
        Vias {
            msg,
            next_line: via.field + 1,
            split,
        }
    }
}

impl<'a> Iterator for Vias<'_, 'a> {
    type Item = Result<Via<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let buf = self.msg.buf();
        loop {
            if let Some((field, split)) = &mut self.split {
                if let Some(span) = split.next() {
                    return Some(
                        Via::parse(buf, span, *field).ok_or(ParseError::Malformed(Required::Via)),
                    );
                }
                self.split = None;
            }
            let fields = self.msg.fields();
            let line =
                (self.next_line..fields.len()).find(|&i| fields[i].name == HeaderName::Via)?;
            self.next_line = line + 1;
            let value = fields[line].value;
            if let Some(via) = Via::parse_common(value.of(buf), value, line) {
                return Some(Ok(via));
            }
            self.split = Some((line, CommaSplit::new(buf, value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn via(s: &str) -> Option<Via<'_>> {
        Via::parse(s.as_bytes(), Span::new(0, s.len()), 0)
    }

    #[test]
    fn parses_common_via() {
        let v = via(
            "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1",
        )
        .unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::Name(b"pc33.atlanta.com"));
        assert_eq!(v.port, Some(5066));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776asdhds"[..]));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"192.0.2.1"[..]));
    }

    /// `rport_at`, from what the parse noted, finds what a search of the parameters finds, on
    /// the common form and the general one.
    #[test]
    fn rport_at_is_param_at() {
        for text in [
            "SIP/2.0/UDP a.example;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP a.example;RPort=5071;branch=z9hG4bK1",
            "SIP/2.0/UDP a.example;branch=z9hG4bK1;rport=1;rport",
            "SIP/2.0/UDP a.example;branch=z9hG4bK1",
            "SIP/2.0/UDP 192.0.2.2 : 5070 ; branch = x ; rport",
            "SIP/2.0/UDP [2001:db8::1];rport = 5072",
        ] {
            let v = via(text).unwrap();
            let elem = text.as_bytes();
            assert_eq!(v.rport_at(elem), v.param_at(elem, b"rport"), "{text}");
        }
        let text = "SIP/2.0/UDP a.example;branch=z9hG4bK1;rport";
        let at = via(text).unwrap().rport_at(text.as_bytes());
        assert_eq!(
            at,
            Some(ParamAt {
                name_end: 43,
                value_end: 43
            })
        );
    }

    #[test]
    fn tolerates_sws_everywhere() {
        let v = via("SIP  /   2.0    /UDP    192.0.2.2 : 5070 ; branch = 390skdjuw ; rport=5071")
            .unwrap();
        assert_eq!(v.version, b"2.0");
        assert_eq!(v.host, Host::V4(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(Some(5071)));
    }

    #[test]
    fn ipv6_sent_by() {
        let v = via(
            "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=[2001:db8::9:255]",
        )
        .unwrap();
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received(), Some(&b"[2001:db8::9:255]"[..]));
    }

    #[test]
    fn rejects_malformed() {
        assert!(via("SIP/2.0/UDP").is_none());
        assert!(via("SIP/2.0 192.0.2.1").is_none());
        assert!(via("SIP/2.0/UDP 192.0.2.15;;").is_none());
        assert!(via(";").is_none());
        assert!(via("SIP/2.0/UDP host:99999").is_none());
        assert!(via("SIP/2.0/UDPhost").is_none());
    }

    /// What a response needs to find its way back, refused when broken in either parser.
    #[test]
    fn refuses_other_versions_and_protocols() {
        for v in [
            "SIP/2.99999999999/UDP 192.0.2.1;branch=z9hG4bK1",
            "SIP/aaaa/UDP 192.0.2.1;branch=z9hG4bK1",
            "SIP/2.0.1/UDP 192.0.2.1",
            "SIP /3.0/ UDP 192.0.2.1",
            "SIPX/2.0/UDP 192.0.2.1",
            "HTTP/2.0/UDP 192.0.2.1",
            "SIP/20/UDP 192.0.2.1",
        ] {
            assert!(via(v).is_none(), "{v}");
        }
        assert!(via("sip / 2.0 / udp 192.0.2.1").is_some());
    }

    #[test]
    fn checks_the_parameters_the_path_relies_on() {
        for bad in [
            "branch",
            "branch=",
            "branch=z9hG4bK1;branch=z9hG4bK2",
            "branch=\"z9hG4bK1\"",
            "branch=a:b",
            "received=example.com",
            "received=300.1.1.1",
            "received",
            "rport=0",
            "rport=65536",
            "rport=-1",
            "rport=abc",
            "maddr=",
            "maddr",
            "maddr=a..b",
            "ttl=256",
            "ttl=-1",
            "ttl=0001",
            "ttl",
        ] {
            for sep in [";", " ; "] {
                let v = format!("SIP/2.0/UDP 192.0.2.1{sep}{bad}");
                assert!(via(&v).map_or(true, |v| !v.params_checked()), "{v}");
            }
        }
        for good in [
            "branch=z9hG4bK1;received=192.0.2.9;rport=5060;maddr=224.2.0.1;ttl=16",
            "branch=z9hG4bK1;received=2001:db8::9;rport",
            "branch=z9hG4bK1;received=[2001:db8::9];ttl=0",
            "branch=z9hG4bK1;maddr=proxy.example.com;x=\"quoted;odd\"",
        ] {
            let v = format!("SIP/2.0/UDP 192.0.2.1;{good}");
            let parsed = via(&v).unwrap();
            assert!(parsed.params_checked(), "{v}");
            assert_eq!(parsed.branch(), Some(&b"z9hG4bK1"[..]), "{v}");
        }
    }
}
