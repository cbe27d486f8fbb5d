//! Authentication failures in the log, at warn, for operators and fail2ban: one line per
//! failure, at most [`LINES_PER_SECOND`] a second per shard, so that a flood of bad passwords
//! cannot fill a disk; what is held back is counted and said once the next second begins.
//!
//! ```text
//! level=warn target=sipshard::auth msg="authentication failed: ip=192.0.2.4 port=5060 transport=udp method=REGISTER user=alice reason=wrong password"
//! ```
//!
//! The address comes first and the user, which the client chose, is percent-encoded outside
//! `[A-Za-z0-9._@+-]`: no user name can forge an `ip=` for a log watcher to act on.

use crate::location::Now;
use crate::sip::{Method, Source};

/// The log target (the fail2ban filter scripts/fail2ban/sipshard.conf matches it).
pub const TARGET: &str = "sipshard::auth";

/// Lines written per second and shard at most.
pub const LINES_PER_SECOND: u32 = 20;

/// Longest user name written (bytes of the original).
const MAX_USER: usize = 64;

/// One shard's budget of lines for the current second.
#[derive(Default)]
pub struct AuthLog {
    second: u64,
    written: u32,
    held_back: u64,
}

impl AuthLog {
    /// Log one failure from `src` claiming `user`, unless this second's lines are used up.
    pub fn failed(&mut self, now: Now, src: &Source, method: Method, user: &[u8], why: &str) {
        self.report(now);
        if self.written >= LINES_PER_SECOND {
            self.held_back += 1;
            return;
        }
        self.written += 1;
        log::warn!(
            target: TARGET,
            "authentication failed: ip={} port={} transport={} method={} user={} reason={why}",
            src.addr.ip(),
            src.addr.port(),
            src.transport.name(),
            method.as_str(),
            safe_user(user)
        );
    }
}

impl AuthLog {
    /// Once `now` is past the budget's second: say how many lines it held back, and start a
    /// new second.
    pub fn report(&mut self, now: Now) {
        if now.secs() == self.second {
            return;
        }
        if self.held_back > 0 {
            log::warn!(
                target: TARGET,
                "authentication failures: {} more not logged (over {LINES_PER_SECOND}/s)",
                self.held_back
            );
        }
        *self = AuthLog {
            second: now.secs(),
            ..AuthLog::default()
        };
    }
}

/// The user as written, percent-encoded outside a conservative set and cut at [`MAX_USER`].
fn safe_user(user: &[u8]) -> String {
    let mut out = String::new();
    for &b in &user[..user.len().min(MAX_USER)] {
        if b.is_ascii_alphanumeric() || b"._@+-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_cannot_inject_fields() {
        assert_eq!(safe_user(b"alice"), "alice");
        assert_eq!(safe_user(b"x ip=10.0.0.1"), "x%20ip%3D10.0.0.1");
        assert_eq!(safe_user(b""), "-");
        assert_eq!(safe_user(&[b'a'; 100]).len(), MAX_USER);
    }

    #[test]
    fn at_most_the_budget_per_second() {
        let src = Source::udp("192.0.2.4:5060".parse().unwrap());
        let mut log = AuthLog::default();
        let now = Now { unix_ms: 5_000 };
        for _ in 0..LINES_PER_SECOND + 7 {
            log.failed(now, &src, Method::Register, b"a", "wrong password");
        }
        assert_eq!(log.written, LINES_PER_SECOND);
        assert_eq!(log.held_back, 7);
        log.failed(Now { unix_ms: 6_000 }, &src, Method::Register, b"a", "x");
        assert_eq!((log.written, log.held_back), (1, 0), "a new second");
    }
}
