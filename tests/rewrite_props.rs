//! Property tests for the in-place rewriter ([`Edits::apply`] on a [`PacketBuf`]).
//!
//! A generated, valid SIP request (random header set, compact and odd-case names, folded lines,
//! LF-only or CRLF line ends, a random body with or without Content-Length) is parsed, and a
//! random sequence of the edits a proxy makes is recorded against it: whole header lines
//! inserted at line boundaries or removed, one value removed from a multi-value Via or Route
//! line, the Request-URI replaced, Max-Forwards replaced, `;received=...;rport=...` appended to
//! the top Via. Then:
//!
//! - the rewritten packet equals what a naive copy-based rewriter (splicing a `Vec`) produces,
//!   byte for byte, whatever the headroom: the in-place path and the tail fallback alike;
//! - re-parsing it gives exactly the expected header lines and values and the same body;
//! - when the headroom is too small for both strategies the batch fails with `NoRoom` and the
//!   packet is untouched; overlapping or out-of-range edits fail with `Overlap`, untouched.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use proptest::sample::Index;
use sipshard::sip::header::CommaSplit;
use sipshard::sip::{EditError, Edits, HeaderName, Message, PacketBuf, Span};

// ---------------------------------------------------------------------------------------------
// Message generation
// ---------------------------------------------------------------------------------------------

/// Marks a place where the rendered line is folded (line end, then SP or HT).
const FOLD: char = '\u{1}';

#[derive(Clone, Debug)]
struct Header {
    /// The name as written, possibly compact, odd-cased or followed by spaces.
    name: String,
    /// The value text, with [`FOLD`] marks.
    value: String,
}

#[derive(Clone, Debug)]
struct Spec {
    leading_crlf: bool,
    method: &'static str,
    ruri: String,
    headers: Vec<Header>,
    /// Line end per line (start line, each header, the empty line): `\r\n` or `\n`.
    eols: Vec<bool>,
    body: Vec<u8>,
}

impl Spec {
    fn render(&self) -> Vec<u8> {
        let mut eols = self.eols.iter().cycle();
        let mut eol = || if *eols.next().unwrap() { "\r\n" } else { "\n" };
        let mut out = String::new();
        if self.leading_crlf {
            out.push_str("\r\n");
        }
        out.push_str(&format!("{} {} SIP/2.0", self.method, self.ruri));
        out.push_str(eol());
        for (i, h) in self.headers.iter().enumerate() {
            let e = eol();
            let fold = if i % 2 == 0 {
                format!("{e} ")
            } else {
                format!("{e}\t")
            };
            out.push_str(&h.name);
            out.push_str(": ");
            out.push_str(&h.value.replace(FOLD, &fold));
            out.push_str(e);
        }
        out.push_str(eol());
        let mut raw = out.into_bytes();
        raw.extend_from_slice(&self.body);
        raw
    }
}

/// A header name as a sender might write it.
fn name(long: &'static str, compact: Option<&'static str>) -> impl Strategy<Value = String> {
    let compact = compact.unwrap_or(long);
    prop_oneof![
        3 => Just(long.to_string()),
        1 => Just(long.to_ascii_uppercase()),
        1 => Just(long.to_ascii_lowercase()),
        2 => Just(compact.to_string()),
        1 => Just(format!("{long} ")),
    ]
}

/// A list separator, folded or not.
fn sep() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(", ".to_string()),
        Just(",".to_string()),
        Just(" ,  ".to_string()),
        Just(format!(",{FOLD}")),
        Just(format!(" ,{FOLD}  ")),
    ]
}

fn join(values: Vec<String>, seps: Vec<String>) -> String {
    let mut s = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push_str(&seps[(i - 1) % seps.len()]);
        }
        s.push_str(v);
    }
    s
}

fn via_value() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["UDP", "TCP", "TLS", "SCTP"]),
        "[a-z]{1,8}",
        prop::option::of(1024u16..),
        "[0-9a-f]{4,12}",
        any::<bool>(),
    )
        .prop_map(|(t, host, port, branch, fold)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let semi = if fold { format!("{FOLD};") } else { ";".into() };
            format!("SIP/2.0/{t} {host}.example.com{port}{semi}branch=z9hG4bK{branch}")
        })
}

fn route_value() -> impl Strategy<Value = String> {
    ("[a-z]{1,8}", any::<bool>()).prop_map(|(host, display)| {
        if display {
            format!("\"Proxy {host}\" <sip:{host}.example.net;lr>")
        } else {
            format!("<sip:{host}.example.net;lr>")
        }
    })
}

/// One line holding 1 to 3 comma-separated values.
fn list_line(
    n: &'static str,
    compact: Option<&'static str>,
    value: impl Strategy<Value = String>,
) -> impl Strategy<Value = Header> {
    (
        name(n, compact),
        prop::collection::vec(value, 1..=3),
        prop::collection::vec(sep(), 1..=2),
    )
        .prop_map(|(name, values, seps)| Header {
            name,
            value: join(values, seps),
        })
}

fn simple(n: &'static str, compact: Option<&'static str>, value: String) -> BoxedStrategy<Header> {
    name(n, compact)
        .prop_map(move |name| Header {
            name,
            value: value.clone(),
        })
        .boxed()
}

prop_compose! {
    fn spec()(
        leading_crlf in prop::bool::weighted(0.1),
        method in prop::sample::select(vec!["INVITE", "OPTIONS", "REGISTER", "BYE", "MESSAGE", "NEWMETHOD"]),
        user in "[a-z0-9]{1,10}",
        host in "[a-z]{1,10}",
        vias in prop::collection::vec(list_line("Via", Some("v"), via_value()), 1..=3),
        routes in prop::collection::vec(list_line("Route", None, route_value()), 0..=2),
        rr in prop::collection::vec(list_line("Record-Route", None, route_value()), 0..=1),
        from in simple("From", Some("f"), "\"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl".into()),
        to in simple("To", Some("t"), format!("Bob{FOLD}<sip:bob@biloxi.example.com>")),
        call_id in "[a-zA-Z0-9]{4,20}",
        call_id_name in name("Call-ID", Some("i")),
        cseq in 1u32..1_000_000,
        cseq_fold in any::<bool>(),
        cseq_name in name("CSeq", None),
        mf in prop::option::of((0u8.., name("Max-Forwards", None))),
        subject in prop::option::of(("[a-z ]{0,20}", "[a-z]{1,10}", name("Subject", Some("s")))),
        extensions in prop::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,30}"), 0..=3),
        body in prop::collection::vec(any::<u8>(), 0..200),
        content_length in prop::option::of(name("Content-Length", Some("l"))),
        eols in prop::collection::vec(prop::bool::weighted(0.7), 1..6),
    ) -> Spec {
        let mut headers = Vec::new();
        headers.extend(vias);
        headers.extend(routes);
        headers.extend(rr);
        headers.push(from);
        headers.push(to);
        headers.push(Header { name: call_id_name, value: format!("{call_id}@host.example.com") });
        let sep = if cseq_fold { FOLD.to_string() } else { " ".into() };
        headers.push(Header { name: cseq_name, value: format!("{cseq}{sep}{method}") });
        if let Some((n, name)) = mf {
            headers.push(Header { name, value: n.to_string() });
        }
        if let Some((a, b, name)) = subject {
            headers.push(Header { name, value: format!("{a}{FOLD}{b}") });
        }
        for (n, v) in extensions {
            headers.push(Header { name: n, value: v.trim().to_string() });
        }
        if let Some(name) = content_length {
            headers.push(Header { name, value: body.len().to_string() });
        }
        Spec {
            leading_crlf,
            method,
            ruri: format!("sip:{user}@{host}.example.com"),
            headers,
            eols,
            body,
        }
    }
}

/// The spec with its header lines in a random order (Via lines keep theirs).
fn shuffled_spec() -> impl Strategy<Value = Spec> {
    spec()
        .prop_flat_map(|s| {
            let n = s.headers.len();
            (Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
        .prop_map(|(mut s, order)| {
            let vias: Vec<Header> = s
                .headers
                .iter()
                .filter(|h| is_via_name(&h.name))
                .cloned()
                .collect();
            let mut vias = vias.into_iter();
            let old = std::mem::take(&mut s.headers);
            for i in order {
                if is_via_name(&old[i].name) {
                    s.headers.push(vias.next().unwrap());
                } else {
                    s.headers.push(old[i].clone());
                }
            }
            s
        })
}

fn is_via_name(n: &str) -> bool {
    HeaderName::from_bytes(n.trim_end().as_bytes()) == HeaderName::Via
}

// ---------------------------------------------------------------------------------------------
// Edits: abstract (generated), concrete (spans), and the model of their effect
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// Insert a whole line before field `at` (or at the end of the header section).
    InsertLine {
        at: Index,
        line: NewLine,
    },
    RemoveLine(Index),
    /// Remove one value among all Via and Route values.
    RemoveListValue(Index),
    ReplaceRuri(String),
    ReplaceMaxForwards(u8),
    AppendReceived(Ipv4Addr, u16),
}

#[derive(Clone, Debug)]
enum NewLine {
    Via(String),
    RecordRoute(String),
    Other(String, String),
}

impl NewLine {
    fn parts(&self) -> (String, String) {
        match self {
            NewLine::Via(b) => (
                "Via".into(),
                format!("SIP/2.0/UDP proxy.example.net;branch=z9hG4bK{b}"),
            ),
            NewLine::RecordRoute(h) => ("Record-Route".into(), format!("<sip:{h}.example.net;lr>")),
            NewLine::Other(n, v) => (n.clone(), v.clone()),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let new_line = prop_oneof![
        "[0-9a-f]{6,12}".prop_map(NewLine::Via),
        "[a-z]{1,8}".prop_map(NewLine::RecordRoute),
        ("X-New-[A-Za-z]{1,6}", "[!-~]{1,20}").prop_map(|(n, v)| NewLine::Other(n, v)),
    ];
    prop_oneof![
        3 => (any::<Index>(), new_line).prop_map(|(at, line)| Op::InsertLine { at, line }),
        2 => any::<Index>().prop_map(Op::RemoveLine),
        3 => any::<Index>().prop_map(Op::RemoveListValue),
        1 => "sip:[a-z]{1,12}@[a-z]{1,12}\\.example\\.org(;transport=tcp)?".prop_map(Op::ReplaceRuri),
        1 => any::<u8>().prop_map(Op::ReplaceMaxForwards),
        1 => (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| Op::AppendReceived(Ipv4Addr::from(a), p)),
    ]
}

/// An edit with its span in the parsed message and its text.
#[derive(Clone, Debug)]
struct Concrete {
    span: Span,
    text: Vec<u8>,
}

/// What a header line looks like to the checks: its name as written and its values (the
/// comma-split elements for Via, Route and Record-Route, the whole value otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    name: Vec<u8>,
    values: Vec<Vec<u8>>,
}

fn is_split(name: HeaderName) -> bool {
    matches!(
        name,
        HeaderName::Via | HeaderName::Route | HeaderName::RecordRoute
    )
}

fn lines_of(m: &Message<'_>) -> Vec<Line> {
    m.fields()
        .iter()
        .map(|f| Line {
            name: m.bytes(f.name_span).to_vec(),
            values: if is_split(f.name) {
                CommaSplit::new(m.buf(), f.value)
                    .map(|s| m.bytes(s).to_vec())
                    .collect()
            } else {
                vec![m.bytes(f.value).to_vec()]
            },
        })
        .collect()
}

/// The expected header section after the edits, built alongside them. Everything is indexed
/// by the original line (and value) it concerns.
struct Model {
    original: Vec<Line>,
    removed: Vec<bool>,
    value_removed: Vec<Vec<bool>>,
    value_suffix: Vec<Vec<Vec<u8>>>,
    replaced: Vec<Option<Vec<u8>>>,
    before: Vec<Vec<Line>>,
    at_end: Vec<Line>,
    ruri: Vec<u8>,
}

impl Model {
    fn new(m: &Message<'_>) -> Model {
        let original = lines_of(m);
        let n = original.len();
        Model {
            value_removed: original
                .iter()
                .map(|l| vec![false; l.values.len()])
                .collect(),
            value_suffix: original
                .iter()
                .map(|l| vec![Vec::new(); l.values.len()])
                .collect(),
            original,
            removed: vec![false; n],
            replaced: vec![None; n],
            before: vec![Vec::new(); n],
            at_end: Vec::new(),
            ruri: m.bytes(m.request_uri_span().unwrap()).to_vec(),
        }
    }

    fn expected(&self) -> Vec<Line> {
        let mut out = Vec::new();
        for (i, line) in self.original.iter().enumerate() {
            out.extend(self.before[i].iter().cloned());
            if self.removed[i] {
                continue;
            }
            let values = match &self.replaced[i] {
                Some(v) => vec![v.clone()],
                None => line
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| !self.value_removed[i][*k])
                    .map(|(k, v)| [&v[..], &self.value_suffix[i][k][..]].concat())
                    .collect(),
            };
            out.push(Line {
                name: line.name.clone(),
                values,
            });
        }
        out.extend(self.at_end.iter().cloned());
        out
    }
}

/// How an edit changes the model.
type Effect = Box<dyn FnOnce(&mut Model)>;

/// Two edits conflict when they share bytes or one inserts strictly inside the other's range.
fn conflicts(a: Span, b: Span) -> bool {
    let inside = |p: u32, s: Span| s.start < p && p < s.end;
    a.start.max(b.start) < a.end.min(b.end)
        || (a.is_empty() && inside(a.start, b))
        || (b.is_empty() && inside(b.start, a))
}

/// Resolve the generated ops against the message: the non-conflicting ones become concrete
/// edits (recorded in order into `edits`) and update the model.
fn resolve(m: &Message<'_>, ops: &[Op], edits: &mut Edits) -> (Vec<Concrete>, Model) {
    let mut model = Model::new(m);
    let mut chosen: Vec<Concrete> = Vec::new();
    let fields = m.fields();
    // Every Via and Route value, with where it is.
    let list_values: Vec<(usize, Span)> = m
        .values(HeaderName::Via)
        .chain(m.values(HeaderName::Route))
        .collect();
    for op in ops {
        let (span, text, effect): (Span, Vec<u8>, Effect) = match op {
            Op::InsertLine { at, line } => {
                let i = at.index(fields.len() + 1);
                let pos = fields
                    .get(i)
                    .map_or(m.headers_end, |f| f.line.start as usize);
                let (n, v) = line.parts();
                let new = Line {
                    name: n.clone().into_bytes(),
                    values: if is_split(HeaderName::from_bytes(n.as_bytes())) {
                        vec![v.clone().into_bytes()]
                    } else {
                        vec![v.trim().as_bytes().to_vec()]
                    },
                };
                (
                    Span::new(pos, pos),
                    format!("{n}: {v}\r\n").into_bytes(),
                    Box::new(move |md: &mut Model| match md.before.get_mut(i) {
                        Some(b) => b.push(new),
                        None => md.at_end.push(new),
                    }),
                )
            }
            Op::RemoveLine(which) => {
                let i = which.index(fields.len());
                (
                    fields[i].line,
                    Vec::new(),
                    Box::new(move |md: &mut Model| md.removed[i] = true),
                )
            }
            Op::RemoveListValue(which) => {
                if list_values.is_empty() {
                    continue;
                }
                let (field, value) = list_values[which.index(list_values.len())];
                let on_line: Vec<Span> = list_values
                    .iter()
                    .filter(|(f, _)| *f == field)
                    .map(|&(_, s)| s)
                    .collect();
                let k = on_line.iter().position(|&s| s == value).unwrap();
                let span = if on_line.len() == 1 {
                    fields[field].line
                } else if k + 1 < on_line.len() {
                    Span::new(value.start as usize, on_line[k + 1].start as usize)
                } else {
                    Span::new(on_line[k - 1].end as usize, value.end as usize)
                };
                let single = on_line.len() == 1;
                (
                    span,
                    Vec::new(),
                    Box::new(move |md: &mut Model| {
                        if single {
                            md.removed[field] = true;
                        } else {
                            md.value_removed[field][k] = true;
                        }
                    }),
                )
            }
            Op::ReplaceRuri(uri) => {
                let u = uri.clone().into_bytes();
                (
                    m.request_uri_span().unwrap(),
                    u.clone(),
                    Box::new(move |md: &mut Model| md.ruri = u),
                )
            }
            Op::ReplaceMaxForwards(n) => {
                let Some((i, f)) = fields
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.name == HeaderName::MaxForwards)
                else {
                    continue;
                };
                let v = n.to_string().into_bytes();
                (
                    f.value,
                    v.clone(),
                    Box::new(move |md: &mut Model| md.replaced[i] = Some(v)),
                )
            }
            Op::AppendReceived(ip, port) => {
                let via = m.top_via().unwrap();
                let suffix = format!(";received={ip};rport={port}").into_bytes();
                let field = via.field;
                let first = m
                    .values(HeaderName::Via)
                    .position(|(_, s)| s == via.span)
                    .unwrap();
                let k = m
                    .values(HeaderName::Via)
                    .take(first)
                    .filter(|(f, _)| *f == field)
                    .count();
                (
                    Span::new(via.span.end as usize, via.span.end as usize),
                    suffix.clone(),
                    Box::new(move |md: &mut Model| {
                        md.value_suffix[field][k].extend_from_slice(&suffix)
                    }),
                )
            }
        };
        if chosen.iter().any(|c| conflicts(c.span, span)) {
            continue;
        }
        // Record through the API a proxy uses; AppendReceived goes through the writer.
        match op {
            Op::AppendReceived(ip, port) => edits.insert_with(span.start as usize, |w| {
                w.bytes(b";received=")
                    .bytes(ip.to_string().as_bytes())
                    .bytes(b";rport=")
                    .num(*port as u64);
            }),
            Op::RemoveLine(_) | Op::RemoveListValue(_) => edits.remove(span),
            _ => edits.replace(span, &text),
        }
        effect(&mut model);
        chosen.push(Concrete { span, text });
    }
    (chosen, model)
}

/// The reference: copy-based splicing, back to front; insertions at one position come out in
/// the order they were recorded.
fn naive(msg: &[u8], edits: &[Concrete]) -> Vec<u8> {
    let mut order: Vec<usize> = (0..edits.len()).collect();
    // Back to front; for one position, the later-recorded first so that it ends up behind.
    order.sort_by_key(|&i| std::cmp::Reverse((edits[i].span.start, edits[i].span.end, i)));
    let mut out = msg.to_vec();
    for i in order {
        let e = &edits[i];
        out.splice(
            e.span.start as usize..e.span.end as usize,
            e.text.iter().copied(),
        );
    }
    out
}

/// The largest amount the message grows by at any point while edits are applied back to front.
fn worst_growth(edits: &[Concrete]) -> isize {
    let mut sorted = edits.to_vec();
    sorted.sort_by_key(|e| std::cmp::Reverse((e.span.start, e.span.end)));
    let mut acc = 0isize;
    let mut worst = 0isize;
    for e in &sorted {
        acc += e.text.len() as isize - e.span.len() as isize;
        worst = worst.max(acc);
    }
    worst
}

fn body_of(raw: &[u8]) -> Vec<u8> {
    let mut b = raw.to_vec();
    let m = Message::parse(&mut b).unwrap();
    m.bytes(m.body).to_vec()
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The generator produces messages the proxy accepts.
    #[test]
    fn generated_messages_are_valid(spec in shuffled_spec()) {
        let mut raw = spec.render();
        let len = raw.len();
        let m = Message::parse(&mut raw).unwrap();
        m.validate_request().unwrap();
        prop_assert_eq!(m.fields().len(), spec.headers.len());
        prop_assert_eq!(m.body.end as usize, len);
        prop_assert_eq!(m.bytes(m.body), &spec.body[..]);
    }

    #[test]
    fn apply_matches_naive_splicing_and_reparses_as_expected(
        spec in shuffled_spec(),
        ops in prop::collection::vec(op(), 0..10),
        headroom in prop_oneof![Just(0usize), 1usize..16, 16usize..128, Just(512usize)],
        spare in prop_oneof![Just(0usize), 0usize..256],
    ) {
        let raw = spec.render();
        // Room behind the datagram: `spare` unused bytes of the receive slot, the slot's extra
        // byte and the tailroom (as large as the headroom).
        let mut pkt = PacketBuf::new(raw.len() + spare, headroom);
        pkt.receive_slot()[..raw.len()].copy_from_slice(&raw);
        pkt.set_received(raw.len());
        let mut edits = Edits::new();
        let (chosen, model, original_body) = {
            let m = Message::parse(pkt.as_mut_slice()).unwrap();
            let (chosen, model) = resolve(&m, &ops, &mut edits);
            (chosen, model, m.bytes(m.body).to_vec())
        };
        // The packet as parsed (parsing normalises in place) is what the spans refer to.
        let before = pkt.as_slice().to_vec();
        let expected = naive(&before, &chosen);
        let body_at = pkt.as_slice().as_ptr() as usize + (before.len() - original_body.len());
        let worst = worst_growth(&chosen);
        let head_fits = worst <= headroom as isize;
        let tail_fits = worst <= (spare + 1 + headroom) as isize;

        match edits.apply(&mut pkt) {
            Ok(()) => {
                prop_assert!(head_fits || tail_fits);
                prop_assert_eq!(pkt.as_slice(), &expected[..]);
                if head_fits {
                    // The in-place path never moves the body.
                    let now = pkt.as_slice().as_ptr() as usize
                        + (pkt.len() - original_body.len());
                    prop_assert_eq!(now, body_at);
                }
            }
            Err(e) => {
                prop_assert_eq!(e, EditError::NoRoom);
                prop_assert!(!head_fits && !tail_fits, "refused a batch that fits");
                prop_assert_eq!(pkt.as_slice(), &before[..], "a refused batch changed the packet");
                return Ok(());
            }
        }

        let mut again = pkt.as_slice().to_vec();
        let m2 = Message::parse(&mut again).unwrap();
        let want = model.expected();
        prop_assert_eq!(m2.fields().len(), want.len());
        prop_assert_eq!(lines_of(&m2), want);
        prop_assert_eq!(m2.bytes(m2.request_uri_span().unwrap()), &model.ruri[..]);
        prop_assert_eq!(m2.bytes(m2.body), &original_body[..]);
        prop_assert_eq!(body_of(&raw), original_body);
    }

    /// Edits that overlap, or reach outside the message, are refused and change nothing.
    #[test]
    fn overlapping_or_out_of_range_edits_are_refused(
        spec in shuffled_spec(),
        a in (any::<Index>(), 0usize..40),
        b in (any::<Index>(), 1usize..40),
        text in prop::collection::vec(any::<u8>(), 0..20),
        kind in 0u8..4,
        headroom in prop_oneof![Just(0usize), Just(8usize), Just(512usize)],
    ) {
        let raw = spec.render();
        let mut pkt = PacketBuf::from_message(&raw, headroom);
        let len = {
            let _ = Message::parse(pkt.as_mut_slice()).unwrap();
            pkt.len()
        };
        let before = pkt.as_slice().to_vec();
        let a_start = a.0.index(len);
        let a_span = Span::new(a_start, (a_start + a.1).min(len));
        let bad = match kind {
            // Shares bytes with `a` (a is at least one byte long here).
            0 if !a_span.is_empty() => Span::new(a_span.start as usize + b.1.min(a_span.len() - 1), len.max(a_span.end as usize)),
            // An insertion strictly inside `a`.
            1 if a_span.len() >= 2 => {
                let p = a_span.start as usize + 1 + b.1 % (a_span.len() - 1);
                Span::new(p, p)
            }
            // Past the end of the message.
            2 => Span::new(len, len + b.1),
            // Inverted.
            _ => Span { start: a_span.end + b.1 as u32, end: a_span.end },
        };
        let mut edits = Edits::new();
        edits.replace(a_span, &text);
        edits.replace(bad, b"x");
        prop_assert_eq!(edits.apply(&mut pkt), Err(EditError::Overlap));
        prop_assert_eq!(pkt.as_slice(), &before[..]);
        // In the other recording order as well.
        let mut edits = Edits::new();
        edits.replace(bad, b"x");
        edits.replace(a_span, &text);
        prop_assert_eq!(edits.apply(&mut pkt), Err(EditError::Overlap));
        prop_assert_eq!(pkt.as_slice(), &before[..]);
    }
}
