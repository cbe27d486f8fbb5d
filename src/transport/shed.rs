//! Overload shedding: datagrams that waited too long in the socket's receive queue are dropped
//! before any work is spent on them.
//!
//! Why by age, from the head of the queue: a UDP SIP client retransmits a request after T1
//! (500 ms) without an answer, and a server retransmits its 2xx the same way. Once the kernel's
//! queue holds more than a few hundred milliseconds of traffic, the oldest datagrams at its head
//! have either been retransmitted already (the copy is queued behind them) or belong to a
//! transaction whose sender is about to give up; handling them spends the CPU that the fresh
//! traffic behind them needs, and every late answer provokes another retransmission: the
//! classic SIP congestion collapse. Dropping them unprocessed (a receive costs a fraction of
//! handling) lets a shard catch up, keeps the delay of what it does handle under the limit,
//! and leaves the location table untouched. The kernel's own bound, the socket buffer
//! (`--rcvbuf`), drops the newest when full; those drops are counted too (SO_RXQ_OVFL).
//!
//! OPTIONS is never shed: it is how peers and load balancers probe whether this proxy is
//! alive, and answering it is cheap. A probe that went unanswered during overload would take
//! a working proxy out of service.
//!
//! This module decides; the receive loop measures (kernel receive timestamps, SO_TIMESTAMPNS).

/// The shedding policy of one receive loop.
#[derive(Clone, Copy, Debug)]
pub struct Shedder {
    /// Queueing delay above which a datagram is shed, in nanoseconds; 0 sheds nothing.
    max_delay_ns: u64,
}

impl Shedder {
    /// `max_delay_ms` zero turns shedding off.
    pub fn new(max_delay_ms: u64) -> Shedder {
        Shedder {
            max_delay_ns: max_delay_ms.saturating_mul(1_000_000),
        }
    }

    /// Whether a datagram that the kernel queued at `arrived_ns` (wall clock, nanoseconds) and
    /// that is taken off the queue at `now_ns` must be dropped unprocessed. `datagram` is its
    /// payload (only its first bytes are looked at). A datagram without a timestamp is kept.
    pub fn should_shed(&self, arrived_ns: Option<u64>, now_ns: u64, datagram: &[u8]) -> bool {
        let Some(arrived) = arrived_ns else {
            return false;
        };
        self.max_delay_ns != 0
            && now_ns.saturating_sub(arrived) > self.max_delay_ns
            && !is_options_request(datagram)
    }
}

/// Whether the datagram starts like an OPTIONS request. Method names are case-sensitive
/// (RFC 3261 section 7.1), so a byte comparison is exact; leading CRLFs (allowed before a
/// request, section 7.5) are skipped.
fn is_options_request(datagram: &[u8]) -> bool {
    let start = datagram
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(datagram.len());
    datagram[start..].starts_with(b"OPTIONS ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n";
    const OPTIONS: &[u8] = b"OPTIONS sip:proxy.example.com SIP/2.0\r\n";

    #[test]
    fn sheds_only_what_waited_longer_than_the_limit() {
        let s = Shedder::new(200);
        let now = 10_000 * MS;
        assert!(!s.should_shed(Some(now - 200 * MS), now, INVITE));
        assert!(s.should_shed(Some(now - 200 * MS - 1), now, INVITE));
        assert!(s.should_shed(Some(now - 5_000 * MS), now, b"SIP/2.0 200 OK\r\n"));
        // A timestamp from the future (clock stepped back) is fresh, not shed.
        assert!(!s.should_shed(Some(now + 50 * MS), now, INVITE));
    }

    #[test]
    fn options_and_untimestamped_datagrams_are_never_shed() {
        let s = Shedder::new(200);
        let now = 10_000 * MS;
        assert!(!s.should_shed(Some(0), now, OPTIONS));
        assert!(!s.should_shed(Some(0), now, b"\r\n\r\nOPTIONS sip:x SIP/2.0\r\n"));
        assert!(s.should_shed(Some(0), now, b"options sip:x SIP/2.0\r\n"));
        assert!(!s.should_shed(None, now, INVITE));
    }

    #[test]
    fn zero_turns_shedding_off() {
        let s = Shedder::new(0);
        assert!(!s.should_shed(Some(0), u64::MAX, INVITE));
    }
}
