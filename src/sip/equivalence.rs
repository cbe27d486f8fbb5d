//! The fast paths of the message layer against the straightforward code they replaced, on
//! generated input full of the bytes that matter:
//!
//! - the one-pass header scan against normalise-in-place then `httparse::parse_headers`
//!   (folding, whitespace before colons, control characters, obs-text, tchar-only name bytes);
//! - host and dotted-quad parsing against `std` and the previous label rules, and the label-wise
//!   host scan against the one-pass one;
//! - header-name recognition against a plain lowercase table, and the scan's 16-byte recognition
//!   against it;
//! - the one-pass Via and parameter parsers against the general ones.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::error::ParseError;
use std::net::Ipv4Addr;

use super::header::{trim, HeaderName};
use super::params;
use super::parse::{move_colon_after_name, HeaderField, Message, MAX_HEADERS};
use super::span::Span;
use super::uri::{parse_host, parse_host_prefix, parse_host_prefix_general, parse_ipv4, Host};
use super::via::Via;

/// What the reference makes of a header section: the fields, where the empty line starts and
/// where the body starts, or the error.
type Indexed = Result<(Vec<HeaderField>, usize, usize), ParseError>;

/// The previous implementation, verbatim but for returning its index instead of a `Message`
/// (`move_colon_after_name` is unchanged and shared).
fn reference(buf: &mut [u8], headers_start: usize) -> Indexed {
    let (headers_end, body_start) = normalize_headers(buf, headers_start)?;
    let section = &buf[headers_start..body_start];
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = match httparse::parse_headers(section, &mut raw) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        Ok(httparse::Status::Partial) => return Err(ParseError::UnterminatedHeaders),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(_) => return Err(ParseError::BadHeaderLine),
    };
    let mut fields: Vec<HeaderField> = parsed
        .iter()
        .map(|h| HeaderField {
            name: HeaderName::from_bytes(h.name.as_bytes()),
            name_span: Span::within(section, h.name.as_bytes(), headers_start),
            value: trim(buf, Span::within(section, h.value, headers_start)),
            line: Span::EMPTY,
        })
        .collect();
    for i in 0..fields.len() {
        let end = match fields.get(i + 1) {
            Some(next) => next.name_span.start as usize,
            None => headers_end,
        };
        fields[i].line = Span::new(fields[i].name_span.start as usize, end);
    }
    Ok((fields, headers_end, body_start))
}

fn normalize_headers(buf: &mut [u8], headers_start: usize) -> Result<(usize, usize), ParseError> {
    let mut line_start = headers_start;
    let mut logical_start = true;
    loop {
        if line_start >= buf.len() {
            return Err(ParseError::UnterminatedHeaders);
        }
        let nl = memchr::memchr(b'\n', &buf[line_start..])
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

const START: &[u8] = b"OPTIONS sip:x@example.com SIP/2.0\r\n";

/// Parse `START + section` both ways and compare. The framing and start line are shared code,
/// so only the header index and its errors are compared (no Content-Length in the section:
/// the body is the rest).
fn check(section: &[u8]) {
    let mut a = [START, section].concat();
    let mut b = a.clone();
    let expected = reference(&mut b, START.len());
    match Message::parse(&mut a) {
        Ok(m) => {
            let (fields, headers_end, body_start) = expected
                .unwrap_or_else(|e| panic!("reference says {e:?}, new parser accepts {section:?}"));
            assert_eq!(m.fields(), &fields[..], "{section:?}");
            assert_eq!(m.headers_end, headers_end, "{section:?}");
            assert_eq!(m.body.start as usize, body_start, "{section:?}");
        }
        Err(e) => match expected {
            Ok(_) if matches!(e, ParseError::BadContentLength | ParseError::TruncatedBody) => {}
            Ok(_) => panic!("new parser says {e:?}, reference accepts {section:?}"),
            Err(r) => assert_eq!(e, r, "{section:?}"),
        },
    }
    // In-place normalisation must leave the same bytes.
    assert_eq!(a, b, "{section:?}");
}

#[test]
fn hand_picked_sections() {
    for s in [
        &b"\r\n"[..],
        b"\n",
        b"Via: a\r\n\r\n",
        b"Via : a\r\n\r\n",
        b"Via \t: a\r\n\r\n",
        b"Via\r\n : a\r\n\r\n",
        b"v: a\r\n b\r\n\tc\r\n\r\n",
        b"X#Y: a\r\n\r\n",
        b"X#Y : a\r\n\r\n",
        b": a\r\n\r\n",
        b" Via: a\r\n\r\n",
        b"Via: a\rb\r\n\r\n",
        b"Via: a\x00b\r\n\r\n",
        b"Via: a\x7fb\r\n\r\n",
        b"Via: a\xc3\xa9\r\n\r\n",
        b"Via: a\r\r\n\r\n",
        b"Via:\r\n\r\n",
        b"Via:   \r\n\r\n",
        b"Via: a\r\nBad Line\r\nTo: b\r\n\r\n",
        b"Via: a\x01\r\nBad Line\r\n\r\n",
        b"Via: a\r\n\r\r\n",
        b"Via: a",
        b"Via: a\r\n",
    ] {
        check(s);
    }
}

#[test]
fn too_many_headers_against_a_bad_line() {
    let many = "X: y\r\n".repeat(MAX_HEADERS);
    check(format!("{many}\r\n").as_bytes());
    check(format!("{many}Z: 1\r\n\r\n").as_bytes());
    check(format!("{many}Bad\r\n\r\n").as_bytes());
    check(format!("{many}Z: \x01\r\n\r\n").as_bytes());
    check(format!("Bad\r\n{many}Z: 1\r\n\r\n").as_bytes());
    check(format!("Z: \x01\r\n{many}Z: 1\r\n\r\n").as_bytes());
}

fn section_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => prop::sample::select(&b"viaVIAtoCsq-"[..]),
        4 => Just(b':'),
        4 => Just(b' '),
        2 => Just(b'\t'),
        4 => Just(b'\r'),
        6 => Just(b'\n'),
        1 => prop::sample::select(&b"#;,\"<>=@"[..]),
        1 => prop::sample::select(&[0u8, 1, 0x1f, 0x7f, 0x80, 0xff][..]),
    ]
}

/// `cases` per property; failures are kept next to this file
/// (`equivalence.proptest-regressions`, replayed first on every run) rather than in a
/// `proptest-regressions/` directory at the top of the repository.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn one_pass_scan_matches_normalise_then_httparse(
        body in prop::collection::vec(section_byte(), 0..120),
        end in prop::sample::select(vec![&b"\r\n\r\n"[..], b"\n\n", b"\r\n", b""]),
    ) {
        check(&[&body[..], end].concat());
    }
}

/// The previous `parse_host` (for names and IPv4 addresses).
fn reference_host(raw: &[u8]) -> Option<Host<'_>> {
    if raw.is_empty() || raw[0] == b'[' {
        return None;
    }
    if !raw
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return None;
    }
    let trimmed = raw.strip_suffix(b".").unwrap_or(raw);
    let top = trimmed.rsplit(|&b| b == b'.').next()?;
    if top.first()?.is_ascii_digit() {
        let s = std::str::from_utf8(raw).ok()?;
        return s.parse::<Ipv4Addr>().ok().map(Host::V4);
    }
    for label in trimmed.split(|&b| b == b'.') {
        if label.is_empty() || label[0] == b'-' || label[label.len() - 1] == b'-' {
            return None;
        }
    }
    Some(Host::Name(raw))
}

/// Header names the slow way: lowercase, then look up.
fn reference_name(name: &[u8]) -> HeaderName {
    let lower = name.to_ascii_lowercase();
    let compact = [
        ("v", HeaderName::Via),
        ("f", HeaderName::From),
        ("t", HeaderName::To),
        ("i", HeaderName::CallId),
        ("m", HeaderName::Contact),
        ("l", HeaderName::ContentLength),
        ("c", HeaderName::ContentType),
        ("e", HeaderName::ContentEncoding),
        ("k", HeaderName::Supported),
        ("s", HeaderName::Subject),
        ("o", HeaderName::Event),
        ("u", HeaderName::AllowEvents),
        ("r", HeaderName::ReferTo),
        ("b", HeaderName::ReferredBy),
        ("x", HeaderName::SessionExpires),
        ("a", HeaderName::AcceptContact),
        ("j", HeaderName::RejectContact),
        ("d", HeaderName::RequestDisposition),
        ("y", HeaderName::Identity),
        ("n", HeaderName::IdentityInfo),
    ];
    if let Some((_, h)) = compact.iter().find(|(c, _)| c.as_bytes() == &lower[..]) {
        return *h;
    }
    HeaderName::ALL
        .into_iter()
        .find(|h| *h != HeaderName::Other && h.as_str().as_bytes().eq_ignore_ascii_case(&lower))
        .unwrap_or(HeaderName::Other)
}

#[test]
fn header_names_in_any_case_and_near_misses() {
    for h in HeaderName::ALL {
        let full = h.as_str();
        for variant in [
            full.to_string(),
            full.to_ascii_uppercase(),
            full.to_ascii_lowercase(),
            full.chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
            format!("{full}x"),
            full.replace('-', "_"),
            full.replace('-', "\r"),
            full.get(1..).unwrap_or("").to_string(),
        ] {
            let b = variant.as_bytes();
            assert_eq!(HeaderName::from_bytes(b), reference_name(b), "{variant:?}");
        }
    }
}

fn host_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => prop::sample::select(&b"0125abzAZ"[..]),
        3 => Just(b'.'),
        2 => Just(b'-'),
        1 => prop::sample::select(&b"_:[] 9"[..]),
    ]
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn hosts_match_std_and_the_label_rules(raw in prop::collection::vec(host_byte(), 0..24)) {
        prop_assert_eq!(parse_host(&raw), reference_host(&raw));
    }

    #[test]
    fn host_prefix_by_labels_agrees_with_the_one_pass_scan(
        raw in prop::collection::vec(host_byte(), 0..24)
    ) {
        prop_assert_eq!(parse_host_prefix(&raw), parse_host_prefix_general(&raw));
    }

    #[test]
    fn dotted_quads_match_std(raw in prop::collection::vec(
        prop::sample::select(&b"0123456789..."[..]), 0..18)
    ) {
        let std = std::str::from_utf8(&raw).unwrap().parse::<Ipv4Addr>().ok();
        prop_assert_eq!(parse_ipv4(&raw), std);
    }

    #[test]
    fn header_names_match_the_lowercase_table(name in prop::collection::vec(
        prop::sample::select(&b"viaVIAtoTOcallidCALLIDmaxforwardsrecordroutecontentlength--_\r"[..]), 1..22)
    ) {
        prop_assert_eq!(HeaderName::from_bytes(&name), reference_name(&name));
    }

    /// The header scan's 16-byte name recognition against `from_bytes` on the bytes before the
    /// first colon: a known name there, or nothing.
    #[test]
    fn name_prefixes_match_from_bytes(
        name in prop::collection::vec(
            prop::sample::select(&b"viaVIAtoTOcallidCALLIDcontactrecordroutecontentlengthmk--_\r\n :"[..]),
            0..18),
        known in prop::sample::select(HeaderName::ALL.to_vec()),
        use_known in any::<bool>(),
        upper in any::<u16>(),
        rest in prop::collection::vec(prop::sample::select(&b"x: \r\n"[..]), 16),
    ) {
        let mut block = if use_known { known.as_str().as_bytes().to_vec() } else { name };
        for (i, b) in block.iter_mut().enumerate().take(16) {
            if upper >> i & 1 == 1 {
                *b = b.to_ascii_uppercase();
            }
        }
        block.push(b':');
        block.extend_from_slice(&rest);
        let block: &[u8; 16] = block[..16].try_into().unwrap();
        let expected = block.iter().position(|&b| b == b':').and_then(|colon| {
            match HeaderName::from_bytes(&block[..colon]) {
                HeaderName::Other => None,
                name => Some((name, colon)),
            }
        });
        prop_assert_eq!(HeaderName::from_prefix(block), expected, "{:?}", block);
    }

    #[test]
    fn simple_parameter_scan_agrees_with_the_general_parser(raw in prop::collection::vec(
        prop::sample::select(&b"branchtagBRz9=;; \"1:[]"[..]), 0..30)
    ) {
        if let Some(found) = params::scan_simple(&raw, b"branch") {
            prop_assert!(params::validate(&raw));
            prop_assert_eq!(found, params::find(&raw, b"branch").flatten());
        }
    }

    #[test]
    fn common_via_form_agrees_with_the_general_parser(
        transport in prop::sample::select(vec!["UDP", "TCP", "tls", "", "U P"]),
        host in prop::sample::select(vec![
            "192.0.2.1", "host.example.com", "a-.b", "1.2.3", "[2001:db8::1]", "h_st", "",
            "x.", "01.2.3.4",
        ]),
        port in prop::sample::select(vec!["", ":5060", ":", ":70000", " : 5060"]),
        params in prop::sample::select(vec![
            "", ";branch=z9hG4bK1", ";rport;branch=z9hG4bKa;received=192.0.2.2", ";BRANCH",
            ";branch", ";branch=a;branch=b", ";;", ";", " ;branch=x", ";x=\"q\"",
            ";Received=192.0.2.9;RPORT=5070;rport;received=x;branch=z9hG4bK2",
            ";branch;BRANCH=z9hG4bK3;rport=", ";rport ;received=192.0.2.1",
        ]),
    ) {
        let text = format!("SIP/2.0/{transport} {host}{port}{params}");
        let b = text.as_bytes();
        let span = Span::new(0, b.len());
        let general = Via::parse_general_for_tests(b, span);
        prop_assert_eq!(Via::parse(b, span, 0), general, "{}", text);
        // Where `rport` is, as the parse noted it, is where a search finds it.
        if let Some(v) = general {
            prop_assert_eq!(v.rport_at(b), v.param_at(b, b"rport"), "{}", text);
        }
    }
}

/// One Via line value from pieces that exercise the single-value fast path and the split path.
fn via_line() -> impl Strategy<Value = String> {
    let element = prop::sample::select(vec![
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
        "SIP/2.0/TCP host.example.com;branch=z9hG4bKa;received=192.0.2.2",
        "SIP / 2.0 / UDP spaced.example.com ; branch = x",
        "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK6",
        "SIP/2.0/UDP h;x=\"a,b\"",
        "SIP/2.0/UDP h;x=<a,b>",
        "SIP/2.0/UDP bad..host",
        "SIP/2.0/UDP",
        "",
        " ",
    ]);
    let separator = prop::sample::select(vec![",", " , ", ",,", "\t,"]);
    (prop::collection::vec((element, separator), 1..4)).prop_map(|parts| {
        let mut line = String::new();
        for (k, (element, separator)) in parts.iter().enumerate() {
            if k > 0 {
                line.push_str(separator);
            }
            line.push_str(element);
        }
        line
    })
}

proptest! {
    #![proptest_config(config(2000))]

    /// `vias()` (single-value lines parsed whole, the top Via cached) against splitting every
    /// line at commas and parsing each element.
    #[test]
    fn vias_agree_with_splitting_every_line(lines in prop::collection::vec(via_line(), 0..4)) {
        let mut text = String::from("SIP/2.0 200 OK\r\n");
        for line in &lines {
            text.push_str("Via: ");
            text.push_str(line);
            text.push_str("\r\nTo: <sip:a@b>\r\n");
        }
        text.push_str("\r\n");
        let mut buf = text.into_bytes();
        let m = Message::parse(&mut buf).unwrap();
        let split: Vec<_> = m
            .values(HeaderName::Via)
            .map(|(field, span)| {
                Via::parse(m.buf(), span, field).ok_or(ParseError::Malformed(super::Required::Via))
            })
            .collect();
        prop_assert_eq!(m.vias().collect::<Vec<_>>(), split.clone());
        prop_assert_eq!(m.second_via(), split.get(1).copied());
        let top = split.first().copied().unwrap_or(Err(ParseError::Missing(super::Required::Via)));
        prop_assert_eq!(m.top_via(), top);
    }
}
