//! Next-hop failover (the proxy side of RFC 3665 section 3.4): which of a route's ordered next
//! hops are up, and the probe bookkeeping that decides it. No I/O.
//!
//! The prober (`runtime::prober`) is the only writer: it counts answered and unanswered OPTIONS
//! with a [`ProbeTracker`] and, on a change, sends a [`HopState`] to every shard, whose
//! [`HopHealth`] copy is what the packet path reads. The choice is deterministic (the first hop
//! that is up, in the configured order), so a retransmission or the CANCEL of an INVITE takes
//! the INVITE's hop on any shard that has seen the same changes.

use std::net::SocketAddr;

use crate::sip::Transport;

/// Static next hops: requests for `domain` (or every foreign domain for `*`) go to the first
/// of `targets` that is up (in the order given; the first when none is probed or all are down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    /// Lower-case domain, or `*`.
    pub domain: String,
    /// The transport every target is reached over (`tcp:` before the targets; UDP without).
    pub transport: Transport,
    /// At least one, in order of preference.
    pub targets: Vec<SocketAddr>,
}

/// A change of one next hop's state, published by the prober to every shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HopState {
    pub hop: SocketAddr,
    pub up: bool,
}

/// One shard's view of which next hops are down (usually none, so a short list).
#[derive(Clone, Debug, Default)]
pub struct HopHealth {
    down: Vec<SocketAddr>,
}

impl HopHealth {
    /// Record a change; false when it changes nothing.
    pub fn apply(&mut self, s: HopState) -> bool {
        let known = self.down.iter().position(|d| *d == s.hop);
        match (known, s.up) {
            (Some(i), true) => {
                self.down.swap_remove(i);
                true
            }
            (None, false) => {
                self.down.push(s.hop);
                true
            }
            _ => false,
        }
    }

    pub fn is_up(&self, hop: &SocketAddr) -> bool {
        !self.down.contains(hop)
    }

    /// The first hop that is up; the first of all when every one is down (sending somewhere
    /// beats refusing while the prober may be wrong). `None` only for an empty list.
    pub fn pick(&self, hops: &[SocketAddr]) -> Option<SocketAddr> {
        hops.iter()
            .find(|h| self.is_up(h))
            .or_else(|| hops.first())
            .copied()
    }
}

/// The prober's count of unanswered probes per hop. Every hop starts up.
#[derive(Clone, Debug)]
pub struct ProbeTracker {
    hops: Vec<Tracked>,
    failures_to_down: u32,
}

#[derive(Clone, Debug)]
struct Tracked {
    hop: SocketAddr,
    unanswered: u32,
    up: bool,
}

impl ProbeTracker {
    /// `hops` are deduplicated; `failures_to_down` unanswered probes in a row mark a hop down.
    pub fn new(hops: &[SocketAddr], failures_to_down: u32) -> ProbeTracker {
        let mut tracked: Vec<Tracked> = Vec::new();
        for h in hops {
            if !tracked.iter().any(|t| t.hop == *h) {
                tracked.push(Tracked {
                    hop: *h,
                    unanswered: 0,
                    up: true,
                });
            }
        }
        ProbeTracker {
            hops: tracked,
            failures_to_down: failures_to_down.max(1),
        }
    }

    pub fn hops(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.hops.iter().map(|t| t.hop)
    }

    /// The outcome of one probe round for `hop`; returns the new state when it changed.
    pub fn record(&mut self, hop: SocketAddr, answered: bool) -> Option<HopState> {
        let t = self.hops.iter_mut().find(|t| t.hop == hop)?;
        if answered {
            t.unanswered = 0;
            if !t.up {
                t.up = true;
                return Some(HopState { hop, up: true });
            }
            return None;
        }
        t.unanswered = t.unanswered.saturating_add(1);
        if t.up && t.unanswered >= self.failures_to_down {
            t.up = false;
            return Some(HopState { hop, up: false });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn the_first_hop_that_is_up_is_picked() {
        let mut h = HopHealth::default();
        let hops = [a(1), a(2), a(3)];
        assert_eq!(h.pick(&hops), Some(a(1)));
        assert!(h.apply(HopState {
            hop: a(1),
            up: false
        }));
        assert!(
            !h.apply(HopState {
                hop: a(1),
                up: false
            }),
            "no change"
        );
        assert_eq!(h.pick(&hops), Some(a(2)));
        h.apply(HopState {
            hop: a(2),
            up: false,
        });
        assert_eq!(h.pick(&hops), Some(a(3)));
        h.apply(HopState {
            hop: a(3),
            up: false,
        });
        assert_eq!(h.pick(&hops), Some(a(1)), "all down: the first");
        assert!(h.apply(HopState {
            hop: a(1),
            up: true
        }));
        assert_eq!(h.pick(&hops), Some(a(1)));
        assert_eq!(h.pick(&[]), None);
    }

    #[test]
    fn a_hop_goes_down_after_n_unanswered_probes_and_up_on_an_answer() {
        let mut t = ProbeTracker::new(&[a(1), a(2), a(1)], 2);
        assert_eq!(t.hops().count(), 2, "deduplicated");
        assert_eq!(t.record(a(1), false), None);
        assert_eq!(t.record(a(1), true), None, "an answer resets the count");
        assert_eq!(t.record(a(1), false), None);
        assert_eq!(
            t.record(a(1), false),
            Some(HopState {
                hop: a(1),
                up: false
            })
        );
        assert_eq!(t.record(a(1), false), None, "reported once");
        assert_eq!(
            t.record(a(1), true),
            Some(HopState {
                hop: a(1),
                up: true
            })
        );
        assert_eq!(t.record(a(2), true), None);
        assert_eq!(t.record(a(9), false), None, "unknown hop");
    }
}
