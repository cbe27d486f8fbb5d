//! The admin API's own copy of the location table: a peer of the replication mesh, like a
//! shard, so reading never touches a shard and a removal reaches every shard (and the
//! persister) through the same rings as a REGISTER's changes.

use crate::location::{BindingRecord, LocationTable, Now};
use crate::registrar::unregister;
use crate::replication::Links;

/// Tries to hand the last removals to full rings when the node stops, a millisecond apart.
pub const FLUSH_TRIES: usize = 1000;

/// The table and this peer's ends of the rings.
pub struct Peer {
    table: LocationTable,
    /// `None` once the node stops: the rings are let go so that the persister, which waits for
    /// every producer to leave, can finish.
    links: Option<Links>,
}

impl Peer {
    pub fn new(seed: LocationTable, links: Links) -> Peer {
        Peer {
            table: seed,
            links: Some(links),
        }
    }

    /// The table as of the last [`take_in`](Self::take_in).
    pub fn table(&self) -> &LocationTable {
        &self.table
    }

    /// Apply what the shards changed since the last call, and retry removals that found a
    /// ring full.
    pub fn take_in(&mut self) {
        let Some(links) = &mut self.links else {
            return;
        };
        links.flush_backlog();
        let table = &mut self.table;
        links.drain(|rec| {
            table.merge_record(rec);
        });
    }

    /// Expired bindings and old tombstones out (memory only: reads skip them anyway).
    pub fn purge(&mut self, now: Now) {
        self.table.purge(now.secs());
    }

    /// Remove `aor`'s bindings (or the one with `contact`) everywhere; returns how many.
    /// `None` once the node is stopping (a removal could no longer reach the shards).
    pub fn unregister(&mut self, aor: &[u8], contact: Option<&[u8]>, now: Now) -> Option<usize> {
        self.take_in();
        let links = self.links.as_mut()?;
        let removals: Vec<BindingRecord> = unregister(&self.table, aor, contact, now);
        for rec in &removals {
            self.table.merge_record(rec);
            links.send(rec.clone());
        }
        Some(removals.len())
    }

    /// Whether removals still wait for room in some ring.
    pub fn backlogged(&self) -> bool {
        self.links.as_ref().is_some_and(|l| l.backlog_len() > 0)
    }

    /// Let the rings go (the node is stopping).
    pub fn leave(&mut self) {
        self.links = None;
    }

    pub fn is_stopping(&self) -> bool {
        self.links.is_none()
    }
}
