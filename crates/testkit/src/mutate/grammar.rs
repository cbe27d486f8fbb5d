//! What a mutated value is, judged against a simplified RFC 3261 grammar of its field: the
//! generator produces values, this module says which are still valid, so that the expectation
//! of every case (seeded random ones included) follows from one rule per field instead of a
//! hand-written verdict per value. Simplified where the strict rules of issue 19 are: hosts,
//! ports and numbers with their ranges, tokens, Call-ID words, SIP URIs, name-addrs, Via
//! elements and Contact lists; text has no grammar beyond "no line breaks, no control bytes".

use std::net::{Ipv4Addr, Ipv6Addr};

/// How a value relates to its field's grammar, most disruptive first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Holds CRLF CRLF: the header section ends inside the value.
    EndsHeaders,
    /// Holds a CR or LF that is not a header continuation: a new (broken) line begins.
    LineBreak,
    /// Holds CRLF followed by whitespace only: a legal header continuation (RFC 3261 7.3.1).
    Fold,
    /// Holds CRLF followed by what reads as a header line of its own (`Name: value`): the value
    /// ends there and a well-formed header follows.
    Injects,
    /// Holds NUL or another control byte (tab aside).
    Control,
    /// Not in the field's grammar.
    Malformed,
    /// In the field's grammar (possibly odd: long, unusual, another meaning).
    Valid,
}

/// The grammar a field's value follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RFC 3261 `token`.
    Token,
    /// Digits only, the value in `min..=max`.
    Number { min: u128, max: u128 },
    /// `hostname / IPv4address / IPv6reference`.
    Host,
    /// An IP address (Via `received`), bracketed or not.
    Ip,
    /// URI `scheme`.
    Scheme,
    /// The user part of a SIP URI.
    User,
    /// `;name[=value]` URI parameters, the leading `;` included.
    UriParams,
    /// A whole URI (SIP URI checked in depth, others as absoluteURI).
    Uri,
    /// `name-addr / addr-spec`.
    NameAddr,
    /// Call-ID: one or more visible ASCII characters (sipshard's rule, wider than RFC 3261's
    /// `word [ "@" word ]`: see `Message::call_id`).
    CallId,
    /// Exactly this text, ignoring case (`SIP/2.0`, the Via's `SIP` and `2.0`).
    Exact(&'static str),
    /// The request's method: a token equal to the base's method (CSeq must repeat it).
    Method,
    /// CSeq: `1*DIGIT LWS Method`, the number below 2^31, the method the base's.
    CSeq,
    /// A whole Via element.
    Via,
    /// `*` or a comma-separated list of contacts with their parameters.
    Contact,
    /// A From or To value: one name-addr or addr-spec with header parameters (`tag` a token).
    FromTo,
    /// Free text (TEXT-UTF8 or an extension header's value): anything printable.
    Text,
    /// The message body: opaque bytes.
    Body,
}

/// The class of `value` as a value of `kind` in a request whose method is `method`. A header's
/// value is judged without the whitespace around it (RFC 3261 `HCOLON` and trailing `LWS`).
pub fn judge_header(kind: Kind, value: &[u8], method: &str) -> Class {
    match breaks(value) {
        Some(c) if kind != Kind::Body => c,
        _ => judge(kind, trim(value), method),
    }
}

/// The class of `value` as a value of `kind` in a request whose method is `method`.
pub fn judge(kind: Kind, value: &[u8], method: &str) -> Class {
    if kind == Kind::Body {
        return Class::Valid;
    }
    if let Some(c) = breaks(value) {
        return c;
    }
    if valid(kind, value, method.as_bytes()) {
        Class::Valid
    } else {
        Class::Malformed
    }
}

/// The line-structure or control-byte class of `value`, if it has one.
fn breaks(value: &[u8]) -> Option<Class> {
    if value.windows(4).any(|w| w == b"\r\n\r\n") {
        return Some(Class::EndsHeaders);
    }
    let (mut folds, mut injects) = (false, false);
    for (i, &b) in value.iter().enumerate() {
        match b {
            b'\r' if value.get(i + 1) == Some(&b'\n') => {
                let next = &value[i + 2..];
                if matches!(next.first(), Some(b' ' | b'\t')) {
                    folds = true;
                } else if reads_as_header(next) {
                    injects = true;
                } else {
                    return Some(Class::LineBreak);
                }
            }
            b'\n' if i > 0 && value[i - 1] == b'\r' => {}
            b'\r' | b'\n' => return Some(Class::LineBreak),
            _ => {}
        }
    }
    if injects {
        return Some(Class::Injects);
    }
    if folds {
        return Some(Class::Fold);
    }
    value
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        .then_some(Class::Control)
}

/// Whether `line` (up to its end) starts as `token ":"`.
fn reads_as_header(line: &[u8]) -> bool {
    let colon = line.iter().position(|&b| b == b':');
    colon.is_some_and(|c| is_token(trim(&line[..c])))
}

fn is_cseq(v: &[u8], method: &[u8]) -> bool {
    let Some(sp) = v.iter().position(|&b| b == b' ' || b == b'\t') else {
        return false;
    };
    number_in(&v[..sp], 0, (1 << 31) - 1) && trim(&v[sp..]) == method
}

fn valid(kind: Kind, v: &[u8], method: &[u8]) -> bool {
    match kind {
        Kind::Exact(text) => v.eq_ignore_ascii_case(text.as_bytes()),
        Kind::Method => v == method,
        Kind::CSeq => is_cseq(v, method),
        Kind::Token => is_token(v),
        Kind::Number { min, max } => number_in(v, min, max),
        Kind::Host => is_host(v),
        Kind::Ip => is_ip(v),
        Kind::Scheme => is_scheme(v),
        Kind::User => !v.is_empty() && v.iter().all(|&b| is_user_char(b)) && escapes_ok(v),
        Kind::UriParams => is_uri_params(v),
        Kind::Uri => is_uri(v),
        Kind::NameAddr => is_name_addr(v),
        Kind::CallId => is_call_id(v),
        Kind::Via => is_via(v),
        Kind::Contact => is_contact(v),
        Kind::FromTo => {
            let v = without_sws(v);
            split_list(&v).len() == 1 && is_contact_param_list(&v)
        }
        Kind::Text | Kind::Body => true,
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

pub fn is_token(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&b| is_token_char(b))
}

fn number_in(v: &[u8], min: u128, max: u128) -> bool {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // No upper bound: any run of digits (Expires, where more than 2^32-1 means 2^32-1).
    if max == u128::MAX {
        return true;
    }
    if v.len() > 30 {
        return false;
    }
    let n: u128 = std::str::from_utf8(v).unwrap().parse().unwrap();
    (min..=max).contains(&n)
}

fn is_ipv4(v: &[u8]) -> bool {
    std::str::from_utf8(v).is_ok_and(|s| s.parse::<Ipv4Addr>().is_ok())
}

fn is_ipv6(v: &[u8]) -> bool {
    std::str::from_utf8(v).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

fn is_ip(v: &[u8]) -> bool {
    is_ipv4(v)
        || is_ipv6(v)
        || (v.starts_with(b"[") && v.ends_with(b"]") && is_ipv6(&v[1..v.len() - 1]))
}

fn is_host(v: &[u8]) -> bool {
    if v.starts_with(b"[") {
        return v.len() > 2 && v.ends_with(b"]") && is_ipv6(&v[1..v.len() - 1]);
    }
    is_ipv4(v) || is_hostname(v)
}

fn is_hostname(v: &[u8]) -> bool {
    let v = v.strip_suffix(b".").unwrap_or(v);
    let labels: Vec<&[u8]> = v.split(|&b| b == b'.').collect();
    let label_ok = |l: &&[u8]| {
        !l.is_empty()
            && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && l[0] != b'-'
            && l[l.len() - 1] != b'-'
    };
    labels.iter().all(label_ok) && labels.last().is_some_and(|l| l[0].is_ascii_alphabetic())
}

fn is_scheme(v: &[u8]) -> bool {
    !v.is_empty()
        && v[0].is_ascii_alphabetic()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"%&=+$,;?/".contains(&b)
}

fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || b"%[]/:&+$".contains(&b)
}

/// Every `%` starts an escape of two hex digits.
fn escapes_ok(v: &[u8]) -> bool {
    v.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (v.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && v.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

fn is_uri_params(v: &[u8]) -> bool {
    v.is_empty()
        || (v[0] == b';'
            && v[1..].split(|&b| b == b';').all(|p| {
                let (name, value) = split_once(p, b'=');
                !name.is_empty()
                    && name.iter().all(|&b| is_param_char(b))
                    && value.map_or(true, |x| {
                        !x.is_empty() && x.iter().all(|&b| is_param_char(b))
                    })
                    && escapes_ok(p)
            }))
}

fn split_once(v: &[u8], at: u8) -> (&[u8], Option<&[u8]>) {
    match v.iter().position(|&b| b == at) {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    }
}

fn is_port(v: &[u8]) -> bool {
    number_in(v, 1, 65535)
}

/// `host[:port]`, the host possibly a bracketed IPv6 reference.
fn is_host_port(v: &[u8]) -> bool {
    let colon = match v.iter().rposition(|&b| b == b']') {
        Some(close) => v[close..]
            .iter()
            .position(|&b| b == b':')
            .map(|i| close + i),
        None => v.iter().position(|&b| b == b':'),
    };
    match colon {
        Some(i) => is_host(&v[..i]) && is_port(&v[i + 1..]),
        None => is_host(v),
    }
}

fn is_uri(v: &[u8]) -> bool {
    let (scheme, rest) = split_once(v, b':');
    let Some(rest) = rest else { return false };
    if !is_scheme(scheme) {
        return false;
    }
    if !scheme.eq_ignore_ascii_case(b"sip") && !scheme.eq_ignore_ascii_case(b"sips") {
        let uric = |b: u8| is_unreserved(b) || b";/?:@&=+$,%#[]".contains(&b);
        return !rest.is_empty() && rest.iter().all(|&b| uric(b)) && escapes_ok(rest);
    }
    is_sip_uri_rest(rest)
}

/// What follows `sip:`: `[user[:password]@]host[:port][;params][?headers]`.
fn is_sip_uri_rest(v: &[u8]) -> bool {
    let (v, headers) = split_once(v, b'?');
    if headers.is_some_and(|h| {
        h.is_empty()
            || !h
                .iter()
                .all(|&b| is_unreserved(b) || b"%[]/?:+$=&".contains(&b))
    }) {
        return false;
    }
    let (userinfo, hostpart) = match v.iter().rposition(|&b| b == b'@') {
        Some(i) => (Some(&v[..i]), &v[i + 1..]),
        None => (None, v),
    };
    if let Some(ui) = userinfo {
        let (user, password) = split_once(ui, b':');
        let pw_ok = password.map_or(true, |p| {
            p.iter()
                .all(|&b| is_unreserved(b) || b"%&=+$,".contains(&b))
        });
        if user.is_empty() || !user.iter().all(|&b| is_user_char(b)) || !escapes_ok(ui) || !pw_ok {
            return false;
        }
    }
    let params_at = hostpart
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(hostpart.len());
    is_host_port(&hostpart[..params_at]) && is_uri_params(&hostpart[params_at..])
}

/// Quoted string with balanced quotes and valid escapes.
fn is_quoted(v: &[u8]) -> bool {
    if v.len() < 2 || v[0] != b'"' || v[v.len() - 1] != b'"' {
        return false;
    }
    let inner = &v[1..v.len() - 1];
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            b'\\' => i += 2,
            b'"' => return false,
            _ => i += 1,
        }
    }
    i == inner.len()
}

fn is_name_addr(v: &[u8]) -> bool {
    let Some(open) = v.iter().position(|&b| b == b'<') else {
        return is_uri(v) && !v.contains(&b'>');
    };
    if !v.ends_with(b">") || open + 1 >= v.len() {
        return false;
    }
    let display = trim(&v[..open]);
    let display_ok = display.is_empty()
        || is_quoted(display)
        || display
            .split(|&b| b == b' ' || b == b'\t')
            .all(|w| w.is_empty() || is_token(w));
    display_ok && is_uri(&v[open + 1..v.len() - 1])
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Any run of visible ASCII: the `,` `;` `=` and second `@` that RFC 3261's `word` leaves out
/// are in real endpoints' Call-IDs, and every element compares a Call-ID byte for byte.
fn is_call_id(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&b| b.is_ascii_graphic())
}

/// `v` with the whitespace RFC 3261 allows around its separators removed (`SLASH`, `SEMI`,
/// `EQUAL`, `COLON`, `COMMA` are `SWS x SWS`) and any other run of it cut to one space, so
/// that the checks below need not know about it. Quoted strings are kept as they are.
fn without_sws(v: &[u8]) -> Vec<u8> {
    let is_ws = |b: u8| b == b' ' || b == b'\t';
    let is_sep = |b: u8| b"/;=:,".contains(&b);
    let mut out: Vec<u8> = Vec::with_capacity(v.len());
    let mut quoted = false;
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b == b'"' {
            quoted = !quoted;
        }
        if quoted || !is_ws(b) {
            out.push(b);
            i += 1;
            continue;
        }
        let end = v[i..]
            .iter()
            .position(|&c| !is_ws(c))
            .map_or(v.len(), |n| i + n);
        let before = out.last().is_some_and(|&c| is_sep(c));
        let after = v.get(end).is_some_and(|&c| is_sep(c));
        if !before && !after && !out.is_empty() && end < v.len() {
            out.push(b' ');
        }
        i = end;
    }
    out
}

/// `SIP/2.0/transport SP host[:port] *(;param)` with the parameters of the strict rules.
fn is_via(v: &[u8]) -> bool {
    let v = &without_sws(v)[..];
    let Some(sp) = v.iter().position(|&b| b == b' ') else {
        return false;
    };
    let proto: Vec<&[u8]> = v[..sp].split(|&b| b == b'/').collect();
    let proto_ok = proto.len() == 3
        && proto[0].eq_ignore_ascii_case(b"SIP")
        && proto[1] == b"2.0"
        && is_token(proto[2]);
    let mut parts = v[sp + 1..].split(|&b| b == b';');
    let sent_by = parts.next().unwrap_or_default();
    proto_ok && is_host_port(sent_by) && parts.all(is_via_param)
}

fn is_via_param(p: &[u8]) -> bool {
    let (name, value) = split_once(p, b'=');
    let name = name.to_ascii_lowercase();
    match (name.as_slice(), value) {
        (b"branch", Some(x)) => is_token(x),
        (b"received", Some(x)) => is_ip(x),
        (b"rport", None) => true,
        (b"rport", Some(x)) => is_port(x),
        (b"maddr", Some(x)) => is_host(x),
        (b"ttl", Some(x)) => number_in(x, 0, 255),
        (b"branch" | b"received" | b"maddr" | b"ttl", None) => false,
        (n, x) => is_token(n) && x.map_or(true, |x| is_token(x) || is_host(x) || is_quoted(x)),
    }
}

/// `*`, or contacts separated by commas outside brackets and quotes.
fn is_contact(v: &[u8]) -> bool {
    if v == b"*" {
        return true;
    }
    let v = without_sws(v);
    split_list(&v).iter().all(|c| is_contact_param_list(c))
}

fn split_list(v: &[u8]) -> Vec<&[u8]> {
    let (mut out, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0i32, false);
    for (i, &b) in v.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out
}

/// One contact: a name-addr with header parameters, or an addr-spec without any.
fn is_contact_param_list(c: &[u8]) -> bool {
    let (addr, params) = match c.iter().rposition(|&b| b == b'>') {
        Some(close) => (&c[..=close], &c[close + 1..]),
        None => (c, &b""[..]),
    };
    is_name_addr(addr)
        && (params.is_empty()
            || (params[0] == b';' && params[1..].split(|&b| b == b';').all(is_contact_param)))
}

fn is_contact_param(p: &[u8]) -> bool {
    let (name, value) = split_once(p, b'=');
    match (name.to_ascii_lowercase().as_slice(), value) {
        (b"expires", Some(x)) => number_in(x, 0, u32::MAX as u128),
        (b"q", Some(x)) => is_qvalue(x),
        (b"tag", Some(x)) => is_token(x),
        (b"expires" | b"q" | b"tag", None) => false,
        (n, x) => is_token(n) && x.map_or(true, |x| is_token(x) || is_host(x) || is_quoted(x)),
    }
}

fn is_qvalue(v: &[u8]) -> bool {
    let (int, frac) = split_once(v, b'.');
    let frac_ok = frac.map_or(true, |f| f.len() <= 3 && f.iter().all(u8::is_ascii_digit));
    match int {
        b"0" => frac_ok,
        b"1" => frac.map_or(true, |f| f.len() <= 3 && f.iter().all(|&b| b == b'0')),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_accepts_the_base_values_and_refuses_the_classic_mistakes() {
        assert_eq!(judge(Kind::Host, b"example.com", "INVITE"), Class::Valid);
        assert_eq!(judge(Kind::Host, b"[::1]", "INVITE"), Class::Valid);
        assert_eq!(judge(Kind::Host, b"256.1.1.1", "INVITE"), Class::Malformed);
        assert_eq!(
            judge(Kind::Number { min: 1, max: 65535 }, b"65536", "INVITE"),
            Class::Malformed
        );
        assert_eq!(
            judge(Kind::Uri, b"sip:alice@example.org", "INVITE"),
            Class::Valid
        );
        assert_eq!(judge(Kind::Uri, b"sip:alice@", "INVITE"), Class::Malformed);
        assert_eq!(
            judge(Kind::NameAddr, b"\"A\" <sip:a@b.c>", "INVITE"),
            Class::Valid
        );
        assert_eq!(
            judge(Kind::NameAddr, b"<sip:a@b.c", "INVITE"),
            Class::Malformed
        );
        assert_eq!(judge(Kind::CallId, b"a@b@c", "INVITE"), Class::Valid);
        assert_eq!(
            judge(Kind::CallId, b"a\xc3\xa9", "INVITE"),
            Class::Malformed
        );
        assert_eq!(
            judge(
                Kind::Via,
                b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx",
                "INVITE"
            ),
            Class::Valid
        );
        assert_eq!(
            judge(Kind::Via, b"SIP/2.0/UDP h;ttl=256", "INVITE"),
            Class::Malformed
        );
        assert_eq!(
            judge(
                Kind::Contact,
                b"<sip:b@h>;expires=60, <sip:c@h>;q=0.5",
                "INVITE"
            ),
            Class::Valid
        );
        assert_eq!(
            judge(Kind::Contact, b"*, <sip:c@h>", "INVITE"),
            Class::Malformed
        );
        assert_eq!(judge(Kind::Text, b"a\r\n b", "INVITE"), Class::Fold);
        assert_eq!(judge(Kind::Text, b"a\r\nb", "INVITE"), Class::LineBreak);
        assert_eq!(judge(Kind::Text, b"a\0b", "INVITE"), Class::Control);
        assert_eq!(
            judge(Kind::Text, b"a\r\n\r\nb", "INVITE"),
            Class::EndsHeaders
        );
        assert_eq!(judge(Kind::Body, b"a\r\n\r\n\0", "INVITE"), Class::Valid);
        let via = b"SIP / 2.0 / UDP  h : 5060 ; branch = z9 ;rport";
        assert_eq!(judge(Kind::Via, via, "INVITE"), Class::Valid);
        assert_eq!(
            judge(Kind::Via, b"SIP/2.0/UDP 127. 0.0.1", "INVITE"),
            Class::Malformed
        );
        assert_eq!(
            judge_header(Kind::CSeq, b" 1 INVITE\t", "INVITE"),
            Class::Valid
        );
        assert_eq!(
            judge(Kind::FromTo, b"\"A B\" <sip:a@b.c> ;tag=x", "INVITE"),
            Class::Valid
        );
    }
}
