//! What the runtime asks of a core between datagrams: replication in and out, next-hop state,
//! the purge, and the counts only the runtime sees (sends, kernel and shedding drops). Going
//! through these methods, the runtime needs neither the table nor the counters as fields.

use crate::counters::{Counters, DropReason};
use crate::location::{BindingRecord, Now};

use super::next_hop::HopState;
use super::Core;

impl Core {
    /// Location changes made since the last call, for the other shards.
    pub fn take_replication(&mut self) -> std::vec::Drain<'_, BindingRecord> {
        self.outbox.drain()
    }

    /// Apply a change made on another shard.
    pub fn apply_replica(&mut self, rec: &BindingRecord) {
        self.counters.replication_received += 1;
        self.table.merge_record(rec);
    }

    /// Apply a next hop's change of state published by the prober.
    pub fn apply_hop_state(&mut self, s: HopState) {
        if self.hops.apply(s) {
            self.counters.next_hop_changes += 1;
        }
    }

    /// Drop expired bindings (lookups already ignore them; this reclaims memory).
    pub fn purge(&mut self, now: Now) {
        let expired = self.table.purge(now.secs());
        self.counters.registrations_expired += expired as u64;
        if let Some(p) = &mut self.pike {
            p.prune(now.unix_ms);
        }
    }

    /// This shard's counters, for publishing and for the totals at exit.
    #[inline]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// `n` datagrams dropped before the core saw them (the kernel's queue was full, ...).
    #[inline]
    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.counters.drops[reason as usize] += n;
    }

    /// A datagram shed unprocessed (it waited too long): received, and dropped as Overload.
    #[inline]
    pub fn count_received_shed(&mut self) {
        self.counters.datagrams_received += 1;
        self.counters.drop(DropReason::Overload);
    }

    /// The outcome of one batch of sends.
    #[inline]
    pub fn count_sent(&mut self, sent: u64, failed: u64) {
        self.counters.datagrams_sent += sent;
        self.count_drops(DropReason::SendFailed, failed);
    }

    /// (bindings, AORs) in this shard's location table, for the gauges; bindings that expired
    /// but were not purged yet are counted.
    #[inline]
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.table.binding_count(), self.table.aor_count())
    }
}
