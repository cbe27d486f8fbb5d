//! Parse errors, each mapped to the SIP answer a server should give.
//!
//! An error is a small `Copy` value named after what was wrong. The proxy turns it into a reply
//! (`status()`, `reason()`) when the message can be answered at all, and into a counted drop when it
//! cannot (`answerable()` is false: a response, or a request with no usable Via to send a reply to).

use std::fmt;

/// Why a datagram could not be accepted as a SIP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Nothing but whitespace, or shorter than any SIP start line.
    Empty,
    /// The start line is neither `METHOD URI SIP/2.0` nor `SIP/2.0 CODE REASON`.
    BadStartLine,
    /// The method token contains characters outside RFC 3261 `token`.
    BadMethod,
    /// The Request-URI does not parse (RFC 3261 section 19.1, 25.1).
    BadRequestUri,
    /// A version other than SIP/2.0 (RFC 3261 section 8.2.2 ... 505).
    VersionNotSupported,
    /// Status code is not three digits in 100..=699.
    BadStatusCode,
    /// The header section is not terminated by an empty line.
    UnterminatedHeaders,
    /// A header line is not `name: value`, or its value holds a control character.
    BadHeaderLine,
    /// More header lines than the index has room for.
    TooManyHeaders,
    /// Content-Length is non-numeric, negative or overflowing.
    BadContentLength,
    /// Content-Length given more than once (even with equal values: one framing, read one way
    /// by every element on the path).
    ConflictingContentLength,
    /// Content-Length larger than the bytes that arrived (RFC 3261 section 18.3).
    TruncatedBody,
    /// The datagram is larger than the configured maximum; on a stream, the message (or its
    /// header section, before it has ended) is.
    TooLarge,
    /// A mandatory header is absent (RFC 3261 section 8.1.1; Content-Length on a stream, 18.3).
    Missing(Required),
    /// A mandatory header is present but does not parse.
    Malformed(Required),
    /// CSeq method differs from the request method (RFC 3261 section 8.1.1.5).
    CSeqMethodMismatch,
    /// Max-Forwards is not a number in 0..=255 (RFC 3261 section 20.22 allows 0-255 in practice).
    BadMaxForwards,
    /// Some other header the proxy needed does not parse (Contact, Route, Expires ...).
    BadHeader(&'static str),
}

/// The headers every request must carry (RFC 3261 section 8.1.1), and the one every message on
/// a stream must carry (Content-Length, RFC 3261 section 18.3: without it the receiver cannot
/// tell where the message ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Required {
    Via,
    From,
    To,
    CallId,
    CSeq,
    ContentLength,
}

impl Required {
    pub fn name(self) -> &'static str {
        match self {
            Required::Via => "Via",
            Required::From => "From",
            Required::To => "To",
            Required::CallId => "Call-ID",
            Required::CSeq => "CSeq",
            Required::ContentLength => "Content-Length",
        }
    }
}

impl ParseError {
    /// The status code a server answers this error with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::VersionNotSupported => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }

    /// The reason phrase to answer with: the standard phrase, refined with what was wrong.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Empty => "Bad Request - Empty Message",
            ParseError::BadStartLine => "Bad Request - Malformed Start Line",
            ParseError::BadMethod => "Bad Request - Malformed Method",
            ParseError::BadRequestUri => "Bad Request - Malformed Request-URI",
            ParseError::VersionNotSupported => "Version Not Supported",
            ParseError::BadStatusCode => "Bad Request - Malformed Status Code",
            ParseError::UnterminatedHeaders => "Bad Request - Unterminated Header Section",
            ParseError::BadHeaderLine => "Bad Request - Malformed Header Line",
            ParseError::TooManyHeaders => "Bad Request - Too Many Headers",
            ParseError::BadContentLength => "Bad Request - Malformed Content-Length",
            ParseError::ConflictingContentLength => "Bad Request - Repeated Content-Length",
            ParseError::TruncatedBody => "Bad Request - Content-Length Exceeds Message",
            ParseError::TooLarge => "Message Too Large",
            ParseError::Missing(Required::Via) => "Bad Request - Missing Via",
            ParseError::Missing(Required::From) => "Bad Request - Missing From",
            ParseError::Missing(Required::To) => "Bad Request - Missing To",
            ParseError::Missing(Required::CallId) => "Bad Request - Missing Call-ID",
            ParseError::Missing(Required::CSeq) => "Bad Request - Missing CSeq",
            ParseError::Missing(Required::ContentLength) => "Bad Request - Missing Content-Length",
            ParseError::Malformed(Required::Via) => "Bad Request - Malformed Via",
            ParseError::Malformed(Required::From) => "Bad Request - Malformed From",
            ParseError::Malformed(Required::To) => "Bad Request - Malformed To",
            ParseError::Malformed(Required::CallId) => "Bad Request - Malformed Call-ID",
            ParseError::Malformed(Required::CSeq) => "Bad Request - Malformed CSeq",
            ParseError::Malformed(Required::ContentLength) => {
                "Bad Request - Malformed Content-Length"
            }
            ParseError::CSeqMethodMismatch => "Bad Request - CSeq Method Mismatch",
            ParseError::BadMaxForwards => "Bad Request - Malformed Max-Forwards",
            ParseError::BadHeader(reason) => reason,
        }
    }

    /// Every value [`kind`](Self::kind) can return, in a fixed order (metrics slots).
    pub const KINDS: [&'static str; 18] = [
        "empty",
        "start_line",
        "method",
        "request_uri",
        "version",
        "status_code",
        "unterminated",
        "header_line",
        "too_many_headers",
        "content_length",
        "content_length_conflict",
        "truncated_body",
        "too_large",
        "missing_header",
        "malformed_header",
        "cseq_method",
        "max_forwards",
        "bad_header",
    ];

    /// A short stable name for counters and logs (`parse_errors{kind="..."}`).
    pub fn kind(self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::BadStartLine => "start_line",
            ParseError::BadMethod => "method",
            ParseError::BadRequestUri => "request_uri",
            ParseError::VersionNotSupported => "version",
            ParseError::BadStatusCode => "status_code",
            ParseError::UnterminatedHeaders => "unterminated",
            ParseError::BadHeaderLine => "header_line",
            ParseError::TooManyHeaders => "too_many_headers",
            ParseError::BadContentLength => "content_length",
            ParseError::ConflictingContentLength => "content_length_conflict",
            ParseError::TruncatedBody => "truncated_body",
            ParseError::TooLarge => "too_large",
            ParseError::Missing(_) => "missing_header",
            ParseError::Malformed(_) => "malformed_header",
            ParseError::CSeqMethodMismatch => "cseq_method",
            ParseError::BadMaxForwards => "max_forwards",
            ParseError::BadHeader(_) => "bad_header",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed() {
        let all = [
            ParseError::Empty,
            ParseError::BadStartLine,
            ParseError::BadMethod,
            ParseError::BadRequestUri,
            ParseError::VersionNotSupported,
            ParseError::BadStatusCode,
            ParseError::UnterminatedHeaders,
            ParseError::BadHeaderLine,
            ParseError::TooManyHeaders,
            ParseError::BadContentLength,
            ParseError::ConflictingContentLength,
            ParseError::TruncatedBody,
            ParseError::TooLarge,
            ParseError::Missing(Required::Via),
            ParseError::Malformed(Required::To),
            ParseError::CSeqMethodMismatch,
            ParseError::BadMaxForwards,
            ParseError::BadHeader("x"),
        ];
        for e in all {
            assert!(ParseError::KINDS.contains(&e.kind()), "{}", e.kind());
        }
        assert_eq!(all.len(), ParseError::KINDS.len());
    }
}
