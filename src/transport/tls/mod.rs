//! SIP over TLS (RFC 3261 section 26): rustls over the TCP transport's connections.
//!
//! A TLS listener or connection is a TCP one whose stream is wrapped, after a handshake, in
//! rustls (through futures-rustls, on glommio's io_uring streams); framing, limits, the
//! connection table and the hand-off between shards are the TCP transport's own. What is
//! TLS's alone lives here: the configurations ([`load`]), the handshakes and their gate
//! ([`handshake`]), and the names a verified certificate proves ([`names`]).

pub mod handshake;
pub mod load;
pub mod names;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

/// `--tls-verify-client`: whether a client of our TLS listeners must show a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asked for.
    #[default]
    None,
    /// Asked for; a client without one is served, a bad one is refused.
    Optional,
    /// A client without a valid certificate is refused.
    Required,
}

/// The TLS flags, as given.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Trust anchors for both directions; the system roots when absent.
    pub ca: Option<PathBuf>,
    pub verify_client: ClientAuth,
    /// Certificate names whose verified holders are trusted peers (`--tls-trust`).
    pub trust: Vec<String>,
    /// Handshakes in progress per shard (`--tls-handshakes`).
    pub handshakes: usize,
    /// Connections waiting for a handshake slot per shard before new ones are shed
    /// (`--tls-handshake-backlog`).
    pub handshake_backlog: usize,
    pub handshake_timeout: Duration,
    /// The name to verify for each `--route DOMAIN=tls:HOST:PORT` next hop: HOST.
    pub route_names: HashMap<SocketAddr, String>,
}

/// What every shard's TLS starts from, built once (shared read-only; the server side is
/// replaced on SIGHUP).
#[derive(Clone)]
pub struct TlsContext {
    pub server: Option<Arc<ServerConfig>>,
    pub client: Arc<ClientConfig>,
    /// Names to verify for next hops known by name; others are verified by their address.
    pub route_names: Arc<HashMap<SocketAddr, ServerName<'static>>>,
    pub trust: Arc<names::Trust>,
    pub gate: handshake::GateLimits,
}

impl TlsContext {
    /// Read the certificates and build both sides.
    pub fn new(s: &TlsSettings) -> Result<TlsContext, String> {
        let mut route_names = HashMap::new();
        for (addr, host) in &s.route_names {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| format!("--route: {host:?} is no name a certificate can carry"))?;
            route_names.insert(*addr, name);
        }
        Ok(TlsContext {
            server: load::server_config(s)?,
            client: load::client_config(s)?,
            route_names: Arc::new(route_names),
            trust: Arc::new(names::Trust::new(&s.trust)?),
            gate: handshake::GateLimits {
                in_progress: s.handshakes.max(1),
                backlog: s.handshake_backlog,
                timeout: s.handshake_timeout,
            },
        })
    }

    /// The name a server at `addr` must prove: its route's host name, else its address.
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        match self.route_names.get(&addr) {
            Some(n) => n.clone(),
            None => ServerName::IpAddress(addr.ip().into()),
        }
    }
}
