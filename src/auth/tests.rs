//! The policy end to end: challenge, answer computed independently of `digest.rs`, verdict.

use std::net::IpAddr;
use std::sync::Arc;

use md5::{Digest as _, Md5};
use proptest::prelude::*;

use super::*;
use crate::sip::Span;

const REALM: &str = "sip.example.com";
const T0: u64 = 1_700_000_000;
const RURI: &str = "sip:sip.example.com";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client() -> IpAddr {
    ip("192.0.2.10")
}

fn users() -> Arc<UserDb> {
    let text = "alice:wonderland\n\
                Mufasa:sip.example.com:99bdc22fc2a7819ca106fc03d0a2533a\n\
                elsewhere:other.realm:99bdc22fc2a7819ca106fc03d0a2533a\n";
    let db = UserDb::parse(text.as_bytes())
        .unwrap()
        .with_aliases(b"alice: 4420000001\n")
        .unwrap();
    Arc::new(db)
}

fn auth_with(f: impl FnOnce(&mut AuthConfig)) -> Authenticator {
    let mut cfg = AuthConfig::new(REALM, b"cluster secret".to_vec());
    f(&mut cfg);
    Authenticator::new(cfg, users()).unwrap()
}

fn auth() -> Authenticator {
    auth_with(|_| {})
}

fn md5hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a UAC does with a challenge: the quoted directive `name` from the header value.
fn directive_of(challenge: &str, name: &str) -> String {
    let at = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let end = challenge[at..].find('"').unwrap();
    challenge[at..at + end].to_string()
}

/// A UAC's answer, computed from the RFC 2617 formulas directly.
struct Answer<'a> {
    user: &'a str,
    password: &'a str,
    realm: &'a str,
    nonce: String,
    opaque: Option<String>,
    uri: &'a str,
    method: &'a str,
    /// None: RFC 2069 style.
    nc: Option<u32>,
    cnonce: &'a str,
    sess: bool,
}

impl<'a> Answer<'a> {
    fn to(challenge: &str) -> Answer<'a> {
        Answer {
            user: "alice",
            password: "wonderland",
            realm: REALM,
            nonce: directive_of(challenge, "nonce"),
            opaque: Some(directive_of(challenge, "opaque")),
            uri: RURI,
            method: "REGISTER",
            nc: Some(1),
            cnonce: "0a4f113b",
            sess: false,
        }
    }

    fn response(&self) -> String {
        let mut ha1 = md5hex(&format!("{}:{}:{}", self.user, self.realm, self.password));
        if self.sess {
            ha1 = md5hex(&format!("{ha1}:{}:{}", self.nonce, self.cnonce));
        }
        let ha2 = md5hex(&format!("{}:{}", self.method, self.uri));
        match self.nc {
            Some(nc) => md5hex(&format!(
                "{ha1}:{}:{nc:08x}:{}:auth:{ha2}",
                self.nonce, self.cnonce
            )),
            None => md5hex(&format!("{ha1}:{}:{ha2}", self.nonce)),
        }
    }

    fn header(&self) -> String {
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
            self.user,
            self.realm,
            self.nonce,
            self.uri,
            self.response()
        );
        if self.sess {
            h += ", algorithm=MD5-sess";
        } else {
            h += ", algorithm=MD5";
        }
        if let Some(nc) = self.nc {
            h += &format!(", qop=auth, nc={nc:08x}, cnonce=\"{}\"", self.cnonce);
        } else if self.sess {
            h += &format!(", cnonce=\"{}\"", self.cnonce);
        }
        if let Some(o) = &self.opaque {
            h += &format!(", opaque=\"{o}\"");
        }
        h
    }
}

fn register(authorization: Option<&str>) -> Vec<u8> {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER {RURI} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7\r\n\
         Max-Forwards: 70\r\n\
         To: Alice <sip:alice@sip.example.com>\r\n\
         From: Alice <sip:alice@sip.example.com>;tag=456248\r\n\
         Call-ID: 843817637684230@998sdasdh09\r\n\
         CSeq: 1826 REGISTER\r\n\
         Contact: <sip:alice@192.0.2.10>\r\n\
         {auth}\
         Expires: 7200\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Parse a REGISTER carrying `authorization` and run the registrar's check on it.
fn verdict(
    a: &Authenticator,
    now: u64,
    from: IpAddr,
    authorization: Option<&str>,
    nc: &mut NcTracker,
) -> AuthOutcome<'static> {
    let mut buf = register(authorization);
    let msg = Message::parse(&mut buf).unwrap();
    msg.validate_request().unwrap();
    match a.check_request(now, from, &msg, HeaderName::Authorization, nc) {
        AuthOutcome::Ok { user } => {
            assert!(a.may_register(user, msg.to().unwrap().uri.user.unwrap()));
            AuthOutcome::Ok {
                user: Vec::leak(user.to_vec()),
            }
        }
        // Why it was refused is checked by its own test.
        AuthOutcome::Challenge { stale, .. } => AuthOutcome::Challenge {
            stale,
            failed: None,
        },
        AuthOutcome::BadRequest(r) => AuthOutcome::BadRequest(r),
    }
}

const OK: AuthOutcome<'static> = AuthOutcome::Ok { user: b"alice" };
const CHALLENGE: AuthOutcome<'static> = AuthOutcome::Challenge {
    stale: false,
    failed: None,
};
const STALE: AuthOutcome<'static> = AuthOutcome::Challenge {
    stale: true,
    failed: None,
};

#[test]
fn challenge_answer_ok_flow() {
    let a = auth();
    let mut nc = NcTracker::default();
    assert_eq!(verdict(&a, T0, client(), None, &mut nc), CHALLENGE);

    let c = a.challenge(T0, client(), 1, false).to_string();
    let mut ans = Answer::to(&c);
    let header = ans.header();
    assert_eq!(verdict(&a, T0 + 1, client(), Some(&header), &mut nc), OK);
    // A UDP retransmission of the same request is accepted, not taken for a replay.
    assert_eq!(verdict(&a, T0 + 2, client(), Some(&header), &mut nc), OK);
    ans.nc = Some(2);
    assert_eq!(
        verdict(&a, T0 + 3, client(), Some(&ans.header()), &mut nc),
        OK
    );
    // Replaying the first request once the count moved on.
    assert_eq!(verdict(&a, T0 + 4, client(), Some(&header), &mut nc), STALE);
    // Another shard has its own tracker (documented limit) and accepts it.
    let mut other_shard = NcTracker::default();
    assert_eq!(
        verdict(&a, T0 + 4, client(), Some(&header), &mut other_shard),
        OK
    );
    // Past the lifetime, the right answer gets stale=TRUE.
    ans.nc = Some(3);
    let late = T0 + nonce::DEFAULT_TTL + 1;
    assert_eq!(
        verdict(&a, late, client(), Some(&ans.header()), &mut nc),
        STALE
    );
}

#[test]
fn challenge_header_value() {
    let a = auth();
    let c = a.challenge(T0, client(), 1, false);
    let s = c.to_string();
    let n = c.nonce().as_str();
    let o = std::str::from_utf8(a.nonce_key().opaque()).unwrap();
    assert_eq!(
        s,
        format!(
            "Digest realm=\"sip.example.com\", nonce=\"{n}\", opaque=\"{o}\", algorithm=MD5, qop=\"auth\""
        )
    );
    let mut out = b"WWW-Authenticate: ".to_vec();
    a.challenge(T0, client(), 1, true).write_to(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("WWW-Authenticate: {s}, stale=TRUE")
    );
    // The challenge parses as credentials-like auth-params with our own sip layer.
    let cr = Credentials::parse(s.as_bytes(), Span::new(0, s.len()), 0).unwrap();
    assert_eq!(cr.param(b"nonce"), Some(n.as_bytes()));
    assert_eq!(cr.param(b"qop"), Some(&b"auth"[..]));
}

#[test]
fn wrong_password_unknown_user_realm_and_nonce_get_a_new_challenge() {
    let a = auth();
    let mut nc = NcTracker::default();
    let c = a.challenge(T0, client(), 1, false).to_string();
    let check =
        |ans: &Answer, nc: &mut NcTracker| verdict(&a, T0, client(), Some(&ans.header()), nc);

    let mut ans = Answer::to(&c);
    ans.password = "guess";
    assert_eq!(check(&ans, &mut nc), CHALLENGE);
    // Wrong password with an expired nonce: not stale, a plain challenge.
    assert_eq!(
        verdict(&a, T0 + 1000, client(), Some(&ans.header()), &mut nc),
        CHALLENGE
    );

    let mut ans = Answer::to(&c);
    ans.user = "mallory";
    assert_eq!(check(&ans, &mut nc), CHALLENGE);

    // Credentials for another realm only: not ours to check, challenge for ours.
    let mut ans = Answer::to(&c);
    ans.realm = "other.realm";
    assert_eq!(check(&ans, &mut nc), CHALLENGE);

    // A nonce from another secret, and one tampered with.
    let foreign = auth_with(|c| c.secret = b"another cluster".to_vec());
    let fc = foreign.challenge(T0, client(), 1, false).to_string();
    let mut ans = Answer::to(&fc);
    ans.opaque = None;
    assert_eq!(check(&ans, &mut nc), CHALLENGE);
    let mut ans = Answer::to(&c);
    let mut bytes = ans.nonce.into_bytes();
    bytes[20] = if bytes[20] == b'0' { b'1' } else { b'0' };
    ans.nonce = String::from_utf8(bytes).unwrap();
    assert_eq!(check(&ans, &mut nc), CHALLENGE);

    // A wrong opaque is a foreign challenge; no opaque at all is tolerated.
    let mut ans = Answer::to(&c);
    ans.opaque = Some("5ccc069c403ebaf9f0171e9517f40e41".into());
    assert_eq!(check(&ans, &mut nc), CHALLENGE);
    ans.opaque = None;
    assert_eq!(check(&ans, &mut nc), OK);
    // Nothing was recorded for the failures above: nc 1 was fresh.
    assert_eq!(nc.len(), 1);
}

/// Why `authorization` was refused (for the operator's log): the user and reason, if any.
fn why_refused(
    a: &Authenticator,
    authorization: &str,
    nc: &mut NcTracker,
) -> Option<(String, &'static str)> {
    let mut buf = register(Some(authorization));
    let msg = Message::parse(&mut buf).unwrap();
    match a.check_request(T0, client(), &msg, HeaderName::Authorization, nc) {
        AuthOutcome::Challenge {
            failed: Some(f), ..
        } => Some((String::from_utf8_lossy(f.user).into_owned(), f.why)),
        _ => None,
    }
}

#[test]
fn refusals_say_who_and_why() {
    let a = auth();
    let mut nc = NcTracker::default();
    let c = a.challenge(T0, client(), 1, false).to_string();
    let mut ans = Answer::to(&c);
    ans.password = "guess";
    let wrong = ("alice".to_owned(), "wrong password");
    assert_eq!(why_refused(&a, &ans.header(), &mut nc), Some(wrong));
    let mut ans = Answer::to(&c);
    ans.user = "mallory";
    let unknown = ("mallory".to_owned(), "unknown user");
    assert_eq!(why_refused(&a, &ans.header(), &mut nc), Some(unknown));
    let mut ans = Answer::to(&c);
    ans.opaque = Some("5ccc069c403ebaf9f0171e9517f40e41".into());
    assert_eq!(
        why_refused(&a, &ans.header(), &mut nc).unwrap().1,
        "opaque not ours"
    );
    // Good credentials are no failure, nor is their retransmission; the same count with
    // another cnonce is a replay.
    let mut ans = Answer::to(&c);
    assert_eq!(why_refused(&a, &ans.header(), &mut nc), None);
    assert_eq!(why_refused(&a, &ans.header(), &mut nc), None);
    ans.cnonce = "ffff0000";
    let replay = why_refused(&a, &ans.header(), &mut nc);
    assert_eq!(replay.unwrap().1, "nonce count replayed");
}

#[test]
fn ha1_entry_rfc2069_and_md5_sess() {
    let a = auth();
    let mut nc = NcTracker::default();
    let c = a.challenge(T0, client(), 1, false).to_string();
    let mut creds = |ans: &Answer| {
        let h = ans.header();
        let cr = Credentials::parse(h.as_bytes(), Span::new(0, h.len()), 0).unwrap();
        match a.check(
            T0,
            client(),
            ans.method.as_bytes(),
            RURI.as_bytes(),
            &cr,
            &mut nc,
        ) {
            AuthOutcome::Ok { user } => Ok(user.to_vec()),
            other => Err(format!("{other:?}")),
        }
    };
    // Mufasa's HA1 entry is MD5("Mufasa:sip.example.com:Circle Of Life").
    let mut ans = Answer::to(&c);
    ans.user = "Mufasa";
    ans.password = "Circle Of Life";
    assert_eq!(creds(&ans), Ok(b"Mufasa".to_vec()));
    // An HA1 entry for another realm does not answer for ours.
    ans.user = "elsewhere";
    assert!(creds(&ans).is_err());

    let mut ans = Answer::to(&c);
    ans.nc = None;
    assert_eq!(creds(&ans), Ok(b"alice".to_vec()));
    ans.sess = true;
    assert_eq!(creds(&ans), Ok(b"alice".to_vec()));
    ans.nc = Some(7);
    assert_eq!(creds(&ans), Ok(b"alice".to_vec()));
    // Methods other than REGISTER hash their own method name.
    ans.method = "INVITE";
    ans.nc = Some(8);
    assert_eq!(creds(&ans), Ok(b"alice".to_vec()));
}

#[test]
fn bind_ip() {
    let a = auth_with(|c| c.bind_ip = true);
    let mut nc = NcTracker::default();
    let c = a.challenge(T0, client(), 1, false).to_string();
    let h = Answer::to(&c).header();
    assert_eq!(
        verdict(&a, T0, ip("192.0.2.99"), Some(&h), &mut nc),
        CHALLENGE
    );
    assert_eq!(verdict(&a, T0, client(), Some(&h), &mut nc), OK);
}

#[test]
fn malformed_credentials_are_bad_requests() {
    let a = auth();
    let mut nc = NcTracker::default();
    let c = a.challenge(T0, client(), 1, false).to_string();
    let good = Answer::to(&c).header();
    let bad = |h: &str| match verdict(&a, T0, client(), Some(h), &mut NcTracker::default()) {
        AuthOutcome::BadRequest(r) => r,
        other => panic!("{h}: {other:?}"),
    };
    for (name, reason) in [
        ("username", "Bad Request - Missing Digest username"),
        ("nonce", "Bad Request - Missing Digest nonce"),
        ("uri", "Bad Request - Missing Digest uri"),
        ("response", "Bad Request - Missing Digest response"),
        ("cnonce", "Bad Request - Missing Digest cnonce"),
        ("nc", "Bad Request - Malformed nc"),
    ] {
        let at = good.find(&format!(" {name}=")).unwrap();
        let end = good[at..].find(',').map_or(good.len(), |e| at + e + 1);
        let without = format!("{}{}", &good[..at], &good[end..]);
        let without = without.trim_end_matches(',');
        assert_eq!(bad(without), reason, "{without}");
    }
    // The realm is how check_request finds our credentials; check() itself requires it.
    let h = good.replace("realm=\"sip.example.com\", ", "");
    let cr = Credentials::parse(h.as_bytes(), Span::new(0, h.len()), 0).unwrap();
    assert_eq!(
        a.check(T0, client(), b"REGISTER", RURI.as_bytes(), &cr, &mut nc),
        AuthOutcome::BadRequest("Bad Request - Missing Digest realm")
    );
    let resp = directive_of(&good, "response");
    let resp31 = &resp[..31];
    for (from, to, reason) in [
        (
            "\"0a4f113b\"",
            "\"0a4f113b\", cnonce=\"x\"",
            "Duplicate Digest parameter",
        ),
        (
            "algorithm=MD5",
            "algorithm=SHA-256",
            "Unsupported Digest algorithm",
        ),
        ("qop=auth", "qop=auth-int", "Unsupported qop"),
        ("nc=00000001", "nc=1", "Malformed nc"),
        ("nc=00000001", "nc=00000000", "Malformed nc"),
        ("nc=00000001", "nc=0000000g", "Malformed nc"),
        (&resp, resp31, "Malformed Digest response"),
        (
            RURI,
            "sip:SIP.example.com",
            "Digest uri does not match Request-URI",
        ),
    ] {
        let h = good.replace(from, to);
        assert_eq!(bad(&h), format!("Bad Request - {reason}"), "{h}");
    }
    for h in ["Digest username", "digest  realm=\"x"] {
        assert_eq!(bad(h), "Bad Request - Malformed Authorization", "{h}");
    }
    // Case of the response's hex digits does not matter.
    let upper = good.replace(&resp, &resp.to_uppercase());
    assert_eq!(verdict(&a, T0, client(), Some(&upper), &mut nc), OK);
    // A non-Digest scheme is no credentials of ours.
    assert_eq!(
        verdict(&a, T0, client(), Some("Basic QWxhZGRpbjpvcGVu"), &mut nc),
        CHALLENGE
    );
}

#[test]
fn may_register_aliases() {
    let a = auth();
    assert!(a.may_register(b"alice", b"alice"));
    assert!(a.may_register(b"alice", b"4420000001"));
    assert!(!a.may_register(b"alice", b"Mufasa"));
    assert!(!a.may_register(b"Mufasa", b"4420000001"));
}

#[test]
fn config_errors() {
    let new =
        |realm: &str, secret: &[u8]| Authenticator::new(AuthConfig::new(realm, secret), users());
    assert_eq!(new(REALM, b"").unwrap_err(), ConfigError::EmptySecret);
    assert_eq!(new("", b"s").unwrap_err(), ConfigError::BadRealm);
    assert_eq!(new("a\"b", b"s").unwrap_err(), ConfigError::BadRealm);
    assert_eq!(new("a\r\nb", b"s").unwrap_err(), ConfigError::BadRealm);
    assert!(new("sip.example.com", b"s").is_ok());
    let dbg = format!(
        "{:?} {:?}",
        AuthConfig::new(REALM, b"hunter2".to_vec()),
        auth()
    );
    assert!(
        !dbg.contains("hunter2") && !dbg.contains("cluster secret"),
        "{dbg}"
    );
}

proptest! {
    #[test]
    fn check_never_panics(
        params in proptest::collection::vec(
            (
                prop_oneof![
                    Just("username"), Just("realm"), Just("nonce"), Just("uri"),
                    Just("response"), Just("qop"), Just("nc"), Just("cnonce"),
                    Just("algorithm"), Just("opaque"), Just("x"),
                ],
                "[ -~]{0,40}",
                any::<bool>(),
            ),
            0..12,
        ),
        now in any::<u64>(),
    ) {
        let a = auth();
        let mut nc = NcTracker::new(4);
        let mut h = String::from("Digest ");
        for (i, (name, value, quoted)) in params.iter().enumerate() {
            if i > 0 {
                h.push_str(", ");
            }
            if *quoted {
                h += &format!("{name}=\"{}\"", value.replace(['"', '\\'], ""));
            } else {
                h += &format!("{name}={value}");
            }
        }
        if let Some(cr) = Credentials::parse(h.as_bytes(), Span::new(0, h.len()), 0) {
            let _ = a.check(now, client(), b"REGISTER", RURI.as_bytes(), &cr, &mut nc);
        }
    }
}
