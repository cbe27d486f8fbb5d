//! SIP, SIPS and TEL URIs (RFC 3261 section 19.1, RFC 3966), borrowed from the message.
//!
//! ```text
//! SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//! hostport = host [ ":" port ]      host = hostname / IPv4address / IPv6reference
//! ```
//!
//! No character of the user part, password, parameters or headers may be an unescaped `@`, so the
//! first `@` always ends the userinfo; the user part may contain `;` and `?` (user-unreserved),
//! which is why parameters are only looked for after the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::header::{is_token, run_len};
use super::scan::find_byte;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme<'a> {
    Sip,
    Sips,
    Tel,
    /// Any other absoluteURI scheme (`mailto:`, `isbn:`, `urn:` ...): kept, never interpreted.
    Other(&'a [u8]),
}

/// The host part of a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name, exactly as written (compare case-insensitively).
    Name(&'a [u8]),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host<'_> {
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Name(_) => None,
            Host::V4(a) => Some(IpAddr::V4(a)),
            Host::V6(a) => Some(IpAddr::V6(a)),
        }
    }

    /// Case-insensitive for names, by value for addresses (RFC 3261 section 19.1.4).
    pub fn matches(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::V4(a), Host::V4(b)) => a == b,
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    NoScheme,
    BadUser,
    BadHost,
    BadPort,
    BadParams,
    BadHeaders,
}

/// A parsed URI. All slices borrow the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme<'a>,
    /// The user part, still %-escaped (for `tel:`, the telephone number).
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// `None` for `tel:` and other schemes.
    pub host: Option<Host<'a>>,
    /// The host exactly as written (brackets included for IPv6): what a rewrite copies.
    pub host_raw: &'a [u8],
    pub port: Option<u16>,
    /// Everything after the first `;` following the host, without the leading `;`.
    pub params: &'a [u8],
    /// Everything after `?`, without the `?`.
    pub headers: &'a [u8],
    /// The whole URI as written.
    pub raw: &'a [u8],
}

impl<'a> Uri<'a> {
    /// Parse a URI. Unknown schemes parse as [`Scheme::Other`] with only `raw` set.
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, UriError> {
        // `sip:` as written nearly always: no search for the colon, no scheme character checks.
        if let Some(scheme) = raw.get(..4).filter(|_| raw.len() > 4) {
            // `sip:` in any case, as one word: 0x20 ORed into the letters only (a byte ORed
            // with 0x20 is `s` only when it is `s` or `S`; the colon must match as it is).
            let word = u32::from_le_bytes(scheme.try_into().expect("4 bytes"));
            if word | 0x0020_2020 == u32::from_le_bytes(*b"sip:") {
                return parse_sip(Uri::bare(Scheme::Sip, raw), &raw[4..]);
            }
        }
        let colon = find_byte(b':', raw).ok_or(UriError::NoScheme)?;
        let scheme = &raw[..colon];
        if scheme.is_empty()
            || !scheme[0].is_ascii_alphabetic()
            || !scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(UriError::NoScheme);
        }
        let rest = &raw[colon + 1..];
        let mut uri = Uri::bare(Scheme::Other(scheme), raw);
        if scheme.eq_ignore_ascii_case(b"sip") {
            uri.scheme = Scheme::Sip;
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            uri.scheme = Scheme::Sips;
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            uri.scheme = Scheme::Tel;
            return parse_tel(uri, rest);
        } else {
            // absoluteURI: only check that it has no whitespace or brackets.
            if rest
                .iter()
                .any(|&b| b <= b' ' || b == b'<' || b == b'>' || b == b'"')
            {
                return Err(UriError::BadParams);
            }
            return Ok(uri);
        }
        parse_sip(uri, rest)
    }

    /// `raw` with its scheme and nothing parsed yet.
    #[inline]
    fn bare(scheme: Scheme<'a>, raw: &'a [u8]) -> Uri<'a> {
        Uri {
            scheme,
            user: None,
            password: None,
            host: None,
            host_raw: &[],
            port: None,
            params: &[],
            headers: &[],
            raw,
        }
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The port to send to when none is given (RFC 3263 section 4.2 defaults).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            Scheme::Sips => 5061,
            _ => 5060,
        })
    }

    /// Iterate `name[=value]` URI parameters.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params, b';')
    }

    /// The value of parameter `name` (case-insensitive): `Some(b"")` for a flag like `lr`.
    /// Names compare after unescaping: `;%6C%72` is `;lr` (RFC 3261 section 19.1.4, RFC 4475
    /// section 3.1.1.3). The value is returned as written.
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.params()
            .find(|(n, _)| {
                n.eq_ignore_ascii_case(name)
                    || (find_byte(b'%', n).is_some() && unescaped_eq(n, name, true))
            })
            .map(|(_, v)| v.unwrap_or(&[]))
    }

    /// The loose-routing flag (RFC 3261 section 19.1.1).
    pub fn lr(&self) -> bool {
        self.param(b"lr").is_some()
    }

    /// URI equality per RFC 3261 section 19.1.4.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        match (self.scheme, other.scheme) {
            (Scheme::Sip, Scheme::Sip) | (Scheme::Sips, Scheme::Sips) => {}
            (Scheme::Tel, Scheme::Tel) => {
                // RFC 3966 section 4: numbers compare without visual separators; params as SIP.
                return tel_digits_equal(self.user.unwrap_or(&[]), other.user.unwrap_or(&[]))
                    && params_equivalent(self.params, other.params, &[]);
            }
            (Scheme::Other(a), Scheme::Other(b)) => {
                return a.eq_ignore_ascii_case(b) && self.raw[a.len()..] == other.raw[b.len()..]
            }
            _ => return false,
        }
        // userinfo: case-sensitive, after unescaping.
        if !opt_unescaped_eq(self.user, other.user, false)
            || !opt_unescaped_eq(self.password, other.password, false)
        {
            return false;
        }
        match (&self.host, &other.host) {
            (Some(a), Some(b)) if a.matches(b) => {}
            _ => return false,
        }
        // An explicit default port is not the same as no port.
        if self.port != other.port {
            return false;
        }
        params_equivalent(
            self.params,
            other.params,
            &[b"user", b"ttl", b"method", b"maddr", b"transport"],
        ) && headers_equivalent(self.headers, other.headers)
    }
}

fn parse_tel<'a>(mut uri: Uri<'a>, rest: &'a [u8]) -> Result<Uri<'a>, UriError> {
    let end = find_byte(b';', rest).unwrap_or(rest.len());
    let number = &rest[..end];
    let ok = !number.is_empty()
        && number.iter().enumerate().all(|(i, &b)| {
            b.is_ascii_hexdigit()
                || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')')
                || (b == b'+' && i == 0)
        });
    if !ok {
        return Err(UriError::BadUser);
    }
    uri.user = Some(number);
    if end < rest.len() {
        uri.params = &rest[end + 1..];
        check_params(uri.params)?;
    }
    Ok(uri)
}

fn parse_sip<'a>(mut uri: Uri<'a>, rest: &'a [u8]) -> Result<Uri<'a>, UriError> {
    let mut hostport = rest;
    if let Some(at) = find_byte(b'@', rest) {
        let userinfo = &rest[..at];
        hostport = &rest[at + 1..];
        let (user, password) = match find_byte(b':', userinfo) {
            Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
            None => (userinfo, None),
        };
        if user.is_empty() || !valid_escaped(user, USER) {
            return Err(UriError::BadUser);
        }
        if let Some(p) = password {
            if !valid_escaped(p, PASSWORD) {
                return Err(UriError::BadUser);
            }
        }
        uri.user = Some(user);
        uri.password = password;
    }
    // Host: an IPv6 reference is bracketed and contains colons.
    let host_end = if hostport.first() == Some(&b'[') {
        let host_end = find_byte(b']', hostport).ok_or(UriError::BadHost)? + 1;
        uri.host = Some(parse_host(&hostport[..host_end]).ok_or(UriError::BadHost)?);
        host_end
    } else {
        // The host ends at `:`, `;`, `?` or the end; any other byte that is not a host
        // character makes it malformed.
        let (host_end, host) = parse_host_prefix(hostport).ok_or(UriError::BadHost)?;
        if !matches!(hostport.get(host_end), None | Some(b':' | b';' | b'?')) {
            return Err(UriError::BadHost);
        }
        uri.host = Some(host);
        host_end
    };
    uri.host_raw = &hostport[..host_end];
    let mut tail = &hostport[host_end..];
    if tail.first() == Some(&b':') {
        let end = tail
            .iter()
            .position(|&b| matches!(b, b';' | b'?'))
            .unwrap_or(tail.len());
        uri.port = Some(parse_port(&tail[1..end]).ok_or(UriError::BadPort)?);
        tail = &tail[end..];
    }
    if tail.first() == Some(&b';') {
        let end = find_byte(b'?', tail).unwrap_or(tail.len());
        uri.params = &tail[1..end];
        check_params(uri.params)?;
        tail = &tail[end..];
    }
    if tail.first() == Some(&b'?') {
        uri.headers = &tail[1..];
        // `header *( "&" header )`, each `hname "=" hvalue` with a name: never empty.
        let headers_ok = uri
            .headers
            .split(|&b| b == b'&')
            .all(|h| find_byte(b'=', h).is_some_and(|eq| eq > 0));
        if !headers_ok || !valid_escaped(uri.headers, HEADER) {
            return Err(UriError::BadHeaders);
        }
        tail = &[];
    }
    if !tail.is_empty() {
        return Err(UriError::BadHost);
    }
    Ok(uri)
}

/// Parse a host: `[IPv6]`, dotted IPv4, or a hostname whose top label starts with a letter.
pub fn parse_host(raw: &[u8]) -> Option<Host<'_>> {
    if raw.is_empty() {
        return None;
    }
    if raw[0] == b'[' {
        if raw.len() < 3 || raw[raw.len() - 1] != b']' {
            return None;
        }
        let inner = std::str::from_utf8(&raw[1..raw.len() - 1]).ok()?;
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .or_else(|| rfc2373_three_colons(inner))
            .map(Host::V6);
    }
    match parse_host_prefix(raw) {
        Some((len, host)) if len == raw.len() => Some(host),
        _ => None,
    }
}

/// Parse the hostname or IPv4 address at the start of `s` (not an IPv6 reference): the longest
/// run of host characters, judged as [`parse_host`] judges a whole host. Returns its length.
///
/// Label by label: each label is one tight table-driven run of letters, digits and `-` (about
/// a third of the instructions of a per-byte state machine). A host that is not a plain
/// `label.label...[.]` with no label starting or ending in `-` is judged by
/// [`parse_host_prefix_general`], which gives the same answer for the plain ones.
#[inline]
pub fn parse_host_prefix(s: &[u8]) -> Option<(usize, Host<'_>)> {
    if s.first().is_some_and(u8::is_ascii_digit) {
        // Digits and dots up to a byte that cannot continue a host: the whole host, whose top
        // label (or, with a trailing dot, an empty one) starts with a digit, so it must be a
        // dotted quad. (A letter or `-` further on makes it a name: the label-wise way.)
        let len = run_len(s, &DIGIT_OR_DOT);
        if !s.get(len).is_some_and(|&b| class(b, HOST)) {
            return parse_ipv4(&s[..len]).map(|a| (len, Host::V4(a)));
        }
    }
    let mut i = 0;
    let mut top = 0..0;
    loop {
        let start = i;
        i += run_len(&s[i..], &LABEL_CHARS);
        if i == start {
            break;
        }
        if s[start] == b'-' || s[i - 1] == b'-' {
            return parse_host_prefix_general(s);
        }
        top = start..i;
        if s.get(i) != Some(&b'.') {
            break;
        }
        i += 1;
    }
    // Stopped anywhere but after a complete host (an empty label that host characters
    // follow, or no label at all): let the general pass decide.
    if top.is_empty() || s.get(i).is_some_and(|&b| class(b, HOST)) {
        return parse_host_prefix_general(s);
    }
    if s[top.start].is_ascii_digit() {
        // Looks numeric: must be a valid dotted quad.
        return parse_ipv4(&s[..i]).map(|a| (i, Host::V4(a)));
    }
    Some((i, Host::Name(&s[..i])))
}

/// [`parse_host_prefix`] in one pass over the bytes, for any host.
#[cold]
pub(super) fn parse_host_prefix_general(s: &[u8]) -> Option<(usize, Host<'_>)> {
    // One pass: the host characters; labels non-empty with no leading or trailing '-' (only
    // binding for names); and where the top label starts, ignoring one trailing dot.
    let mut prev = b'.';
    let mut labels_ok = true;
    let mut top_start = 0;
    let mut prev_top_start = 0;
    let mut len = 0;
    for &b in s {
        if !class(b, HOST) {
            break;
        }
        if b == b'.' {
            labels_ok &= prev != b'.' && prev != b'-';
            prev_top_start = top_start;
            top_start = len + 1;
        } else if b == b'-' {
            labels_ok &= prev != b'.';
        }
        prev = b;
        len += 1;
    }
    let raw = &s[..len];
    labels_ok &= prev != b'-';
    let top = if prev == b'.' {
        &raw[prev_top_start..len.saturating_sub(1)]
    } else {
        &raw[top_start..]
    };
    if top.first()?.is_ascii_digit() {
        // Looks numeric: must be a valid dotted quad.
        return parse_ipv4(raw).map(|a| (len, Host::V4(a)));
    }
    labels_ok.then_some((len, Host::Name(raw)))
}

/// A dotted quad as `std` parses one: four decimal octets of one to three digits, no leading
/// zeros, each at most 255.
pub fn parse_ipv4(raw: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    let mut value = 0u32;
    let mut digits = 0;
    for &b in raw {
        if b == b'.' {
            if digits == 0 || n == 3 {
                return None;
            }
            octets[n] = value as u8;
            n += 1;
            value = 0;
            digits = 0;
        } else if b.is_ascii_digit() {
            // A fourth digit, or any digit after a leading zero, is not an octet.
            if digits == 3 || (digits == 1 && value == 0) {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
            if value > 255 {
                return None;
            }
            digits += 1;
        } else {
            return None;
        }
    }
    if n != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// RFC 3261's IPv6 ABNF (from RFC 2373) also derives `x:y:::a.b.c.d`, three colons before an
/// embedded IPv4 address; RFC 4291 does not. RFC 5118 section 4.10: "an implementation must
/// tolerate both". Read that one construct, and only it, as `x:y::a.b.c.d`.
fn rfc2373_three_colons(inner: &str) -> Option<Ipv6Addr> {
    let at = inner.find(":::")?;
    let (head, tail) = (&inner[..at], &inner[at + 3..]);
    if tail.contains(':') || tail.parse::<Ipv4Addr>().is_err() || inner.len() > 45 {
        return None;
    }
    // `head` + "::" + `tail`, on the stack (no allocation on the parse path).
    let mut buf = [0u8; 45];
    let len = head.len() + 2 + tail.len();
    buf[..head.len()].copy_from_slice(head.as_bytes());
    buf[head.len()..head.len() + 2].copy_from_slice(b"::");
    buf[head.len() + 2..len].copy_from_slice(tail.as_bytes());
    std::str::from_utf8(&buf[..len]).ok()?.parse().ok()
}

/// A decimal port in 1..=65535 (1-5 digits).
#[inline]
pub fn parse_port(raw: &[u8]) -> Option<u16> {
    if raw.is_empty() || raw.len() > 5 {
        return None;
    }
    let mut v = 0u32;
    for &d in raw {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    // Port 0 addresses nothing (and `port = 1*DIGIT` was never meant to name it).
    u16::try_from(v).ok().filter(|&p| p != 0)
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

const fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

const fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

const fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

const fn is_header_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
        )
}

const fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

// Character classes, one bit each in [`CLASSES`]: a table look-up instead of a chain of compares
// (or an indirect call) per byte.
const USER: u8 = 1;
const PASSWORD: u8 = 2;
const PARAM: u8 = 4;
const HEADER: u8 = 8;
const HOST: u8 = 16;

/// A hostname label byte: letter, digit or `-` (a table of its own for [`run_len`]).
static LABEL_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_host_char(i as u8) && i as u8 != b'.';
        i += 1;
    }
    t
};

/// A byte of a dotted quad.
const DIGIT_OR_DOT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_digit() || i as u8 == b'.';
        i += 1;
    }
    t
};

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if is_user_char(b) { USER } else { 0 }
            | if is_password_char(b) { PASSWORD } else { 0 }
            | if is_param_char(b) { PARAM } else { 0 }
            | if is_header_char(b) { HEADER } else { 0 }
            | if is_host_char(b) { HOST } else { 0 };
        i += 1;
    }
    t
};

#[inline]
fn class(b: u8, class: u8) -> bool {
    CLASSES[b as usize] & class != 0
}

/// Every byte is in `class`, or starts a well-formed `%HH` escape.
fn valid_escaped(s: &[u8], class_bit: u8) -> bool {
    let mut i = 0;
    while i < s.len() {
        if class(s[i], class_bit) {
            i += 1;
        } else if s[i] == b'%' {
            if i + 2 >= s.len() {
                return false;
            }
            if !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// `*( ";" pname [ "=" pvalue ] )`, both `1*paramchar` (RFC 3261 section 25.1): an empty
/// parameter (`;;`, a trailing `;`) or value (`;x=`) is malformed. (`params` starts after the
/// first `;`.)
fn check_params(params: &[u8]) -> Result<(), UriError> {
    for item in params.split(|&b| b == b';') {
        let (name, value) = match find_byte(b'=', item) {
            Some(eq) => (&item[..eq], Some(&item[eq + 1..])),
            None => (item, None),
        };
        let value_ok = value.map_or(true, |v| !v.is_empty() && valid_escaped(v, PARAM));
        if name.is_empty() || !valid_escaped(name, PARAM) || !value_ok {
            return Err(UriError::BadParams);
        }
    }
    Ok(())
}

/// Iterator over `name[=value]` items separated by `sep`, used for URI parameters (`;`),
/// URI headers (`&`) and header parameters.
#[derive(Clone)]
pub struct Params<'a> {
    rest: &'a [u8],
    sep: u8,
}

impl<'a> Params<'a> {
    pub fn new(raw: &'a [u8], sep: u8) -> Params<'a> {
        Params { rest: raw, sep }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = find_byte(self.sep, self.rest).unwrap_or(self.rest.len());
            let item = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
            if item.is_empty() {
                continue;
            }
            return Some(match find_byte(b'=', item) {
                Some(eq) => (&item[..eq], Some(&item[eq + 1..])),
                None => (item, None),
            });
        }
    }
}

/// Decode `%HH` escapes byte by byte, without allocating.
pub struct Unescape<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Unescape<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Unescape { s, i: 0 }
    }
}

impl Iterator for Unescape<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let b = *self.s.get(self.i)?;
        if b == b'%' && self.i + 2 < self.s.len() {
            if let (Some(h), Some(l)) = (hex(self.s[self.i + 1]), hex(self.s[self.i + 2])) {
                self.i += 3;
                return Some(h << 4 | l);
            }
        }
        self.i += 1;
        Some(b)
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Compare two escaped strings after unescaping, optionally ignoring ASCII case.
pub fn unescaped_eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    let mut x = Unescape::new(a);
    let mut y = Unescape::new(b);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) => {
                let same = if ignore_case {
                    p.eq_ignore_ascii_case(&q)
                } else {
                    p == q
                };
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn opt_unescaped_eq(a: Option<&[u8]>, b: Option<&[u8]>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => unescaped_eq(a, b, ignore_case),
        _ => false,
    }
}

fn find_param<'a>(raw: &'a [u8], sep: u8, name: &[u8]) -> Option<Option<&'a [u8]>> {
    Params::new(raw, sep)
        .find(|(n, _)| unescaped_eq(n, name, true))
        .map(|(_, v)| v)
}

/// RFC 3261 section 19.1.4: parameters in `strict` must be in both or neither and match; any
/// other parameter present in both must match; a parameter in only one is ignored.
fn params_equivalent(a: &[u8], b: &[u8], strict: &[&[u8]]) -> bool {
    for name in strict {
        if find_param(a, b';', name).is_some() != find_param(b, b';', name).is_some() {
            return false;
        }
    }
    for (name, va) in Params::new(a, b';') {
        if let Some(vb) = find_param(b, b';', name) {
            if !opt_unescaped_eq(va, vb, true) {
                return false;
            }
        }
    }
    true
}

/// URI headers are never ignored: the same set in both, names case-insensitive.
fn headers_equivalent(a: &[u8], b: &[u8]) -> bool {
    let count = |raw: &[u8]| Params::new(raw, b'&').count();
    if count(a) != count(b) {
        return false;
    }
    Params::new(a, b'&').all(|(name, va)| match find_param(b, b'&', name) {
        Some(vb) => opt_unescaped_eq(va, vb, false),
        None => false,
    })
}

fn tel_digits_equal(a: &[u8], b: &[u8]) -> bool {
    let digits = |s: &'_ [u8]| {
        s.iter()
            .copied()
            .filter(|c| !matches!(c, b'-' | b'.' | b'(' | b')'))
            .map(|c| c.to_ascii_lowercase())
            .collect::<Vec<u8>>()
    };
    digits(a) == digits(b)
}

/// True when `s` is a non-empty RFC 3261 token.
pub fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Uri<'_> {
        Uri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn parses_full_sip_uri() {
        let u = p("sip:alice:secret@atlanta.com:5070;transport=udp;lr?subject=project%20x&priority=urgent");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, Some(Host::Name(b"atlanta.com")));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param(b"transport"), Some(&b"udp"[..]));
        assert!(u.lr());
        assert_eq!(u.headers, b"subject=project%20x&priority=urgent");
    }

    #[test]
    fn parses_ip_hosts() {
        assert_eq!(
            p("sip:1.2.3.4").host,
            Some(Host::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        let u = p("sips:[2001:db8::10]:5061;maddr=[2001:db8::1]");
        assert_eq!(u.host, Some(Host::V6("2001:db8::10".parse().unwrap())));
        assert_eq!(u.host_raw, b"[2001:db8::10]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param(b"maddr"), Some(&b"[2001:db8::1]"[..]));
        assert!(Uri::parse(b"sip:[2001:db8::10").is_err());
        // RFC 5118 section 4.10: the three-colon form RFC 3261's ABNF allows, and nothing else.
        let three = p("sip:[2001:db8:::192.0.2.1]");
        assert_eq!(
            three.host,
            Some(Host::V6("2001:db8::192.0.2.1".parse().unwrap()))
        );
        assert_eq!(three.host_raw, b"[2001:db8:::192.0.2.1]");
        assert!(three.equivalent(&p("sip:[2001:db8::192.0.2.1]")));
        assert!(p("sip:[:::192.0.2.1]").host.is_some());
        for bad in [
            "sip:[2001:db8:::10]",
            "sip:[2001:db8::::192.0.2.1]",
            "sip:[2001:db8::1:::192.0.2.1]",
            "sip:[1:2:3:4:5:6:7:::192.0.2.1]",
            "sip:[:::]",
        ] {
            assert!(Uri::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(Uri::parse(b"sip:user@1.2.3.4.5").is_err());
        assert!(Uri::parse(b"sip:user@256.1.1.1").is_err());
    }

    #[test]
    fn user_part_may_hold_semicolons_and_escapes() {
        let u = p("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.params, b"");
        let u = p("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password,
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert!(Uri::parse(b"sip:us%4@x.com").is_err());
        assert!(Uri::parse(b"sip:us er@x.com").is_err());
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = p("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some(&b"+1-201-555-0123"[..]));
        assert!(p("tel:+12015550123").equivalent(&p("tel:+1-201-555-0123")));
        assert_eq!(p("isbn:2983792873").scheme, Scheme::Other(b"isbn"));
        assert!(Uri::parse(b"nocolon").is_err());
    }

    #[test]
    fn escaped_parameter_names() {
        // RFC 4475 section 3.1.1.3: `%6C%72` is the parameter `lr`.
        let u = p("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert!(u.lr());
        assert_eq!(u.param(b"name"), Some(&b"v%61lue%25%34%31"[..]));
        assert_eq!(u.param(b"%6c%72"), Some(&b""[..]));
        assert_eq!(u.param(b"lx"), None);
    }

    #[test]
    fn rfc3261_equivalent_pairs() {
        for (a, b) in [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ] {
            assert!(p(a).equivalent(&p(b)), "{a} == {b}");
            assert!(p(b).equivalent(&p(a)), "{b} == {a}");
        }
    }

    #[test]
    fn rfc3261_non_equivalent_pairs() {
        for (a, b) in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com:6000;transport=tcp",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;security=off",
            ),
            ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
        ] {
            assert!(!p(a).equivalent(&p(b)), "{a} != {b}");
            assert!(!p(b).equivalent(&p(a)), "{b} != {a}");
        }
    }
}
