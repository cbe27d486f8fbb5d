//! Redirect mode (RFC 3665 section 3.6, RFC 3261 section 8.3): a request for a registered user
//! is answered with `302 Moved Temporarily` listing every live binding as a Contact (with its
//! `q` and remaining `expires`) instead of being forwarded. The 302 carries the deterministic
//! local To tag, so the caller's ACK for it is absorbed like the ACK of any local reply.

use crate::sip::write::{push_q_value, push_uint};
use crate::sip::Host;

use super::request::Incoming;
use super::{Core, Decision};

/// Which requests are redirected (`--redirect`, `--redirect-domain`).
#[derive(Clone, Debug, Default)]
pub struct RedirectPolicy {
    /// Every request for one of our users.
    pub all: bool,
    /// Or only those for these domains (lower-case).
    pub domains: Vec<String>,
}

impl RedirectPolicy {
    pub fn is_on(&self) -> bool {
        self.all || !self.domains.is_empty()
    }

    /// Does a request whose target host is `host` (one of our domains) get redirected?
    pub fn covers(&self, host: Option<Host<'_>>) -> bool {
        if self.all {
            return true;
        }
        match host {
            Some(Host::Name(n)) => {
                let n = n.strip_suffix(b".").unwrap_or(n);
                self.domains
                    .iter()
                    .any(|d| d.as_bytes().eq_ignore_ascii_case(n))
            }
            _ => false,
        }
    }
}

impl Core {
    /// Answer with 302 and the bindings of `aor`, or 480 when it has none.
    pub(super) fn redirect(&mut self, rq: &Incoming<'_, '_>, aor: &[u8]) -> Decision {
        self.extra.clear();
        let now_secs = rq.now.secs();
        let mut listed = 0;
        for b in self.table.live_bindings(aor, now_secs) {
            self.extra.extend_from_slice(b"Contact: <");
            self.extra.extend_from_slice(b.contact);
            self.extra.extend_from_slice(b">;q=");
            push_q_value(&mut self.extra, b.q);
            self.extra.extend_from_slice(b";expires=");
            push_uint(&mut self.extra, b.remaining(now_secs));
            self.extra.extend_from_slice(b"\r\n");
            listed += 1;
        }
        if listed == 0 {
            return self.reply_to(rq.msg, rq.src, rq.socket, 480, "Temporarily Unavailable");
        }
        self.reply_extra(rq.msg, rq.src, rq.socket, 302, "Moved Temporarily")
    }
}
