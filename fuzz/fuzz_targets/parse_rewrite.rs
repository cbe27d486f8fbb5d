#![no_main]
//! Arbitrary bytes through the message layer.
//!
//! When they parse: every accessor runs and their answers must agree with each other, the
//! spans must lie where they belong, parsing the normalised message again must give the same
//! index, and `validate_request` passing must mean the headers it checked all parse. Then the
//! edits a proxy makes (a Via line on top, a new Request-URI, the bottom Via value removed) are
//! applied in place and checked against copy-based splicing, and the result must re-parse with
//! one more header line (one less when a whole Via line went), the expected lines and values,
//! and the body unchanged.

use libfuzzer_sys::fuzz_target;
use sipshard::sip::header::{is_token, CommaSplit};
use sipshard::sip::parse::MAX_HEADERS;
use sipshard::sip::rewrite::DEFAULT_HEADROOM;
use sipshard::sip::{
    Contact, Edits, HeaderName, Message, PacketBuf, ParseError, Required, Span, Via,
};

const NEW_VIA: &[u8] = b"Via: SIP/2.0/UDP fuzz.example.net:5060;branch=z9hG4bKfuzz\r\n";
const NEW_BRANCH: &[u8] = b"z9hG4bKfuzz";
const NEW_RURI: &[u8] = b"sip:fuzz@example.net";

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let m = match Message::parse(&mut buf) {
        Ok(m) => m,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 505 | 513));
            assert!(!e.reason().is_empty() && !e.kind().is_empty());
            return;
        }
    };
    check_index(&m, data.len());
    exercise(&m);

    // Everything the edits and the checks need, taken before the view is dropped.
    let framed = m.framed_len();
    let count = m.fields().len();
    let body = m.bytes(m.body).to_vec();
    let lines: Vec<(Vec<u8>, Vec<u8>)> = m
        .fields()
        .iter()
        .map(|f| (m.bytes(f.name_span).to_vec(), m.bytes(f.value).to_vec()))
        .collect();
    let insert_at = m
        .fields()
        .first()
        .map_or(m.headers_end, |f| f.line.start as usize);
    let ruri = m.request_uri_span();
    let vias: Vec<(usize, Span)> = m.values(HeaderName::Via).collect();
    // The bottom Via value: the whole line when it is alone on it, else from the end of the
    // value before it.
    let removal = match vias.last() {
        Some(&(field, value)) if vias.len() >= 2 => {
            let on_line: Vec<Span> = vias
                .iter()
                .filter(|(f, _)| *f == field)
                .map(|&(_, s)| s)
                .collect();
            if on_line.len() == 1 {
                Some((field, m.field_at(field).line, None))
            } else {
                let prev = on_line[on_line.len() - 2];
                let f = m.field_at(field);
                // The line's value with the cut taken out (empty list elements after the last
                // value, as in `a, b ,,`, stay).
                let kept = [
                    m.bytes(Span::new(f.value.start as usize, prev.end as usize)),
                    m.bytes(Span::new(value.end as usize, f.value.end as usize)),
                ]
                .concat();
                Some((
                    field,
                    Span::new(prev.end as usize, value.end as usize),
                    Some(kept),
                ))
            }
        }
        _ => None,
    };

    // Parsing the normalised message again gives the same index.
    let normalized = buf[..framed].to_vec();
    let mut again = normalized.clone();
    let m1 = Message::parse(&mut again).expect("a parsed message parses again");
    assert_eq!(m1.fields().len(), count);
    assert_eq!(m1.bytes(m1.body), &body[..]);
    for (f, (name, value)) in m1.fields().iter().zip(&lines) {
        assert_eq!(m1.bytes(f.name_span), &name[..]);
        assert_eq!(m1.bytes(f.value), &value[..]);
    }
    assert_eq!(again, normalized, "normalisation is a fixpoint");

    // The proxy's edits, in place, against splicing a copy.
    let mut edits = Edits::new();
    let mut reference: Vec<(Span, &[u8])> = Vec::new();
    edits.insert(insert_at, NEW_VIA);
    reference.push((Span::new(insert_at, insert_at), NEW_VIA));
    if let Some(span) = ruri {
        edits.replace(span, NEW_RURI);
        reference.push((span, NEW_RURI));
    }
    if let Some((_, span, _)) = &removal {
        edits.remove(*span);
        reference.push((*span, b""));
    }
    let mut pkt = PacketBuf::from_message(&normalized, DEFAULT_HEADROOM);
    edits
        .apply(&mut pkt)
        .expect("disjoint edits within the headroom");
    let mut spliced = normalized.clone();
    let mut order: Vec<usize> = (0..reference.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((reference[i].0.start, reference[i].0.end, i)));
    for i in order {
        let (span, text) = reference[i];
        spliced.splice(span.start as usize..span.end as usize, text.iter().copied());
    }
    assert_eq!(pkt.as_slice(), &spliced[..]);

    // The result re-parses as expected.
    let removed_line = matches!(removal, Some((_, _, None)));
    let expected_count = count + 1 - usize::from(removed_line);
    let mut out = pkt.as_slice().to_vec();
    let out_len = out.len();
    let m2 = match Message::parse(&mut out) {
        Ok(m2) => m2,
        Err(ParseError::TooManyHeaders) if expected_count > MAX_HEADERS => return,
        Err(e) => panic!("the rewritten message does not parse: {e:?}"),
    };
    assert_eq!(m2.fields().len(), expected_count);
    assert_eq!(m2.bytes(m2.body), &body[..]);
    assert_eq!(m2.framed_len(), out_len);
    let top = m2.top_via().expect("the inserted Via parses");
    assert_eq!(top.branch(), Some(NEW_BRANCH));
    assert_eq!(top.field, 0);
    if ruri.is_some() {
        assert_eq!(m2.bytes(m2.request_uri_span().unwrap()), NEW_RURI);
    }
    assert_eq!(
        m2.values(HeaderName::Via).count(),
        vias.len() + 1 - usize::from(removal.is_some())
    );
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = lines;
    if let Some((field, _, kept)) = removal {
        match kept {
            None => {
                want.remove(field);
            }
            Some(kept) => want[field].1 = kept,
        }
    }
    want.insert(0, (b"Via".to_vec(), NEW_VIA[5..NEW_VIA.len() - 2].to_vec()));
    for (f, (name, value)) in m2.fields().iter().zip(&want) {
        assert_eq!(m2.bytes(f.name_span), &name[..]);
        assert_eq!(m2.bytes(f.value), &value[..]);
    }
});

/// Spans lie where they belong and agree with the indexes built from them.
fn check_index(m: &Message<'_>, len: usize) {
    let buf = m.buf();
    assert_eq!(buf.len(), len);
    let mut prev_end = m.start_line.end as usize;
    for f in m.fields() {
        let (n, v, l) = (f.name_span, f.value, f.line);
        assert!(prev_end <= l.start as usize);
        assert!(l.start == n.start && n.end <= v.start && v.end <= l.end);
        assert!(l.end as usize <= m.headers_end);
        assert_eq!(HeaderName::from_bytes(m.bytes(n)), f.name);
        prev_end = l.end as usize;
    }
    assert!(m.headers_end <= m.body.start as usize);
    assert!(m.body.start <= m.body.end && m.body.end as usize <= len);
    assert_eq!(m.framed_len(), m.body.end as usize);
    if let Some(cl) = m.header(HeaderName::ContentLength) {
        let n: usize = std::str::from_utf8(cl).unwrap().parse().unwrap();
        assert_eq!(m.body.len(), n);
    }
    for name in HeaderName::ALL {
        let all: Vec<_> = m.fields_named(name).collect();
        assert_eq!(all.len(), m.count_of(name));
        assert_eq!(m.field(name), all.first().copied());
        assert_eq!(m.header(name), all.first().map(|f| m.bytes(f.value)));
        for (i, s) in m.values(name) {
            let f = m.field_at(i);
            assert_eq!(f.name, name);
            assert!(f.value.start <= s.start && s.end <= f.value.end && !s.is_empty());
        }
    }
    for f in m.fields() {
        assert!(m.header_by_name(m.bytes(f.name_span)).is_some());
    }
    assert_eq!(m.is_request(), m.request_uri().is_some());
    assert_eq!(m.is_request(), m.method().is_some());
    assert_eq!(m.is_request(), m.status().is_none());
}

/// Every accessor, and the consistency a passing `validate_request` promises.
fn exercise(m: &Message<'_>) {
    let _ = m.method_bytes();
    if let Some(u) = m.request_uri() {
        let _ = (
            u.port_or_default(),
            u.lr(),
            u.is_sip(),
            u.param(b"transport"),
        );
        let _ = u.params().count();
        assert!(u.equivalent(&u) || u.params().count() > 1 || !u.headers.is_empty());
    }
    let mut vias = 0;
    for v in m.vias().flatten() {
        vias += 1;
        let _ = (v.branch(), v.received(), v.rport(), v.maddr(), v.ttl());
        let _ = (v.has_rfc3261_branch(), v.port_or_default());
        assert!(!v.host_raw.is_empty());
        // Every Via parsed is SIP/2.0; one whose parameters pass the strict checks has them
        // in a form every reader of them agrees with.
        assert!(v.protocol.eq_ignore_ascii_case(b"SIP") && v.version == b"2.0");
        if v.params_checked() {
            assert!(v.received().is_none_or(|r| {
                let r = std::str::from_utf8(r).unwrap().trim_matches(['[', ']']);
                r.parse::<std::net::IpAddr>().is_ok()
            }));
            assert!(!matches!(v.rport(), Some(Some(0))));
            assert_eq!(v.param(b"rport").flatten().is_some(), matches!(v.rport(), Some(Some(_))));
            assert_eq!(v.param(b"ttl").is_some(), v.ttl().is_some());
            assert!(v.branch().is_some_and(|b| !b.is_empty()) || v.param(b"branch").is_none());
        }
        assert!(v.span.start <= v.sent_by_end.start && v.sent_by_end.end <= v.span.end);
    }
    assert!(vias <= m.values(HeaderName::Via).count());
    // `vias()` parses single-value lines whole and resumes after the cached top Via: it must
    // equal splitting every Via line at commas and parsing each element.
    let split: Vec<_> = m
        .values(HeaderName::Via)
        .map(|(field, span)| {
            Via::parse(m.buf(), span, field).ok_or(ParseError::Malformed(Required::Via))
        })
        .collect();
    assert_eq!(m.vias().collect::<Vec<_>>(), split);
    assert_eq!(m.second_via(), split.get(1).copied());
    for a in [m.from(), m.to()].into_iter().flatten() {
        let _ = (a.tag(), a.expires(), a.q(), a.uri.lr());
        assert!(!a.uri.raw.is_empty());
    }
    for c in m.contacts().flatten() {
        if let Contact::Addr(a) = c {
            let _ = (a.expires(), a.q(), a.param(b"+sip.instance"));
        }
    }
    for r in m.routes().chain(m.record_routes()).flatten() {
        let _ = (r.uri.lr(), r.uri.host, r.uri.port_or_default());
    }
    for name in [
        HeaderName::Authorization,
        HeaderName::ProxyAuthorization,
        HeaderName::WwwAuthenticate,
        HeaderName::ProxyAuthenticate,
    ] {
        for c in m.credentials(name).flatten() {
            let _ = (c.is_digest(), c.param(b"nonce"), c.param_count(b"response"));
        }
    }
    for name in [
        HeaderName::Require,
        HeaderName::ProxyRequire,
        HeaderName::Supported,
    ] {
        for tag in m.option_tags(name) {
            assert!(!tag.is_empty());
        }
    }
    for (_, s) in m.values(HeaderName::Allow) {
        let _ = CommaSplit::new(m.buf(), s).count();
    }
    let (mf, exp, cid, cseq) = (m.max_forwards(), m.expires(), m.call_id(), m.cseq());
    if m.validate_request().is_ok() {
        assert!(m.top_via().is_ok() && m.from().is_ok() && m.to().is_ok());
        assert!(cid.is_ok() && mf.is_ok());
        assert_eq!(cseq.unwrap().method, m.method_bytes());
        assert!(m.vias().all(|v| v.is_ok_and(|v| v.params_checked())));
        assert!(cseq.unwrap().number < 1 << 31);
        assert!(m.from().unwrap().tag().is_none_or(|t| t.iter().all(|&b| is_token(b))));
        assert!(m.count_of(HeaderName::ContentLength) <= 1);
    }
    let _ = exp;
}
