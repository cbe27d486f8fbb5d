use std::collections::BTreeMap;

use super::*;

#[test]
fn the_same_seed_gives_the_same_cases_and_another_seed_other_random_edits() {
    let (a, b, c) = (
        cases(DEFAULT_SEED),
        cases(DEFAULT_SEED),
        cases(DEFAULT_SEED + 1),
    );
    assert_eq!(a.len(), b.len());
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| x.bytes == y.bytes && x.expect == y.expect));
    assert_eq!(
        a.len(),
        c.len(),
        "only the random edits' bytes depend on the seed"
    );
    assert!(a.iter().zip(&c).any(|(x, y)| x.bytes != y.bytes));
}

#[test]
fn there_are_several_thousand_cases_and_every_field_has_its_share() {
    let all = cases(DEFAULT_SEED);
    assert!(all.len() >= 3000, "{} cases", all.len());
    assert!(all.iter().enumerate().all(|(i, c)| c.id == i));
    let mut per_field: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in &all {
        *per_field.entry((c.base.name(), c.field)).or_default() += 1;
    }
    for f in FIELDS {
        for b in f.bases {
            let n = per_field.get(&(b.name(), f.name)).copied().unwrap_or(0);
            assert!(n >= 40, "{} {}: {n} cases", b.name(), f.name);
        }
    }
}

#[test]
fn the_base_messages_are_valid_and_fill_in_the_sender() {
    let sender: SocketAddr = "127.0.0.1:4242".parse().unwrap();
    for base in [Base::Invite, Base::Register] {
        let msg = base::render(base, &[], 7).expect("renders");
        let text = String::from_utf8(base::fill_sender(&msg, sender, "UDP")).unwrap();
        assert!(
            text.contains("Via: SIP/2.0/UDP 127.0.0.1:4242;branch=z9hG4bK-mut-7;"),
            "{text}"
        );
        assert!(!text.contains("__SENDER"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }
}

#[test]
fn expectations_follow_the_grammar_and_the_policy() {
    let all = cases(DEFAULT_SEED);
    let find = |field: &str, op: &str, value: &[u8]| {
        all.iter()
            .find(|c| c.field == field && c.operator == op && c.value == value)
            .unwrap_or_else(|| panic!("no case {field} {op} {}", escape(value, 40)))
    };
    assert_eq!(
        find("cseq.number", "special", b"2147483648").expect,
        Expect::Refuse
    );
    assert_eq!(
        find("version", "special", b"SIP/2.1").expect,
        Expect::Refuse
    );
    assert_eq!(find("via.host", "special", b"[::1]").expect, Expect::Either);
    assert_eq!(
        find("subject", "format-string", b"%s%n%x%s%n%x%d%p").expect,
        Expect::Carry
    );
    assert_eq!(find("subject", "nul", b"lun\0ch?").expect, Expect::Either);
    assert_eq!(find("body", "special", b"\0\0\0").expect, Expect::Carry);
    let big = find("subject", "len-65536", &[b'a'; 65536]);
    assert_eq!(
        (big.expect, big.expect_stream),
        (Expect::Refuse, Expect::Refuse)
    );
    let carried = find("x-header", "utf8", "opaque évalue 1".as_bytes());
    assert_eq!(
        carried.carried.as_deref(),
        Some("X-Mutation: opaque évalue 1\r\n".as_bytes())
    );
    let shorter = find("content-length", "len-1", b"1");
    assert_eq!(
        (shorter.expect, shorter.body.as_deref()),
        (Expect::Either, Some(&b"v"[..]))
    );
}

#[test]
fn header_cases_double_and_remove_whole_lines() {
    let all = cases(DEFAULT_SEED);
    let cl = all
        .iter()
        .find(|c| {
            c.base == Base::Invite && c.field == "Content-Length" && c.operator == "header-missing"
        })
        .unwrap();
    assert!(!String::from_utf8_lossy(&cl.bytes).contains("Content-Length"));
    assert_eq!(
        (cl.expect, cl.expect_stream),
        (Expect::Either, Expect::Refuse)
    );
    let cseq = all
        .iter()
        .find(|c| c.base == Base::Register && c.field == "CSeq" && c.operator == "header-doubled")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cseq.bytes)
            .matches("CSeq: 1 REGISTER\r\n")
            .count(),
        2
    );
}

#[test]
#[ignore = "prints every case: cargo test -p sipshard-testkit mutate::tests::dump -- --ignored"]
fn dump() {
    for c in cases(DEFAULT_SEED) {
        println!("{}", c.describe());
    }
}
