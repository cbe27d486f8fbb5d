//! Stream framing: where the first SIP message ends in the bytes received so far on a TCP or TLS
//! connection. No I/O: the transport owns the buffer and the socket.
//!
//! A datagram is one message; a stream is not, so the receiver has to find the boundaries
//! itself (RFC 3261 section 18.3): the header section ends at the first empty line, and the body
//! is exactly `Content-Length` octets, a header that is therefore mandatory on a stream. Between
//! messages, a client may send keep-alives (RFC 5626 section 4.4.1): a double CRLF "ping", which
//! the server answers with a single CRLF "pong"; any other CRLF before a start line is ignored
//! (RFC 3261 section 7.5).
//!
//! The answer comes in the style of httparse's `Status::{Complete(n), Partial}`: a [`Frame`]
//! saying how many bytes the first frame takes, or that more are needed, or a [`ParseError`]
//! saying the stream is broken. Errors are fatal to the connection: once the framing is lost
//! there is no telling where the next message starts, so the transport answers (`status()`,
//! `reason()`) when it can and closes.
//!
//! The framer only frames: the start line and the header lines are checked by the datagram
//! parser ([`Message::parse`](super::Message::parse)) on `buf[..len]` afterwards, which finds the
//! same header section end and the same Content-Length (both read the lines the same way: a bare
//! LF ends a line as a CRLF does, and a line starting with SP or HT continues the previous one).

use memchr::memchr;

use super::error::{ParseError, Required};
use super::header::{is_lws, HeaderName};
use super::parse::{name_length, parse_u64};

/// The keep-alive a client sends (RFC 5626 section 4.4.1): a double CRLF.
pub const PING: &[u8] = b"\r\n\r\n";
/// The answer to a [`PING`]: a single CRLF.
pub const PONG: &[u8] = b"\r\n";

/// What the bytes at the start of a stream buffer hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `buf[..len]` is one whole message: its header section and `Content-Length` octets of body.
    Message { len: usize },
    /// `buf[..len]` is a keep-alive ping: answer [`PONG`], then drop the bytes.
    Ping { len: usize },
    /// `buf[..len]` is a CRLF (or a bare CR or LF) before a start line: a pong or a stray line
    /// end, to be dropped without an answer.
    Skip { len: usize },
    /// The buffer holds the beginning of a frame, not all of it: read more.
    Partial,
}

impl Frame {
    /// How many bytes at the front of the buffer this frame takes (0 for [`Frame::Partial`]).
    pub fn consumed(self) -> usize {
        match self {
            Frame::Message { len } | Frame::Ping { len } | Frame::Skip { len } => len,
            Frame::Partial => 0,
        }
    }
}

/// Where the framer has got to in the current frame: what makes it resumable, so that a message
/// arriving a byte at a time is searched once in all, not once per read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for the end of the header section; no LF before `searched` starts one.
    Head { searched: usize },
    /// The header section is complete and the whole message is `len` bytes.
    Body { len: usize },
}

const START: State = State::Head { searched: 0 };

/// A resumable stream framer: one per connection, fed the connection's unconsumed bytes.
///
/// Contract: each call to [`frame`](Self::frame) gets the bytes from the start of the current
/// frame, the same ones as the call before plus any that arrived since. After a frame other than
/// [`Frame::Partial`] the caller drops its `consumed()` bytes from the front (the framer starts
/// afresh by itself); after an error the stream is broken and the connection should close.
///
/// With that contract, every byte is searched once however the message is cut into reads (a
/// peer feeding one byte at a time up to the limit costs linear time, not quadratic); the
/// header section is read a second time, once, to find its Content-Length.
///
/// ```
/// use sipshard::sip::{Frame, Framer, ParseError, PONG};
///
/// let mut framer = Framer::new(64 * 1024);
/// let mut buf: Vec<u8> = Vec::new();
/// let mut messages = Vec::new();
/// let mut answers = Vec::new();
/// // Two reads from a socket: a keep-alive ping, one message and the start of the next, then
/// // the rest of that one.
/// let reads: [&[u8]; 2] = [
///     b"\r\n\r\nOPTIONS sip:a@example.com SIP/2.0\r\nl: 0\r\n\r\nOPTIONS sip:b@exa",
///     b"mple.com SIP/2.0\r\nContent-Length: 2\r\n\r\nhi",
/// ];
/// for read in reads {
///     buf.extend_from_slice(read);
///     loop {
///         let frame = framer.frame(&buf)?;
///         match frame {
///             Frame::Message { len } => messages.push(buf[..len].to_vec()),
///             Frame::Ping { .. } => answers.push(PONG),
///             Frame::Skip { .. } => {}
///             Frame::Partial => break,
///         }
///         buf.drain(..frame.consumed());
///     }
/// }
/// assert_eq!(answers, [PONG]);
/// assert_eq!(messages.len(), 2);
/// assert!(messages[1].ends_with(b"\r\n\r\nhi"));
/// assert!(buf.is_empty());
///
/// // Without Content-Length a stream cannot be framed: 400, then close.
/// let err = Framer::new(1024).frame(b"BYE sip:a@example.com SIP/2.0\r\n\r\n").unwrap_err();
/// assert_eq!((err.status(), err.reason()), (400, "Bad Request - Missing Content-Length"));
/// # Ok::<(), ParseError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Framer {
    max_message: usize,
    state: State,
}

impl Framer {
    /// A framer refusing messages (header section and body) longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Framer {
        Framer {
            max_message,
            state: START,
        }
    }

    /// The largest message accepted, in bytes.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Forget the current frame (for a buffer that no longer starts where the last one did).
    pub fn reset(&mut self) {
        self.state = START;
    }

    /// The first frame of `buf`, the unconsumed bytes of the stream (see the contract above).
    pub fn frame(&mut self, buf: &[u8]) -> Result<Frame, ParseError> {
        let frame = self.step(buf);
        // A complete frame (or an error) ends the current one: the next call starts afresh.
        if frame != Ok(Frame::Partial) {
            self.state = START;
        }
        frame
    }

    fn step(&mut self, buf: &[u8]) -> Result<Frame, ParseError> {
        let searched = match self.state {
            State::Body { len } => return Ok(whole(buf, len)),
            State::Head { searched } => searched,
        };
        if buf.is_empty() {
            return Ok(Frame::Partial);
        }
        // Only ever true at the start of a frame: a message's first byte is neither CR nor LF.
        if let Some(frame) = keepalive(buf) {
            return Ok(frame);
        }
        // A terminator ending past the limit makes the message too large whatever its body, so
        // the search never looks further and a header section with no end costs at most
        // `max_message` bytes of buffer.
        let window = &buf[..buf.len().min(self.max_message)];
        match find_head_end(window, searched.min(window.len())) {
            HeadEnd::Found(body_start) => {
                let len = self.message_len(&buf[..body_start])?;
                self.state = State::Body { len };
                Ok(whole(buf, len))
            }
            HeadEnd::NotYet(_) if buf.len() >= self.max_message => Err(ParseError::TooLarge),
            HeadEnd::NotYet(searched) => {
                self.state = State::Head { searched };
                Ok(Frame::Partial)
            }
        }
    }

    /// The length of the message whose header section (start line to empty line) is `head`.
    fn message_len(&self, head: &[u8]) -> Result<usize, ParseError> {
        let body = content_length(head)?;
        // (`head` lies inside the window, so it is at most `max_message` long.)
        let room = (self.max_message - head.len()) as u64;
        if body > room {
            return Err(ParseError::TooLarge);
        }
        Ok(head.len() + body as usize)
    }
}

/// The first frame of `buf` on its own: [`Framer::frame`] with no state kept. It searches the
/// whole buffer on every call, so a transport calling it after each read would search a message
/// cut into `n` reads `n` times: use a [`Framer`] on a connection.
pub fn frame(buf: &[u8], max_message: usize) -> Result<Frame, ParseError> {
    Framer::new(max_message).frame(buf)
}

/// `Message { len }` once `len` bytes are there.
fn whole(buf: &[u8], len: usize) -> Frame {
    if buf.len() >= len {
        Frame::Message { len }
    } else {
        Frame::Partial
    }
}

/// The frame of CR and LF bytes at the start of `buf`, `None` when it starts with anything else.
///
/// A ping may arrive cut in two, and its first half looks like a pong: a buffer that could still
/// become a ping (`\r`, `\r\n`, `\r\n\r`) waits for more bytes rather than skip a CRLF that would
/// leave the other half unanswered. (A server is sent pings; a lone pong waiting for the next
/// message costs nothing.)
fn keepalive(buf: &[u8]) -> Option<Frame> {
    if !matches!(buf.first(), Some(b'\r' | b'\n')) {
        return None;
    }
    Some(if buf.starts_with(PING) {
        Frame::Ping { len: PING.len() }
    } else if PING.starts_with(buf) {
        Frame::Partial
    } else if buf.starts_with(PONG) {
        Frame::Skip { len: PONG.len() }
    } else {
        // A bare CR or LF: what the datagram parser skips too.
        Frame::Skip { len: 1 }
    })
}

/// What the search for the end of the header section found.
#[derive(Debug, PartialEq, Eq)]
enum HeadEnd {
    /// The body starts here, just after the empty line.
    Found(usize),
    /// Not in the buffer yet; no terminator starts before this position.
    NotYet(usize),
}

/// The end of the header section: the first LF followed by an empty line, `\n` or `\r\n`, as the
/// datagram parser reads it (RFC 3261 section 7.5 wants CRLF; a bare LF is accepted as the
/// parser accepts it). `buf` starts with the start line, so its LF is the first one, and an
/// empty line right after it ends an empty header section.
///
/// The search starts at `from`; an LF too close to the end of `buf` to tell is where the next
/// search resumes.
fn find_head_end(buf: &[u8], from: usize) -> HeadEnd {
    let mut at = from;
    while let Some(i) = memchr(b'\n', &buf[at..]) {
        let lf = at + i;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return HeadEnd::Found(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return HeadEnd::Found(lf + 3),
            (None, _) | (Some(b'\r'), None) => return HeadEnd::NotYet(lf),
            _ => at = lf + 1,
        }
    }
    HeadEnd::NotYet(buf.len())
}

/// The body length a header section declares: its Content-Length headers (compact `l`
/// included), which must be there once and be a number (as the datagram parser requires of a
/// datagram that has any).
fn content_length(head: &[u8]) -> Result<u64, ParseError> {
    let mut length = None;
    for line in HeaderLines::after_start_line(head) {
        let Some(value) = content_length_value(line) else {
            continue;
        };
        let n = parse_u64(trim_lws(value)).ok_or(ParseError::BadContentLength)?;
        if length.replace(n).is_some() {
            return Err(ParseError::ConflictingContentLength);
        }
    }
    length.ok_or(ParseError::Missing(Required::ContentLength))
}

/// The raw value (after the colon) of a Content-Length line, `None` for any other line.
///
/// The name is read as the datagram parser reads it: a run of `tchar`, then optional SP or HT
/// before the colon. A line the parser would refuse is not a Content-Length line here; the
/// parser reports it when the framed message is parsed.
fn content_length_value(line: &[u8]) -> Option<&[u8]> {
    let name_len = name_length(line);
    if name_len == 0 || HeaderName::from_bytes(&line[..name_len]) != HeaderName::ContentLength {
        return None;
    }
    let rest = &line[name_len..];
    let ws = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    rest[ws..].strip_prefix(b":")
}

/// `v` without leading and trailing whitespace, line ends included: the CRLF + SP of a folded
/// line is whitespace the parser turns into spaces.
fn trim_lws(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_lws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_lws(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// The logical header lines of a complete header section, continuation lines included (raw:
/// the folds are still CRLF + SP), up to the empty line.
struct HeaderLines<'a> {
    head: &'a [u8],
    at: usize,
}

impl<'a> HeaderLines<'a> {
    /// The lines of `head` after its start line.
    fn after_start_line(head: &'a [u8]) -> HeaderLines<'a> {
        let at = memchr(b'\n', head).map_or(head.len(), |lf| lf + 1);
        HeaderLines { head, at }
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut lf = start + memchr(b'\n', &self.head[start..])?;
        // The empty line (its CR, if any, is its only byte) ends the section.
        if lf == start || (lf == start + 1 && self.head[start] == b'\r') {
            self.at = self.head.len();
            return None;
        }
        while matches!(self.head.get(lf + 1), Some(b' ' | b'\t')) {
            lf += 1 + memchr(b'\n', &self.head[lf + 1..])?;
        }
        self.at = lf + 1;
        Some(&self.head[start..lf])
    }
}

#[cfg(test)]
mod tests;
