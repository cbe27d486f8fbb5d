//! sipshard: a carrier-edge stateless SIP proxy and registrar.
//!
//! # Contract of the core
//!
//! Everything under [`sip`], [`proxy`], [`registrar`] and [`auth`] is sans-I/O: it takes the
//! bytes of one datagram, the time and the source address, and returns views, errors, edits and
//! actions. It opens no socket, reads no clock and never panics on input. The [`shard`] runtime
//! is the only code that touches sockets, executors and clocks.
//!
//! # Layout
//!
//! - [`sip`]: parse a datagram into a borrowed view; rewrite it in place.
//! - [`proxy`]: the stateless proxy's decisions: `Core::handle(now, src, socket, buffer)`.
//! - [`registrar`]: REGISTER handling and the replicated per-shard location table.
//! - [`auth`]: Digest authentication policy (challenge, check, replay tracking).
//! - [`config`]: command-line flags.
//! - [`metrics`]: per-shard counters.
//! - [`shard`]: the runtime: glommio executors, SO_REUSEPORT sockets, batched I/O, replication.

pub mod auth;
pub mod config;
pub mod metrics;
pub mod metrics_export;
pub mod persist;
pub mod proxy;
pub mod registrar;
pub mod shard;
pub mod sip;
