//! Redirect mode and next-hop failover (RFC 3665 sections 3.6 and 3.4), driven with byte
//! strings.

use super::*;

const INVITE_BOB: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKred1\nMax-Forwards: 70\nFrom: <sip:alice@atlanta.example.com>;tag=a1\nTo: <sip:bob@biloxi.example.com>\nCall-ID: redirect-1\nCSeq: 1 INVITE\nContent-Length: 0\n\n";

fn redirecting(all: bool) -> &'static ProxyConfig {
    let mut c = base_config("192.0.2.10:5060", &["biloxi.example.com"], false);
    c.redirect = RedirectPolicy {
        all,
        domains: if all {
            vec![]
        } else {
            vec!["biloxi.example.com".into()]
        },
    };
    Box::leak(Box::new(c))
}

#[test]
fn redirect_lists_every_binding_with_q_and_expires_and_absorbs_the_ack() {
    for all in [true, false] {
        let mut core = Core::new(redirecting(all));
        register(
            &mut core,
            "bob",
            "biloxi.example.com",
            "sip:bob@192.0.2.4:5062",
        );
        register(
            &mut core,
            "bob",
            "biloxi.example.com",
            "sip:bob@192.0.2.5;transport=udp",
        );
        let (a, out) = run(&mut core, "192.0.2.30:5060", INVITE_BOB);
        assert!(matches!(a, Action::Reply { .. }), "{a:?}");
        assert!(
            out.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Contact: <sip:bob@192.0.2.4:5062>;q=1.000;expires=3600\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Contact: <sip:bob@192.0.2.5;transport=udp>;q=1.000;expires=3600\r\n"),
            "{out}"
        );
        let to = out
            .lines()
            .find(|l| l.starts_with("To: "))
            .expect("To")
            .trim_end()
            .to_string();
        // The ACK for the 302: same branch, the 302's To tag.
        let ack = INVITE_BOB
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace("To: <sip:bob@biloxi.example.com>", &to);
        let (a, _) = run(&mut core, "192.0.2.30:5060", &ack);
        assert_eq!(a, Action::Drop(DropReason::AbsorbedAck));
        // An unregistered user: 480.
        let (a, out) = run(
            &mut core,
            "192.0.2.30:5060",
            &INVITE_BOB.replace("sip:bob@", "sip:carol@"),
        );
        assert!(matches!(a, Action::Reply { .. }));
        assert!(out.starts_with("SIP/2.0 480 "), "{out}");
        assert_eq!(core.counters.replies[302], 1);
    }
}

#[test]
fn redirect_domain_leaves_other_domains_proxied_and_cancel_forwarded() {
    let mut c = base_config(
        "192.0.2.10:5060",
        &["biloxi.example.com", "chicago.example.com"],
        false,
    );
    c.redirect.domains = vec!["biloxi.example.com".into()];
    let mut core = Core::new(Box::leak(Box::new(c)));
    register(
        &mut core,
        "bob",
        "chicago.example.com",
        "sip:bob@192.0.2.4:5062",
    );
    register(
        &mut core,
        "bob",
        "biloxi.example.com",
        "sip:bob@192.0.2.4:5062",
    );
    let chicago = INVITE_BOB.replace("bob@biloxi", "bob@chicago");
    let (a, _) = run(&mut core, "192.0.2.30:5060", &chicago);
    assert!(matches!(a, Action::Forward { .. }), "{a:?}");
    let cancel = INVITE_BOB
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let (a, out) = run(&mut core, "192.0.2.30:5060", &cancel);
    assert!(matches!(a, Action::Forward { .. }), "{a:?} {out}");
}

fn with_route(targets: &[&str]) -> &'static ProxyConfig {
    let mut c = base_config("192.0.2.10:5060", &["atlanta.example.com"], false);
    c.routes = vec![StaticRoute {
        domain: "biloxi.example.com".into(),
        transport: Transport::Udp,
        targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
    }];
    Box::leak(Box::new(c))
}

#[test]
fn requests_go_to_the_first_next_hop_that_is_up() {
    let mut core = Core::new(with_route(&["192.0.2.41:5060", "192.0.2.42:5060"]));
    let to = |core: &mut Core| match run(core, "192.0.2.30:5060", INVITE_BOB).0 {
        Action::Forward { to, .. } => to,
        a => panic!("{a:?}"),
    };
    assert_eq!(
        to(&mut core),
        Target::udp("192.0.2.41:5060".parse().unwrap())
    );
    let first: SocketAddr = "192.0.2.41:5060".parse().unwrap();
    core.apply_hop_state(HopState {
        hop: first,
        up: false,
    });
    assert_eq!(
        to(&mut core),
        Target::udp("192.0.2.42:5060".parse().unwrap())
    );
    // The CANCEL of that INVITE follows it.
    let cancel = INVITE_BOB
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let (a, _) = run(&mut core, "192.0.2.30:5060", &cancel);
    assert!(
        matches!(a, Action::Forward { to, .. } if to == Target::udp("192.0.2.42:5060".parse().unwrap())),
        "{a:?}"
    );
    core.apply_hop_state(HopState {
        hop: first,
        up: true,
    });
    assert_eq!(to(&mut core), Target::udp(first));
    assert_eq!(core.counters.next_hop_changes, 2);
}

#[test]
fn auth_callers_challenges_callers_of_foreign_domains_too() {
    use crate::auth::AuthMode;
    use crate::auth::{AuthConfig, Authenticator, UserDb};
    let invite = INVITE_BOB.replace("biloxi.example.com", "chicago.example.com");
    for (mode, challenged) in [(AuthMode::All, false), (AuthMode::Callers, true)] {
        let mut c = base_config("192.0.2.10:5060", &["biloxi.example.com"], false);
        c.routes = vec![StaticRoute {
            domain: "*".into(),
            transport: Transport::Udp,
            targets: vec!["192.0.2.41:5060".parse().unwrap()],
        }];
        let mut core = Core::new(Box::leak(Box::new(c)));
        let users = std::sync::Arc::new(UserDb::parse(b"alice:secret\n").unwrap());
        let cfg = AuthConfig::new("biloxi.example.com", b"k".to_vec());
        core.set_auth(Authenticator::new(cfg, users).unwrap(), mode, 1);
        // Alice of atlanta.example.com calls through us.
        let (a, out) = run(&mut core, "192.0.2.30:5060", &invite);
        if challenged {
            assert!(out.starts_with("SIP/2.0 407 "), "{mode:?}: {out}");
            assert!(out.contains("realm=\"biloxi.example.com\""), "{out}");
        } else {
            assert!(matches!(a, Action::Forward { .. }), "{mode:?}: {a:?} {out}");
        }
    }
}
