//! More than one node: the location table shared through Redis (`--redis`).
//!
//! Every shard of every node still holds the whole table in memory, and the packet path never
//! waits for Redis. One peer per node ([`peer`], a thread beside the shards) writes every
//! binding change made on this node to Redis, once per node, and applies the other nodes'
//! changes to all local shards through the replication rings, as a shard's own changes travel.
//!
//! Redis holds the durable state: one key per binding, aged by Redis itself (its time to live
//! follows the binding's expiry; a removal is a tombstone kept longer than any binding can
//! live), and one change stream per node, capped by length, that the other nodes follow. The store's write keeps the
//! newest version (last writer wins, the node id breaking ties) and appends to the writing
//! node's own stream in the same step ([`store`]), so a node that reads the other nodes'
//! stream positions, then the keys, then follows from those positions misses nothing
//! ([`follower`]). What a change looks like in Redis, and how a
//! binding only its own node can reach is routed through that node: [`record`].
//!
//! Layering: a peer of the replication mesh like the persister and the admin API; below the
//! runtime (which starts it), above the core.

mod follower;
pub mod outbox;
pub mod peer;
pub mod record;
pub mod settings;
pub mod store;

pub use outbox::Origin;
pub use settings::{ClusterSettings, RedisEndpoint};
