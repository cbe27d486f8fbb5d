//! RFC 6223's `keep` through the core: the registrar's 200 gives a UA's bare `keep` our
//! interval; as a proxy, a forwarded 2xx does so when it starts a registration, or a dialog we
//! stay in; a value written by a hop beyond us is replaced or removed.

use super::tests::{config, register, run};
use super::*;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.6:5060;keep{V};branch=z9hG4bKk2\nFrom: <sip:a@example.net>;tag=1\nTo: <sip:bob@example.com>\nCall-ID: keep2\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n";

/// A core with bob registered at 192.0.2.60:5080, Record-Routing or not.
fn core_with_bob(record_route: bool) -> Core {
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], record_route));
    register(&mut core, "bob", "example.com", "sip:bob@192.0.2.60:5080");
    core
}

/// The INVITE (its Via's `keep` followed by `keep_value`) forwarded to bob, and bob's answer
/// `status` with the Vias it received (folded into one line when `folded`), forwarded back:
/// what the caller gets.
fn answer_through(core: &mut Core, keep_value: &str, status: &str, folded: bool) -> String {
    let (_, fwd) = run(
        core,
        "203.0.113.6:40001",
        &INVITE.replace("{V}", keep_value),
    );
    let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via: ")).collect();
    let vias = match folded {
        true => format!(
            "Via: {}",
            vias.iter().map(|v| &v[5..]).collect::<Vec<_>>().join(", ")
        ),
        false => vias.join("\n"),
    };
    let answer = format!(
        "SIP/2.0 {status}\n{vias}\nFrom: <sip:a@example.net>;tag=1\nTo: <sip:bob@example.com>;tag=b\nCall-ID: keep2\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
    );
    let (a, out) = run(core, "192.0.2.60:5080", &answer);
    assert!(matches!(a, Action::Forward { .. }), "{a:?}\n{out}");
    assert_eq!(out.matches("Via: ").count(), 1, "{out}");
    out
}

#[test]
fn the_registrars_200_gives_a_bare_keep_the_interval() {
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], false));
    let (_, ok) = run(
        &mut core,
        "203.0.113.5:40000",
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKk1;keep;rport\nFrom: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: keep\nCSeq: 1 REGISTER\nContact: <sip:bob@192.0.2.60:5080>\nContent-Length: 0\n\n",
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        ok.contains("branch=z9hG4bKk1;keep=29;rport=40000;received=203.0.113.5\r\n"),
        "{ok}"
    );
}

#[test]
fn a_forwarded_2xx_to_a_dialog_we_record_route_gives_the_interval_and_others_do_not() {
    let mut core = core_with_bob(true);
    let ringing = answer_through(&mut core, "", "180 Ringing", false);
    assert!(ringing.contains(";keep;branch=z9hG4bKk2;"), "{ringing}");
    let ok = answer_through(&mut core, "", "200 OK", false);
    assert!(ok.contains(";keep=29;branch=z9hG4bKk2;"), "{ok}");
    // Not in the dialog's route set: no offer to receive its keep-alives.
    let mut core = core_with_bob(false);
    let ok = answer_through(&mut core, "", "200 OK", false);
    assert!(ok.contains(";keep;branch=z9hG4bKk2;"), "{ok}");
}

#[test]
fn a_value_from_beyond_the_next_hop_is_replaced_or_removed() {
    // The UA sent a bare `keep`; a value in the answer was put there downstream.
    let mut core = core_with_bob(true);
    let ok = answer_through(&mut core, "=1", "200 OK", false);
    assert!(ok.contains(";keep=29;branch=z9hG4bKk2;"), "{ok}");
    let ringing = answer_through(&mut core, "=1", "180 Ringing", false);
    assert!(ringing.contains(";keep;branch=z9hG4bKk2;"), "{ringing}");
}

#[test]
fn vias_folded_into_one_line_still_reach_the_caller() {
    // Our Via's removal rewrites the line: the answer goes back without the negotiation.
    let mut core = core_with_bob(true);
    let ok = answer_through(&mut core, "", "200 OK", true);
    assert!(ok.contains(";keep;branch=z9hG4bKk2;"), "{ok}");
}
