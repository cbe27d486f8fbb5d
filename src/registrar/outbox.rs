//! The changes a shard's registrar made, on their way to the other shards.

use crate::location::{BindingRecord, Now};

/// Location changes made on this shard, waiting to be sent to the other shards, and the
/// version stamp last given to one.
#[derive(Default)]
pub struct Outbox {
    records: Vec<BindingRecord>,
    last_stamp_ms: u64,
}

impl Outbox {
    /// The version stamp of a change made at `now`: the wall clock in milliseconds, or one more
    /// than the last stamp when the clock has not moved on since (or went back). Stamps from
    /// one shard strictly increase, so two changes it makes in one millisecond are ordered.
    pub fn stamp(&mut self, now: Now) -> u64 {
        let stamp = now.unix_ms.max(self.last_stamp_ms + 1);
        self.last_stamp_ms = stamp;
        stamp
    }

    pub fn push(&mut self, rec: BindingRecord) {
        self.records.push(rec);
    }

    /// Everything queued since the last call.
    pub fn drain(&mut self) -> std::vec::Drain<'_, BindingRecord> {
        self.records.drain(..)
    }
}
