//! What an outcome means for a case: whether it breaks the case's expectation, and the
//! per-field counts a benchmark prints.

use std::collections::BTreeMap;

use super::Outcome;
use crate::mutate::{escape, Base, Case, Expect};

/// Why `outcome` breaks what `case` expects over a stream or a datagram, if it does.
pub fn violation(case: &Case, outcome: &Outcome, stream: bool) -> Option<String> {
    let expect = case.expect_on(stream);
    match (expect, outcome) {
        (_, Outcome::Unsendable) => None,
        (Expect::Refuse, Outcome::Forwarded(_)) => Some("forwarded".into()),
        (Expect::Refuse, Outcome::Answered(s)) if *s < 300 => Some(format!("accepted ({s})")),
        (Expect::Carry, Outcome::Forwarded(copy)) => carried(case, copy),
        (Expect::Carry, other) => Some(format!("not forwarded ({})", describe(other))),
        (_, Outcome::Forwarded(copy)) => body_changed(case, copy),
        _ => None,
    }
}

/// A carried header's bytes or the body missing from the forwarded copy.
fn carried(case: &Case, copy: &[u8]) -> Option<String> {
    if let Some(line) = &case.carried {
        if !copy.windows(line.len()).any(|w| w == line.as_slice()) {
            return Some(format!("carried bytes changed: {}", escape(line, 60)));
        }
    }
    body_changed(case, copy)
}

fn body_changed(case: &Case, copy: &[u8]) -> Option<String> {
    let expected = case.body.as_ref().filter(|_| case.base == Base::Invite)?;
    let body = copy
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&b""[..], |i| &copy[i + 4..]);
    (body != expected.as_slice()).then(|| {
        format!(
            "body changed: sent {} bytes, forwarded {}: {}",
            expected.len(),
            body.len(),
            escape(body, 40)
        )
    })
}

/// An outcome in a few words.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Answered(s) => format!("answered {s}"),
        Outcome::Forwarded(_) => "forwarded".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Outcome classes counted per (base, field).
#[derive(Default)]
pub struct Tally {
    pub rows: BTreeMap<(&'static str, &'static str), BTreeMap<&'static str, usize>>,
}

impl Tally {
    pub fn add(&mut self, case: &Case, outcome: &Outcome) {
        let row = self.rows.entry((case.base.name(), case.field)).or_default();
        *row.entry(outcome.class()).or_default() += 1;
    }

    pub fn get(&self, base: &str, field: &str, class: &str) -> usize {
        self.rows
            .iter()
            .find(|((b, f), _)| *b == base && *f == field)
            .and_then(|(_, row)| row.get(class).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::{cases, DEFAULT_SEED};

    fn case(field: &str, expect: Expect) -> Case {
        cases(DEFAULT_SEED)
            .into_iter()
            .find(|c| {
                c.base == Base::Invite
                    && c.field == field
                    && c.expect == expect
                    && c.carried.is_some() == (expect == Expect::Carry)
            })
            .expect("such a case")
    }

    /// What a proxy that forwards `case` unchanged would deliver (a Via more on top).
    fn forwarded(case: &Case) -> Vec<u8> {
        let sent = case.bytes_for(([127, 0, 0, 1], 4000).into(), "UDP");
        let at = sent.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        [
            &sent[..at],
            b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy\r\n",
            &sent[at..],
        ]
        .concat()
    }

    #[test]
    fn a_refused_case_must_not_be_forwarded_nor_accepted() {
        let c = case("cseq.number", Expect::Refuse);
        assert_eq!(violation(&c, &Outcome::Answered(400), false), None);
        assert_eq!(violation(&c, &Outcome::Dropped, false), None);
        assert!(violation(&c, &Outcome::Answered(200), false).is_some());
        assert!(violation(&c, &Outcome::Forwarded(forwarded(&c)), false).is_some());
    }

    #[test]
    fn a_carried_field_and_the_body_must_arrive_unchanged() {
        let c = case("subject", Expect::Carry);
        let copy = forwarded(&c);
        assert_eq!(
            violation(&c, &Outcome::Forwarded(copy.clone()), false),
            None
        );
        assert!(violation(&c, &Outcome::Answered(400), false).is_some());
        let line = c.carried.clone().unwrap();
        let at = copy
            .windows(line.len())
            .position(|w| w == line.as_slice())
            .unwrap();
        let mut changed = copy.clone();
        changed[at + line.len() - 3] ^= 0x20;
        assert!(violation(&c, &Outcome::Forwarded(changed), false)
            .unwrap()
            .starts_with("carried"));
        let mut body_changed = copy;
        *body_changed.last_mut().unwrap() ^= 0x20;
        assert!(violation(&c, &Outcome::Forwarded(body_changed), false)
            .unwrap()
            .starts_with("body"));
    }
}
