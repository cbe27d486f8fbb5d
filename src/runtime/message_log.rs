//! At debug level, one log line per message a shard decides: what came in (method or status,
//! Call-ID, where from) and what became of it (forwarded where, answered with what, dropped
//! why). Nothing is read or written per message below debug: one check of the level.
//!
//! ```text
//! level=debug target=sipshard::message msg="INVITE call-id=a84b4c76e66710 from udp:192.0.2.4:5060: forwarded to udp:192.0.2.7:5062"
//! level=debug target=sipshard::message msg="REGISTER call-id=843817637684230 from tcp:192.0.2.9:40122: answered 401 Unauthorized"
//! ```

use crate::proxy::Action;
use crate::sip::{Message, Source, Target};

/// The log target: log shippers and `grep target=sipshard::message` pick these lines out.
pub const TARGET: &str = "sipshard::message";

/// Longest start line or Call-ID written (hostile input can make them 64 KB long).
const MAX_FIELD: usize = 120;

/// What the message said, read before the core rewrites it in place.
pub struct Seen {
    what: String,
    call_id: String,
}

impl Seen {
    /// `None` unless debug lines are on.
    pub fn before(bytes: &[u8]) -> Option<Seen> {
        if !log::log_enabled!(target: TARGET, log::Level::Debug) {
            return None;
        }
        let mut copy = bytes.to_vec();
        let parsed = Message::parse(&mut copy);
        let call_id = parsed
            .as_ref()
            .ok()
            .and_then(|m| m.call_id().ok())
            .map_or_else(|| "-".to_owned(), clip);
        let line = first_line(bytes);
        let what = if line.is_empty() {
            "(keep-alive)".to_owned()
        } else {
            clip(line)
        };
        Some(Seen { what, call_id })
    }

    /// Write the line: `src` sent it, the core decided `action`, and `out` is what the
    /// buffer holds now (the reply, when it answered).
    pub fn after(self, src: &Source, action: &Action, out: &[u8]) {
        let decision = match action {
            Action::Forward { to, .. } => format!("forwarded to {}", target(to)),
            Action::Reply { to, .. } => {
                let status = first_line(out).strip_prefix(b"SIP/2.0 ").unwrap_or(b"?");
                format!("answered {} to {}", clip(status), target(to))
            }
            Action::Drop(reason) => format!("dropped ({})", reason.name()),
        };
        log::debug!(
            target: TARGET,
            "{} call-id={} from {}:{}: {decision}",
            self.what,
            self.call_id,
            src.transport.name(),
            src.addr
        );
    }
}

/// The start line without the SIP version of a request: `INVITE sip:bob@example.com`, or a
/// response's `SIP/2.0 180 Ringing`.
fn first_line(bytes: &[u8]) -> &[u8] {
    let line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    line.strip_suffix(b" SIP/2.0").unwrap_or(line)
}

fn target(t: &Target) -> String {
    format!("{}:{}", t.transport.name(), t.addr)
}

/// Printable and short: control bytes escaped, cut at [`MAX_FIELD`].
fn clip(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_FIELD)]);
    let mut out: String = text.chars().flat_map(char::escape_default).collect();
    if bytes.len() > MAX_FIELD {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_lines_are_short_and_printable() {
        assert_eq!(
            first_line(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n"),
            b"INVITE sip:a@b"
        );
        assert_eq!(
            first_line(b"SIP/2.0 180 Ringing\r\n"),
            b"SIP/2.0 180 Ringing"
        );
        assert_eq!(clip(b"a\"b\x01"), "a\\\"b\\u{1}");
        assert_eq!(clip(&[b'x'; 200]).chars().count(), MAX_FIELD + 1);
    }
}
