//! The test kit of the sipshard workspace: everything the integration tests of `sipshard`
//! (`tests/`) and of `sipshard-load` (`loadtest/tests/`) share, in one crate instead of helper
//! files included into each test by path.
//!
//! The tests talk to real processes over real sockets on 127.0.0.1, so most of this kit is
//! about starting processes and cleaning up after them:
//!
//! - [`Proxy`]: the `sipshard` binary under test, started on a free port and returned once it
//!   answers an OPTIONS ping; its log is a file, and it dies with the test.
//! - [`Ua`] and [`SipClient`]: SIP over UDP from the test itself, one datagram at a time or as
//!   a retransmitting client transaction; [`sip`] builds and reads the messages.
//! - [`peers`]: SIPp, Kamailio, sipsak and baresip, the SIP implementations nobody here
//!   wrote; a test whose peer is missing fails saying how to install it, it never passes by
//!   skipping.
//! - [`loadgen`]: runs of the `sipshard-load` generator and its JSON report.
//! - [`Proc`], [`Scratch`], [`ports`]: child processes killed with their process group,
//!   scratch directories kept only when a test fails, and the one free-port picker.
//! - [`mutate`]: the mutation suite's cases (issue 19), from a valid INVITE and REGISTER.
//! - [`robustness`]: sends those cases to a proxy and classifies what became of each.
//! - [`netns`]: a real NAT in network namespaces the test creates (root, iproute2, nftables).
//! - [`exit_log`], [`scrape`], [`digest`]: reading sipshard's exit counters and `/metrics`,
//!   and a UAC's side of Digest authentication written independently of `src/auth`.
//!
//! Binaries are found next to the test executable ([`bin`]), the same way for every test.

pub mod bin;
pub mod client;
pub mod digest;
pub mod exit_log;
pub mod loadgen;
pub mod mutate;
pub mod netns;
pub mod peers;
pub mod pki;
pub mod poll;
pub mod ports;
pub mod proc;
pub mod proxy;
pub mod robustness;
pub mod scrape;
pub mod scratch;
pub mod sip;
pub mod tcp_ua;
pub mod text;
pub mod ua;

pub use client::{Response, SipClient};
pub use poll::{eventually, eventually_every};
pub use ports::{free_low_port, free_port, free_ports};
pub use proc::Proc;
pub use proxy::Proxy;
pub use scratch::Scratch;
pub use tcp_ua::{Got, TcpUa};
pub use text::tail;
pub use ua::Ua;
