//! Digest authentication for the registrar and the proxy (RFC 3261 section 22, RFC 2617), as
//! sans-I/O policy: the caller passes the time, the client address and the parsed request, and
//! gets back what to answer. No socket, clock or lock is touched here.
//!
//! - [`credentials`]: the users and aliases files, built once into a shared [`UserDb`].
//! - [`nonce`]: stateless nonces any shard or node sharing the secret can verify.
//! - [`digest`]: the `response` computation and its constant-time comparison.
//! - [`replay`]: the per-shard `nc` tracker ([`NcTracker`]).
//!
//! # Use from a shard
//!
//! ```text
//! match auth.check_request(now, src_ip, &msg, HeaderName::Authorization, &mut nc_tracker) {
//!     AuthOutcome::Ok { user } => if !auth.may_register(user, to_user) { 403 },
//!     AuthOutcome::Challenge { stale, .. } => 401 + WWW-Authenticate: auth.challenge(now, src_ip, salt, stale),
//!     AuthOutcome::BadRequest(reason) => 400 reason,
//! }
//! ```
//!
//! A registrar answers 401 with WWW-Authenticate and reads Authorization; a proxy answers 407
//! with Proxy-Authenticate and reads Proxy-Authorization (RFC 3261 sections 22.2 and 22.3). The
//! challenge value is the same.

pub mod credentials;
pub mod digest;
pub mod hex;
pub mod nonce;
pub mod replay;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use credentials::{FileError, LoadError, UserDb};
pub use nonce::{random_secret, Nonce, NonceCheck, NonceKey};
pub use replay::{NcTracker, NcVerdict};

use crate::sip::{Credentials, HeaderName, Message};
use digest::{Algorithm, DigestInput, QopAuth};

/// Which requests Digest authentication applies to (`--auth`; the proxy applies it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Only REGISTER for our domains (401 + WWW-Authenticate).
    Register,
    /// REGISTER, and every request from a user of our domains that starts a dialog or stands
    /// alone (407 + Proxy-Authenticate). ACK, CANCEL, in-dialog requests routed through us and
    /// OPTIONS keepalives to the proxy itself are never challenged.
    All,
    /// Like `all`, but whatever domain the From names: every caller must hold an account here
    /// (the second proxy of RFC 3665 section 3.3 challenging callers of another domain).
    Callers,
}

/// Settings of one [`Authenticator`].
#[derive(Clone)]
pub struct AuthConfig {
    /// Our realm: what challenges name and what credentials must carry (RFC 3261 section 22.1
    /// recommends a globally unique one, such as the domain).
    pub realm: String,
    /// Nonce lifetime in seconds; after it, a correct answer gets `stale=TRUE`.
    pub nonce_ttl: u64,
    /// Bind each nonce to the address it was issued to.
    pub bind_ip: bool,
    /// Shared by every node that must accept the others' nonces (`--auth-secret`); see
    /// [`random_secret`] for a per-start default.
    pub secret: Vec<u8>,
}

impl AuthConfig {
    pub fn new(realm: impl Into<String>, secret: impl Into<Vec<u8>>) -> AuthConfig {
        AuthConfig {
            realm: realm.into(),
            nonce_ttl: nonce::DEFAULT_TTL,
            bind_ip: false,
            secret: secret.into(),
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("realm", &self.realm)
            .field("nonce_ttl", &self.nonce_ttl)
            .field("bind_ip", &self.bind_ip)
            .finish_non_exhaustive()
    }
}

/// An [`AuthConfig`] that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// An empty HMAC key would let anyone mint nonces.
    EmptySecret,
    /// The realm is empty or has a character that cannot stand in a quoted-string as is.
    BadRealm,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::EmptySecret => "the auth secret is empty",
            ConfigError::BadRealm => {
                "the realm is empty or contains a quote, a backslash or a control character"
            }
        })
    }
}

impl std::error::Error for ConfigError {}

/// What to answer a request, from its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOutcome<'a> {
    /// Authenticated as `user` (the `username` directive, as written).
    Ok { user: &'a [u8] },
    /// Answer 401/407 with a fresh [`Authenticator::challenge`]. `stale` is true when the
    /// credentials were right but the nonce had expired or its count was used, so the client may
    /// retry without asking its user (RFC 2617 section 3.2.1). A wrong password, an unknown user,
    /// another realm or a nonce that is not ours get a plain new challenge (RFC 3665 section 2.5
    /// shows a wrong password answered by a new 401).
    ///
    /// `failed` says why credentials for our realm were refused (for the operator's log);
    /// `None` when the request carried none, or only a stale nonce.
    Challenge {
        stale: bool,
        failed: Option<Failed<'a>>,
    },
    /// Answer 400 with this reason phrase: the credentials are malformed (RFC 2617 section
    /// 3.2.2.5 for a `uri` that is not the Request-URI).
    BadRequest(&'static str),
}

/// Credentials for our realm that were refused: who they claimed to be, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed<'a> {
    /// The `username` directive, as written.
    pub user: &'a [u8],
    pub why: &'static str,
}

/// A challenge ready to be written as a WWW-Authenticate or Proxy-Authenticate value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    realm: &'a str,
    nonce: Nonce,
    opaque: &'a [u8; nonce::OPAQUE_LEN],
    pub stale: bool,
}

impl Challenge<'_> {
    pub fn nonce(&self) -> &Nonce {
        &self.nonce
    }

    /// The value as byte pieces, in order; all ASCII but the realm, which is UTF-8.
    fn pieces(&self) -> [&[u8]; 8] {
        [
            b"Digest realm=\"",
            self.realm.as_bytes(),
            b"\", nonce=\"",
            self.nonce.as_bytes(),
            b"\", opaque=\"",
            self.opaque,
            b"\", algorithm=MD5, qop=\"auth\"",
            if self.stale { b", stale=TRUE" } else { b"" },
        ]
    }

    /// Append the header value (without name or CRLF) to `out`; allocation-free when `out` has
    /// room.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for p in self.pieces() {
            out.extend_from_slice(p);
        }
    }
}

impl fmt::Display for Challenge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.pieces() {
            f.write_str(std::str::from_utf8(p).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// The Digest policy of one realm. Immutable and cheap to clone: build it once and give each
/// shard a clone (the user database is shared behind an `Arc`); the only per-shard mutable state
/// is the [`NcTracker`].
#[derive(Clone, Debug)]
pub struct Authenticator {
    realm: Box<str>,
    key: NonceKey,
    users: Arc<UserDb>,
}

const MALFORMED: &str = "Bad Request - Malformed Authorization";
const DUPLICATE: &str = "Bad Request - Duplicate Digest parameter";
const NO_USERNAME: &str = "Bad Request - Missing Digest username";
const NO_REALM: &str = "Bad Request - Missing Digest realm";
const NO_NONCE: &str = "Bad Request - Missing Digest nonce";
const NO_URI: &str = "Bad Request - Missing Digest uri";
const NO_RESPONSE: &str = "Bad Request - Missing Digest response";
const BAD_RESPONSE: &str = "Bad Request - Malformed Digest response";
const BAD_ALGORITHM: &str = "Bad Request - Unsupported Digest algorithm";
const BAD_QOP: &str = "Bad Request - Unsupported qop";
const BAD_NC: &str = "Bad Request - Malformed nc";
const NO_CNONCE: &str = "Bad Request - Missing Digest cnonce";
const URI_MISMATCH: &str = "Bad Request - Digest uri does not match Request-URI";

/// The directives we read, each at most once.
struct Directives<'a> {
    username: &'a [u8],
    realm: &'a [u8],
    nonce: &'a [u8],
    uri: &'a [u8],
    response: digest::Hash,
    algorithm: Algorithm,
    cnonce: Option<&'a [u8]>,
    opaque: Option<&'a [u8]>,
    /// qop, nc as written, nc as a number.
    qop: Option<(QopAuth<'a>, u32)>,
}

/// Names of the directives we read, in the order [`collect`] returns them.
const NAMES: [&[u8]; 10] = [
    b"username",
    b"realm",
    b"nonce",
    b"uri",
    b"response",
    b"algorithm",
    b"cnonce",
    b"opaque",
    b"qop",
    b"nc",
];

/// One pass over the auth-params, keeping the directives in [`NAMES`] order, unquoted. A
/// duplicate is malformed (RFC 2617 section 3.2.2 lists each directive once, and two different
/// values would leave us guessing which one was hashed); unknown directives are ignored.
fn collect<'a>(c: &Credentials<'a>) -> Result<[Option<&'a [u8]>; NAMES.len()], &'static str> {
    let mut found = [None; NAMES.len()];
    for (name, value) in c.pairs() {
        if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            if found[i].replace(value).is_some() {
                return Err(DUPLICATE);
            }
        }
    }
    Ok(found)
}

/// A directive that must be present and non-empty.
fn required<'a>(v: Option<&'a [u8]>, missing: &'static str) -> Result<&'a [u8], &'static str> {
    v.filter(|v| !v.is_empty()).ok_or(missing)
}

impl<'a> Directives<'a> {
    fn parse(c: &Credentials<'a>) -> Result<Directives<'a>, &'static str> {
        let [username, realm, nonce, uri, response, algorithm, cnonce, opaque, qop, nc] =
            collect(c)?;
        let username = required(username, NO_USERNAME)?;
        let realm = required(realm, NO_REALM)?;
        let nonce = required(nonce, NO_NONCE)?;
        let uri = required(uri, NO_URI)?;
        let response = required(response, NO_RESPONSE)?;
        let response = digest::parse_response(response).ok_or(BAD_RESPONSE)?;
        let algorithm = Algorithm::parse(algorithm).ok_or(BAD_ALGORITHM)?;
        let cnonce = cnonce.filter(|v| !v.is_empty());
        let qop = match qop {
            None => None,
            Some(qop) if qop.eq_ignore_ascii_case(b"auth") => {
                // nc-value = 8LHEX; count 0 is never sent (the first request is 00000001).
                let nc = nc.ok_or(BAD_NC)?;
                let n = hex::decode::<4>(nc, true)
                    .map(u32::from_be_bytes)
                    .filter(|&n| n > 0)
                    .ok_or(BAD_NC)?;
                Some((QopAuth { qop, nc }, n))
            }
            Some(_) => return Err(BAD_QOP),
        };
        if (qop.is_some() || algorithm == Algorithm::Md5Sess) && cnonce.is_none() {
            return Err(NO_CNONCE);
        }
        Ok(Directives {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
        })
    }
}

impl Authenticator {
    pub fn new(config: AuthConfig, users: Arc<UserDb>) -> Result<Authenticator, ConfigError> {
        if config.secret.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        let realm = config.realm.as_bytes();
        if !credentials::valid_realm(realm) {
            return Err(ConfigError::BadRealm);
        }
        Ok(Authenticator {
            key: NonceKey::new(&config.secret, realm, config.nonce_ttl, config.bind_ip),
            realm: config.realm.into(),
            users,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn users(&self) -> &Arc<UserDb> {
        &self.users
    }

    /// The same policy with another user database (a reloaded users file): the realm and the
    /// nonce key stay, so nonces issued before the reload remain valid.
    pub fn with_users(&self, users: Arc<UserDb>) -> Authenticator {
        Authenticator {
            realm: self.realm.clone(),
            key: self.key.clone(),
            users,
        }
    }

    /// Whether `creds` are Digest credentials addressed to our realm (the ones
    /// [`check_request`](Self::check_request) reads and a proxy removes before forwarding).
    pub fn is_ours(&self, creds: &Credentials<'_>) -> bool {
        creds.is_digest() && creds.param(b"realm") == Some(self.realm.as_bytes())
    }

    pub fn nonce_key(&self) -> &NonceKey {
        &self.key
    }

    /// A challenge with a nonce issued at `now` for `client_ip` (RFC 2617 section 3.2.1). We
    /// offer `qop="auth"` so clients send `nc` and `cnonce` (replay protection), and
    /// `algorithm=MD5`, the only one every SIP client implements. `salt` makes the nonce unique
    /// (a per-shard sequence: see [`nonce`]); two challenges with the same salt in the same
    /// second for the same client carry the same nonce and so share one `nc` count.
    pub fn challenge(&self, now: u64, client_ip: IpAddr, salt: u64, stale: bool) -> Challenge<'_> {
        Challenge {
            realm: &self.realm,
            nonce: self.key.issue(now, client_ip, salt),
            opaque: self.key.opaque(),
            stale,
        }
    }

    /// Check one set of credentials against a request.
    ///
    /// `request_uri` is the Request-URI as written in the start line; the `uri` directive must
    /// equal it byte for byte. RFC 2617 section 3.2.2.5 only asks that both designate the same
    /// resource, but clients copy the Request-URI verbatim, and a byte compare cannot be fooled
    /// by two spellings that a looser comparison might equate wrongly.
    ///
    /// Without `qop` (RFC 2069 clients) there is no `nc`, so such answers are replayable for
    /// the nonce lifetime; with `qop=auth` the count is checked in `nc_tracker`.
    pub fn check<'a>(
        &self,
        now: u64,
        client_ip: IpAddr,
        method: &[u8],
        request_uri: &[u8],
        creds: &Credentials<'a>,
        nc_tracker: &mut NcTracker,
    ) -> AuthOutcome<'a> {
        if !creds.is_digest() {
            return AuthOutcome::Challenge {
                stale: false,
                failed: None,
            };
        }
        let d = match Directives::parse(creds) {
            Ok(d) => d,
            Err(reason) => return AuthOutcome::BadRequest(reason),
        };
        let refused = |why| AuthOutcome::Challenge {
            stale: false,
            failed: Some(Failed {
                user: d.username,
                why,
            }),
        };
        if d.uri != request_uri {
            return AuthOutcome::BadRequest(URI_MISMATCH);
        }
        if d.realm != self.realm.as_bytes() {
            return refused("another realm");
        }
        if d.opaque.is_some_and(|o| o != self.key.opaque().as_slice()) {
            return refused("opaque not ours");
        }
        let fresh = match self.key.verify(d.nonce, now, client_ip) {
            NonceCheck::Invalid => return refused("nonce not ours or tampered with"),
            NonceCheck::Stale => false,
            NonceCheck::Valid => true,
        };
        // An unknown user is checked against a dummy HA1 so it costs the same as a wrong
        // password and its timing does not reveal which user names exist.
        let ha1 = self.users.ha1(d.username, d.realm);
        let input = DigestInput {
            algorithm: d.algorithm,
            nonce: d.nonce,
            cnonce: d.cnonce,
            qop: d.qop.map(|(q, _)| q),
            method,
            uri: d.uri,
        };
        let Ok(expected) = input.response(&ha1.unwrap_or_default()) else {
            return AuthOutcome::BadRequest(NO_CNONCE);
        };
        // Compared before the user is looked at, so both failures cost the same.
        let matches = digest::ct_eq(&expected, &d.response);
        if ha1.is_none() {
            return refused("unknown user");
        }
        if !matches {
            return refused("wrong password");
        }
        if !fresh {
            return AuthOutcome::Challenge {
                stale: true,
                failed: None,
            };
        }
        if let Some((_, nc)) = d.qop {
            let Ok(nonce) = <&[u8; nonce::NONCE_LEN]>::try_from(d.nonce) else {
                return refused("nonce not ours or tampered with");
            };
            if nc_tracker.check(nonce, nc, &d.response, now) == NcVerdict::Replay {
                // Answered as stale (a client that lost count may retry), logged as what it
                // may be: someone replaying a captured answer.
                return AuthOutcome::Challenge {
                    stale: true,
                    failed: Some(Failed {
                        user: d.username,
                        why: "nonce count replayed",
                    }),
                };
            }
        }
        AuthOutcome::Ok { user: d.username }
    }

    /// Find the Digest credentials for our realm in header `header` (Authorization for a
    /// registrar, Proxy-Authorization for a proxy) and [`check`](Self::check) them. Credentials
    /// for other realms are left alone (RFC 3261 section 22.3: they belong to other proxies);
    /// if none is ours the answer is a challenge.
    pub fn check_request<'a>(
        &self,
        now: u64,
        client_ip: IpAddr,
        msg: &Message<'a>,
        header: HeaderName,
        nc_tracker: &mut NcTracker,
    ) -> AuthOutcome<'a> {
        let Some(uri) = msg.request_uri_span() else {
            return AuthOutcome::BadRequest("Bad Request - Not a request");
        };
        for (i, field) in msg.fields().iter().enumerate() {
            if field.name != header {
                continue;
            }
            let Some(creds) = Credentials::parse(msg.buf(), field.value, i) else {
                // Other schemes (Basic's token68, RFC 7235) need not fit the auth-param syntax
                // and are not ours; a Digest value that does not parse is malformed.
                let value = msg.bytes(field.value);
                if value.len() > 6 && value[..6].eq_ignore_ascii_case(b"Digest") {
                    return AuthOutcome::BadRequest(MALFORMED);
                }
                continue;
            };
            if self.is_ours(&creds) {
                let method = msg.method_bytes();
                return self.check(now, client_ip, method, msg.bytes(uri), &creds, nc_tracker);
            }
        }
        AuthOutcome::Challenge {
            stale: false,
            failed: None,
        }
    }

    /// The registrar's authorization step after authentication: may `user` register the AOR
    /// whose To user part is `to_user`? If not, answer 403 (RFC 3261 section 10.3 step 6).
    pub fn may_register(&self, user: &[u8], to_user: &[u8]) -> bool {
        self.users.may_register(user, to_user)
    }
}

#[cfg(test)]
mod tests;
