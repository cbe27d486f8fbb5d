//! sipshard: a carrier-edge stateless SIP proxy and registrar.
//!
//! # Contract of the core
//!
//! Everything under [`sip`] is sans-I/O: it takes the bytes of one datagram and returns views,
//! errors and edits. It opens no socket, reads no clock and never panics on input. The shard
//! runtime is the only code that touches sockets and executors.
//!
//! # Layout
//!
//! - [`sip`]: parse a datagram into a borrowed view; rewrite it in place.
//! - [`auth`]: Digest authentication policy (challenge, check, replay tracking), same contract:
//!   the caller passes the time and the client address.
pub mod auth;
pub mod sip;
