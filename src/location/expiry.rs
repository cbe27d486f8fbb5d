//! When each AOR next has something to purge, so that a shard reclaims lapsed bindings by
//! visiting only the AORs that have one, a bounded number at a time, instead of walking the
//! whole table (a million AORs stopped a shard for up to 219 ms every second, during which it
//! forwarded nothing).
//!
//! The table keeps each AOR scheduled no later than the second its earliest binding lapses (a
//! tombstone: when it may be forgotten): a merge schedules the AOR only when it brings that
//! second earlier, and a visit puts the AOR back for what is left. An entry is a hint: a
//! binding refreshed since is still there when its old second comes, and the visit only puts
//! the AOR back. About one entry per AOR, named by its hash in the table, 8 bytes. No clock:
//! seconds come from the caller.

use std::collections::BTreeMap;

#[derive(Clone, Default)]
pub struct ExpirySchedule {
    /// AOR hashes by the second from which they may have something to purge.
    by_second: BTreeMap<u64, Vec<u64>>,
    len: usize,
}

impl ExpirySchedule {
    /// Visit the AOR hashed `aor_hash` at `second` or later.
    pub fn schedule(&mut self, second: u64, aor_hash: u64) {
        self.by_second.entry(second).or_default().push(aor_hash);
        self.len += 1;
    }

    /// Hand `visit` the AORs due by `now_secs`, earliest first, at most `budget` of them (the
    /// rest stay due for the next call). Returns how many were handed.
    pub fn take_due(&mut self, now_secs: u64, budget: usize, mut visit: impl FnMut(u64)) -> usize {
        let mut taken = 0;
        while taken < budget {
            let Some(mut first) = self.by_second.first_entry() else {
                break;
            };
            if *first.key() > now_secs {
                break;
            }
            let hashes = first.get_mut();
            while taken < budget {
                let Some(h) = hashes.pop() else { break };
                visit(h);
                taken += 1;
            }
            if hashes.is_empty() {
                first.remove();
            }
        }
        self.len -= taken;
        taken
    }

    /// Entries scheduled and not yet due or taken.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_what_is_due_earliest_first_within_the_budget() {
        let mut s = ExpirySchedule::default();
        for (second, h) in [(30, 3), (10, 1), (20, 2), (10, 11), (40, 4)] {
            s.schedule(second, h);
        }
        let mut seen = Vec::new();
        assert_eq!(s.take_due(5, 10, |h| seen.push(h)), 0, "nothing due yet");
        assert_eq!(s.take_due(25, 2, |h| seen.push(h)), 2, "the budget");
        assert_eq!(
            s.take_due(25, 10, |h| seen.push(h)),
            1,
            "the rest of what is due"
        );
        seen[..2].sort_unstable();
        assert_eq!(seen, [1, 11, 2]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.take_due(100, 10, |h| seen.push(h)), 2);
        assert_eq!(s.len(), 0);
    }
}
