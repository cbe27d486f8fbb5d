//! Transports: the sockets and the batched I/O that carry SIP messages in and out of a shard.
//! The runtime owns the executors; a transport owns its sockets.

pub mod batch;
pub mod buf_ring;
pub mod coalesce;
pub mod shed;
pub mod socket;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod udp_ring;
