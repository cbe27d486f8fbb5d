//! Per-shard replay protection for `qop=auth`: for one nonce, `nc` must strictly increase
//! (RFC 2617 section 3.2.2: "the purpose of this directive is to allow the server to detect
//! request replays by maintaining its own copy of this count").
//!
//! # Limits
//!
//! - **Per shard, not cluster-wide.** Nonces are stateless so that any shard can verify them;
//!   the counts are not, and sharing them would put a lock or a message on the packet path. A
//!   request replayed to another shard or node within the nonce lifetime is accepted there once
//!   per shard. The nonce lifetime (and `bind_ip`) bound that window.
//! - **Bounded memory.** Entries live in two generations of at most `capacity / 2` each; when the
//!   current one fills, the previous one is dropped. A nonce is forgotten only after
//!   `capacity / 2` other nonces were accepted since its last use, so with `capacity` at least
//!   twice the number of distinct nonces a shard accepts within one nonce lifetime, no live nonce
//!   is ever forgotten. A forgotten nonce's next request is accepted and tracked afresh. Only
//!   requests whose response was verified reach the tracker, so filling it takes valid
//!   credentials. Both generations are allocated up front: no allocation on the packet path.
//! - **Retransmissions are not replays.** Over UDP a client retransmits the same request, with
//!   the same Authorization, until it gets a response (RFC 3261 section 17.1.1.2). A stateless
//!   proxy sees each copy; rejecting them would answer 407 to an INVITE already forwarded. So the
//!   same `nc` with the same `response` is accepted for `retransmit_window` seconds after it was
//!   first accepted (default 32 s, Timer B = 64*T1). A replay of a verbatim copy within that
//!   window is indistinguishable from a retransmission, and as harmless as one to a stateful UAS.
//!   A window of 0 makes the check strict.
//! - Keyed by nonce alone: two users sharing one nonce share its count, as RFC 2617 defines the
//!   count per nonce.

use ahash::AHashMap;

use super::digest::{ct_eq, Hash};
use super::nonce::NONCE_LEN;

/// What the tracker says about one (nonce, nc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NcVerdict {
    /// Higher than any count seen for this nonce (or the nonce is new here): accept.
    Fresh,
    /// The request last accepted with this nonce, again, within the retransmission window.
    Retransmission,
    /// A count already used: reject.
    Replay,
}

#[derive(Clone, Copy)]
struct Entry {
    nc: u32,
    accepted_at: u64,
    response: Hash,
}

/// Highest `nc` seen per nonce on this shard. One per shard, owned mutably by its event loop.
pub struct NcTracker {
    current: AHashMap<[u8; NONCE_LEN], Entry>,
    previous: AHashMap<[u8; NONCE_LEN], Entry>,
    generation: usize,
    retransmit_window: u64,
}

impl NcTracker {
    /// Default total number of nonces tracked per shard.
    pub const DEFAULT_CAPACITY: usize = 65_536;
    /// Default retransmission window in seconds: Timer B and F, 64*T1 (RFC 3261 section 17.1).
    pub const DEFAULT_RETRANSMIT_WINDOW: u64 = 32;

    /// A tracker for at most `capacity` nonces (at least 2).
    pub fn new(capacity: usize) -> NcTracker {
        let generation = (capacity / 2).max(1);
        NcTracker {
            current: AHashMap::with_capacity(generation),
            previous: AHashMap::with_capacity(generation),
            generation,
            retransmit_window: Self::DEFAULT_RETRANSMIT_WINDOW,
        }
    }

    pub fn with_retransmit_window(mut self, seconds: u64) -> NcTracker {
        self.retransmit_window = seconds;
        self
    }

    /// Number of nonces tracked.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `nc` for `nonce` if it is fresh. Call only after the nonce and the `response` were
    /// verified, so forged requests cannot advance the count.
    pub fn check(
        &mut self,
        nonce: &[u8; NONCE_LEN],
        nc: u32,
        response: &Hash,
        now: u64,
    ) -> NcVerdict {
        let entry = self
            .current
            .get(nonce)
            .or_else(|| self.previous.get(nonce))
            .copied();
        if let Some(e) = entry {
            if nc < e.nc || (nc == e.nc && !self.is_retransmission(&e, response, now)) {
                return NcVerdict::Replay;
            }
            if nc == e.nc {
                // The window runs from the first acceptance: copies cannot extend it.
                return NcVerdict::Retransmission;
            }
            self.previous.remove(nonce);
        }
        if !self.current.contains_key(nonce) && self.current.len() >= self.generation {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(
            *nonce,
            Entry {
                nc,
                accepted_at: now,
                response: *response,
            },
        );
        NcVerdict::Fresh
    }

    fn is_retransmission(&self, e: &Entry, response: &Hash, now: u64) -> bool {
        now.saturating_sub(e.accepted_at) <= self.retransmit_window
            && self.retransmit_window > 0
            && ct_eq(&e.response, response)
    }
}

impl Default for NcTracker {
    fn default() -> Self {
        NcTracker::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(i: u32) -> [u8; NONCE_LEN] {
        let mut n = [b'0'; NONCE_LEN];
        n[..4].copy_from_slice(&i.to_be_bytes());
        n
    }

    const R1: Hash = [1; 16];
    const R2: Hash = [2; 16];

    #[test]
    fn nc_must_increase() {
        let mut t = NcTracker::new(16);
        let n = nonce(1);
        assert_eq!(t.check(&n, 1, &R1, 100), NcVerdict::Fresh);
        assert_eq!(t.check(&n, 2, &R2, 100), NcVerdict::Fresh);
        assert_eq!(t.check(&n, 1, &R1, 100), NcVerdict::Replay);
        // Same nc, different request: a replay with a changed body of the same count.
        assert_eq!(t.check(&n, 2, &R1, 100), NcVerdict::Replay);
        assert_eq!(t.check(&n, 5, &R1, 100), NcVerdict::Fresh);
        assert_eq!(t.check(&nonce(2), 1, &R1, 100), NcVerdict::Fresh);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn retransmissions_within_the_window() {
        let mut t = NcTracker::new(16);
        let n = nonce(1);
        assert_eq!(t.check(&n, 1, &R1, 100), NcVerdict::Fresh);
        assert_eq!(t.check(&n, 1, &R1, 100), NcVerdict::Retransmission);
        assert_eq!(t.check(&n, 1, &R1, 132), NcVerdict::Retransmission);
        assert_eq!(t.check(&n, 1, &R1, 133), NcVerdict::Replay);
        let mut strict = NcTracker::new(16).with_retransmit_window(0);
        assert_eq!(strict.check(&n, 1, &R1, 100), NcVerdict::Fresh);
        assert_eq!(strict.check(&n, 1, &R1, 100), NcVerdict::Replay);
    }

    #[test]
    fn memory_is_bounded_and_recent_entries_survive() {
        let mut t = NcTracker::new(8);
        for i in 0..1000 {
            assert_eq!(t.check(&nonce(i), 1, &R1, 100), NcVerdict::Fresh);
            assert!(t.len() <= 8);
            // The last capacity/2 nonces are always remembered.
            for j in i.saturating_sub(3)..=i {
                assert_eq!(
                    t.check(&nonce(j), 1, &R2, 100),
                    NcVerdict::Replay,
                    "{i} {j}"
                );
            }
        }
        // A nonce in use keeps moving to the current generation.
        let mut t = NcTracker::new(4);
        for i in 0..50 {
            assert_eq!(t.check(&nonce(1000), i + 1, &R1, 100), NcVerdict::Fresh);
            assert_eq!(t.check(&nonce(i), 1, &R1, 100), NcVerdict::Fresh);
        }
        assert_eq!(t.check(&nonce(1000), 50, &R2, 100), NcVerdict::Replay);
    }
}
