//! The pinger alone: its wheel, its answers and its pings, with a fake table.

use std::net::SocketAddr;

use super::*;
use crate::sip::Message;

const HOST: &str = "192.0.2.10:5060";

fn pinger(interval_ms: u64, failures: u32) -> Pinger {
    let cfg = NatPingConfig {
        interval_ms,
        method: PingMethod::Options,
        failures,
    };
    Pinger::new(cfg, 1)
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, (i % 250) as u8], 40_000 + (i / 250) as u16))
}

/// Run `p` from `from_ms` to `to_ms` in steps of `step_ms`, every contact kept (none dead
/// unless `dead_ok`); returns the pings sent per step and the contacts found dead.
fn run(p: &mut Pinger, from_ms: u64, to_ms: u64, step_ms: u64) -> (Vec<usize>, Vec<Vec<u8>>) {
    let mut per_step = Vec::new();
    let mut dead = Vec::new();
    let mut batch = PingBatch::default();
    let mut t = from_ms;
    while t < to_ms {
        batch.clear();
        let n = p.run_due(
            t,
            &mut batch,
            |_, contact, _, is_dead| {
                if is_dead {
                    dead.push(contact.to_vec());
                    return VisitOutcome::Forget;
                }
                VisitOutcome::Keep
            },
            |_, _| HOST,
        );
        assert_eq!(n, batch.pings.len());
        per_step.push(n);
        t += step_ms;
    }
    (per_step, dead)
}

#[test]
fn every_contact_is_pinged_once_an_interval_spread_over_it() {
    let mut p = pinger(1_000, 0);
    for i in 0..5_000 {
        p.track(
            format!("u{i}@example.com").as_bytes(),
            b"sip:u@10.0.0.2",
            addr(i),
            0,
        );
    }
    let (per_step, _) = run(&mut p, 0, 1_000, SLOT_MS);
    assert_eq!(per_step.iter().sum::<usize>(), 5_000, "once each");
    // 50 slots of about 100 each: no burst.
    let max = *per_step.iter().max().unwrap();
    assert!(
        max < 160,
        "the busiest slot holds {max} of 5,000 over 50 slots"
    );
    // And once again the next interval.
    let (next, _) = run(&mut p, 1_000, 2_000, SLOT_MS);
    assert_eq!(next.iter().sum::<usize>(), 5_000);
}

#[test]
fn a_late_caller_catches_up_at_most_one_turn() {
    let mut p = pinger(1_000, 0);
    for i in 0..100 {
        p.track(format!("u{i}@x").as_bytes(), b"sip:u@10.0.0.2", addr(i), 0);
    }
    let (steps, _) = run(&mut p, 0, 1, 1);
    assert!(steps[0] <= 100);
    // Ten seconds late: every contact once, not ten times.
    let (steps, _) = run(&mut p, 10_000, 10_001, 1);
    assert_eq!(steps[0], 100);
}

#[test]
fn unanswered_pings_make_a_contact_dead_and_an_answer_resets_the_count() {
    let mut p = pinger(100, 3);
    p.track(b"bob@x", b"sip:bob@10.0.0.2", addr(1), 0);
    p.track(b"eve@x", b"sip:eve@10.0.0.3", addr(2), 0);
    let key_bob = key_of(b"bob@x", b"sip:bob@10.0.0.2");
    let mut dead = Vec::new();
    for turn in 0..4u64 {
        // bob answers every ping; eve never does.
        let (_, d) = run(&mut p, turn * 100, (turn + 1) * 100, SLOT_MS);
        dead.extend(d);
        assert!(p.answered(key_bob), "turn {turn}");
    }
    assert_eq!(dead, vec![b"sip:eve@10.0.0.3".to_vec()]);
    assert_eq!(p.len(), 1, "eve forgotten");
    // A registration counts as an answer.
    p.track(b"bob@x", b"sip:bob@10.0.0.2", addr(1), 0);
    assert!(!p.answered(key_bob), "nothing awaited any more");
}

#[test]
fn a_ping_is_an_options_request_whose_answer_finds_its_owner() {
    let mut p = pinger(100, 3);
    p.track(b"bob@x", b"sip:bob@10.0.0.2:5062", addr(1), 2);
    let mut batch = PingBatch::default();
    let n = p.run_due(
        100,
        &mut batch,
        |_, _, _, _| VisitOutcome::Keep,
        |_, _| HOST,
    );
    let n = n + p.run_due(
        200,
        &mut batch,
        |_, _, _, _| VisitOutcome::Keep,
        |_, _| HOST,
    );
    assert_eq!(n, 1);
    let ping = batch.pings[0];
    assert_eq!((ping.to, ping.listener), (addr(1), 2));
    let mut bytes = batch.bytes_of(&ping).to_vec();
    let msg = Message::parse(&mut bytes).expect("a well-formed request");
    assert_eq!(msg.method(), Some(crate::sip::Method::Options));
    assert_eq!(
        msg.request_uri_span().unwrap().of(msg.buf()),
        b"sip:bob@10.0.0.2:5062"
    );
    let via = msg.top_via().unwrap();
    assert_eq!(via.host_raw, b"192.0.2.10");
    let branch = via.branch().unwrap().to_vec();
    assert!(msg.validate_request().is_ok());
    // Its answer, on this shard and on another.
    assert_eq!(p.on_answer(&branch), Some(true));
    assert_eq!(p.on_answer(&branch), Some(false), "answered already");
    let mut other = Pinger::new(p.cfg, 0);
    assert_eq!(other.on_answer(&branch), Some(false));
    let key = key_of(b"bob@x", b"sip:bob@10.0.0.2:5062");
    assert_eq!(other.take_foreign().collect::<Vec<_>>(), vec![(1, key)]);
    // A forwarded request's branch is not a ping's.
    assert_eq!(p.on_answer(b"z9hG4bKsS0123456789abcdef.01234567"), None);
    assert_eq!(p.on_answer(b"z9hG4bKsSnpzz"), None);
    // 28 bytes, one character straddling the owner's end, or not hex: refused, no panic.
    let straddling = "z9hG4bKsSnp000\u{e9}00000000000000000000000";
    assert_eq!(straddling.len(), "z9hG4bKsSnp".len() + ID_HEX);
    assert_eq!(p.on_answer(straddling.as_bytes()), None);
    assert_eq!(
        p.on_answer(b"z9hG4bKsSnp0001zzzzzzzzzzzzzzzz00000000"),
        None
    );
}

#[test]
fn crlf_pings_are_four_bytes_and_never_make_a_contact_dead() {
    let cfg = NatPingConfig {
        interval_ms: 100,
        method: PingMethod::Crlf,
        failures: 1,
    };
    let mut p = Pinger::new(cfg, 0);
    p.track(b"bob@x", b"sip:bob@10.0.0.2", addr(1), 0);
    let (steps, dead) = run(&mut p, 0, 1_000, SLOT_MS);
    assert_eq!(steps.iter().sum::<usize>(), 10);
    assert!(dead.is_empty());
}

/// Run one turn of `p` (interval 100 ms) at `turn`, counting the table checks.
fn checked_in_turn(p: &mut Pinger, turn: u64) -> usize {
    let mut checks = 0;
    let mut batch = PingBatch::default();
    for t in (turn * 100..(turn + 1) * 100).step_by(SLOT_MS as usize) {
        p.run_due(
            t,
            &mut batch,
            |_, _, _, _| {
                checks += 1;
                VisitOutcome::Keep
            },
            |_, _| HOST,
        );
    }
    checks
}

#[test]
fn the_table_is_asked_every_few_pings_and_when_a_contact_falls_silent() {
    let mut p = pinger(100, 2);
    p.track(b"bob@x", b"sip:bob@10.0.0.2", addr(1), 0);
    let key = key_of(b"bob@x", b"sip:bob@10.0.0.2");
    // bob answers: checked at his first ping, then every CHECK_EVERY.
    let checks: Vec<usize> = (0..9)
        .map(|turn| {
            let n = checked_in_turn(&mut p, turn);
            assert!(p.answered(key), "turn {turn}");
            n
        })
        .collect();
    assert_eq!(checks, [1, 0, 0, 0, 1, 0, 0, 0, 1]);
    // Silent from now on (turn 9's ping is the first unanswered): the second miss makes him
    // dead, which is checked out of turn.
    assert_eq!(checked_in_turn(&mut p, 9), 0, "the last ping answered");
    assert_eq!(checked_in_turn(&mut p, 10), 0, "one miss");
    assert_eq!(checked_in_turn(&mut p, 11), 1, "two misses: dead");
}

#[test]
fn a_contact_the_table_forgot_is_dropped_and_answers_still_find_the_others() {
    let mut p = pinger(20, 0);
    for i in 0..10 {
        let aor = format!("u{i}@x");
        p.track(aor.as_bytes(), b"sip:u@10.0.0.2", addr(i), 0);
    }
    // One slot: all ten pinged in one turn; u0..u4 forgotten by the table.
    let mut batch = PingBatch::default();
    let gone = |aor: &[u8]| aor < b"u5".as_slice();
    let n = p.run_due(
        0,
        &mut batch,
        |aor, _, _, _| match gone(aor) {
            true => VisitOutcome::Forget,
            false => VisitOutcome::Keep,
        },
        |_, _| HOST,
    );
    assert_eq!((n, p.len()), (5, 5));
    // Each ping's answer finds its contact, by its position or by its key.
    for ping in &batch.pings {
        let mut bytes = batch.bytes_of(ping).to_vec();
        let msg = Message::parse(&mut bytes).unwrap();
        let branch = msg.top_via().unwrap().branch().unwrap().to_vec();
        assert_eq!(p.on_answer(&branch), Some(true));
    }
    // A stale position (the contact moved: out of range, or another contact there now) falls
    // back to the key, and answers nobody else.
    batch.clear();
    p.run_due(20, &mut batch, |_, _, _, _| VisitOutcome::Keep, |_, _| HOST);
    let branch_of = |aor: &[u8], pos: u64| {
        let mut ids = [0u8; ID_HEX];
        hex_into(1, &mut ids[..4]);
        hex_into(key_of(aor, b"sip:u@10.0.0.2"), &mut ids[4..20]);
        hex_into(pos, &mut ids[20..]);
        [BRANCH_PREFIX, PING_MARK, &ids].concat()
    };
    let (u7, u8) = (b"u7@x".as_slice(), b"u8@x".as_slice());
    let pos_of = |aor: &[u8]| u64::from(p.positions[&key_of(aor, b"sip:u@10.0.0.2")]);
    let (u7_at, u8_at) = (pos_of(u7), pos_of(u8));
    assert_eq!(p.on_answer(&branch_of(u7, 99)), Some(true), "out of range");
    assert_eq!(p.on_answer(&branch_of(u8, u7_at)), Some(true), "u7's place");
    assert_eq!(
        p.on_answer(&branch_of(u8, u8_at)),
        Some(false),
        "u8 answered once"
    );
    assert_eq!(
        p.on_answer(&branch_of(u7, u7_at)),
        Some(false),
        "u7 answered once"
    );
}

#[test]
fn short_and_long_names_alike_reach_the_ping_and_the_table_check() {
    // One contact's AOR and URI fit inline; the other's do not and live on the heap.
    let long_uri = format!("sip:carol@10.0.0.3:5060;{}", "x".repeat(200));
    let contacts: [(&[u8], &[u8]); 2] = [
        (b"bob@x", b"sip:bob@10.0.0.2:5062"),
        (b"carol@example.com", long_uri.as_bytes()),
    ];
    assert!(contacts[1].0.len() + contacts[1].1.len() > INLINE_NAMES);
    let mut p = pinger(20, 0);
    for (i, (aor, uri)) in contacts.iter().enumerate() {
        p.track(aor, uri, addr(i as u32), 0);
    }
    let mut batch = PingBatch::default();
    let mut visited = Vec::new();
    p.run_due(
        0,
        &mut batch,
        |aor, uri, _, _| {
            visited.push((aor.to_vec(), uri.to_vec()));
            VisitOutcome::Keep
        },
        |_, _| HOST,
    );
    visited.sort();
    let mut expected: Vec<_> = contacts
        .iter()
        .map(|(a, u)| (a.to_vec(), u.to_vec()))
        .collect();
    expected.sort();
    assert_eq!(visited, expected, "the first ping of each checks the table");
    let mut uris: Vec<Vec<u8>> = batch
        .pings
        .iter()
        .map(|ping| {
            let mut bytes = batch.bytes_of(ping).to_vec();
            let msg = Message::parse(&mut bytes).expect("a well-formed request");
            msg.request_uri_span().unwrap().of(msg.buf()).to_vec()
        })
        .collect();
    uris.sort();
    let mut expected_uris: Vec<Vec<u8>> = contacts.iter().map(|(_, u)| u.to_vec()).collect();
    expected_uris.sort();
    assert_eq!(uris, expected_uris);
}
