//! The zero-copy parser: one datagram in, a borrowed [`Message`] view out.
//!
//! Two passes over the header section, as mini-redis frames and Kamailio parses:
//!
//! 1. [`normalize_headers`] walks the lines once with memchr, finds the empty line that ends the
//!    header section and, in place and without changing any length, turns what the line splitter
//!    does not accept into what it does: folded lines (`CRLF` + `SP`/`HT`, RFC 3261 section 7.3.1) become
//!    spaces, and whitespace between a header name and its colon moves after the colon.
//! 2. Each line is split into `name ":" value` ([`split_header_line`]); each name is recognised
//!    once (compact forms included) and recorded with its line and value spans.
//!
//! Framing follows RFC 3261 section 18.3 for datagrams: the body is `Content-Length` octets and
//! anything after it is ignored; no Content-Length means "the rest of the datagram".

use memchr::memchr;

use super::error::{ParseError, Required};
use super::header::{is_token, trim, CommaSplit, HeaderName};
use super::span::Span;
use super::uri::{Scheme, Uri};

/// Room for this many header lines; a message with more is rejected (400), which no legitimate
/// SIP message on a carrier edge comes near.
pub const MAX_HEADERS: usize = 96;

/// Number of [`HeaderName`] variants, for the first-occurrence table.
const KNOWN_NAMES: usize = HeaderName::Other as usize + 1;
const NONE: u8 = u8::MAX;

/// The methods the proxy treats specially; every other token is `Other` and is proxied as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 3261 section 7.1).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other => "OTHER",
        }
    }
}

/// The first line of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        /// The method token as written (also the `Other` method's name).
        method_span: Span,
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

/// One indexed header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderField {
    pub name: HeaderName,
    /// The name as written (`v`, `VIA`, ...).
    pub name_span: Span,
    /// The value, trimmed (unfolded continuation lines included).
    pub value: Span,
    /// The whole line from the name to the end of its line terminator: what removal deletes.
    pub line: Span,
}

const EMPTY_FIELD: HeaderField = HeaderField {
    name: HeaderName::Other,
    name_span: Span::EMPTY,
    value: Span::EMPTY,
    line: Span::EMPTY,
};

/// A parsed SIP message: the start line, an index of the header fields and the body, all as
/// spans into the datagram it borrows.
pub struct Message<'a> {
    buf: &'a [u8],
    pub start: StartLine,
    /// The start line without its terminator.
    pub start_line: Span,
    fields: [HeaderField; MAX_HEADERS],
    count: usize,
    /// Index into `fields` of the first occurrence of each known name, `NONE` when absent.
    first: [u8; KNOWN_NAMES],
    /// Where the empty line that ends the header section starts (insert-at-end position).
    pub headers_end: usize,
    pub body: Span,
}

impl<'a> Message<'a> {
    /// Parse one datagram. The buffer is modified in place (unfolding, colon normalisation) but
    /// never changes length, so the caller's framing is unaffected.
    pub fn parse(buf: &'a mut [u8]) -> Result<Message<'a>, ParseError> {
        // Leading CRLFs are ignored (RFC 3261 section 7.5); a datagram of only CRLFs is a
        // keepalive (RFC 5626 section 3.5.1) and reported as Empty.
        let first_byte = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .ok_or(ParseError::Empty)?;
        let line_end = memchr(b'\n', &buf[first_byte..])
            .map(|i| i + first_byte)
            .ok_or(ParseError::BadStartLine)?;
        let headers_start = line_end + 1;
        let start_line = Span::new(
            first_byte,
            if line_end > first_byte && buf[line_end - 1] == b'\r' {
                line_end - 1
            } else {
                line_end
            },
        );
        let (headers_end, body_start) = normalize_headers(buf, headers_start)?;
        let buf: &'a [u8] = buf;
        let start = parse_start_line(buf, start_line)?;

        let mut msg = Message {
            buf,
            start,
            start_line,
            fields: [EMPTY_FIELD; MAX_HEADERS],
            count: 0,
            first: [NONE; KNOWN_NAMES],
            headers_end,
            body: Span::EMPTY,
        };
        msg.index_headers(headers_start)?;
        msg.body = msg.frame_body(body_start)?;
        Ok(msg)
    }

    /// Index the header fields: httparse's (SIMD) splitter first; when it refuses a line that
    /// SIP allows (a control character escaped inside a quoted string, RFC 4475 section
    /// 3.1.1.2), the message is indexed again by [`split_header_line`], which accepts exactly
    /// that.
    fn index_headers(&mut self, headers_start: usize) -> Result<(), ParseError> {
        let body_start = self.headers_end
            + if self.buf.get(self.headers_end) == Some(&b'\r') {
                2
            } else {
                1
            };
        let section = &self.buf[headers_start..body_start.min(self.buf.len())];
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(section, &mut raw) {
            Ok(httparse::Status::Complete((_, parsed))) => {
                for h in parsed {
                    let name_span = Span::within(section, h.name.as_bytes(), headers_start);
                    let value = trim(self.buf, Span::within(section, h.value, headers_start));
                    self.push_field(name_span, value, Span::EMPTY)?;
                }
                // Each line runs to where the next one starts; the last to the empty line.
                for i in 0..self.count {
                    let end = match self.fields.get(i + 1) {
                        Some(next) if i + 1 < self.count => next.name_span.start as usize,
                        _ => self.headers_end,
                    };
                    self.fields[i].line = Span::new(self.fields[i].name_span.start as usize, end);
                }
                Ok(())
            }
            Err(httparse::Error::TooManyHeaders) => Err(ParseError::TooManyHeaders),
            _ => {
                self.count = 0;
                self.first = [NONE; KNOWN_NAMES];
                self.index_lines(headers_start)
            }
        }
    }

    fn push_field(&mut self, name_span: Span, value: Span, line: Span) -> Result<(), ParseError> {
        let i = self.count;
        if i == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let name = HeaderName::from_bytes(name_span.of(self.buf));
        self.fields[i] = HeaderField {
            name,
            name_span,
            value,
            line,
        };
        if self.first[name as usize] == NONE {
            self.first[name as usize] = i as u8;
        }
        self.count += 1;
        Ok(())
    }

    /// The fallback indexer: one field per line (pass 1 already unfolded continuation lines).
    fn index_lines(&mut self, headers_start: usize) -> Result<(), ParseError> {
        // After pass 1 every line before `headers_end` is one whole header field ending in LF.
        let buf = self.buf;
        let mut line_start = headers_start;
        while line_start < self.headers_end {
            let nl = memchr(b'\n', &buf[line_start..self.headers_end])
                .map_or(self.headers_end, |i| line_start + i);
            let (name_span, value) =
                split_header_line(buf, line_start, nl).ok_or(ParseError::BadHeaderLine)?;
            self.push_field(
                name_span,
                value,
                Span::new(line_start, (nl + 1).min(self.headers_end)),
            )?;
            line_start = nl + 1;
        }
        Ok(())
    }

    fn frame_body(&self, body_start: usize) -> Result<Span, ParseError> {
        let mut length: Option<u64> = None;
        for f in self.fields_named(HeaderName::ContentLength) {
            let v = f.value.of(self.buf);
            let n = parse_u64(v).ok_or(ParseError::BadContentLength)?;
            match length {
                Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
                _ => length = Some(n),
            }
        }
        let available = (self.buf.len() - body_start) as u64;
        match length {
            None => Ok(Span::new(body_start, self.buf.len())),
            Some(n) if n > available => Err(ParseError::TruncatedBody),
            Some(n) => Ok(Span::new(body_start, body_start + n as usize)),
        }
    }

    /// The datagram this view borrows.
    #[inline]
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// The bytes of `span`.
    #[inline]
    pub fn bytes(&self, span: Span) -> &'a [u8] {
        span.of(self.buf)
    }

    /// Length of the message as framed: trailing bytes beyond Content-Length are not part of it.
    pub fn framed_len(&self) -> usize {
        self.body.end as usize
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The method token as written.
    pub fn method_bytes(&self) -> &'a [u8] {
        match self.start {
            StartLine::Request { method_span, .. } => self.bytes(method_span),
            StartLine::Response { .. } => &[],
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn request_uri_span(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI; validated at parse time, so this only fails for responses.
    pub fn request_uri(&self) -> Option<Uri<'a>> {
        Uri::parse(self.bytes(self.request_uri_span()?)).ok()
    }

    /// All indexed header lines in order.
    pub fn fields(&self) -> &[HeaderField] {
        &self.fields[..self.count]
    }

    /// The lines named `name`, in order.
    pub fn fields_named(&self, name: HeaderName) -> impl Iterator<Item = &HeaderField> + '_ {
        let from = match self.first[name as usize] {
            NONE if name != HeaderName::Other => self.count,
            NONE => 0,
            i => i as usize,
        };
        self.fields[from..self.count]
            .iter()
            .filter(move |f| f.name == name)
    }

    /// The first line named `name`.
    pub fn field(&self, name: HeaderName) -> Option<&HeaderField> {
        match self.first[name as usize] {
            NONE => None,
            i => Some(&self.fields[i as usize]),
        }
    }

    /// The first value of `name` as bytes.
    pub fn header(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.field(name).map(|f| self.bytes(f.value))
    }

    /// The first line of a header with this exact name (for headers sipshard does not know).
    pub fn header_by_name(&self, name: &[u8]) -> Option<&'a [u8]> {
        let known = HeaderName::from_bytes(name);
        self.fields()
            .iter()
            .find(|f| {
                f.name == known
                    && (known != HeaderName::Other
                        || self.bytes(f.name_span).eq_ignore_ascii_case(name))
            })
            .map(|f| self.bytes(f.value))
    }

    /// Every comma-separated element of every line named `name` (RFC 3261 section 7.3.1), with
    /// the line it came from.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = (usize, Span)> + '_ {
        let buf = self.buf;
        self.fields()
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.name == name)
            .flat_map(move |(i, f)| CommaSplit::new(buf, f.value).map(move |s| (i, s)))
    }

    /// The index of a field within [`fields`](Self::fields).
    pub fn field_at(&self, index: usize) -> &HeaderField {
        &self.fields[index]
    }

    pub fn count_of(&self, name: HeaderName) -> usize {
        self.fields_named(name).count()
    }

    /// Check what RFC 3261 section 8.1.1 requires of every request and that the single-valued
    /// headers appear once (RFC 4475 section 3.2.8 shows why: two Call-IDs make no sense).
    pub fn validate_request(&self) -> Result<(), ParseError> {
        let method = self.method_bytes();
        if self.field(HeaderName::Via).is_none() {
            return Err(ParseError::Missing(Required::Via));
        }
        for (name, req) in [
            (HeaderName::From, Required::From),
            (HeaderName::To, Required::To),
            (HeaderName::CallId, Required::CallId),
            (HeaderName::CSeq, Required::CSeq),
        ] {
            match self.count_of(name) {
                0 => return Err(ParseError::Missing(req)),
                1 => {}
                _ => return Err(ParseError::Malformed(req)),
            }
        }
        self.top_via()?;
        self.from()?;
        self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if cseq.method != method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        if self.count_of(HeaderName::MaxForwards) > 1 {
            return Err(ParseError::BadMaxForwards);
        }
        self.max_forwards()?;
        Ok(())
    }

    /// Call-ID: `word [ "@" word ]`, no whitespace.
    pub fn call_id(&self) -> Result<&'a [u8], ParseError> {
        let v = self
            .header(HeaderName::CallId)
            .ok_or(ParseError::Missing(Required::CallId))?;
        if v.is_empty() || v.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(ParseError::Malformed(Required::CallId));
        }
        Ok(v)
    }

    /// Max-Forwards, `None` when absent; 0..=255 or an error (RFC 4475 section 3.1.2.4).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        match self.header(HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => parse_u64(v)
                .and_then(|n| u8::try_from(n).ok())
                .map(Some)
                .ok_or(ParseError::BadMaxForwards),
        }
    }

    /// The Expires header as seconds, `None` when absent. Values past 2^32-1 saturate
    /// (RFC 3261 section 20.19 "delta-seconds"); the registrar caps them anyway.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.header(HeaderName::Expires) {
            None => Ok(None),
            Some(v) => parse_delta_seconds(v)
                .map(Some)
                .ok_or(ParseError::BadHeader("Bad Request - Malformed Expires")),
        }
    }

    /// Option tags of Require or Proxy-Require (all lines, comma-split).
    pub fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        let buf = self.buf;
        self.values(name).map(move |(_, s)| s.of(buf))
    }
}

/// Pass 1: find the end of the header section and normalise it in place.
///
/// Returns `(headers_end, body_start)`: where the empty line starts and where the body starts.
fn normalize_headers(buf: &mut [u8], headers_start: usize) -> Result<(usize, usize), ParseError> {
    let mut line_start = headers_start;
    let mut logical_start = true;
    loop {
        if line_start >= buf.len() {
            return Err(ParseError::UnterminatedHeaders);
        }
        let nl = memchr(b'\n', &buf[line_start..])
            .map(|i| i + line_start)
            .ok_or(ParseError::UnterminatedHeaders)?;
        let content_end = if nl > line_start && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if content_end == line_start && logical_start {
            return Ok((line_start, nl + 1));
        }
        if logical_start {
            move_colon_after_name(&mut buf[line_start..content_end]);
        }
        // A terminator followed by SP or HT continues the line: unfold it to spaces.
        match buf.get(nl + 1) {
            Some(b' ') | Some(b'\t') => {
                buf[content_end..=nl].fill(b' ');
                logical_start = false;
            }
            _ => logical_start = true,
        }
        line_start = nl + 1;
    }
}

/// Split the header line `buf[start..nl]` (`nl` is its LF) into the name and the trimmed value:
/// `header-name HCOLON value` with `header-name = token` (RFC 3261 section 7.3.1), the colon
/// already moved next to the name by pass 1.
fn split_header_line(buf: &[u8], start: usize, nl: usize) -> Option<(Span, Span)> {
    let end = if nl > start && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[start..end];
    let name_len = line.iter().take_while(|&&b| is_token(b)).count();
    if name_len == 0 || line.get(name_len) != Some(&b':') {
        return None;
    }
    let value = &line[name_len + 1..];
    if !valid_header_value(value) {
        return None;
    }
    Some((
        Span::new(start, start + name_len),
        trim(buf, Span::new(start + name_len + 1, end)),
    ))
}

/// Header values are text: HTAB, SP to `~` and UTF-8 octets. A control character is allowed
/// only as the escaped octet of a quoted-pair inside a quoted-string (RFC 3261 section 25.1,
/// `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)`), which RFC 4475 section 3.1.1.2 puts
/// NUL, BEL and DEL in a display name to exercise.
fn valid_header_value(v: &[u8]) -> bool {
    let mut in_quotes = false;
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'"' => in_quotes = !in_quotes,
            b'\\' if in_quotes => match v.get(i + 1) {
                Some(b'\r' | b'\n') => return false,
                Some(_) => i += 1,
                None => {}
            },
            b'\t' | b' '..=b'~' | 0x80..=0xff => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// `Name  : value` -> `Name:   value` (same length): RFC 3261's `HCOLON = *( SP / HTAB ) ":" SWS`
/// allows whitespace before the colon, [`split_header_line`] does not.
fn move_colon_after_name(line: &mut [u8]) {
    let name_len = line.iter().take_while(|&&b| is_token(b)).count();
    if name_len == 0 || name_len >= line.len() || line[name_len] == b':' {
        return;
    }
    let ws = line[name_len..]
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if ws > 0 && line.get(name_len + ws) == Some(&b':') {
        line[name_len] = b':';
        line[name_len + 1..=name_len + ws].fill(b' ');
    }
}

fn parse_start_line(buf: &[u8], line: Span) -> Result<StartLine, ParseError> {
    let text = line.of(buf);
    if text.len() < 8 {
        return Err(ParseError::BadStartLine);
    }
    if text[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status_line(text, line);
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP each (RFC 4475
    // section 3.1.2.9 and 3.1.2.10 reject extra or trailing whitespace).
    let sp1 = memchr(b' ', text).ok_or(ParseError::BadStartLine)?;
    let sp2 = memchr(b' ', &text[sp1 + 1..])
        .map(|i| i + sp1 + 1)
        .ok_or(ParseError::BadStartLine)?;
    let method = &text[..sp1];
    let uri = &text[sp1 + 1..sp2];
    let version = &text[sp2 + 1..];
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(ParseError::BadMethod);
    }
    if uri.is_empty() || version.is_empty() || version.contains(&b' ') {
        return Err(ParseError::BadStartLine);
    }
    check_version(version)?;
    let parsed = Uri::parse(uri).map_err(|_| ParseError::BadRequestUri)?;
    // A Request-URI carrying headers is malformed (RFC 4475 section 3.1.2.11).
    if matches!(parsed.scheme, Scheme::Sip | Scheme::Sips) && !parsed.headers.is_empty() {
        return Err(ParseError::BadRequestUri);
    }
    let base = line.start as usize;
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        method_span: Span::new(base, base + sp1),
        uri: Span::new(base + sp1 + 1, base + sp2),
    })
}

fn parse_status_line(text: &[u8], line: Span) -> Result<StartLine, ParseError> {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (the phrase may be empty).
    let sp1 = memchr(b' ', text).ok_or(ParseError::BadStartLine)?;
    check_version(&text[..sp1])?;
    let rest = &text[sp1 + 1..];
    let code_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if code_len != 3 || (rest.len() > 3 && rest[3] != b' ') {
        return Err(ParseError::BadStatusCode);
    }
    let code =
        (rest[0] - b'0') as u16 * 100 + (rest[1] - b'0') as u16 * 10 + (rest[2] - b'0') as u16;
    if !(100..=699).contains(&code) {
        return Err(ParseError::BadStatusCode);
    }
    let reason_start = line.start as usize + sp1 + 1 + 3 + usize::from(rest.len() > 3);
    Ok(StartLine::Response {
        code,
        reason: Span::new(reason_start.min(line.end as usize), line.end as usize),
    })
}

/// `SIP/2.0`, case-insensitive; another well-formed version is 505, anything else 400.
fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && match memchr(b'.', &v[4..]) {
            Some(dot) => {
                let (major, minor) = (&v[4..4 + dot], &v[5 + dot..]);
                !major.is_empty()
                    && !minor.is_empty()
                    && major.iter().chain(minor).all(u8::is_ascii_digit)
            }
            None => false,
        };
    Err(if well_formed {
        ParseError::VersionNotSupported
    } else {
        ParseError::BadStartLine
    })
}

/// A non-empty run of ASCII digits as u64, `None` on anything else or overflow.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

/// delta-seconds: digits, saturating at 2^32-1.
pub fn parse_delta_seconds(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        v.iter()
            .try_fold(0u32, |acc, &d| {
                acc.checked_mul(10)?.checked_add((d - b'0') as u32)
            })
            .unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn parse(s: &str) -> (Vec<u8>, Result<(), ParseError>) {
        let mut b = s.as_bytes().to_vec();
        let r = Message::parse(&mut b).map(|_| ());
        (b, r)
    }

    #[test]
    fn parses_invite() {
        let mut b = INVITE.as_bytes().to_vec();
        let m = Message::parse(&mut b).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri().unwrap().user, Some(&b"bob"[..]));
        assert_eq!(m.fields().len(), 9);
        assert_eq!(
            m.call_id().unwrap(),
            b"3848276298220188511@atlanta.example.com"
        );
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.cseq().unwrap().number, 1);
        assert_eq!(m.bytes(m.body), b"v=0\n");
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK74bf9"[..]));
        m.validate_request().unwrap();
    }

    #[test]
    fn extra_bytes_after_content_length_are_not_part_of_the_message() {
        let s = format!("{INVITE}garbage");
        let mut b = s.into_bytes();
        let m = Message::parse(&mut b).unwrap();
        assert_eq!(m.framed_len(), INVITE.len());
    }

    #[test]
    fn folding_compact_forms_and_space_before_colon() {
        let s = "OPTIONS sip:x@example.com SIP/2.0\n\
v : SIP/2.0/UDP 192.0.2.1\n ;branch=z9hG4bKabc\n\
f: <sip:a@example.com>;tag=1\n\
t:\n  <sip:x@example.com>\n\
i: abc\n\
CSEQ: 8\n   OPTIONS\n\
l: 0\n\
\n";
        let mut b = s.as_bytes().to_vec();
        let m = Message::parse(&mut b).unwrap();
        m.validate_request().unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKabc"[..]));
        assert_eq!(m.to().unwrap().uri.user, Some(&b"x"[..]));
        assert_eq!(m.cseq().unwrap().method, b"OPTIONS");
        assert_eq!(m.body.len(), 0);
    }

    #[test]
    fn framing_errors() {
        let base = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        assert_eq!(parse(&base).1, Err(ParseError::TruncatedBody));
        let neg = INVITE.replace("Content-Length: 4", "Content-Length: -4");
        assert_eq!(parse(&neg).1, Err(ParseError::BadContentLength));
        let two = INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 5");
        assert_eq!(parse(&two).1, Err(ParseError::ConflictingContentLength));
        let same = INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 4");
        assert_eq!(parse(&same).1, Ok(()));
        let none = INVITE.replace("Content-Length: 4\r\n", "");
        let mut b = none.into_bytes();
        assert_eq!(Message::parse(&mut b).unwrap().body.len(), 4);
    }

    #[test]
    fn start_line_errors() {
        assert_eq!(parse("\r\n\r\n").1, Err(ParseError::Empty));
        assert_eq!(
            parse("INVITE sip:a@b SIP/7.0\r\n\r\n").1,
            Err(ParseError::VersionNotSupported)
        );
        assert_eq!(
            parse("INVITE  sip:a@b SIP/2.0\r\n\r\n").1,
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            parse("INVITE sip:a@b SIP/2.0 \r\n\r\n").1,
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            parse("INVITE <sip:a@b> SIP/2.0\r\n\r\n").1,
            Err(ParseError::BadRequestUri)
        );
        assert_eq!(
            parse("SIP/2.0 4294967301 Huge\r\n\r\n").1,
            Err(ParseError::BadStatusCode)
        );
        assert_eq!(
            parse("SIP/2.0 099 Low\r\n\r\n").1,
            Err(ParseError::BadStatusCode)
        );
        assert_eq!(parse("SIP/2.0 200\r\n\r\n").1, Ok(()));
        assert_eq!(
            parse("INVITE sip:a@b SIP/2.0\r\nVia: x\r\n").1,
            Err(ParseError::UnterminatedHeaders)
        );
    }

    #[test]
    fn controls_only_as_quoted_pairs() {
        // RFC 4475 section 3.1.1.2: NUL, BEL and DEL escaped inside a quoted display name.
        let ok = INVITE.replace("To: Bob", "To: \"\\\0\\\x07\\\x7f\\\"\"");
        let mut b = ok.into_bytes();
        let m = Message::parse(&mut b).unwrap();
        assert_eq!(
            m.to().unwrap().display,
            Some(&b"\"\\\0\\\x07\\\x7f\\\"\""[..])
        );
        for bad in [
            "To: \0Bob",
            "To: \"\x07\"",
            "To: Bob\\\x7f",
            "To: \"\\\rx\"",
        ] {
            let s = INVITE.replace("To: Bob", bad);
            assert_eq!(parse(&s).1, Err(ParseError::BadHeaderLine), "{bad:?}");
        }
        assert_eq!(parse(&INVITE.replace("CSeq:", "CSeq :")).1, Ok(()));
        assert_eq!(
            parse(&INVITE.replace("CSeq:", "C Seq:")).1,
            Err(ParseError::BadHeaderLine)
        );
        assert_eq!(
            parse(&INVITE.replace("CSeq:", ": CSeq")).1,
            Err(ParseError::BadHeaderLine)
        );
    }

    #[test]
    fn required_headers() {
        let no_callid = INVITE.replace("Call-ID: 3848276298220188511@atlanta.example.com\r\n", "");
        let mut b = no_callid.into_bytes();
        let m = Message::parse(&mut b).unwrap();
        assert_eq!(
            m.validate_request(),
            Err(ParseError::Missing(Required::CallId))
        );
        assert_eq!(
            ParseError::Missing(Required::CallId).reason(),
            "Bad Request - Missing Call-ID"
        );
        let mismatch = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
        let mut b = mismatch.into_bytes();
        let m = Message::parse(&mut b).unwrap();
        assert_eq!(m.validate_request(), Err(ParseError::CSeqMethodMismatch));
        let big = INVITE.replace("CSeq: 1 INVITE", "CSeq: 36893488147419103232 INVITE");
        let mut b = big.into_bytes();
        let m = Message::parse(&mut b).unwrap();
        assert_eq!(
            m.validate_request(),
            Err(ParseError::Malformed(Required::CSeq))
        );
        let mf = INVITE.replace("Max-Forwards: 70", "Max-Forwards: 300");
        let mut b = mf.into_bytes();
        let m = Message::parse(&mut b).unwrap();
        assert_eq!(m.validate_request(), Err(ParseError::BadMaxForwards));
    }

    #[test]
    fn multi_value_headers_across_lines() {
        let s = INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRoute: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nRoute: <sip:p3.example.com;lr>\r\n",
        );
        let mut b = s.into_bytes();
        let m = Message::parse(&mut b).unwrap();
        let hosts: Vec<_> = m
            .routes()
            .map(|r| r.unwrap().uri.host_raw.to_vec())
            .collect();
        assert_eq!(
            hosts,
            vec![
                b"p1.example.com".to_vec(),
                b"p2.example.com".to_vec(),
                b"p3.example.com".to_vec()
            ]
        );
        assert!(m.routes().all(|r| r.unwrap().uri.lr()));
    }
}
