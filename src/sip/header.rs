//! Header names and multi-value splitting.
//!
//! Names are recognised once, when the message is indexed, by length and then a case-insensitive
//! compare (the approach of Kamailio's `parse_hname2.c`); compact forms (RFC 3261 section 7.3.3 and
//! later RFCs) map to the same name, so nothing downstream ever sees `v` or `i`.

use super::scan::{eq_folded_16, find_byte2, find_byte3, first_of_16};
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
            return COMPACT_BY_BYTE[usize::from(name[0])];
        }
        // Length and first letter leave at most one candidate (call-id and contact share both:
        // the second letter tells them apart), so each name costs one table look-up and one
        // case-insensitive compare.
        let slot = match name.len() {
            len @ 2..=MAX_NAME_LEN => NAME_SLOTS[len][usize::from(name[0] & 0x1f)],
            _ => return Other,
        };
        let (mut full, mut id) = match slot {
            0 => return Other,
            k => LONG_NAMES[usize::from(k) - 1],
        };
        if id == CallId && name[1] | 0x20 == b'o' {
            (full, id) = (b"contact", Contact);
        }
        if eq_lowercase_name(name, full) {
            id
        } else {
            Other
        }
    }

    /// Recognise the known name (full or compact, any case) that `block` starts with, directly
    /// followed by `:`, and return it with its length; `None` when `block` does not start so
    /// (an unknown name, one of 16 bytes or more, or no colon right after the name).
    ///
    /// The header scan's fast path: the colon's position gives the length, the length and the
    /// first two bytes the only candidate, and one 16-byte compare settles it. Whatever this
    /// returns, [`from_bytes`](Self::from_bytes) returns for the bytes before the colon.
    #[inline]
    pub fn from_prefix(block: &[u8; 16]) -> Option<(HeaderName, usize)> {
        let len = first_of_16(block, b':')?;
        let slot = PREFIX_SLOTS[len & 15][prefix_hash(block[0], block[1])];
        let p = &PREFIXES[usize::from(slot) % PREFIXES.len()];
        eq_folded_16(block, &p.fold, &p.text, len + 1).then_some((p.name, len))
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

/// The long names, lowercase (`contact` is found through `call-id`, see [`NAME_SLOTS`]).
const LONG_NAMES: [(&[u8], HeaderName); 33] = {
    use HeaderName::*;
    [
        (b"to", To),
        (b"via", Via),
        (b"from", From),
        (b"cseq", CSeq),
        (b"route", Route),
        (b"allow", Allow),
        (b"event", Event),
        (b"call-id", CallId),
        (b"expires", Expires),
        (b"require", Require),
        (b"subject", Subject),
        (b"refer-to", ReferTo),
        (b"identity", Identity),
        (b"supported", Supported),
        (b"unsupported", Unsupported),
        (b"min-expires", MinExpires),
        (b"referred-by", ReferredBy),
        (b"max-forwards", MaxForwards),
        (b"content-type", ContentType),
        (b"record-route", RecordRoute),
        (b"allow-events", AllowEvents),
        (b"authorization", Authorization),
        (b"proxy-require", ProxyRequire),
        (b"identity-info", IdentityInfo),
        (b"content-length", ContentLength),
        (b"accept-contact", AcceptContact),
        (b"reject-contact", RejectContact),
        (b"session-expires", SessionExpires),
        (b"www-authenticate", WwwAuthenticate),
        (b"content-encoding", ContentEncoding),
        (b"proxy-authenticate", ProxyAuthenticate),
        (b"proxy-authorization", ProxyAuthorization),
        (b"request-disposition", RequestDisposition),
    ]
};

const MAX_NAME_LEN: usize = 19;

/// The compact forms (RFC 3261 section 7.3.3 and later RFCs).
const COMPACT_NAMES: [(u8, HeaderName); 20] = {
    use HeaderName::*;
    [
        (b'v', Via),
        (b'f', From),
        (b't', To),
        (b'i', CallId),
        (b'm', Contact),
        (b'l', ContentLength),
        (b'c', ContentType),
        (b'e', ContentEncoding),
        (b'k', Supported),
        (b's', Subject),
        (b'o', Event),
        (b'u', AllowEvents),
        (b'r', ReferTo),
        (b'b', ReferredBy),
        (b'x', SessionExpires),
        (b'a', AcceptContact),
        (b'j', RejectContact),
        (b'd', RequestDisposition),
        (b'y', Identity),
        (b'n', IdentityInfo),
    ]
};

/// A one-byte name's meaning, any case.
static COMPACT_BY_BYTE: [HeaderName; 256] = {
    let mut t = [HeaderName::Other; 256];
    let mut k = 0;
    while k < COMPACT_NAMES.len() {
        let (letter, name) = COMPACT_NAMES[k];
        t[letter as usize] = name;
        t[letter.to_ascii_uppercase() as usize] = name;
        k += 1;
    }
    t
};

/// One name [`HeaderName::from_prefix`] can recognise: `text` is the name in lowercase and its
/// colon, zero-padded; `fold` is 0x20 at its letters.
struct Prefix {
    text: [u8; 16],
    fold: [u8; 16],
    name: HeaderName,
}

/// Where [`PREFIX_SLOTS`] sends a name: its first two bytes (the second is the colon for a
/// compact form), summed, low five bits, which ignores ASCII case; together with the length it
/// tells every name under 16 bytes apart (the table's construction checks it).
#[inline]
const fn prefix_hash(first: u8, second: u8) -> usize {
    (first.wrapping_add(second) & 0x1f) as usize
}

/// Entry 0 matches nothing: its text is all zeros, and the colon a block has after the name is
/// not zero.
const NO_PREFIX: Prefix = Prefix {
    text: [0; 16],
    fold: [0; 16],
    name: HeaderName::Other,
};

/// The compact forms, then every long name under 16 bytes (`contact` too).
const PREFIX_COUNT: usize = 1 + COMPACT_NAMES.len() + 29;

/// [`PREFIX_COUNT`] entries and [`NO_PREFIX`] up to a power of two, so that an index taken
/// modulo the length needs no bounds check.
static PREFIXES: [Prefix; 64] = prefix_tables().0;
static PREFIX_SLOTS: [[u8; 32]; 16] = prefix_tables().1;

const fn prefix_tables() -> ([Prefix; 64], [[u8; 32]; 16]) {
    const fn entry(lower: &[u8], name: HeaderName) -> Prefix {
        let mut p = Prefix {
            text: [0; 16],
            fold: [0; 16],
            name,
        };
        let mut i = 0;
        while i < lower.len() {
            p.text[i] = lower[i];
            p.fold[i] = if lower[i].is_ascii_lowercase() {
                0x20
            } else {
                0
            };
            i += 1;
        }
        p.text[i] = b':';
        p
    }
    let mut prefixes = [NO_PREFIX; 64];
    let mut slots = [[0u8; 32]; 16];
    let mut n = 1;
    let mut k = 0;
    while k < COMPACT_NAMES.len() + LONG_NAMES.len() + 1 {
        let (lower, name): (&[u8], HeaderName) = if k < COMPACT_NAMES.len() {
            (
                std::slice::from_ref(&COMPACT_NAMES[k].0),
                COMPACT_NAMES[k].1,
            )
        } else if k < COMPACT_NAMES.len() + LONG_NAMES.len() {
            LONG_NAMES[k - COMPACT_NAMES.len()]
        } else {
            (b"contact", HeaderName::Contact)
        };
        k += 1;
        if lower.len() >= 16 {
            continue;
        }
        let p = entry(lower, name);
        let slot = &mut slots[lower.len()][prefix_hash(p.text[0], p.text[1])];
        assert!(*slot == 0, "two names share a length and prefix hash");
        *slot = n as u8;
        prefixes[n] = p;
        n += 1;
    }
    assert!(
        n == PREFIX_COUNT,
        "PREFIX_COUNT is the number of names under 16 bytes"
    );
    (prefixes, slots)
}

/// `NAME_SLOTS[len][first letter & 0x1f]` is 1 + the index in [`LONG_NAMES`] of the only name
/// with that length and first letter, or 0. Other bytes than letters may land on a slot; the
/// compare that follows rejects them.
static NAME_SLOTS: [[u8; 32]; MAX_NAME_LEN + 1] = {
    let mut t = [[0u8; 32]; MAX_NAME_LEN + 1];
    let mut k = 0;
    while k < LONG_NAMES.len() {
        let name = LONG_NAMES[k].0;
        let (len, letter) = (name.len(), (name[0] & 0x1f) as usize);
        assert!(
            t[len][letter] == 0,
            "two long names share a length and first letter"
        );
        t[len][letter] = k as u8 + 1;
        k += 1;
    }
    t
};

/// `name` equals `lit` ignoring ASCII case, where `lit` is lowercase letters and `-` only: a
/// letter position accepts exactly `l` or `l - 0x20` (OR-ing in 0x20), any other position only
/// itself. Compared as words (two overlapping loads cover any length from 4 to 16, three up to
/// 24), without a per-byte loop.
#[inline]
fn eq_lowercase_name(name: &[u8], lit: &[u8]) -> bool {
    #[inline(always)]
    fn eq_word(n: u64, l: u64) -> bool {
        n | ((l & 0x4040_4040_4040_4040) >> 1) == l
    }
    #[inline(always)]
    fn w64(s: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(s[at..at + 8].try_into().unwrap())
    }
    #[inline(always)]
    fn w32(s: &[u8], at: usize) -> u64 {
        u64::from(u32::from_le_bytes(s[at..at + 4].try_into().unwrap()))
    }
    let n = name.len();
    if n != lit.len() {
        return false;
    }
    match n {
        0..=3 => name
            .iter()
            .zip(lit)
            .all(|(&n, &l)| n | ((l & 0x40) >> 1) == l),
        4..=7 => eq_word(w32(name, 0), w32(lit, 0)) & eq_word(w32(name, n - 4), w32(lit, n - 4)),
        8..=16 => eq_word(w64(name, 0), w64(lit, 0)) & eq_word(w64(name, n - 8), w64(lit, n - 8)),
        _ => {
            eq_word(w64(name, 0), w64(lit, 0))
                & eq_word(w64(name, 8), w64(lit, 8))
                & eq_word(w64(name, n - 8), w64(lit, n - 8))
        }
    }
}

/// Whether a comma-separated header value has an empty element: nothing at all, or only
/// whitespace before, between or after its commas (commas inside quoted strings do not count).
/// [`CommaSplit`] skips such elements; a header that elements rely on refuses them.
pub fn has_empty_element(value: &[u8]) -> bool {
    // Nearly every value is one element: no comma, no quote, one search (values are trimmed).
    if find_byte2(b',', b'"', value).is_none() {
        return value.iter().all(|&b| b == b' ' || b == b'\t');
    }
    let mut element_empty = true;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b',' if element_empty => return true,
            b',' => element_empty = true,
            b' ' | b'\t' => {}
            b'"' => {
                element_empty = false;
                i += 1;
                while i < value.len() && value[i] != b'"' {
                    i += 1 + usize::from(value[i] == b'\\');
                }
            }
            _ => element_empty = false,
        }
        i += 1;
    }
    element_empty
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
            let end = self.end;
            let mut in_angle = false;
            let mut i = start;
            // Jump between the bytes that matter: a comma ends the element unless inside angle
            // brackets; a double quote starts a quoted string (also inside brackets), where a
            // backslash escapes the next byte.
            while i < end {
                let hay = &self.buf[i..end];
                let hit = if in_angle {
                    find_byte2(b'>', b'"', hay)
                } else {
                    find_byte3(b',', b'"', b'<', hay)
                };
                let Some(k) = hit else {
                    i = end;
                    break;
                };
                i += k;
                match self.buf[i] {
                    b',' => break,
                    b'<' => in_angle = true,
                    b'>' => in_angle = false,
                    _ => {
                        i += 1;
                        while i < end {
                            match self.buf[i] {
                                b'\\' => i += 1,
                                b'"' => break,
                                _ => {}
                            }
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            let stop = i.min(end);
            self.pos = stop + 1;
            let element = trim(self.buf, Span::new(start, stop));
            if !element.is_empty() {
                return Some(element);
            }
        }
    }
}

/// Trim linear whitespace (SP, HT, and the CR/LF left by in-place unfolding) from both ends.
#[inline]
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
#[inline]
pub const fn is_token(b: u8) -> bool {
    TOKEN_CHARS[b as usize]
}

/// Length of the run of bytes at the start of `s` that `table` marks: the inner loop of every
/// tokenizer here, as an index loop (fewer instructions a byte than `take_while(..).count()`,
/// whose loop keeps a pointer and a count).
#[inline(always)]
pub fn run_len(s: &[u8], table: &[bool; 256]) -> usize {
    let mut i = 0;
    while i < s.len() && table[usize::from(s[i])] {
        i += 1;
    }
    i
}

/// Length of the run of `token` bytes at the start of `s`.
#[inline(always)]
pub fn token_len(s: &[u8]) -> usize {
    run_len(s, &TOKEN_CHARS)
}

/// [`is_token`] as a table: one load per byte instead of a chain of range compares.
pub(super) const TOKEN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = matches!(i as u8,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_elements_are_found_outside_quotes() {
        for (value, empty) in [
            ("", true),
            ("a", false),
            ("a, b", false),
            ("a,", true),
            (", a", true),
            ("a, ,b", true),
            ("a,,b", true),
            ("x=\"p,,q\", b", false),
            ("x=\"p\\\",\", b", false),
            ("a , b", false),
        ] {
            assert_eq!(has_empty_element(value.as_bytes()), empty, "{value:?}");
        }
    }

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
