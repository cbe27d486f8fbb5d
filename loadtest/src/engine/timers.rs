//! Timers: a min-heap of deadlines with lazy cancellation.
//!
//! Every call slot has one armed deadline at a time (the next retransmission, the transaction
//! timeout, the end of the hold). Re-arming bumps the slot's `token`; entries whose token is stale
//! are dropped when they surface, so cancelling costs nothing. The heap's storage is reused, so
//! once it has grown to the peak number of pending deadlines, arming allocates nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Which table a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// Attempts this side started (calls, REGISTERs, OPTIONS).
    Client,
    /// Dialogs this side answered.
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub at: u64,
    pub table: Table,
    pub slot: u32,
    pub token: u32,
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl Timers {
    pub fn with_capacity(n: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    #[inline]
    pub fn arm(&mut self, at: u64, table: Table, slot: u32, token: u32) {
        self.heap.push(Reverse(Timer {
            at,
            table,
            slot,
            token,
        }));
    }

    /// The earliest pending deadline (possibly stale: waking for nothing is harmless).
    #[inline]
    pub fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|t| t.0.at)
    }

    /// Pop one timer due by `now`.
    #[inline]
    pub fn pop_due(&mut self, now: u64) -> Option<Timer> {
        if self.heap.peek()?.0.at <= now {
            self.heap.pop().map(|t| t.0)
        } else {
            None
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut t = Timers::with_capacity(4);
        t.arm(30, Table::Client, 1, 0);
        t.arm(10, Table::Server, 2, 7);
        t.arm(20, Table::Client, 3, 1);
        assert_eq!(t.next_at(), Some(10));
        assert_eq!(t.pop_due(5), None);
        let a = t.pop_due(25).unwrap();
        assert_eq!((a.at, a.table, a.slot, a.token), (10, Table::Server, 2, 7));
        assert_eq!(t.pop_due(25).unwrap().slot, 3);
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(u64::MAX).unwrap().slot, 1);
        assert!(t.is_empty());
    }
}
