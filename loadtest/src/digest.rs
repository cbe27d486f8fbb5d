//! Answering a digest challenge (RFC 2617 section 3.2.2 as used by RFC 3261 section 22.4).
//!
//! ```text
//! HA1      = MD5(username ":" realm ":" password)
//! HA2      = MD5(method ":" digest-uri)
//! response = MD5(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)    with qop=auth
//!          = MD5(HA1 ":" nonce ":" HA2)                               without qop (RFC 2069)
//! ```
//! Only `algorithm=MD5` (the default) and `qop=auth` are answered; anything else is left
//! unanswered and the attempt fails with the challenge's status.

use md5::{Digest, Md5};
use sipshard::sip::{Credentials, HeaderName, Message};

use crate::writer::W;

/// The fields of a `WWW-Authenticate` / `Proxy-Authenticate` challenge we answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub realm: &'a [u8],
    pub nonce: &'a [u8],
    pub opaque: Option<&'a [u8]>,
    /// True when the server offered `qop=auth`.
    pub qop_auth: bool,
}

impl<'a> Challenge<'a> {
    /// Read a challenge; `None` when it is not a digest we can answer.
    pub fn from_credentials(c: &Credentials<'a>) -> Option<Challenge<'a>> {
        if !c.is_digest() {
            return None;
        }
        if let Some(alg) = c.param(b"algorithm") {
            if !alg.eq_ignore_ascii_case(b"MD5") {
                return None;
            }
        }
        let qop_auth = match c.param(b"qop") {
            None => false,
            Some(q) => {
                let offered = q
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"auth"));
                if !offered {
                    return None;
                }
                true
            }
        };
        Some(Challenge {
            realm: c.param(b"realm")?,
            nonce: c.param(b"nonce")?,
            opaque: c.param(b"opaque"),
            qop_auth,
        })
    }
}

fn hex32(d: &[u8]) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in d.iter().take(16).enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

fn md5_hex(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    hex32(&h.finalize())
}

/// The 32 hex digit `response` value.
#[allow(clippy::too_many_arguments)]
pub fn response(
    user: &[u8],
    password: &[u8],
    ch: &Challenge<'_>,
    method: &[u8],
    uri: &[u8],
    nc: &[u8],
    cnonce: &[u8],
) -> [u8; 32] {
    let ha1 = md5_hex(&[user, ch.realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    if ch.qop_auth {
        md5_hex(&[&ha1, ch.nonce, nc, cnonce, b"auth", &ha2])
    } else {
        md5_hex(&[&ha1, ch.nonce, &ha2])
    }
}

/// The first usable challenge of a 401 (`WWW-Authenticate`) or a 407 (`Proxy-Authenticate`).
pub fn challenge<'m>(msg: &'m Message<'_>, code: u16) -> Option<Challenge<'m>> {
    let header = if code == 401 {
        HeaderName::WwwAuthenticate
    } else {
        HeaderName::ProxyAuthenticate
    };
    msg.credentials(header)
        .flatten()
        .find_map(|c| Challenge::from_credentials(&c))
}

/// The header answering a 407 (`Proxy-Authorization`) or a 401 (`Authorization`).
pub fn authorization_header(proxy: bool) -> &'static str {
    if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    }
}

/// `n` as 8 hex digits into `buf` (a client nonce).
pub fn hex8(buf: &mut [u8; 16], n: u32) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..8 {
        buf[i] = HEX[((n >> (28 - 4 * i)) & 15) as usize];
    }
    &buf[..8]
}

/// Write the `Authorization:` (or `Proxy-Authorization:`) header line answering `ch`.
#[allow(clippy::too_many_arguments)]
pub fn write_authorization(
    w: &mut W<'_>,
    header: &str,
    user: &[u8],
    password: &[u8],
    ch: &Challenge<'_>,
    method: &[u8],
    uri: &[u8],
    cnonce: &[u8],
) {
    const NC: &[u8] = b"00000001";
    let resp = response(user, password, ch, method, uri, NC, cnonce);
    w.s(header).b(b": Digest username=\"").b(user);
    w.b(b"\", realm=\"")
        .b(ch.realm)
        .b(b"\", nonce=\"")
        .b(ch.nonce);
    w.b(b"\", uri=\"").b(uri).b(b"\", response=\"").b(&resp);
    w.b(b"\", algorithm=MD5");
    if ch.qop_auth {
        w.b(b", qop=auth, nc=")
            .b(NC)
            .b(b", cnonce=\"")
            .b(cnonce)
            .b(b"\"");
    }
    if let Some(o) = ch.opaque {
        w.b(b", opaque=\"").b(o).b(b"\"");
    }
    w.crlf();
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipshard::sip::Span;

    fn creds(s: &str) -> Credentials<'_> {
        Credentials::parse(s.as_bytes(), Span::new(0, s.len()), 0).unwrap()
    }

    #[test]
    fn rfc2617_example() {
        // RFC 2617 section 3.5: Mufasa / "Circle Of Life" for GET /dir/index.html.
        let c = creds(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        );
        let ch = Challenge::from_credentials(&c).unwrap();
        assert!(ch.qop_auth);
        let r = response(
            b"Mufasa",
            b"Circle Of Life",
            &ch,
            b"GET",
            b"/dir/index.html",
            b"00000001",
            b"0a4f113b",
        );
        assert_eq!(&r, b"6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn header_without_qop_and_unanswerable_challenges() {
        let c = creds("Digest realm=\"sipshard\", nonce=\"abc\"");
        let ch = Challenge::from_credentials(&c).unwrap();
        assert!(!ch.qop_auth);
        let mut v = Vec::new();
        write_authorization(
            &mut W::new(&mut v),
            "Authorization",
            b"alice",
            b"pw",
            &ch,
            b"REGISTER",
            b"sip:example.com",
            b"c1",
        );
        let text = String::from_utf8(v).unwrap();
        assert!(text.starts_with("Authorization: Digest username=\"alice\", realm=\"sipshard\""));
        assert!(!text.contains("qop"));
        assert!(text.ends_with("algorithm=MD5\r\n"));
        let sha = creds("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256");
        assert_eq!(Challenge::from_credentials(&sha), None);
        let intonly = creds("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"");
        assert_eq!(Challenge::from_credentials(&intonly), None);
    }
}
