//! Digest authentication in the request path (RFC 3261 sections 16.3 item 6, 22; RFC 3665
//! sections 2.1, 2.5, 3.2, 3.3): which requests are challenged, the 401/407/403/400 replies,
//! and the removal of our own credentials before a request is forwarded.
//!
//! The policy itself (nonces, digest, replay counts) is [`crate::auth`]; this module only
//! applies it to one shard's traffic. Each shard owns a [`ShardAuth`]: a clone of the
//! [`Authenticator`] built once at start-up (the user database is shared behind an `Arc`, and
//! replaced wholesale on reload) and its own [`NcTracker`].
//!
//! # What is challenged
//!
//! - REGISTER for one of our domains, in both modes: `401` + `WWW-Authenticate`, credentials
//!   read from `Authorization`. The authenticated user must own the AOR in To (its own user
//!   part or an alias), else `403`.
//! - With `--auth all`, every other request from a user of our domains (the From host is one of
//!   our domains or addresses): `407` + `Proxy-Authenticate`, credentials read from
//!   `Proxy-Authorization`. With `--auth callers`, every such request whatever its From domain
//!   (RFC 3665 section 3.3: Bob's proxy challenges Alice, who holds an account in its realm). The authenticated user must own the From user part, else `403`: a
//!   user may not place calls as someone else.
//! - Never: ACK and CANCEL (RFC 3261 section 22.1: they cannot be resubmitted), in-dialog
//!   requests (To tag) that reached us through a Route naming us, and OPTIONS to the proxy
//!   itself (keepalives, answered before this point). A request with a To tag that did not come
//!   through our Route is not trusted to be in a dialog we saw, so it is challenged.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::auth::AuthMode;
use crate::auth::{AuthOutcome, Authenticator, NcTracker, UserDb};
use crate::location::Now;
use crate::sip::{Credentials, HeaderName, Message, Method};

use super::auth_log::AuthLog;
use super::request::{Incoming, Stage};
use super::Core;

/// One shard's authentication state.
pub struct ShardAuth {
    pub authn: Authenticator,
    pub mode: AuthMode,
    /// Highest `nc` per nonce seen on this shard (replay protection is per shard).
    pub nc: NcTracker,
    /// State of the nonce salt sequence.
    salt: u64,
    /// Failures for the operator's log, rate-limited.
    log: AuthLog,
}

impl ShardAuth {
    /// `seed` starts this shard's nonce salt sequence; give each shard a random one so that
    /// shards and nodes do not hand out equal nonces.
    pub fn new(authn: Authenticator, mode: AuthMode, seed: u64) -> ShardAuth {
        ShardAuth {
            authn,
            mode,
            nc: NcTracker::default(),
            salt: seed,
            log: AuthLog::default(),
        }
    }

    /// The next salt: SplitMix64, a bijection of a counter, so it does not repeat on this
    /// shard before 2^64 challenges.
    fn next_salt(&mut self) -> u64 {
        self.salt = self.salt.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.salt;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Which side of RFC 3261 section 22 a check is on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A registrar: 401, WWW-Authenticate, Authorization; the To user must be owned.
    Registrar,
    /// A proxy: 407, Proxy-Authenticate, Proxy-Authorization; the From user must be owned.
    Proxy,
}

impl Role {
    /// The header the credentials are read from.
    fn credentials_header(self) -> HeaderName {
        match self {
            Role::Registrar => HeaderName::Authorization,
            Role::Proxy => HeaderName::ProxyAuthorization,
        }
    }

    /// Why an authenticated user was answered 403 (for the log).
    fn forbidden_reason(self) -> &'static str {
        match self {
            Role::Registrar => "may not register this AOR",
            Role::Proxy => "may not call as this From user",
        }
    }
}

impl Core {
    /// Turn authentication on for this shard; `seed` as in [`ShardAuth::new`].
    pub fn set_auth(&mut self, authn: Authenticator, mode: AuthMode, seed: u64) {
        self.auth = Some(ShardAuth::new(authn, mode, seed));
    }

    pub fn auth(&self) -> Option<&ShardAuth> {
        self.auth.as_ref()
    }

    /// Replace the user database (SIGHUP). The realm, the nonce key and the replay counts stay,
    /// so clients keep their nonces across a reload.
    pub fn reload_users(&mut self, users: Arc<UserDb>) {
        if let Some(a) = self.auth.as_mut() {
            a.authn = a.authn.with_users(users);
            self.counters.auth_reloads += 1;
        }
    }

    /// Does this request, about to be forwarded, need Proxy-Authorization?
    pub(super) fn needs_proxy_auth(
        &self,
        msg: &Message<'_>,
        method: Method,
        routed_by_us: bool,
    ) -> bool {
        let Some(a) = &self.auth else {
            return false;
        };
        if a.mode == AuthMode::Register || matches!(method, Method::Ack | Method::Cancel) {
            return false;
        }
        let in_dialog = msg.to().is_ok_and(|t| t.tag().is_some());
        if in_dialog && routed_by_us {
            return false;
        }
        if a.mode == AuthMode::Callers {
            return true;
        }
        match msg.from() {
            Ok(f) => f
                .uri
                .host
                .is_some_and(|h| self.cfg.local.is_our_domain(&h, f.uri.port)),
            // validate_request has parsed From already; if it cannot be read, fail closed.
            Err(_) => true,
        }
    }

    /// The authentication stage of a request about to be forwarded: check
    /// Proxy-Authorization when this request needs it. Returns whether it was checked (then our
    /// credentials are removed before forwarding).
    pub(super) fn authenticate_caller(
        &mut self,
        rq: &Incoming<'_, '_>,
        routed_by_us: bool,
    ) -> Stage<bool> {
        let needed = self.needs_proxy_auth(rq.msg, rq.method, routed_by_us);
        if needed {
            self.authenticate(rq, Role::Proxy)?;
        }
        ControlFlow::Continue(needed)
    }

    /// Check the request's credentials for `role`: go on when they are good and their user
    /// may act as the To (REGISTER) or From user; else break with the 401/407 challenge, 403
    /// or 400 to send instead.
    pub(super) fn authenticate(&mut self, rq: &Incoming<'_, '_>, role: Role) -> Stage<()> {
        let header = role.credentials_header();
        let Some(a) = self.auth.as_mut() else {
            return ControlFlow::Continue(());
        };
        // A peer that proved a trusted name with its certificate needs no password.
        if rq.src.trusted {
            self.counters.auth_trusted += 1;
            return ControlFlow::Continue(());
        }
        let outcome =
            a.authn
                .check_request(rq.now.secs(), rq.src.addr.ip(), rq.msg, header, &mut a.nc);
        match outcome {
            AuthOutcome::Ok { user } => {
                if self.may_act_as(rq.msg, role, user) {
                    self.counters.auth_ok += 1;
                    ControlFlow::Continue(())
                } else {
                    self.counters.auth_forbidden += 1;
                    self.log_failure(rq, user, role.forbidden_reason());
                    self.refuse(rq, 403, "Forbidden")
                }
            }
            AuthOutcome::Challenge { stale, failed } => {
                if let Some(f) = failed {
                    self.log_failure(rq, f.user, f.why);
                }
                self.challenge(rq, role, stale)
            }
            AuthOutcome::BadRequest(reason) => {
                self.counters.auth_malformed += 1;
                self.log_failure(rq, b"", reason);
                self.refuse(rq, 400, reason)
            }
        }
    }

    /// Say how many failures the last second held back, once it is over (called about once a
    /// second, so that a flood that stopped is reported too).
    pub(super) fn report_held_back_auth_failures(&mut self, now: Now) {
        if let Some(a) = &mut self.auth {
            a.log.report(now);
        }
    }

    fn log_failure(&mut self, rq: &Incoming<'_, '_>, user: &[u8], why: &str) {
        if let Some(a) = &mut self.auth {
            a.log.failed(rq.now, &rq.src, rq.method, user, why);
        }
    }

    /// Whether `user` owns the user part the request speaks for in `role`.
    fn may_act_as(&self, msg: &Message<'_>, role: Role, user: &[u8]) -> bool {
        match role {
            // A To without a user part is refused by the registrar itself (404).
            Role::Registrar => match msg.to().ok().and_then(|t| t.uri.user) {
                Some(to_user) => self.owns(user, to_user),
                None => true,
            },
            Role::Proxy => msg
                .from()
                .ok()
                .and_then(|f| f.uri.user)
                .is_some_and(|from_user| self.owns(user, from_user)),
        }
    }

    /// 401 or 407 with a fresh challenge.
    fn challenge(&mut self, rq: &Incoming<'_, '_>, role: Role, stale: bool) -> Stage<()> {
        self.counters.auth_challenges += 1;
        if stale {
            self.counters.auth_stale += 1;
        } else if self.has_our_credentials(rq.msg, role.credentials_header()) {
            // Wrong password, unknown user, foreign or tampered nonce.
            self.counters.auth_failures += 1;
        }
        let (status, reason, name): (u16, &str, &[u8]) = match role {
            Role::Registrar => (401, "Unauthorized", b"WWW-Authenticate: "),
            Role::Proxy => (
                407,
                "Proxy Authentication Required",
                b"Proxy-Authenticate: ",
            ),
        };
        self.extra.clear();
        self.extra.extend_from_slice(name);
        if let Some(a) = &mut self.auth {
            let salt = a.next_salt();
            a.authn
                .challenge(rq.now.secs(), rq.src.addr.ip(), salt, stale)
                .write_to(&mut self.extra);
        }
        self.extra.extend_from_slice(b"\r\n");
        self.answer(rq, status, reason)
    }

    fn owns(&self, user: &[u8], uri_user: &[u8]) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| a.authn.may_register(user, uri_user))
    }

    /// Whether the request carries Digest credentials for our realm in `header`.
    fn has_our_credentials(&self, msg: &Message<'_>, header: HeaderName) -> bool {
        let Some(a) = &self.auth else {
            return false;
        };
        msg.fields().iter().enumerate().any(|(i, f)| {
            f.name == header
                && Credentials::parse(msg.buf(), f.value, i).is_some_and(|c| a.authn.is_ours(&c))
        })
    }

    /// Remove the Proxy-Authorization lines holding credentials for our realm; those for other
    /// realms belong to proxies further on and pass untouched (RFC 3665 section 3.3).
    pub(super) fn strip_our_credentials(&mut self, msg: &Message<'_>) {
        let Some(a) = &self.auth else {
            return;
        };
        for (i, f) in msg.fields().iter().enumerate() {
            if f.name == HeaderName::ProxyAuthorization
                && Credentials::parse(msg.buf(), f.value, i).is_some_and(|c| a.authn.is_ours(&c))
            {
                self.edits.remove(f.line);
            }
        }
    }
}
