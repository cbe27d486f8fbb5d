//! sipshard: a carrier-edge stateless SIP proxy and registrar.
//!
//! # Contract of the core
//!
//! Everything under [`sip`], [`location`], [`identity`], [`registrar`], [`auth`] and [`proxy`]
//! is sans-I/O: it takes the bytes of one message, the time and where the message came from, and
//! returns views, errors, edits and actions. It opens no socket, reads no clock, imports neither
//! the command line ([`config`]) nor the runtime, and never panics on input. The [`runtime`] and
//! the [`transport`]s are the only code that touches sockets, executors and clocks.
//!
//! # Layers (imports point down only)
//!
//! ```text
//!   main ─ config (clap: flags -> the core's settings types) ─ ctl (the admin API's client)
//!     runtime (executors, shards, persister, prober, reload)
//!       transport (UDP, TCP, TLS)   admin (the operators' API)   metrics   persist
//!         replication (the rings between shards and the peers beside them)
//!         proxy (the stateless proxy's decisions: Core)
//!           registrar        auth
//!             identity (our addresses and domains)   counters
//!               location (the replicated location table)
//!                 sip (messages: parse in place, rewrite in place, stream framing)
//!   hep (SIP capture packets, HEP version 3: encoded here, sent by the runtime)
//! ```
//!
//! See `docs/architecture.md` for the whole picture and `scripts/check-layers.sh` for the check.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod counters;
pub mod ctl;
pub mod hep;
pub mod identity;
pub mod location;
pub mod metrics;
pub mod persist;
pub mod proxy;
pub mod registrar;
pub mod replication;
pub mod runtime;
pub mod sip;
pub mod stun;
pub mod transport;
