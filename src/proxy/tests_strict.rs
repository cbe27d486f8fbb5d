//! The strict checks (docs/architecture.md, "What is checked before a request is forwarded"):
//! each broken field the path relies on is refused with a reason naming it, or dropped when no
//! answer can be routed; what is only carried goes through as it came.

use super::*;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKs1;rport\nMax-Forwards: 70\nFrom: <sip:alice@example.org>;tag=a1\nTo: <sip:bob@example.com>\nCall-ID: strict-1@192.0.2.1\nCSeq: 1 INVITE\nContact: <sip:alice@192.0.2.1>\nExpires: 120\nContent-Type: application/sdp\nContent-Length: 5\n\nv=0\n";

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKs2\nMax-Forwards: 70\nFrom: <sip:carol@example.com>;tag=c1\nTo: <sip:carol@example.com>\nCall-ID: strict-2@192.0.2.1\nCSeq: 1 REGISTER\nContact: <sip:carol@192.0.2.1>\nExpires: 600\nContent-Length: 0\n\n";

/// A core with bob registered, and what it does with `base` after `from` becomes `to`.
fn outcome(base: &str, from: &str, to: &str) -> (Action, String) {
    assert!(base.contains(from), "{from}");
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], false));
    register(&mut core, "bob", "example.com", "sip:bob@192.0.2.60");
    run(&mut core, "192.0.2.1:5060", &base.replacen(from, to, 1))
}

/// `(base, from, to, expected start of the answer, or "" for a counted drop)`.
const REFUSED: &[(&str, &str, &str, &str)] = &[
    (INVITE, "SIP/2.0\n", "SIP/3.0\n", "SIP/2.0 505 "),
    (
        INVITE,
        "SIP/2.0\n",
        "SIP/2.00a\n",
        "SIP/2.0 400 Bad Request - Malformed Start Line",
    ),
    (
        INVITE,
        "sip:bob@example.com SIP",
        "sip:bob@example.com:0 SIP",
        "SIP/2.0 400 Bad Request - Malformed Request-URI",
    ),
    (
        INVITE,
        "sip:bob@example.com SIP",
        "sip:bob@example.com:65536 SIP",
        "SIP/2.0 400 Bad Request - Malformed Request-URI",
    ),
    (
        INVITE,
        "sip:bob@example.com SIP",
        "sip:bob@exa mple.com SIP",
        "SIP/2.0 400 Bad Request - Malformed Start Line",
    ),
    (
        INVITE,
        "INVITE sip",
        "INV\"ITE sip",
        "SIP/2.0 400 Bad Request - Malformed Method",
    ),
    // The top Via unparseable: no answer can be routed. Parsed but with a parameter broken: the
    // answer goes where the request came from.
    (
        INVITE,
        "SIP/2.0/UDP 192.0.2.1",
        "SIP/2.99999999/UDP 192.0.2.1",
        "",
    ),
    (
        INVITE,
        "SIP/2.0/UDP 192.0.2.1",
        "SIP/aaaa/UDP 192.0.2.1",
        "",
    ),
    (
        INVITE,
        "SIP/2.0/UDP 192.0.2.1",
        "SIPS/2.0/UDP 192.0.2.1",
        "",
    ),
    (INVITE, "192.0.2.1:5060;", "192.0.2.1:99999;", ""),
    (
        INVITE,
        "branch=z9hG4bKs1",
        "branch=z9hG4bKs1;received=host.example",
        "SIP/2.0 400 Bad Request - Malformed Via",
    ),
    (
        INVITE,
        ";rport\n",
        ";rport=0\n",
        "SIP/2.0 400 Bad Request - Malformed Via",
    ),
    (
        INVITE,
        ";rport\n",
        ";ttl=300\n",
        "SIP/2.0 400 Bad Request - Malformed Via",
    ),
    (INVITE, ";rport\n", ";maddr=\n", ""),
    (
        INVITE,
        ";rport\n",
        ";branch=z9hG4bKtwice\n",
        "SIP/2.0 400 Bad Request - Malformed Via",
    ),
    // A lower Via broken: the response could not go back past it.
    (
        INVITE,
        "Max-Forwards",
        "Via: SIP/2.1/UDP 192.0.2.2;branch=z9hG4bKx\nMax-Forwards",
        "SIP/2.0 400 Bad Request - Malformed Via",
    ),
    (
        INVITE,
        "CSeq: 1 INVITE",
        "CSeq: 2147483648 INVITE",
        "SIP/2.0 400 Bad Request - Malformed CSeq",
    ),
    (
        INVITE,
        "CSeq: 1 INVITE",
        "CSeq: -1 INVITE",
        "SIP/2.0 400 Bad Request - Malformed CSeq",
    ),
    (
        INVITE,
        "CSeq: 1 INVITE",
        "CSeq: 1 BYE",
        "SIP/2.0 400 Bad Request - CSeq Method Mismatch",
    ),
    (
        INVITE,
        "CSeq: 1 INVITE",
        "CSeq: 1INVITE",
        "SIP/2.0 400 Bad Request - Malformed CSeq",
    ),
    (
        INVITE,
        "Call-ID: strict-1",
        "Call-ID: str\u{e9}ct-1",
        "SIP/2.0 400 Bad Request - Malformed Call-ID",
    ),
    (
        INVITE,
        "Call-ID: strict-1@192.0.2.1\n",
        "Call-ID: strict-1@192.0.2.1\nCall-ID: other\n",
        "SIP/2.0 400 Bad Request - Malformed Call-ID",
    ),
    (
        INVITE,
        "<sip:alice@example.org>",
        "<sip:alice@example.org",
        "SIP/2.0 400 Bad Request - Malformed From",
    ),
    (
        INVITE,
        "tag=a1",
        "tag=a:1",
        "SIP/2.0 400 Bad Request - Malformed From",
    ),
    (
        INVITE,
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>>",
        "SIP/2.0 400 Bad Request - Malformed To",
    ),
    (
        INVITE,
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>;tag",
        "SIP/2.0 400 Bad Request - Malformed To",
    ),
    (
        INVITE,
        "Max-Forwards: 70",
        "Max-Forwards: 256",
        "SIP/2.0 400 Bad Request - Malformed Max-Forwards",
    ),
    (
        INVITE,
        "Max-Forwards: 70",
        "Max-Forwards: -70",
        "SIP/2.0 400 Bad Request - Malformed Max-Forwards",
    ),
    (
        INVITE,
        "Content-Length: 5",
        "Content-Length: +5",
        "SIP/2.0 400 Bad Request - Malformed Content-Length",
    ),
    (
        INVITE,
        "Content-Length: 5",
        "Content-Length: 5\nl: 5",
        "SIP/2.0 400 Bad Request - Repeated Content-Length",
    ),
    (
        INVITE,
        "Content-Length: 5",
        "Content-Length: 6",
        "SIP/2.0 400 Bad Request - Content-Length Exceeds Message",
    ),
    (
        REGISTER,
        "Contact: <sip:carol@192.0.2.1>",
        "Contact: <sip:carol@192.0.2.1",
        "SIP/2.0 400 Bad Request - Malformed Contact",
    ),
    (
        REGISTER,
        "Contact: <sip:carol@192.0.2.1>",
        "Contact: <sip:carol@192.0.2.1>,",
        "SIP/2.0 400 Bad Request - Malformed Contact",
    ),
    (
        REGISTER,
        "Contact: <sip:carol@192.0.2.1>",
        "Contact: sip:carol@192.0.2.1;",
        "SIP/2.0 400 Bad Request - Malformed Contact",
    ),
    (
        INVITE,
        "To: <sip:bob@example.com>",
        "To: sip:bob@example.com;",
        "SIP/2.0 400 Bad Request - Malformed To",
    ),
    (
        INVITE,
        "sip:bob@example.com SIP",
        "sip:bob@example.com;;lr SIP",
        "SIP/2.0 400 Bad Request - Malformed Request-URI",
    ),
    (
        INVITE,
        "Max-Forwards",
        "Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx,\nMax-Forwards",
        "SIP/2.0 400 Bad Request - Malformed Via",
    ),
    (
        REGISTER,
        "Expires: 600",
        "Expires: -1",
        "SIP/2.0 400 Bad Request - Malformed Expires",
    ),
    (
        REGISTER,
        "Expires: 600",
        "Expires: 600\nExpires: 0",
        "SIP/2.0 400 Bad Request - Repeated Expires",
    ),
];

#[test]
fn what_the_path_relies_on_is_refused_when_broken() {
    for &(base, from, to, expected) in REFUSED {
        let (action, out) = outcome(base, from, to);
        if expected.is_empty() {
            assert!(
                matches!(action, Action::Drop(_)),
                "{to:?}: {action:?} {out}"
            );
        } else {
            assert!(matches!(action, Action::Reply { .. }), "{to:?}: {action:?}");
            assert!(out.starts_with(expected), "{to:?}: {out}");
        }
    }
}

#[test]
fn what_is_only_carried_goes_through_unchanged() {
    for (from, to) in [
        ("Expires: 120", "Expires: soon, please"),
        ("Contact: <sip:alice@192.0.2.1>", "Contact: <<odd>>"),
        (
            "Content-Type: application/sdp",
            "Subject: %s%n%x\nContent-Type: application/sdp",
        ),
        (
            "Content-Type: application/sdp",
            "X-Anything: \u{fc}ber \"quoted\nContent-Type: application/sdp",
        ),
        (
            "Call-ID: strict-1@192.0.2.1",
            "Call-ID: strict,1@@192.0.2.1",
        ),
    ] {
        let (action, out) = outcome(INVITE, from, to);
        assert!(
            matches!(action, Action::Forward { .. }),
            "{to:?}: {action:?} {out}"
        );
        assert!(out.contains(&to.replace('\n', "\r\n")), "{to:?}: {out}");
        assert!(out.ends_with("\r\n\r\nv=0\r\n"), "{to:?}: {out}");
    }
}

/// A response goes back by the Via below ours: a broken parameter there drops it, since where
/// it would go is not what the RFCs say.
#[test]
fn a_response_is_sent_back_only_by_a_well_formed_via() {
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], false));
    register(&mut core, "bob", "example.com", "sip:bob@192.0.2.60");
    let (_, forwarded) = run(&mut core, "192.0.2.1:5060", INVITE);
    let ours = forwarded.lines().find(|l| l.starts_with("Via: ")).unwrap();
    let answer = |second: &str| {
        format!("SIP/2.0 200 OK\n{ours}\nVia: {second}\nFrom: <sip:alice@example.org>;tag=a1\nTo: <sip:bob@example.com>;tag=b1\nCall-ID: strict-1@192.0.2.1\nCSeq: 1 INVITE\nContent-Length: 0\n\n")
    };
    let good = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKs1;received=192.0.2.7;rport=5070";
    let (action, _) = run(&mut core, "192.0.2.60:5060", &answer(good));
    assert_eq!(
        action,
        Action::Forward {
            to: Target::udp("192.0.2.7:5070".parse().unwrap()),
            socket: 0
        }
    );
    for bad in [
        "received=host.example",
        "rport=0",
        "ttl=999",
        "branch=a;branch=b",
    ] {
        let second = format!("SIP/2.0/UDP 192.0.2.1:5060;{bad}");
        let (action, _) = run(&mut core, "192.0.2.60:5060", &answer(&second));
        assert_eq!(action, Action::Drop(DropReason::Unparseable), "{bad}");
    }
}
