//! The zero-copy parser: one datagram in, a borrowed [`Message`] view out.
//!
//! One pass over the header section, as Kamailio parses: [`scan_headers`] walks the lines with
//! the line feeds found 64 bytes a step (`scan::LineEnds`), finds the empty line that ends the
//! header section and, in place and without changing any length, turns folded lines (`CRLF` +
//! `SP`/`HT`, RFC 3261 section 7.3.1) into spaces and moves whitespace between a header name
//! and its colon after the colon. Each logical line is
//! split into name and value as it completes (with the byte rules httparse applies to HTTP
//! headers: a `tchar` name, then `:`, then a value of HT, SP, visible ASCII or obs-text) and
//! recorded with its line and value spans; each name is recognised once (compact forms included).
//!
//! Framing follows RFC 3261 section 18.3 for datagrams: the body is `Content-Length` octets and
//! anything after it is ignored; no Content-Length means "the rest of the datagram".

use std::cell::Cell;
use std::mem::MaybeUninit;

use memchr::memchr;

use super::addr::NameAddr;
use super::error::{ParseError, Required};
use super::header::{has_empty_element, is_lws, is_token, run_len, CommaSplit, HeaderName};
use super::scan::{find_byte, LineEnds};
use super::span::Span;
use super::uri::{Scheme, Uri};
use super::via::Via;

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

const EMPTY_START: StartLine = StartLine::Response {
    code: 0,
    reason: Span::EMPTY,
};

/// Write an empty view into `slot` field by field, leaving the header index (`MaybeUninit`
/// slots) untouched: building a `Message` value and moving it in would copy all 3 KB.
#[inline]
fn init_in_place<'s, 'a>(slot: &'s mut MaybeUninit<Message<'a>>) -> &'s mut Message<'a> {
    let p = slot.as_mut_ptr();
    // SAFETY: `p` points to writable, aligned storage for a `Message`. Every field but `fields`
    // is written through `addr_of_mut!` (no reference to uninitialised memory is created);
    // `fields` is an array of `MaybeUninit`, for which uninitialised bytes are a valid value. So
    // the whole `Message` is initialised when `assume_init_mut` is called. `Message` has no
    // `Drop`, so overwriting a previous view in the slot leaks nothing.
    unsafe {
        std::ptr::addr_of_mut!((*p).buf).write(&[]);
        std::ptr::addr_of_mut!((*p).start).write(EMPTY_START);
        std::ptr::addr_of_mut!((*p).start_line).write(Span::EMPTY);
        std::ptr::addr_of_mut!((*p).count).write(0);
        std::ptr::addr_of_mut!((*p).first).write([NONE; KNOWN_NAMES]);
        std::ptr::addr_of_mut!((*p).headers_end).write(0);
        std::ptr::addr_of_mut!((*p).body).write(Span::EMPTY);
        std::ptr::addr_of_mut!((*p).request_uri).write(None);
        std::ptr::addr_of_mut!((*p).top_via).write(Cell::new(None));
        std::ptr::addr_of_mut!((*p).from).write(Cell::new(None));
        std::ptr::addr_of_mut!((*p).to).write(Cell::new(None));
        slot.assume_init_mut()
    }
}

/// Lists every field of `Message` without `..`: adding a field fails to compile here, a
/// reminder that [`init_in_place`] must write it.
#[allow(dead_code)]
fn every_field_is_written_by_init_in_place(m: &Message<'_>) {
    let Message {
        buf: _,
        start: _,
        start_line: _,
        fields: _,
        count: _,
        first: _,
        headers_end: _,
        body: _,
        request_uri: _,
        top_via: _,
        from: _,
        to: _,
    } = m;
}

/// A parsed SIP message: the start line, an index of the header fields and the body, all as
/// spans into the datagram it borrows.
pub struct Message<'a> {
    buf: &'a [u8],
    pub start: StartLine,
    /// The start line without its terminator.
    pub start_line: Span,
    /// The indexed lines; only `fields[..count]` is initialised (see [`Message::fields`]).
    fields: [MaybeUninit<HeaderField>; MAX_HEADERS],
    count: usize,
    /// Index into `fields` of the first occurrence of each known name, `NONE` when absent.
    first: [u8; KNOWN_NAMES],
    /// Where the empty line that ends the header section starts (insert-at-end position).
    pub headers_end: usize,
    pub body: Span,
    /// The Request-URI as validated while parsing the start line (`None` for responses).
    request_uri: Option<Uri<'a>>,
    /// The topmost Via, parsed the first time it is asked for and kept: every consumer needs it,
    /// some several times. (A `Cell`: the view is shared, and stays on the shard that parsed it.)
    top_via: Cell<Option<Result<Via<'a>, ParseError>>>,
    /// From and To, parsed the first time they are asked for and kept, as the top Via: a
    /// forwarded request needs them to validate, to key its branch and to match replies.
    pub(super) from: Cell<Option<Result<NameAddr<'a>, ParseError>>>,
    pub(super) to: Cell<Option<Result<NameAddr<'a>, ParseError>>>,
}

impl<'a> Message<'a> {
    /// Parse one datagram. The buffer is modified in place (unfolding, colon normalisation) but
    /// never changes length, so the caller's framing is unaffected.
    ///
    /// `Message` is about 3 KB (the header index is inline, so that parsing never allocates), and
    /// each move of it is a 3 KB copy (measured: about 60 ns here). Bind the result by reference
    /// (`parsed.as_ref()`), or parse into storage the caller keeps with [`parse_in`](Self::parse_in),
    /// which builds the view where it stays.
    #[inline]
    pub fn parse(buf: &'a mut [u8]) -> Result<Message<'a>, ParseError> {
        let mut msg = Message {
            buf: &[],
            start: EMPTY_START,
            start_line: Span::EMPTY,
            fields: [const { MaybeUninit::uninit() }; MAX_HEADERS],
            count: 0,
            first: [NONE; KNOWN_NAMES],
            headers_end: 0,
            body: Span::EMPTY,
            request_uri: None,
            top_via: Cell::new(None),
            from: Cell::new(None),
            to: Cell::new(None),
        };
        msg.parse_into(buf)?;
        Ok(msg)
    }

    /// [`parse`](Self::parse) into `slot` and return the view there: nothing is copied, the header
    /// index is neither filled beforehand nor moved afterwards. `slot` can be reused for the next
    /// datagram once the view is dropped.
    #[inline]
    pub fn parse_in<'s>(
        slot: &'s mut MaybeUninit<Message<'a>>,
        buf: &'a mut [u8],
    ) -> Result<&'s Message<'a>, ParseError> {
        let msg = init_in_place(slot);
        msg.parse_into(buf)?;
        Ok(msg)
    }

    fn parse_into(&mut self, buf: &'a mut [u8]) -> Result<(), ParseError> {
        // Leading CRLFs are ignored (RFC 3261 section 7.5); a datagram of only CRLFs is a
        // keepalive (RFC 5626 section 3.5.1) and reported as Empty.
        let first_byte = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .ok_or(ParseError::Empty)?;
        let mut lines = LineEnds::new(buf, first_byte);
        let (line_end, crlf) = lines.next(buf).ok_or(ParseError::BadStartLine)?;
        let headers_start = line_end + 1;
        lines.check_from(headers_start);
        // The start line is not empty (its first byte is neither CR nor LF).
        self.start_line = Span::new(first_byte, line_end - usize::from(crlf));
        // Errors keep the precedence they always had: an unterminated header section first,
        // then the start line, then the first bad header line, then framing.
        let scan = scan_headers(buf, &mut lines, headers_start, self)?;
        let buf: &'a [u8] = buf;
        self.buf = buf;
        (self.start, self.request_uri) = parse_start_line(buf, self.start_line)?;
        if let Some(e) = scan.header_error {
            return Err(e);
        }
        self.headers_end = scan.headers_end;
        self.body = self.frame_body(scan.body_start)?;
        Ok(())
    }

    fn frame_body(&self, body_start: usize) -> Result<Span, ParseError> {
        let mut length: Option<u64> = None;
        for f in self.fields_named(HeaderName::ContentLength) {
            let v = f.value.of(self.buf);
            let n = parse_u64(v).ok_or(ParseError::BadContentLength)?;
            // One Content-Length, even two equal ones refused: framing that two elements on the
            // path could read differently is how requests get smuggled past one of them.
            if length.replace(n).is_some() {
                return Err(ParseError::ConflictingContentLength);
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

    /// The Request-URI; parsed and validated at parse time, so this only fails for responses.
    #[inline]
    pub fn request_uri(&self) -> Option<Uri<'a>> {
        self.request_uri
    }

    /// The topmost Via (parsed once, on the first call).
    #[inline]
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        match self.top_via.get() {
            Some(via) => via,
            None => {
                let via = self.parse_top_via();
                self.top_via.set(Some(via));
                via
            }
        }
    }

    /// All indexed header lines in order.
    #[inline]
    pub fn fields(&self) -> &[HeaderField] {
        let init = &self.fields[..self.count];
        // SAFETY: `fields[..count]` is initialised: `push_field` is the only writer, it writes
        // `fields[count]` before incrementing `count`, and `count` never decreases.
        // `MaybeUninit<T>` has the layout of `T`, so the slice can be viewed as `[T]`.
        unsafe { std::slice::from_raw_parts(init.as_ptr().cast::<HeaderField>(), init.len()) }
    }

    /// The lines named `name`, in order.
    pub fn fields_named(&self, name: HeaderName) -> impl Iterator<Item = &HeaderField> + '_ {
        let from = match self.first[name as usize] {
            NONE if name != HeaderName::Other => self.count,
            NONE => 0,
            i => i as usize,
        };
        self.fields()[from..].iter().filter(move |f| f.name == name)
    }

    /// The first line named `name`.
    #[inline]
    pub fn field(&self, name: HeaderName) -> Option<&HeaderField> {
        self.first_index(name).map(|i| &self.fields()[i])
    }

    /// The index within [`fields`](Self::fields) of the first line named `name` (any `Other`
    /// name for `HeaderName::Other`).
    #[inline]
    pub fn first_index(&self, name: HeaderName) -> Option<usize> {
        match self.first[name as usize] {
            NONE => None,
            i => Some(i as usize),
        }
    }

    /// The first value of `name` as bytes.
    pub fn header(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.field(name).map(|f| self.bytes(f.value))
    }

    /// The first line of a header with this exact name (for headers sipshard does not know).
    pub fn header_by_name(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.fields_by_name(name)
            .next()
            .map(|f| self.bytes(f.value))
    }

    /// The lines of a header with this name, in order (for headers sipshard does not know,
    /// such as Path).
    pub fn fields_by_name<'s>(
        &'s self,
        name: &'s [u8],
    ) -> impl Iterator<Item = &'s HeaderField> + 's {
        let known = HeaderName::from_bytes(name);
        // Shortened to `'s` so that the iterator borrows nothing longer than `self`.
        let buf: &'s [u8] = self.buf;
        self.fields().iter().filter(move |f| {
            f.name == known
                && (known != HeaderName::Other || f.name_span.of(buf).eq_ignore_ascii_case(name))
        })
    }

    /// Every comma-separated element of every line named `name` (RFC 3261 section 7.3.1), with
    /// the line it came from.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = (usize, Span)> + '_ {
        let buf = self.buf;
        let from = self.first_index(name).unwrap_or(self.count);
        self.fields()[from..]
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.name == name)
            .flat_map(move |(i, f)| CommaSplit::new(buf, f.value).map(move |s| (from + i, s)))
    }

    /// The index of a field within [`fields`](Self::fields).
    pub fn field_at(&self, index: usize) -> &HeaderField {
        &self.fields()[index]
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
        // Every Via, not only the top one: each is where a response goes on its way back. A
        // Via line with an empty element (`Via: `, `a,`, `a,,b`) hides one that was lost.
        self.top_via()?;
        for f in self.fields_named(HeaderName::Via) {
            if has_empty_element(self.bytes(f.value)) {
                return Err(ParseError::Malformed(Required::Via));
            }
        }
        for via in self.vias() {
            if !via?.params_checked() {
                return Err(ParseError::Malformed(Required::Via));
            }
        }
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

    /// Call-ID: one or more visible ASCII characters. Stricter than a VCHAR run would refuse
    /// live traffic for no one's benefit: RFC 3261's `word [ "@" word ]` leaves out `,` `;` `=`
    /// and a second `@`, which real endpoints put there (shared/seeds/003: an IMS test tool's
    /// `Default_Label-12911-1254978872-0000012,@0`), while every element only compares the
    /// Call-ID byte for byte (section 20.8). What no element can carry unchanged is refused:
    /// whitespace, control bytes, bytes outside ASCII.
    pub fn call_id(&self) -> Result<&'a [u8], ParseError> {
        let v = self
            .header(HeaderName::CallId)
            .ok_or(ParseError::Missing(Required::CallId))?;
        // Without an early exit, so that it vectorises (a Call-ID is 20 to 60 bytes).
        let bad = v
            .iter()
            .fold(false, |bad, &b| bad | (b <= b' ') | (b >= 0x7f));
        if v.is_empty() || bad {
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

/// Where [`scan_headers`] found the header section to end.
struct Scan {
    /// Where the empty line starts.
    headers_end: usize,
    /// Where the body starts (after the empty line).
    body_start: usize,
    /// The first bad header line (or the first line past [`MAX_HEADERS`]), reported after the
    /// start line has been checked.
    header_error: Option<ParseError>,
}

/// The single pass over the header section: find its end, normalise it in place and index each
/// logical line into `msg` as it completes.
///
/// `lines` (just past the start line) hands out the line feeds and tells, for the whole section
/// at once, whether any byte in it is one no header value may hold (see [`super::scan`]); only
/// when one is found is the section walked again line by line ([`first_bad_line`]) to report
/// the same error, in the same order, as checking each line. A known name directly followed by
/// its colon is recognised with one 16-byte compare ([`HeaderName::from_prefix`]); any other
/// line start takes the byte-wise way (name run, whitespace before the colon, name look-up).
fn scan_headers(
    buf: &mut [u8],
    lines: &mut LineEnds,
    headers_start: usize,
    msg: &mut Message<'_>,
) -> Result<Scan, ParseError> {
    let mut line_start = headers_start;
    // Set at the first bad line (or the first past MAX_HEADERS): later lines are still
    // normalised, no longer indexed.
    let mut header_error = None;
    let mut indexing = true;
    // One logical line an iteration: its first physical line, then any continuation lines.
    loop {
        let (nl, crlf) = lines.next(buf).ok_or(ParseError::UnterminatedHeaders)?;
        // (A CR before an empty physical line is the previous line's, and it cannot be one:
        // that line's LF, or the spaces unfolding left, stand in between.)
        let mut content_end = nl - usize::from(crlf);
        if content_end == line_start {
            let body_start = nl + 1;
            if lines.bad_before(body_start) {
                header_error = first_bad_line(&buf[headers_start..line_start]);
            }
            return Ok(Scan {
                headers_end: line_start,
                body_start,
                header_error,
            });
        }
        let (name, name_len) = match known_name_at(buf, line_start) {
            Some((known, len)) => (Some(known), len),
            None => (None, name_before_colon(&mut buf[line_start..content_end])),
        };
        // A terminator followed by SP or HT continues the line: unfold it to spaces.
        let mut line_end = nl + 1;
        while matches!(buf.get(line_end), Some(b' ' | b'\t')) {
            buf[content_end..line_end].fill(b' ');
            let (nl, crlf) = lines.next(buf).ok_or(ParseError::UnterminatedHeaders)?;
            content_end = nl - usize::from(crlf);
            line_end = nl + 1;
        }
        if indexing {
            if let Err(e) = msg.push_field(buf, line_start, name_len, name, content_end, line_end) {
                header_error = Some(e);
                indexing = false;
            }
        }
        line_start = line_end;
    }
}

/// The known name at `buf[at..]` followed by its colon, and its length (see
/// [`HeaderName::from_prefix`]); `None` for anything else, or fewer than 16 bytes left.
#[inline]
fn known_name_at(buf: &[u8], at: usize) -> Option<(HeaderName, usize)> {
    let block = buf.get(at..at + 16)?;
    HeaderName::from_prefix(block.try_into().expect("16 bytes"))
}

/// The length of the name at the start of `line`, after moving whitespace between it and its
/// colon after the colon ([`move_colon_after_name`]); the name is well-formed only when the
/// colon follows it.
#[inline]
fn name_before_colon(line: &mut [u8]) -> usize {
    let len = name_length(line);
    if line.get(len) == Some(&b':') {
        return len;
    }
    move_colon_after_name(line);
    name_length(line)
}

/// Length of the header name at the start of `line` (HTTP `tchar` bytes).
#[inline]
pub(super) fn name_length(line: &[u8]) -> usize {
    run_len(line, &HEADER_NAME_CHARS)
}

/// After `name_len` name bytes: the colon, then optional SP/HT. Returns where the value starts,
/// or `None` when the line is not `name ":"`.
#[inline]
fn value_start(line: &[u8], name_len: usize) -> Option<usize> {
    if name_len == 0 || line.get(name_len) != Some(&b':') {
        return None;
    }
    let v = name_len + 1;
    Some(
        v + line[v..]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count(),
    )
}

/// The slow path of header checking, for a section (already unfolded, so one line is one
/// logical line) known to hold a bad byte: check each line as httparse would, in order, and
/// return the first error, a line past [`MAX_HEADERS`] included.
#[cold]
fn first_bad_line(section: &[u8]) -> Option<ParseError> {
    let mut start = 0;
    let mut count = 0;
    while start < section.len() {
        let nl = memchr(b'\n', &section[start..]).map_or(section.len(), |i| i + start);
        let content_end = if nl > start && section[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let line = &section[start..content_end];
        match value_start(line, name_length(line)) {
            Some(v) if is_header_value(&line[v..]) || is_sip_quoted_value(&line[v..]) => {}
            _ => return Some(ParseError::BadHeaderLine),
        }
        if count == MAX_HEADERS {
            return Some(ParseError::TooManyHeaders);
        }
        count += 1;
        start = nl + 1;
    }
    None
}

impl Message<'_> {
    /// Index the logical line `buf[start..content_end]` (terminator up to `line_end`) whose name
    /// is `name_len` bytes long (and is `name`, when already recognised). Its value bytes are
    /// checked with the whole section.
    #[inline]
    fn push_field(
        &mut self,
        buf: &[u8],
        start: usize,
        name_len: usize,
        name: Option<HeaderName>,
        content_end: usize,
        line_end: usize,
    ) -> Result<(), ParseError> {
        // The value: from after the colon and the linear whitespace after it (SP and HT, and
        // what `trim` skips besides) to the end of the line, less trailing whitespace.
        let line = &buf[..content_end];
        let colon = start + name_len;
        // (A recognised name is followed by its colon.)
        if name.is_none() && (name_len == 0 || line.get(colon) != Some(&b':')) {
            return Err(ParseError::BadHeaderLine);
        }
        if self.count == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let mut value_start = colon + 1;
        let mut value_end = line.len();
        while value_start < value_end && is_lws(line[value_start]) {
            value_start += 1;
        }
        while value_end > value_start && is_lws(line[value_end - 1]) {
            value_end -= 1;
        }
        let name = name.unwrap_or_else(|| HeaderName::from_bytes(&line[start..colon]));
        let i = self.count;
        self.fields[i] = MaybeUninit::new(HeaderField {
            name,
            name_span: Span::new(start, colon),
            value: Span::new(value_start, value_end),
            line: Span::new(start, line_end),
        });
        self.count = i + 1;
        if self.first[name as usize] == NONE {
            self.first[name as usize] = i as u8;
        }
        Ok(())
    }
}

/// Header name bytes: HTTP's `tchar` (RFC 9110 section 5.6.2), as httparse accepts them.
static HEADER_NAME_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Header value bytes: HT, SP, visible ASCII and obs-text; no other control character. Written
/// without an early exit so that it vectorises.
#[inline]
fn is_header_value(v: &[u8]) -> bool {
    v.iter().fold(true, |ok, &b| {
        ok & ((b >= b' ' && b != 0x7f) | (b == b'\t'))
    })
}

/// SIP is not HTTP: inside a quoted string, `quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F)`
/// (RFC 3261 section 25.1) may escape a control character, as RFC 4475 section 3.1.1.2 does
/// with NUL, BEL and DEL. Any other control character is still refused.
#[cold]
fn is_sip_quoted_value(v: &[u8]) -> bool {
    let mut in_quotes = false;
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if in_quotes && b == b'\\' {
            match v.get(i + 1) {
                Some(b'\r' | b'\n') | None => return false,
                Some(_) => i += 2,
            }
            continue;
        }
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if (b < b' ' && b != b'\t') || b == 0x7f {
            return false;
        }
        i += 1;
    }
    true
}

/// `Name  : value` -> `Name:   value` (same length): RFC 3261's `HCOLON = *( SP / HTAB ) ":" SWS`
/// allows whitespace before the colon, httparse does not.
pub(super) fn move_colon_after_name(line: &mut [u8]) {
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

fn parse_start_line(buf: &[u8], line: Span) -> Result<(StartLine, Option<Uri<'_>>), ParseError> {
    let text = line.of(buf);
    if text.len() < 8 {
        return Err(ParseError::BadStartLine);
    }
    if text[..4].eq_ignore_ascii_case(b"SIP/") {
        return Ok((parse_status_line(text, line)?, None));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP each (RFC 4475
    // section 3.1.2.9 and 3.1.2.10 reject extra or trailing whitespace).
    let sp1 = find_byte(b' ', text).ok_or(ParseError::BadStartLine)?;
    let sp2 = find_byte(b' ', &text[sp1 + 1..])
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
    Ok((
        StartLine::Request {
            method: Method::from_bytes(method),
            method_span: Span::new(base, base + sp1),
            uri: Span::new(base + sp1 + 1, base + sp2),
        },
        Some(parsed),
    ))
}

fn parse_status_line(text: &[u8], line: Span) -> Result<StartLine, ParseError> {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (the phrase may be empty).
    let sp1 = find_byte(b' ', text).ok_or(ParseError::BadStartLine)?;
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
    // As written nearly always: one exact compare before the case-insensitive one.
    if v == b"SIP/2.0" || v.eq_ignore_ascii_case(b"SIP/2.0") {
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
    fn call_id_is_visible_ascii() {
        let with = |id: &[u8]| {
            let text = INVITE.replace("3848276298220188511@atlanta.example.com", "@ID@");
            let at = text.find("@ID@").unwrap();
            let mut b = text.as_bytes()[..at].to_vec();
            b.extend_from_slice(id);
            b.extend_from_slice(&text.as_bytes()[at + 4..]);
            let m = Message::parse(&mut b).unwrap();
            m.call_id().map(<[u8]>::to_vec)
        };
        for good in [
            &b"a"[..],
            b"a@b",
            b"f81d4fae-7dec@[::1]",
            b"Default_Label-12911,@0",
        ] {
            assert_eq!(with(good), Ok(good.to_vec()), "{good:?}");
        }
        // (Control bytes never get this far: they make the header line malformed.)
        for bad in [&b"caf\xc3\xa9"[..], b"a\xffb", b"\x80"] {
            assert_eq!(
                with(bad),
                Err(ParseError::Malformed(Required::CallId)),
                "{bad:?}"
            );
        }
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
    fn parse_in_builds_the_same_view_in_a_reused_slot() {
        let mut slot = MaybeUninit::uninit();
        let mut a = INVITE.as_bytes().to_vec();
        let mut b = INVITE.as_bytes().to_vec();
        let by_value = Message::parse(&mut b).unwrap();
        {
            let m = Message::parse_in(&mut slot, &mut a).unwrap();
            assert_eq!(m.fields(), by_value.fields());
            assert_eq!(m.body, by_value.body);
            assert_eq!(m.top_via(), by_value.top_via());
            assert_eq!(m.request_uri(), by_value.request_uri());
        }
        let mut bad = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n".to_vec();
        assert_eq!(
            Message::parse_in(&mut slot, &mut bad).err(),
            Some(ParseError::UnterminatedHeaders)
        );
        let mut c = INVITE.as_bytes().to_vec();
        let m = Message::parse_in(&mut slot, &mut c).unwrap();
        assert_eq!(m.fields().len(), 9);
        assert_eq!(m.call_id().unwrap(), by_value.call_id().unwrap());
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
        assert_eq!(parse(&same).1, Err(ParseError::ConflictingContentLength));
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
