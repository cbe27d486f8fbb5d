//! Timers: a hashed timing wheel of deadlines with lazy cancellation.
//!
//! Every call slot has one armed deadline at a time (the next retransmission, the transaction
//! timeout, the end of the hold). Re-arming bumps the slot's `token`; entries whose token is stale
//! are dropped when they surface, so cancelling costs nothing.
//!
//! Why a wheel and not a binary heap: lazy cancellation leaves every superseded deadline in the
//! structure until it expires, and a call's transaction timeout is 32 s away. At tens of
//! thousands of calls per second that is millions of entries, and a heap pays a cache-missing
//! O(log n) walk for every arm and every expiry (it was the generator's hottest function). A
//! wheel of 1 ms buckets arms and expires in O(1). Deadlines within a bucket are ordered by a
//! small heap of the entries already due; deadlines beyond the wheel's span wait in their bucket
//! for later turns. Bucket storage is reused, so once the wheel has grown to the peak number of
//! pending deadlines, arming allocates nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Width of a bucket: 1 ms, fine next to SIP's timers (T1 = 500 ms).
const TICK_NS: u64 = 1_000_000;
/// Buckets in the wheel (a span of 65.5 s, past Timer B's 32 s).
const SLOTS: usize = 1 << 16;
/// How many buckets `next_at` looks ahead for the next deadline before it settles for "no
/// sooner than this".
const LOOKAHEAD: u64 = 64;

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

pub struct Timers {
    wheel: Vec<Vec<Timer>>,
    /// Entries in `wheel`.
    in_wheel: usize,
    /// The first tick whose bucket has not been moved to `due` yet.
    next_tick: u64,
    /// Entries of the ticks already passed, earliest first; some may still lie a fraction of a
    /// tick in the future.
    due: BinaryHeap<Reverse<Timer>>,
}

impl Default for Timers {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Timers {
    /// `n`: the expected number of pending deadlines (spread over the buckets).
    pub fn with_capacity(n: usize) -> Timers {
        let per_bucket = n / SLOTS;
        Timers {
            wheel: (0..SLOTS).map(|_| Vec::with_capacity(per_bucket)).collect(),
            in_wheel: 0,
            next_tick: 0,
            due: BinaryHeap::with_capacity(1024),
        }
    }

    #[inline]
    pub fn arm(&mut self, at: u64, table: Table, slot: u32, token: u32) {
        let t = Timer {
            at,
            table,
            slot,
            token,
        };
        let tick = at / TICK_NS;
        if tick < self.next_tick {
            self.due.push(Reverse(t));
        } else {
            self.wheel[(tick as usize) & (SLOTS - 1)].push(t);
            self.in_wheel += 1;
        }
    }

    /// A time at or before the earliest pending deadline, for the event loop's sleep (possibly
    /// early or stale: waking for nothing is harmless).
    pub fn next_at(&self) -> Option<u64> {
        if let Some(t) = self.due.peek() {
            return Some(t.0.at);
        }
        if self.in_wheel == 0 {
            return None;
        }
        let first = (0..LOOKAHEAD)
            .map(|k| self.next_tick + k)
            .find(|&tick| !self.wheel[(tick as usize) & (SLOTS - 1)].is_empty())
            .unwrap_or(self.next_tick + LOOKAHEAD);
        Some(first * TICK_NS)
    }

    /// Pop one timer due by `now`.
    #[inline]
    pub fn pop_due(&mut self, now: u64) -> Option<Timer> {
        self.advance(now / TICK_NS);
        if self.due.peek()?.0.at <= now {
            self.due.pop().map(|t| t.0)
        } else {
            None
        }
    }

    /// Move the buckets of every tick up to `now_tick` into `due`.
    fn advance(&mut self, now_tick: u64) {
        let end = now_tick + 1;
        if self.in_wheel == 0 {
            self.next_tick = self.next_tick.max(end);
            return;
        }
        // After a gap longer than the wheel, one visit of every bucket covers everything.
        let steps = end.saturating_sub(self.next_tick).min(SLOTS as u64);
        for k in 0..steps {
            let bucket = &mut self.wheel[((self.next_tick + k) as usize) & (SLOTS - 1)];
            let mut i = 0;
            while i < bucket.len() {
                if bucket[i].at / TICK_NS < end {
                    self.due.push(Reverse(bucket.swap_remove(i)));
                    self.in_wheel -= 1;
                } else {
                    i += 1; // a later turn of the wheel
                }
            }
        }
        self.next_tick = self.next_tick.max(end);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.in_wheel + self.due.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = TICK_NS;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut t = Timers::with_capacity(4);
        t.arm(30 * MS, Table::Client, 1, 0);
        t.arm(10 * MS + 5, Table::Server, 2, 7);
        t.arm(20 * MS, Table::Client, 3, 1);
        t.arm(10 * MS, Table::Client, 4, 0);
        assert!(t.next_at().unwrap() <= 10 * MS);
        assert_eq!(t.pop_due(5 * MS), None);
        // Same tick: still in deadline order, and nothing before its time.
        assert_eq!(t.pop_due(10 * MS).unwrap().slot, 4);
        assert_eq!(t.pop_due(10 * MS), None);
        assert_eq!(t.next_at(), Some(10 * MS + 5));
        let a = t.pop_due(25 * MS).unwrap();
        assert_eq!(
            (a.at, a.table, a.slot, a.token),
            (10 * MS + 5, Table::Server, 2, 7)
        );
        assert_eq!(t.pop_due(25 * MS).unwrap().slot, 3);
        assert_eq!(t.pop_due(25 * MS), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(u64::MAX / 2).unwrap().slot, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn deadlines_beyond_the_wheel_and_in_the_past() {
        let mut t = Timers::with_capacity(4);
        let start = 1_000_000 * MS;
        assert_eq!(t.pop_due(start), None);
        // Two turns of the wheel ahead: shares a bucket with a near deadline, fires only later.
        let far = start + 2 * SLOTS as u64 * MS;
        t.arm(far, Table::Client, 1, 0);
        t.arm(start + 1, Table::Client, 2, 0);
        assert_eq!(t.pop_due(start + 1).unwrap().slot, 2);
        assert_eq!(t.pop_due(start + SLOTS as u64 * MS), None);
        // Armed for a time already passed: due at once.
        t.arm(start - 5 * MS, Table::Server, 3, 0);
        assert_eq!(t.pop_due(start + 2).unwrap().slot, 3);
        assert_eq!(t.pop_due(far - 1), None);
        assert_eq!(t.pop_due(far).unwrap().slot, 1);
        assert!(t.is_empty());
    }
}
