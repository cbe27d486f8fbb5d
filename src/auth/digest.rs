//! The Digest `response` computation (RFC 2617 section 3.2.2.1) and its constant-time check.
//!
//! ```text
//! HA1 = MD5(username ":" realm ":" password)                       algorithm=MD5
//! HA1 = MD5(HEX(MD5(username ":" realm ":" password)) ":" nonce ":" cnonce)   MD5-sess
//! HA2 = MD5(method ":" digest-uri)                                 (qop=auth or no qop)
//! response = MD5(HEX(HA1) ":" nonce ":" nc ":" cnonce ":" qop ":" HEX(HA2))   qop=auth
//! response = MD5(HEX(HA1) ":" nonce ":" HEX(HA2))                  no qop (RFC 2069 section 2.1.2)
//! ```
//!
//! `HEX` is 32 lowercase hex digits. For MD5-sess the inner hash enters A1 as hex text, as RFC
//! 2617 section 3.2.2.2 defines and RFC 7616 section 3.4.2 confirms; the C sample code in RFC 2617
//! section 5 feeds the 16 raw bytes instead, a reported erratum that we do not copy.
//! `qop=auth-int` (HA2 over the body) is not offered in our challenges and is not computed.
//!
//! Everything here is allocation-free: hashes are fed piecewise into one [`Md5`] state.

use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

use super::hex;

/// An MD5 hash as 16 raw bytes (HA1, HA2, a response).
pub type Hash = [u8; 16];

/// The `algorithm` directive (RFC 2617 section 3.2.1); absent means MD5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
}

impl Algorithm {
    /// Parse the directive as the client wrote it (case-insensitive: the values are tokens and
    /// clients in the wild send `md5`); `None` for anything we cannot compute.
    pub fn parse(value: Option<&[u8]>) -> Option<Algorithm> {
        match value {
            None => Some(Algorithm::Md5),
            Some(v) if v.eq_ignore_ascii_case(b"MD5") => Some(Algorithm::Md5),
            Some(v) if v.eq_ignore_ascii_case(b"MD5-sess") => Some(Algorithm::Md5Sess),
            Some(_) => None,
        }
    }
}

/// `qop=auth` fields that enter the response (RFC 2617 section 3.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// The qop value as the client wrote it (it is hashed as written).
    pub qop: &'a [u8],
    /// `nc`, 8 hex digits as written.
    pub nc: &'a [u8],
}

/// The inputs of one response computation, all as they appear in the request (unquoted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestInput<'a> {
    pub algorithm: Algorithm,
    pub nonce: &'a [u8],
    /// Required with `qop` and with MD5-sess.
    pub cnonce: Option<&'a [u8]>,
    /// `None` is the RFC 2069 compatible form without `qop`.
    pub qop: Option<QopAuth<'a>>,
    pub method: &'a [u8],
    /// The `uri` directive (digest-uri-value), not the Request-URI: they are compared elsewhere.
    pub uri: &'a [u8],
}

/// Why an input set cannot be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputError {
    /// `qop` or MD5-sess without a `cnonce` (RFC 2617 section 3.2.2: it MUST be specified).
    MissingCnonce,
}

fn md5_parts(parts: &[&[u8]]) -> Hash {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    h.finalize().into()
}

/// HA1 for algorithm MD5: `MD5(username:realm:password)`, what a users file may store instead of
/// the password.
pub fn ha1(username: &[u8], realm: &[u8], password: &[u8]) -> Hash {
    md5_parts(&[username, realm, password])
}

/// The lowercase hex form in which hashes enter the next hash and travel on the wire.
pub fn to_hex(h: &Hash) -> [u8; 32] {
    hex::encode(h)
}

impl DigestInput<'_> {
    /// The expected `response` for a user whose HA1 (algorithm MD5 form) is `ha1`.
    pub fn response(&self, ha1: &Hash) -> Result<Hash, InputError> {
        let cnonce = self.cnonce.unwrap_or_default();
        if (self.qop.is_some() || self.algorithm == Algorithm::Md5Sess) && self.cnonce.is_none() {
            return Err(InputError::MissingCnonce);
        }
        let ha1 = match self.algorithm {
            Algorithm::Md5 => *ha1,
            Algorithm::Md5Sess => md5_parts(&[&to_hex(ha1), self.nonce, cnonce]),
        };
        let ha2 = md5_parts(&[self.method, self.uri]);
        let (ha1, ha2) = (to_hex(&ha1), to_hex(&ha2));
        Ok(match self.qop {
            Some(q) => md5_parts(&[&ha1, self.nonce, q.nc, cnonce, q.qop, &ha2]),
            None => md5_parts(&[&ha1, self.nonce, &ha2]),
        })
    }
}

/// Parse a client's `response` directive: 32 hex digits. Uppercase is accepted because the
/// comparison is of the hash, not of its spelling.
pub fn parse_response(v: &[u8]) -> Option<Hash> {
    hex::decode(v, true)
}

/// Compare two hashes without an early exit, so the time taken does not reveal how many leading
/// bytes of a guessed response were right.
pub fn ct_eq(a: &Hash, b: &Hash) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2617 section 3.5.
    const USER: &[u8] = b"Mufasa";
    const REALM: &[u8] = b"testrealm@host.com";
    const PASSWORD: &[u8] = b"Circle Of Life";
    const NONCE: &[u8] = b"dcd98b7102dd2f0e8b11d0f600bfb0c093";
    const URI: &[u8] = b"/dir/index.html";

    fn mufasa(algorithm: Algorithm, qop: bool) -> DigestInput<'static> {
        DigestInput {
            algorithm,
            nonce: NONCE,
            cnonce: Some(b"0a4f113b"),
            qop: qop.then_some(QopAuth {
                qop: b"auth",
                nc: b"00000001",
            }),
            method: b"GET",
            uri: URI,
        }
    }

    fn hex_of(h: Result<Hash, InputError>) -> String {
        String::from_utf8(to_hex(&h.unwrap()).to_vec()).unwrap()
    }

    #[test]
    fn rfc2617_mufasa_from_password() {
        let ha1 = ha1(USER, REALM, PASSWORD);
        assert_eq!(hex_of(Ok(ha1)), "939e7578ed9e3c518a452acee763bce9");
        let r = mufasa(Algorithm::Md5, true).response(&ha1);
        assert_eq!(hex_of(r), "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc2617_mufasa_from_stored_ha1() {
        let ha1 = hex::decode(b"939E7578ED9E3C518A452ACEE763BCE9", true).unwrap();
        let r = mufasa(Algorithm::Md5, true).response(&ha1);
        assert_eq!(hex_of(r), "6629fae49393a05397450978507c4ef1");
        let client = parse_response(b"6629FAE49393A05397450978507C4EF1").unwrap();
        assert!(ct_eq(&r.unwrap(), &client));
        let mut wrong = client;
        wrong[15] ^= 1;
        assert!(!ct_eq(&r.unwrap(), &wrong));
    }

    // Expected values below were computed independently with Python's hashlib from the formulas
    // in the module documentation.
    #[test]
    fn rfc2069_without_qop() {
        let r = mufasa(Algorithm::Md5, false).response(&ha1(USER, REALM, PASSWORD));
        assert_eq!(hex_of(r), "670fd8c2df070c60b045671b8b24ff02");
        // RFC 2069 needs no cnonce.
        let mut input = mufasa(Algorithm::Md5, false);
        input.cnonce = None;
        assert_eq!(
            hex_of(input.response(&ha1(USER, REALM, PASSWORD))),
            hex_of(r)
        );
    }

    #[test]
    fn md5_sess() {
        let r = mufasa(Algorithm::Md5Sess, true).response(&ha1(USER, REALM, PASSWORD));
        assert_eq!(hex_of(r), "8e3825c57e897f5a0dec6c2d4e5059d0");
        let mut input = mufasa(Algorithm::Md5Sess, true);
        input.cnonce = None;
        assert_eq!(
            input.response(&ha1(USER, REALM, PASSWORD)),
            Err(InputError::MissingCnonce)
        );
    }

    #[test]
    fn algorithm_and_response_parsing() {
        assert_eq!(Algorithm::parse(None), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse(Some(b"md5")), Some(Algorithm::Md5));
        assert_eq!(
            Algorithm::parse(Some(b"MD5-SESS")),
            Some(Algorithm::Md5Sess)
        );
        assert_eq!(Algorithm::parse(Some(b"SHA-256")), None);
        assert_eq!(parse_response(b"6629fae4"), None);
        assert_eq!(parse_response(b"6629fae49393a05397450978507c4efz"), None);
    }
}
