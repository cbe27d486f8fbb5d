//! Address headers (From, To, Contact, Route, Record-Route), CSeq and digest credentials.
//!
//! ```text
//! name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
//! display-name = *(token LWS) / quoted-string
//! ```
//! Without angle brackets the URI ends at the first `;`: parameters there belong to the header,
//! and a `,` or `?` would be ambiguous, so such URIs are rejected (RFC 3261 section 20.10).

use super::error::{ParseError, Required};
use super::header::{is_token, token_len, trim, HeaderName};
use super::params::{self, quoted_end, unquote, HeaderParams};
use super::parse::{parse_delta_seconds, parse_u64, Message};
use super::scan::{find_byte, find_byte2};
use super::span::Span;
use super::uri::Uri;

/// A name-addr or addr-spec with its header parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes included), if any.
    pub display: Option<&'a [u8]>,
    pub uri: Uri<'a>,
    /// Header parameters after the address, without the leading `;`.
    pub params: &'a [u8],
    /// The whole value element in the message.
    pub span: Span,
    /// The line it is on (index into `Message::fields`).
    pub field: usize,
    /// The `tag` parameter, found while the parameters are checked.
    tag: Option<&'a [u8]>,
}

impl<'a> NameAddr<'a> {
    pub fn parse(buf: &'a [u8], span: Span, field: usize) -> Option<NameAddr<'a>> {
        let s = span.of(buf);
        let lt = find_unquoted_lt(s)?;
        let (display, uri_raw, rest) = match lt {
            Some(lt) => {
                let display = trim(s, Span::new(0, lt)).of(s);
                let display = if display.is_empty() {
                    None
                } else {
                    if !valid_display_name(display) {
                        return None;
                    }
                    Some(display)
                };
                let gt = lt + find_byte(b'>', &s[lt..])?;
                (display, &s[lt + 1..gt], &s[gt + 1..])
            }
            None => {
                let end = find_byte(b';', s).unwrap_or(s.len());
                // `SEMI = SWS ";" SWS` (RFC 3261 section 25.1): whitespace may separate the
                // addr-spec from its parameters (RFC 4475 section 3.1.1.1, `To: sip:... ;tag`).
                let uri = trim(s, Span::new(0, end)).of(s);
                if uri
                    .iter()
                    .any(|&b| matches!(b, b'?' | b',' | b' ' | b'\t' | b'"'))
                {
                    return None;
                }
                (None, uri, &s[end..])
            }
        };
        let uri = Uri::parse(uri_raw).ok()?;
        let rest_t = trim(rest, Span::new(0, rest.len())).of(rest);
        let params = match rest_t.first() {
            None => &[][..],
            // A `;` with no parameter after it is an empty one: malformed.
            Some(b';') if rest_t.len() > 1 => &rest_t[1..],
            Some(_) => return None,
        };
        let tag = tag_param(params)?;
        Some(NameAddr {
            display,
            uri,
            params,
            span,
            field,
            tag,
        })
    }

    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        params::find(self.params, name)
    }

    #[inline]
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }

    /// `expires` contact parameter (RFC 3261 section 20.10), saturating.
    pub fn expires(&self) -> Option<u32> {
        self.param(b"expires")
            .flatten()
            .and_then(parse_delta_seconds)
    }

    /// `q` in thousandths (RFC 3261 `qvalue`: 0 to 1 with up to three decimals); default 1000.
    #[allow(clippy::result_unit_err)] // the caller only needs "malformed"
    pub fn q(&self) -> Result<u16, ()> {
        match self.param(b"q") {
            None => Ok(1000),
            Some(None) => Err(()),
            Some(Some(v)) => parse_qvalue(v).ok_or(()),
        }
    }
}

/// The `tag` parameter among `params`: `Some(None)` without one, `None` when the parameters
/// are malformed or the tag is not `"tag" EQUAL token` (RFC 3261 section 20.20): dialogs are
/// matched on it by every element on the path.
fn tag_param(params: &[u8]) -> Option<Option<&[u8]>> {
    let mut tag = None;
    let common = params::scan_simple_each(params, |name, value| {
        if tag.is_none() && name.eq_ignore_ascii_case(b"tag") {
            tag = Some(value);
        }
        true
    });
    if common.is_none() {
        if !params::validate(params) {
            return None;
        }
        tag = params::find(params, b"tag");
    }
    match tag {
        None => Some(None),
        Some(Some(t)) if t.iter().all(|&b| is_token(b)) => Some(Some(t)),
        Some(_) => None,
    }
}

/// Position of `<` outside a quoted display name: `Ok(None)` when there is none.
fn find_unquoted_lt(s: &[u8]) -> Option<Option<usize>> {
    let mut i = 0;
    while let Some(k) = find_byte2(b'"', b'<', &s[i..]) {
        i += k;
        match s[i] {
            b'"' => i += quoted_end(&s[i..])?,
            _ => return Some(Some(i)),
        }
    }
    Some(None)
}

fn valid_display_name(d: &[u8]) -> bool {
    if d[0] == b'"' {
        return quoted_end(d) == Some(d.len());
    }
    d.iter()
        .all(|&b| is_token(b) || matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
pub fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match find_byte(b'.', v) {
        Some(d) => (&v[..d], &v[d + 1..]),
        None => (v, &[][..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| (d - b'0') as u16);
    }
    match int[0] {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A Contact value: `*` or an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a short-lived borrowed view; boxing would allocate
pub enum Contact<'a> {
    Wildcard,
    Addr(NameAddr<'a>),
}

/// CSeq: sequence number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub number: u32,
    pub method: &'a [u8],
}

/// Credentials from Authorization / Proxy-Authorization (RFC 2617 section 3.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The auth scheme (`Digest`, or anything else).
    pub scheme: &'a [u8],
    /// The comma-separated auth-params.
    pub params: &'a [u8],
    pub span: Span,
    pub field: usize,
}

impl<'a> Credentials<'a> {
    pub fn parse(buf: &'a [u8], span: Span, field: usize) -> Option<Credentials<'a>> {
        let s = span.of(buf);
        let scheme_len = token_len(s);
        if scheme_len == 0 {
            return None;
        }
        let rest = &s[scheme_len..];
        if !rest.is_empty() && !matches!(rest[0], b' ' | b'\t') {
            return None;
        }
        let params = trim(rest, Span::new(0, rest.len())).of(rest);
        let c = Credentials {
            scheme: &s[..scheme_len],
            params,
            span,
            field,
        };
        // Every auth-param must be well-formed.
        let mut it = AuthParams::new(params);
        for _ in it.by_ref() {}
        if it.failed {
            return None;
        }
        Some(c)
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"Digest")
    }

    /// The value of auth-param `name` with quotes removed.
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        AuthParams::new(self.params)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unquote(v))
    }

    /// Number of times `name` occurs (a duplicated parameter is malformed, RFC 2617).
    pub fn param_count(&self, name: &[u8]) -> usize {
        AuthParams::new(self.params)
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// Every auth-param as (name, value with quotes removed), in order: one pass for a caller
    /// that reads several (the authenticator reads ten).
    pub fn pairs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        AuthParams::new(self.params).map(|(n, v)| (n, unquote(v)))
    }
}

/// `auth-param *(COMMA auth-param)` with `auth-param = token EQUAL ( token / quoted-string )`.
struct AuthParams<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> AuthParams<'a> {
    fn new(raw: &'a [u8]) -> Self {
        AuthParams {
            rest: raw,
            failed: false,
        }
    }
}

impl<'a> Iterator for AuthParams<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest;
        let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        let mut i = s.iter().take_while(|&&b| ws(b)).count();
        if i == s.len() {
            return None;
        }
        let n0 = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        let name = &s[n0..i];
        while i < s.len() && ws(s[i]) {
            i += 1;
        }
        if name.is_empty() || s.get(i) != Some(&b'=') {
            self.failed = true;
            self.rest = &[];
            return None;
        }
        i += 1;
        while i < s.len() && ws(s[i]) {
            i += 1;
        }
        let v0 = i;
        if s.get(i) == Some(&b'"') {
            match quoted_end(&s[i..]) {
                Some(l) => i += l,
                None => {
                    self.failed = true;
                    self.rest = &[];
                    return None;
                }
            }
        } else {
            while i < s.len() && (is_token(s[i]) || s[i] == b'/' || s[i] == b':') {
                i += 1;
            }
        }
        let value = &s[v0..i];
        while i < s.len() && ws(s[i]) {
            i += 1;
        }
        match s.get(i) {
            None => self.rest = &[],
            Some(b',') => self.rest = &s[i + 1..],
            Some(_) => {
                self.failed = true;
                self.rest = &[];
                return None;
            }
        }
        if value.is_empty() {
            self.failed = true;
            self.rest = &[];
            return None;
        }
        Some((name, value))
    }
}

impl<'a> Message<'a> {
    fn single_addr(&self, name: HeaderName, req: Required) -> Result<NameAddr<'a>, ParseError> {
        let i = self.first_index(name).ok_or(ParseError::Missing(req))?;
        NameAddr::parse(self.buf(), self.field_at(i).value, i).ok_or(ParseError::Malformed(req))
    }

    /// The From header field (parsed once, on the first call).
    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        if let Some(parsed) = self.from.get() {
            return parsed;
        }
        let parsed = self.single_addr(HeaderName::From, Required::From);
        self.from.set(Some(parsed));
        parsed
    }

    /// The To header field (parsed once, on the first call).
    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        if let Some(parsed) = self.to.get() {
            return parsed;
        }
        let parsed = self.single_addr(HeaderName::To, Required::To);
        self.to.set(Some(parsed));
        parsed
    }

    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        let v = self
            .header(HeaderName::CSeq)
            .ok_or(ParseError::Missing(Required::CSeq))?;
        let bad = ParseError::Malformed(Required::CSeq);
        let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
        // CSeq numbers are below 2^31 (RFC 3261 section 8.1.1.5).
        let number = parse_u64(&v[..digits])
            .filter(|&n| n < 1 << 31)
            .ok_or(bad)? as u32;
        let rest = &v[digits..];
        let ws = rest
            .iter()
            .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        let method = &rest[ws..];
        if ws == 0 || method.is_empty() || !method.iter().all(|&b| is_token(b)) {
            return Err(bad);
        }
        Ok(CSeq { number, method })
    }

    /// Every Contact value in order.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, ParseError>> + '_ {
        let buf = self.buf();
        self.values(HeaderName::Contact).map(move |(field, span)| {
            if span.of(buf) == b"*" {
                Ok(Contact::Wildcard)
            } else {
                NameAddr::parse(buf, span, field)
                    .map(Contact::Addr)
                    .ok_or(ParseError::BadHeader("Bad Request - Malformed Contact"))
            }
        })
    }

    /// Route values, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.addr_list(HeaderName::Route, "Bad Request - Malformed Route")
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.addr_list(
            HeaderName::RecordRoute,
            "Bad Request - Malformed Record-Route",
        )
    }

    fn addr_list(
        &self,
        name: HeaderName,
        reason: &'static str,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        let buf = self.buf();
        self.values(name).map(move |(field, span)| {
            NameAddr::parse(buf, span, field).ok_or(ParseError::BadHeader(reason))
        })
    }

    /// Every Authorization (or Proxy-Authorization) value.
    pub fn credentials(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<Credentials<'a>, ParseError>> + '_ {
        let buf = self.buf();
        self.fields()
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.name == name)
            .map(move |(i, f)| {
                Credentials::parse(buf, f.value, i).ok_or(ParseError::BadHeader(
                    "Bad Request - Malformed Authorization",
                ))
            })
    }
}

/// Used by tests and the registrar: iterate the params of a `NameAddr` as pairs.
pub fn param_pairs(raw: &[u8]) -> HeaderParams<'_> {
    HeaderParams::new(raw)
}

/// The first name-addr of a comma-separated list held alone in `list` (a stored Path or Route
/// set): `None` when it does not parse.
pub fn first_of_list(list: &[u8]) -> Option<NameAddr<'_>> {
    let first = super::header::CommaSplit::new(list, Span::new(0, list.len())).next()?;
    NameAddr::parse(list, first, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> Option<NameAddr<'_>> {
        NameAddr::parse(s.as_bytes(), Span::new(0, s.len()), 0)
    }

    #[test]
    fn name_addr_forms() {
        let a = na("\"Bob, Jr.\" <sip:bob@biloxi.com>;tag=a6c85cf").unwrap();
        assert_eq!(a.display, Some(&b"\"Bob, Jr.\""[..]));
        assert_eq!(a.uri.user, Some(&b"bob"[..]));
        assert_eq!(a.tag(), Some(&b"a6c85cf"[..]));
        let a = na("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display, Some(&b"caller"[..]));
        let a = na("sip:alice@atlanta.com;tag=88sja8x").unwrap();
        assert_eq!(a.uri.host_raw, b"atlanta.com");
        assert_eq!(a.tag(), Some(&b"88sja8x"[..]));
        let a = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.uri.raw, b"sip:vivekg@chair-dnrc.example.com");
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));
        let a = na("<sip:bob@192.0.2.4;transport=udp>;expires=3600;q=0.7").unwrap();
        assert_eq!(a.uri.param(b"transport"), Some(&b"udp"[..]));
        assert_eq!(a.expires(), Some(3600));
        assert_eq!(a.q(), Ok(700));
    }

    #[test]
    fn tags_are_tokens_and_brackets_balance() {
        for bad in [
            "<sip:a@example.com>;tag",
            "<sip:a@example.com>;tag=",
            "<sip:a@example.com>;tag=a:b",
            "<sip:a@example.com>;tag=\"quoted\"",
            "<sip:a@example.com>; tag = [x]",
            "<sip:a@example.com",
            "<<sip:a@example.com>>",
            "<sip:a@example.com>>",
            "sip:a@example.com>",
            "sip:a@example.com;",
            "<sip:a@example.com> ; ",
        ] {
            assert!(na(bad).is_none(), "{bad}");
        }
        assert_eq!(
            na("<sip:a@example.com> ; TAG = x.y-z").unwrap().tag(),
            Some(&b"x.y-z"[..])
        );
    }

    #[test]
    fn name_addr_rejects() {
        assert!(na("\"Unterminated <sip:x@y>").is_none());
        assert!(na("Bell, Alexander <sip:a.g.bell@example.com>").is_none());
        assert!(na("< sip:t.watson@example.org >").is_none());
        assert!(na("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_none());
        assert!(na("<sip:x@y> junk").is_none());
        assert!(na("sip:x@y z;tag=1").is_none());
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1.000"), Some(1000));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0"), Some(0));
        assert_eq!(parse_qvalue(b"1.5"), None);
        assert_eq!(parse_qvalue(b"0.1234"), None);
        assert_eq!(parse_qvalue(b"2"), None);
    }

    #[test]
    fn digest_credentials() {
        let s = "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae4\", opaque=\"5ccc\"";
        let c = Credentials::parse(s.as_bytes(), Span::new(0, s.len()), 0).unwrap();
        assert!(c.is_digest());
        assert_eq!(c.param(b"username"), Some(&b"Mufasa"[..]));
        assert_eq!(c.param(b"QOP"), Some(&b"auth"[..]));
        assert_eq!(c.param(b"nc"), Some(&b"00000001"[..]));
        assert_eq!(c.param(b"uri"), Some(&b"/dir/index.html"[..]));
        for bad in ["Digest username", "Digest a=\"x", "Digest a=b c=d", ""] {
            assert!(
                Credentials::parse(bad.as_bytes(), Span::new(0, bad.len()), 0).is_none(),
                "{bad}"
            );
        }
    }
}
