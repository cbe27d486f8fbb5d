//! The location table of one shard: AOR -> bindings, in compact storage.
//!
//! Every shard holds the whole table. A change made on one shard is encoded as a
//! [`BindingRecord`] and sent to the other shards, which [`merge`](LocationTable::merge) it.
//! Merging is last-writer-wins on a [`Version`], so records can arrive in any order, twice, or
//! from two shards updating the same binding at once, and every shard ends in the same state.
//! A removal is a record too (a tombstone, kept for [`TOMBSTONE_SECS`]) so that an older
//! registration arriving late cannot bring a removed binding back.
//!
//! Storage: one heap allocation per AOR holding its canonical key (`user@host`, host
//! lower-cased) and then its encoded bindings back to back, in a `hashbrown::HashTable` of
//! those allocations (a slot is one 16-byte pointer). Every shard holds the whole table, so
//! its size per binding matters: with one binding per AOR, a million AORs take some 140 bytes
//! of heap (about 165 resident) per binding, of which about 70 are the AOR and contact text
//! themselves (`cargo bench --bench location_memory`). The Call-ID is kept only as a 64-bit hash: the
//! registrar needs it for equality (RFC 3261 section 10.3 step 7), never for its text.

//!
//! This module is the bottom of the house above [`crate::sip`]: the registrar, the proxy,
//! replication and persistence all use it, and it imports nothing but `sip`.

mod expiry;
mod key;
mod now;
mod table;

pub use key::AorKey;
pub use now::Now;
pub use table::*;
