//! The connections peers opened to this node that have closed, as far as this shard has heard
//! (its own, and the other shards' withdrawals): an Outbound flow (RFC 5626) on one of them is
//! dead, and a call to its AOR goes down another binding when there is one, instead of down the
//! dead flow to a 430 (section 5.3 has the proxy try the next flow; a stateless proxy can only
//! choose before it sends).
//!
//! Bounded: the most recent [`CAPACITY`] closes are remembered. A binding on a connection
//! closed longer ago than that (the phone neither came back nor expired) is taken as live and
//! gets the 430 its send finds. A connection is named by its transport and id: the TCP and TLS
//! transports number their connections apart, each from a random start, so an id is not
//! handed out twice and nothing here goes stale the other way. No I/O.

use std::collections::VecDeque;

use ahash::AHashSet as HashSet;

use crate::sip::{ConnId, Transport};

/// Closes remembered: some minutes of a busy edge's churn, about 2 MiB per shard.
pub const CAPACITY: usize = 65_536;

type Named = (Transport, ConnId);

#[derive(Default)]
pub struct ClosedFlows {
    set: HashSet<Named>,
    /// The same connections, oldest first, for forgetting.
    order: VecDeque<Named>,
}

impl ClosedFlows {
    /// Connection `id` of `transport` closed.
    pub fn closed(&mut self, transport: Transport, id: ConnId) {
        if self.set.contains(&(transport, id)) {
            return;
        }
        if self.order.len() == CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.set.insert((transport, id));
        self.order.push_back((transport, id));
    }

    pub fn contains(&self, transport: Transport, id: ConnId) -> bool {
        !self.set.is_empty() && self.set.contains(&(transport, id))
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_most_recent_closes_only() {
        let tcp = Transport::Tcp;
        let mut c = ClosedFlows::default();
        assert!(!c.contains(tcp, ConnId::new(0, 1)));
        for serial in 0..(CAPACITY as u64 + 10) {
            c.closed(tcp, ConnId::new(1, serial));
        }
        c.closed(tcp, ConnId::new(1, CAPACITY as u64 + 9)); // again: no effect
        assert_eq!((c.len(), c.order.len()), (CAPACITY, CAPACITY));
        assert!(!c.contains(tcp, ConnId::new(1, 9)), "forgotten");
        assert!(c.contains(tcp, ConnId::new(1, 10)));
        assert!(c.contains(tcp, ConnId::new(1, CAPACITY as u64 + 9)));
        assert!(!c.contains(tcp, ConnId::new(2, 10)), "another shard's");
        assert!(!c.contains(Transport::Tls, ConnId::new(1, 10)), "TLS's");
    }
}
