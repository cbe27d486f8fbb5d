//! The mutation suite's case generator (issue 19): from a valid INVITE and a valid REGISTER,
//! one message per (field, operator, value), each with what the proxy owes it.
//!
//! Deterministic: the same seed gives the same cases in the same order, so a failing case is
//! named by its id and found again. No I/O: a case is bytes with placeholders for the sender's
//! address ([`Case::bytes_for`]); the tests and `examples/robustness.rs` send them.
//!
//! Layout: [`base`] holds the two messages as templates with named slots; [`fields`] says which
//! slots are mutated, their grammar and policy, and what doubled or missing headers must do;
//! [`ops`] turns a field's valid value into the values to try; [`grammar`] judges each value,
//! and [`expect`](Case::expect) follows from the judgement and the policy.

pub mod base;
pub mod fields;
pub mod grammar;
pub mod ops;
mod rng;

use std::net::SocketAddr;

pub use base::Base;
use fields::{Field, HeaderRule, Policy, FIELDS, HEADERS};
use grammar::{judge, judge_header, Class};
use rng::Rng;

/// The seed the tests and the benchmark use unless told otherwise.
pub const DEFAULT_SEED: u64 = 19;

/// sipshard's largest datagram by default (`--max-message`): a larger message gets 513.
pub const MAX_MESSAGE: usize = 65_507;

/// What the proxy must do with a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// Never forwarded: answered 4xx/5xx, or dropped when no answer can be routed.
    Refuse,
    /// Forwarded with the mutated bytes unchanged.
    Carry,
    /// Valid but odd, or breaks the framing of a carried header: either is acceptable.
    Either,
}

/// One mutated message.
#[derive(Clone, Debug)]
pub struct Case {
    /// Its position in the generated list: stable for a seed.
    pub id: usize,
    pub base: Base,
    /// The mutated field (a slot name, or a header name for doubled/missing lines).
    pub field: &'static str,
    pub operator: &'static str,
    /// What it must lead to over a datagram ...
    pub expect: Expect,
    /// ... and over a stream, where the framing rules differ (Content-Length).
    pub expect_stream: Expect,
    /// The mutated value (for doubled and missing headers: the line concerned).
    pub value: Vec<u8>,
    /// The whole message, with the sender placeholders of [`base`].
    pub bytes: Vec<u8>,
    /// The body a forwarded copy must carry, when the case does not move the body's start.
    pub body: Option<Vec<u8>>,
    /// Bytes a forwarded copy must hold unchanged (a carried header's line).
    pub carried: Option<Vec<u8>>,
}

impl Case {
    /// The message as sent from `sender` over `transport` (`UDP` or `TCP`).
    pub fn bytes_for(&self, sender: SocketAddr, transport: &str) -> Vec<u8> {
        base::fill_sender(&self.bytes, sender, transport)
    }

    /// The expectation over `stream` or datagram transport.
    pub fn expect_on(&self, stream: bool) -> Expect {
        if stream {
            self.expect_stream
        } else {
            self.expect
        }
    }

    /// One line for failure messages: id, base, field, operator, expectation, the value.
    pub fn describe(&self) -> String {
        format!(
            "#{} {} {} {} expect {:?}/{:?}: {} ({} bytes)",
            self.id,
            self.base.name(),
            self.field,
            self.operator,
            self.expect,
            self.expect_stream,
            escape(&self.value, 80),
            self.bytes.len()
        )
    }
}

/// `bytes` printable: controls and non-ASCII as `\xNN`, cut at `max` bytes.
pub fn escape(bytes: &[u8], max: usize) -> String {
    let mut out: String = bytes[..bytes.len().min(max)]
        .iter()
        .map(|&b| match b {
            b'\r' => "\\r".to_string(),
            b'\n' => "\\n".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    if bytes.len() > max {
        out.push_str(&format!("...(+{})", bytes.len() - max));
    }
    out
}

/// Every case for `seed`: INVITE first, then REGISTER (a REGISTER case can change bob's
/// bindings, so a run that needs them sends the INVITE cases first).
pub fn cases(seed: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for base in [Base::Invite, Base::Register] {
        for field in FIELDS.iter().filter(|f| f.bases.contains(&base)) {
            let seed_value = seed_of(base, field);
            for (op, value) in ops::values(field, &seed_value, &mut rng) {
                if let Some(case) = field_case(out.len(), base, field, op, value) {
                    out.push(case);
                }
            }
        }
        for rule in HEADERS.iter().filter(|r| r.bases.contains(&base)) {
            for case in header_cases(out.len(), base, rule) {
                out.push(Case {
                    id: out.len(),
                    ..case
                });
            }
        }
    }
    out
}

/// The valid value a field's mutations start from.
fn seed_of(base: Base, field: &Field) -> Vec<u8> {
    match field.seed {
        Some(s) => s.as_bytes().to_vec(),
        None => base::slot_value(base, field.name, &[], 0),
    }
}

fn field_case(
    id: usize,
    base: Base,
    field: &'static Field,
    op: &'static str,
    value: Vec<u8>,
) -> Option<Case> {
    let written = [field.prefix.as_bytes(), &value].concat();
    let overrides = [(field.name, written.clone())];
    let bytes = base::render(base, &overrides, id)?;
    let body = base::slot_value(base, "body", &overrides, id);
    let class = judge_field(base, field, &value, &overrides, id);
    let mut expect = by_policy(field.policy, class);
    let mut expect_stream = expect;
    let mut expected_body = (class != Class::EndsHeaders).then(|| body.clone());
    if field.name == "content-length" && class == Class::Valid {
        let n: usize = std::str::from_utf8(&value).ok()?.parse().ok()?;
        // A datagram's bytes beyond Content-Length are discarded; fewer bytes than it says
        // are a 400 (RFC 3261 section 18.3). A stream frames by it: either may go any way.
        expect = if n > body.len() {
            Expect::Refuse
        } else {
            Expect::Either
        };
        expect_stream = Expect::Either;
        expected_body = (n <= body.len()).then(|| body[..n].to_vec());
    }
    if bytes.len() > MAX_MESSAGE {
        (expect, expect_stream) = (Expect::Refuse, Expect::Refuse);
    }
    let carried = match (expect, field.line) {
        (Expect::Carry, Some(line)) => Some([line.as_bytes(), b": ", &written, b"\r\n"].concat()),
        _ => None,
    };
    Some(Case {
        id,
        base,
        field: field.name,
        operator: op,
        expect,
        expect_stream,
        value,
        bytes,
        body: expected_body,
        carried,
    })
}

/// How `value` fits the field's grammar, or the grammar of the element it is part of.
fn judge_field(
    base: Base,
    field: &Field,
    value: &[u8],
    overrides: &[(&str, Vec<u8>)],
    id: usize,
) -> Class {
    let (kind, judged) = match field.whole {
        Some((slot, kind)) => {
            let whole = base::slot_value(base, slot, overrides, id);
            (
                kind,
                base::fill_sender(&whole, ([127, 0, 0, 1], 5060).into(), "UDP"),
            )
        }
        None => (field.kind, value.to_vec()),
    };
    let class = match field.policy {
        Policy::StartLine => judge(kind, &judged, base.name()),
        _ => judge_header(kind, &judged, base.name()),
    };
    // The version ends the request line: a well-formed header line after it is just that.
    if field.name == "version" && class == Class::Injects {
        return Class::Valid;
    }
    class
}

/// What a value of `class` in a field with `policy` must lead to.
fn by_policy(policy: Policy, class: Class) -> Expect {
    use Class::*;
    match (policy, class) {
        (Policy::Body, _) => Expect::Carry,
        (Policy::StartLine, Valid) => Expect::Either,
        (Policy::StartLine, _) => Expect::Refuse,
        (Policy::Strict, Valid | Fold | Injects | EndsHeaders) => Expect::Either,
        (Policy::Strict, Malformed | Control | LineBreak) => Expect::Refuse,
        (Policy::Carried, Valid | Malformed) => Expect::Carry,
        (Policy::Carried, _) => Expect::Either,
    }
}

/// The doubled, differing and missing versions of a header's lines.
fn header_cases(id: usize, base: Base, rule: &'static HeaderRule) -> Vec<Case> {
    let valid = base::render(base, &[], id).expect("the base renders");
    let Some((start, end)) = line_span(&valid, rule.name) else {
        return Vec::new();
    };
    let line = valid[start..end].to_vec();
    let after_it = |extra: &[u8]| [&valid[..end], extra, &valid[end..]].concat();
    let template = Case {
        id: 0,
        base,
        field: rule.name,
        operator: "header-doubled",
        expect: rule.doubled,
        expect_stream: rule.doubled,
        value: line.clone(),
        bytes: after_it(&line),
        body: Some(base::slot_value(base, "body", &[], id)),
        carried: (rule.doubled == Expect::Carry).then(|| [&line[..], &line[..]].concat()),
    };
    let mut out = vec![template.clone()];
    if let Some((other, expect)) = rule.differing {
        let other = format!("{other}\r\n").into_bytes();
        out.push(Case {
            operator: "header-differing",
            expect,
            expect_stream: expect,
            bytes: after_it(&other),
            value: other,
            carried: None,
            ..template.clone()
        });
    }
    out.push(Case {
        operator: "header-missing",
        expect: rule.missing,
        expect_stream: rule.missing_on_stream,
        bytes: remove_lines(&valid, rule.name),
        carried: None,
        ..template
    });
    out
}

/// Where the first header line named `name` starts and ends (after its CRLF) in `msg`.
fn line_span(msg: &[u8], name: &str) -> Option<(usize, usize)> {
    let start = find(msg, format!("\r\n{name}:").as_bytes())? + 2;
    let end = start + find(&msg[start..], b"\r\n")? + 2;
    Some((start, end))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `msg` without the header lines named `name`.
fn remove_lines(msg: &[u8], name: &str) -> Vec<u8> {
    let head_end = find(msg, b"\r\n\r\n").map_or(msg.len(), |i| i + 2);
    let mut out = Vec::with_capacity(msg.len());
    let prefix = format!("{}:", name.to_ascii_lowercase());
    for line in msg[..head_end].split_inclusive(|&b| b == b'\n') {
        if !line.to_ascii_lowercase().starts_with(prefix.as_bytes()) {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&msg[head_end..]);
    out
}

#[cfg(test)]
mod tests;
