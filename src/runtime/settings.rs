//! What the runtime starts from: the command line turned into typed settings, once, by
//! [`crate::config`]. Nothing here parses flags; nothing in the core reads these types except
//! the ones it owns ([`ProxyConfig`], [`AuthMode`]).

use crate::transport::udp::UdpReceive;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::admin::AdminSettings;
use crate::auth::AuthMode;
use crate::cluster::ClusterSettings;
use crate::proxy::ProxyConfig;
use crate::transport::socket::Steering;
use crate::transport::tcp::TcpSettings;
use crate::transport::tls::TlsSettings;

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct Settings {
    /// One shard per entry: the CPU it is pinned to.
    pub cpus: Vec<usize>,
    /// Listen addresses, each for UDP, TCP or both.
    pub listen: Vec<ListenSpec>,
    /// Connection limits and timeouts of the TCP transport.
    pub tcp: TcpSettings,
    /// Certificates, client verification and the handshake gate of the TLS transport.
    pub tls: TlsSettings,
    pub sockets: SocketSettings,
    pub receive: ReceiveSettings,
    /// Identity inputs the bound addresses are completed with (see `LocalIdentity::new`).
    pub domains: Vec<String>,
    pub advertise: Option<String>,
    /// The proxy's configuration, whose `local` identity is filled in once the sockets are
    /// bound (a wildcard or port 0 is only known then).
    pub proxy: ProxyConfig,
    pub state: Option<StateSettings>,
    pub metrics: Option<SocketAddr>,
    /// `--admin` and its token.
    pub admin: Option<AdminSettings>,
    /// `--allow-shared-port`: join a group of sockets another process already listens with.
    pub allow_shared_port: bool,
    pub auth: Option<AuthSettings>,
    /// `--redis` and its companions: the location table shared with other nodes.
    pub cluster: Option<ClusterSettings>,
    pub probe: Option<ProbeSettings>,
    /// SIP capture to a HEP collector (`--hep`).
    pub hep: Option<HepSettings>,
}

impl Settings {
    pub fn shards(&self) -> usize {
        self.cpus.len()
    }
}

/// One `--listen`: an address, served over UDP, TCP or both (on the same port), or over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    pub udp: bool,
    pub tcp: bool,
    pub tls: bool,
}

/// How each shard's listen sockets are made.
#[derive(Clone, Copy, Debug)]
pub struct SocketSettings {
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
    pub steering: Steering,
    /// Ask the kernel for receive timestamps (needed when shedding by queue delay).
    pub timestamps: bool,
}

/// How a receive loop paces and sheds its intake.
#[derive(Clone, Copy, Debug)]
pub struct ReceiveSettings {
    /// `--udp-receive`.
    pub udp: UdpReceive,
    /// `--rx-coalesce-us`.
    pub coalesce: Duration,
    /// `--max-queue-delay-ms`; 0 never sheds.
    pub max_queue_delay_ms: u64,
}

/// `--state-dir` and how often it is made durable.
#[derive(Clone, Debug)]
pub struct StateSettings {
    pub dir: PathBuf,
    pub fsync_interval: Duration,
}

/// Digest authentication (`--users` and its companions).
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub users: PathBuf,
    pub aliases: Option<PathBuf>,
    pub realm: String,
    /// `--auth-secret`; a random per-start secret when absent.
    pub secret: Option<Vec<u8>>,
    pub nonce_ttl: u64,
    pub nonce_bind_ip: bool,
    pub mode: AuthMode,
}

/// Next-hop probing (`--probe-interval`, `--probe-failures`).
#[derive(Clone, Copy, Debug)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub failures: u32,
}

/// SIP capture (`--hep`, `--hep-sample`, `--hep-id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HepSettings {
    /// UDP (a datagram per packet) or TCP (a stream of packets).
    pub transport: crate::sip::Transport,
    /// The collector (Homer's heplify-server, sngrep -L), resolved at start-up.
    pub collector: SocketAddr,
    /// Calls captured, in percent (0-100): a call is captured whole or not at all.
    pub percent: u8,
    /// HEP's capture agent id.
    pub capture_id: u32,
}
