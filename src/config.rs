//! Command-line flags and the validated configuration built from them.
//!
//! Every flag has a sane default so that `sipshard` with no flags serves as a registrar and
//! stateless proxy on `0.0.0.0:5060` with one shard per core.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Parser, ValueEnum};

mod startup;

use crate::admin::AdminSettings;
use crate::auth::AuthMode;
use crate::cluster::settings::{check_node_id, parse_endpoint};
use crate::cluster::ClusterSettings;
use crate::identity::LocalIdentity;
use crate::proxy::flow::FlowKey;
use crate::proxy::nat_ping::{NatPingConfig, PingMethod};
use crate::proxy::redirect::RedirectPolicy;
use crate::proxy::{ProxyConfig, StaticRoute};
use crate::registrar::{NatMode, RegistrarConfig};
use crate::runtime::settings::{
    AuthSettings, HepSettings, ListenSpec, ProbeSettings, ReceiveSettings, Settings,
    SocketSettings, StateSettings,
};
use crate::sip::Transport;
use crate::transport::socket::Steering;
use crate::transport::tcp::{TcpReceive, TcpSettings};
use crate::transport::tls::{ClientAuth, TlsSettings};
use crate::transport::udp::UdpReceive;

/// 32 random bytes (the flow-token key when no --auth-secret is given). A system without
/// random numbers cannot sign anything safely: start-up stops there.
fn random_key() -> [u8; 32] {
    crate::auth::nonce::random_secret().expect("the system's random numbers")
}

/// `--steering flow|random`: clap's view of [`Steering`].
impl ValueEnum for Steering {
    fn value_variants<'a>() -> &'a [Self] {
        &[Steering::Flow, Steering::Random]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Steering::Flow => PossibleValue::new("flow")
                .help("The kernel's 4-tuple hash: one peer always lands on the same shard"),
            Steering::Random => PossibleValue::new("random").help(
                "A classic BPF program returns a random socket index: even spread even with few peers",
            ),
        })
    }
}

/// `--tcp-receive multishot|stream`: clap's view of [`TcpReceive`].
impl ValueEnum for TcpReceive {
    fn value_variants<'a>() -> &'a [Self] {
        &[TcpReceive::Multishot, TcpReceive::Stream]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            TcpReceive::Multishot => PossibleValue::new("multishot").help(
                "A multishot io_uring receive per connection into shared buffers (kernel 6.0 or later)",
            ),
            TcpReceive::Stream => PossibleValue::new("stream").help("glommio's stream reads"),
        })
    }
}

/// `--udp-receive multishot|mmsg`: clap's view of [`UdpReceive`].
impl ValueEnum for UdpReceive {
    fn value_variants<'a>() -> &'a [Self] {
        &[UdpReceive::Multishot, UdpReceive::Mmsg]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            UdpReceive::Multishot => PossibleValue::new("multishot").help(
                "A multishot io_uring receive into the shard's packet buffers (kernel 6.1 or later)",
            ),
            UdpReceive::Mmsg => PossibleValue::new("mmsg").help("recvmmsg when the socket is readable"),
        })
    }
}

/// `--nat auto|always|off`: clap's view of [`NatMode`].
impl ValueEnum for NatMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[NatMode::Auto, NatMode::Always, NatMode::Off]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            NatMode::Auto => PossibleValue::new("auto").help(
                "A contact whose REGISTER's Via is not its source, or that is private while \
                 its source is not, is reached where the REGISTER came from",
            ),
            NatMode::Always => PossibleValue::new("always")
                .help("Every contact is reached where its REGISTER came from"),
            NatMode::Off => {
                PossibleValue::new("off").help("Every contact is reached at the address it names")
            }
        })
    }
}

/// `--nat-ping-method options|crlf`: clap's view of [`PingMethod`].
impl ValueEnum for PingMethod {
    fn value_variants<'a>() -> &'a [Self] {
        &[PingMethod::Options, PingMethod::Crlf]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            PingMethod::Options => PossibleValue::new("options")
                .help("An OPTIONS request; unanswered ones count towards --nat-ping-failures"),
            PingMethod::Crlf => {
                PossibleValue::new("crlf").help("Four bytes, CRLF CRLF; never answered")
            }
        })
    }
}

/// `--tls-verify-client none|optional|required`: clap's view of [`ClientAuth`].
impl ValueEnum for ClientAuth {
    fn value_variants<'a>() -> &'a [Self] {
        &[ClientAuth::None, ClientAuth::Optional, ClientAuth::Required]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            ClientAuth::None => PossibleValue::new("none").help("Never ask for one"),
            ClientAuth::Optional => PossibleValue::new("optional")
                .help("Ask; serve a client without one, refuse a bad one"),
            ClientAuth::Required => {
                PossibleValue::new("required").help("Refuse a client without a valid one")
            }
        })
    }
}

/// `--listen [udp:|tcp:|tls:]ADDR`: a bare address means UDP and TCP on the same port.
fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    let (udp, tcp, tls, addr) = match s.split_once(':') {
        Some(("udp", a)) => (true, false, false, a),
        Some(("tcp", a)) => (false, true, false, a),
        Some(("tls", a)) => (false, false, true, a),
        _ => (true, true, false, s),
    };
    let addr = addr
        .parse()
        .map_err(|_| format!("expected [udp:|tcp:|tls:]IP:PORT, got {s:?}"))?;
    Ok(ListenSpec {
        addr,
        udp,
        tcp,
        tls,
    })
}

/// `--hep udp:HOST:PORT` or `tcp:HOST:PORT`: the collector, resolved once, here (a name is
/// looked up at start-up, never again).
fn parse_hep(s: &str) -> Result<(Transport, SocketAddr), String> {
    match s.split_once(':') {
        Some(("udp", hostport)) if !hostport.is_empty() => Ok((Transport::Udp, resolve(hostport)?)),
        Some(("tcp", hostport)) if !hostport.is_empty() => Ok((Transport::Tcp, resolve(hostport)?)),
        _ => Err(format!(
            "expected udp:HOST:PORT or tcp:HOST:PORT, got {s:?}"
        )),
    }
}

/// One `--route` as given: the route, and each next hop's host as written (a TLS next hop
/// must prove that name).
#[derive(Clone, Debug)]
pub struct RouteArg {
    pub route: StaticRoute,
    pub hosts: Vec<String>,
}

/// `--route DOMAIN=[udp:|tcp:|tls:]HOST:PORT[,HOST:PORT...]`, each target resolved once, here.
fn parse_route(s: &str) -> Result<RouteArg, String> {
    let (domain, target) = s.split_once('=').ok_or_else(|| {
        format!("expected DOMAIN=[udp:|tcp:|tls:]HOST:PORT[,HOST:PORT...], got {s:?}")
    })?;
    if domain.is_empty() {
        return Err(format!("empty domain in route {s:?}"));
    }
    let (transport, target) = match target.split_once(':') {
        Some(("udp", rest)) => (Transport::Udp, rest),
        Some(("tcp", rest)) => (Transport::Tcp, rest),
        Some(("tls", rest)) => (Transport::Tls, rest),
        _ => (Transport::Udp, target),
    };
    let hops: Vec<&str> = target.split(',').map(str::trim).collect();
    let targets = hops
        .iter()
        .map(|h| resolve(h))
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = hops.iter().map(|h| host_of(h).to_string()).collect();
    Ok(RouteArg {
        route: StaticRoute {
            domain: domain.to_ascii_lowercase(),
            transport,
            targets,
        },
        hosts,
    })
}

/// `HOST` of `HOST:PORT` (`[v6]:PORT` gives `v6`).
fn host_of(hop: &str) -> &str {
    let host = hop.rsplit_once(':').map_or(hop, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Resolve `HOST:PORT` once at start-up (names are looked up here, never on the packet path).
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// A list of CPUs such as `0,2-3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a.trim().parse().map_err(|_| format!("bad CPU {a:?}"))?;
                    let b: usize = b.trim().parse().map_err(|_| format!("bad CPU {b:?}"))?;
                    if a > b {
                        return Err(format!("bad CPU range {part:?}"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(part.parse().map_err(|_| format!("bad CPU {part:?}"))?),
            }
        }
        if cpus.is_empty() {
            return Err("empty CPU list".into());
        }
        Ok(CpuList(cpus))
    }
}

/// `--auth register|all|callers`: clap's view of [`AuthMode`], whose variants it documents.
impl ValueEnum for AuthMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[AuthMode::Register, AuthMode::All, AuthMode::Callers]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            AuthMode::Register => PossibleValue::new("register")
                .help("Only REGISTER for our domains (401 + WWW-Authenticate)"),
            AuthMode::All => PossibleValue::new("all").help(
                "REGISTER, and every request from a user of our domains that starts a dialog or \
                 stands alone (407 + Proxy-Authenticate)",
            ),
            AuthMode::Callers => PossibleValue::new("callers")
                .help("Like `all`, but whatever domain the From names: every caller must hold an account here"),
        })
    }
}

/// The `--auth-secret` value, decoded: `hex:` followed by an even number of hex digits gives
/// those bytes; `file:PATH` reads the secret from a file (its bytes, surrounding whitespace
/// trimmed), keeping it out of the process list; anything else is taken as text, its UTF-8
/// bytes. Every node of a cluster must be given the same bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSecret(pub Vec<u8>);

impl std::fmt::Debug for AuthSecret {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthSecret({} bytes)", self.0.len())
    }
}

impl FromStr for AuthSecret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = if let Some(h) = s.strip_prefix("hex:") {
            decode_hex(h).ok_or_else(|| {
                "--auth-secret hex:... needs an even number of hex digits".to_string()
            })?
        } else if let Some(path) = s.strip_prefix("file:") {
            let raw = std::fs::read(path)
                .map_err(|e| format!("cannot read --auth-secret file {path:?}: {e}"))?;
            raw.trim_ascii().to_vec()
        } else {
            s.as_bytes().to_vec()
        };
        if bytes.is_empty() {
            return Err("--auth-secret is empty".into());
        }
        Ok(AuthSecret(bytes))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// What `sipshard COMMAND` does instead of serving.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Talk to a running sipshard through its admin API (`--admin`): list and remove
    /// registrations, read counters, reload, check health.
    Ctl(crate::ctl::CtlArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// sipshard: a carrier-edge stateless SIP proxy and registrar (one shard per CPU core).
#[derive(Clone, Debug, Parser)]
#[command(
    name = "sipshard",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Without a command, sipshard serves.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where to listen (repeatable; IPv4 and IPv6): `udp:ADDR`, `tcp:ADDR`, `tls:ADDR` (needs
    /// --tls-cert), or a bare `ADDR` for UDP and TCP on the same port. Every shard binds each
    /// one with SO_REUSEPORT.
    #[arg(
        long = "listen",
        value_name = "[udp:|tcp:|tls:]ADDR",
        default_value = "0.0.0.0:5060",
        value_parser = parse_listen
    )]
    pub listen: Vec<ListenSpec>,

    /// Number of shards (single-threaded executors). Default: one per core.
    #[arg(long)]
    pub shards: Option<usize>,

    /// CPUs to pin the shards to, e.g. `0,2-3`. Default: 0..shards-1.
    #[arg(long)]
    pub cpus: Option<CpuList>,

    /// How the kernel spreads datagrams over the shards.
    #[arg(long, value_enum, default_value = "flow")]
    pub steering: Steering,

    /// SO_RCVBUF per socket in bytes (the kernel doubles it and caps it at net.core.rmem_max).
    #[arg(long, value_name = "BYTES")]
    pub rcvbuf: Option<usize>,

    /// SO_SNDBUF per socket in bytes (capped at net.core.wmem_max).
    #[arg(long, value_name = "BYTES")]
    pub sndbuf: Option<usize>,

    /// A domain this proxy is responsible for (repeatable). Listen addresses and the host name
    /// always count.
    #[arg(long = "domain", value_name = "NAME")]
    pub domains: Vec<String>,

    /// Static next hops for a foreign domain, `DOMAIN=HOST:PORT[,HOST:PORT...]` (repeatable;
    /// `*` = default). Requests go to the first hop that is up (see --probe-interval).
    #[arg(long = "route", value_name = "DOMAIN=HOST:PORT,...", value_parser = parse_route)]
    pub routes: Vec<RouteArg>,

    /// Send OPTIONS to every next hop of --route this often (seconds); a hop that leaves
    /// --probe-failures probes in a row unanswered is down until it answers again. Off by
    /// default (then the first hop of each route is always used).
    #[arg(long, value_name = "SECS")]
    pub probe_interval: Option<f64>,

    /// Unanswered probes in a row that mark a next hop down.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub probe_failures: u32,

    /// Redirect server (RFC 3665 section 3.6): answer requests for registered users with
    /// 302 listing their bindings instead of forwarding them; unregistered users get 480.
    #[arg(long)]
    pub redirect: bool,

    /// Redirect only requests for this domain (repeatable); others are proxied.
    #[arg(long = "redirect-domain", value_name = "NAME")]
    pub redirect_domains: Vec<String>,

    /// Add Record-Route to dialog-creating requests so in-dialog requests pass through us.
    #[arg(long)]
    pub record_route: bool,

    /// After a partial batch, wait up to this long (microseconds) before receiving again when
    /// datagrams arrive fast enough for the wait to save executor wake-ups; 0 never waits.
    /// Trades at most this much added latency for fewer wake-ups (less CPU) at moderate load.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 500)]
    pub rx_coalesce_us: u32,

    /// Overload shedding: drop, unprocessed, any datagram that waited longer than this in the
    /// socket's receive queue (kernel receive timestamps), oldest first; OPTIONS are always
    /// answered. Below SIP's T1 (500 ms) so that what is handled is answered before the sender
    /// retransmits; 0 turns shedding off.
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 200)]
    pub max_queue_delay_ms: u64,

    /// Host (and port) to write into Via and Record-Route instead of the listen address.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub advertise: Option<String>,

    /// Registration lifetime granted when the REGISTER asks for none (seconds).
    #[arg(long, default_value_t = 3600)]
    pub default_expires: u32,

    /// Longest registration lifetime granted (seconds); longer requests are shortened.
    #[arg(long, default_value_t = 7200)]
    pub max_expires: u32,

    /// Shortest lifetime accepted; shorter non-zero requests get 423 Interval Too Brief.
    #[arg(long, default_value_t = 60)]
    pub min_expires: u32,

    /// Live bindings one address of record may hold; more get 403.
    #[arg(long, default_value_t = 10)]
    pub max_bindings_per_aor: usize,

    /// Live bindings the location table may hold (per shard, each holds all); more get 503.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_bindings: usize,

    /// Contacts behind NAT: reached where their REGISTER came from (its source address, port
    /// and connection) instead of the private address they name, which stays the
    /// Request-URI. See docs/nat.md.
    #[arg(long, value_enum, default_value = "auto")]
    pub nat: NatMode,

    /// Do not add our Path (with a flow token naming the connection or address the REGISTER
    /// came from) to REGISTERs forwarded to another registrar. By default sipshard is an edge
    /// proxy: requests the registrar sends to such a contact come back through it, down the
    /// UA's flow (RFC 3327, RFC 5626). Flow tokens are signed with --auth-secret (else a key
    /// drawn at start-up: tokens issued before a restart are refused until the UA registers
    /// again).
    #[arg(long)]
    pub no_path: bool,

    /// Seconds between the keep-alives a UA should send (STUN on UDP, CRLF on TCP and TLS):
    /// the `Flow-Timer` of the 200 OK to a REGISTER that registered an Outbound flow (RFC
    /// 5626), and the value of `keep` in 2xx answers to a UA that offered keep-alives with a
    /// bare `keep` in its Via (RFC 6223).
    #[arg(long, value_name = "SECS", default_value_t = 29)]
    pub flow_timer: u32,

    /// Ping every UDP contact registered from behind NAT this often (seconds), from the port
    /// it registered with, so its NAT keeps the pinhole open between registrations. The pings
    /// are spread evenly over the interval. Off by default.
    #[arg(long, value_name = "SECS")]
    pub nat_ping_interval: Option<f64>,

    /// What a NAT ping is: an OPTIONS request (answered, so dead contacts are found) or a
    /// bare CRLF CRLF (smaller, never answered).
    #[arg(long, value_enum, default_value = "options")]
    pub nat_ping_method: PingMethod,

    /// OPTIONS pings in a row left unanswered that remove a contact's binding (replicated and
    /// persisted like a REGISTER's removal); 0 never removes.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub nat_ping_failures: u32,

    /// Per-source flood protection: a source sending more than RATE requests per second is
    /// dropped for --pike-cooldown seconds (counted, logged once). Off by default.
    #[arg(long, value_name = "RATE")]
    pub pike: Option<u32>,

    /// How long a flooding source stays blocked (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub pike_cooldown: u64,

    /// Largest datagram accepted; larger ones get 513 Message Too Large.
    #[arg(long, default_value_t = 65_507)]
    pub max_message: usize,

    /// TCP connections this node holds at most (accepted and opened); more are refused.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub tcp_max_connections: usize,

    /// TCP connections one source IP may hold at most (enforced per shard as N / shards,
    /// rounded up: the kernel spreads one IP's connections over the shards).
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub tcp_max_connections_per_ip: usize,

    /// A message begun on a TCP connection must be complete within this many milliseconds,
    /// else the connection is closed (slowloris).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub tcp_message_timeout_ms: u64,

    /// A TCP connection that carries nothing (no message, no keep-alive) for this many
    /// seconds is closed.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub tcp_idle_timeout: u64,

    /// Bytes queued for a TCP peer, at most; beyond it further messages for the peer are
    /// dropped and counted (memory does not grow), and a peer that has not taken a byte for
    /// --tcp-send-timeout-ms meanwhile is disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    pub tcp_max_queued: usize,

    /// A TCP peer whose queue is full and that has not taken a byte for this many
    /// milliseconds does not read: it is disconnected.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub tcp_send_timeout_ms: u64,

    /// A request that would leave over UDP larger than this many bytes goes over TCP instead,
    /// and over UDP after all when the connection is refused (RFC 3261 section 18.1.1); 0 never
    /// switches.
    #[arg(long, value_name = "BYTES", default_value_t = 1300)]
    pub udp_mtu: usize,

    /// How plain TCP connections are read: `multishot`, a multishot io_uring receive per
    /// connection into buffers the shard shares (no read buffer per connection), or `stream`,
    /// glommio's reads, a read system call each. TLS connections are always read as streams.
    #[arg(long, value_name = "HOW", default_value = "multishot")]
    pub tcp_receive: TcpReceive,

    /// How UDP datagrams are received: `multishot`, a multishot io_uring receive per listener
    /// straight into the shard's packet buffers (no system call to receive), or `mmsg`, a
    /// recvmmsg once glommio says the socket is readable. A kernel without what the ring needs
    /// (before 6.1) gets `mmsg`.
    #[arg(long, value_name = "HOW", default_value = "multishot")]
    pub udp_receive: UdpReceive,

    /// How long opening a TCP connection to a next hop may take.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub tcp_connect_timeout_ms: u64,

    /// Our TLS certificate chain (PEM, leaf first), for TLS listeners and, towards next hops
    /// that ask for one, as our client certificate. Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, SEC1 or PKCS#1). Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Trust anchors (PEM) that verify TLS servers we connect to and clients' certificates.
    /// Default: the system's root certificates.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Whether clients of our TLS listeners must show a certificate issued under --tls-ca.
    #[arg(long, value_enum, default_value = "none")]
    pub tls_verify_client: ClientAuth,

    /// A certificate name (DNS name or IP) whose verified holder is a trusted peer: its
    /// requests are not challenged for Digest credentials (repeatable; needs
    /// --tls-verify-client).
    #[arg(long = "tls-trust", value_name = "NAME")]
    pub tls_trust: Vec<String>,

    /// TLS handshakes in progress per shard, at most; more connections wait in line.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub tls_handshakes: usize,

    /// Connections waiting in line for a handshake per shard, at most; beyond it new TLS
    /// connections are closed at once and counted (a reconnect storm is shed, not queued).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub tls_handshake_backlog: usize,

    /// A TLS handshake (waiting in line included) not done within this many milliseconds
    /// fails and its connection is closed.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub tls_handshake_timeout_ms: u64,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9090). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Mirror every SIP message received and sent, with its time, addresses and transport, to
    /// a HEP version 3 collector (Homer's heplify-server, `sngrep -L udp:0.0.0.0:9060`): e.g.
    /// udp:127.0.0.1:9060, or tcp:HOST:PORT (heplify-server): a stream, far cheaper per
    /// message at high rates. HOST may be a name, resolved at start-up. Off by default.
    #[arg(long, value_name = "udp:|tcp:HOST:PORT", value_parser = parse_hep)]
    pub hep: Option<(Transport, SocketAddr)>,

    /// Capture this share of the calls (by a hash of the Call-ID, so a call is captured
    /// whole, on every shard and node, or not at all).
    #[arg(long, value_name = "PERCENT", default_value_t = 100,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub hep_sample: u8,

    /// The capture agent id in every HEP packet (chunk 0x000c), which tells a collector's
    /// agents apart; 1 is Kamailio's and OpenSIPS's default too.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub hep_id: u32,

    /// Keep registrations across restarts in this directory (append-only log + snapshot).
    /// Without it the location table lives in memory only and a restart forgets it.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,

    /// How often the registration log is made durable (fsync); a crash loses at most this much.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub fsync_interval_ms: u64,

    /// Turn Digest authentication on with this users file: `user:password` or
    /// `user:realm:HA1` lines, `#` comments. SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// AOR user parts each user may register besides its own: `user: aor1, aor2` lines.
    /// Reloaded with the users file.
    #[arg(long, value_name = "FILE", requires = "users")]
    pub aliases: Option<PathBuf>,

    /// The authentication realm. Default: the first --domain.
    #[arg(long, value_name = "REALM")]
    pub realm: Option<String>,

    /// What to challenge: REGISTER only, or also requests from our users that start a dialog
    /// or stand alone.
    #[arg(
        long = "auth",
        value_enum,
        default_value = "all",
        value_name = "register|all|callers"
    )]
    pub auth_mode: AuthMode,

    /// Key of the nonces; nodes sharing it accept each other's nonces. `hex:HEX`, `file:PATH`
    /// or plain text. Default: random at each start (nonces then die with the process).
    #[arg(long, value_name = "SECRET")]
    pub auth_secret: Option<AuthSecret>,

    /// Nonce lifetime in seconds; a correct answer with an older nonce gets stale=TRUE.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub nonce_ttl: u64,

    /// Bind each nonce to the IP address it was sent to.
    #[arg(long)]
    pub nonce_bind_ip: bool,

    /// Diagnostics level (nothing is logged per message at the default).
    #[arg(long, value_enum, default_value = "warn")]
    pub log_level: LogLevel,

    /// Raise the log level by one step per use (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Serve the admin API at http://ADDR (bindings, their removal, stats, reload, health;
    /// `sipshard ctl` is its client), e.g. 127.0.0.1:8060. Off by default. Anyone who reaches
    /// it can remove registrations: without --admin-token-file only a loopback address is
    /// accepted.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,

    /// A file holding the token the admin API requires as `Authorization: Bearer TOKEN` on
    /// /v1/... (/health and /ready stay open for load balancers).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Start even when another process already listens on one of the --listen addresses, and
    /// share its traffic (SO_REUSEPORT). Without it a second instance refuses to start.
    #[arg(long)]
    pub allow_shared_port: bool,

    /// Share the location table with other nodes through Redis: redis://[USER:PASSWORD@]HOST:PORT[/DB],
    /// rediss://... for Redis over TLS, or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] to
    /// follow the primary Redis Sentinel names. Off by default (the node is on its own). See
    /// docs/cluster.md.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// A file holding Redis's password (instead of one in the --redis URL).
    #[arg(long, value_name = "FILE")]
    pub redis_password_file: Option<PathBuf>,

    /// With rediss://: the CA certificates (PEM) Redis's certificate must chain to, instead of
    /// the system's roots.
    #[arg(long, value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,

    /// This node's name in the cluster: letters, digits, '.', '-', '_'. Default: the host name.
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,

    /// Prefix of every Redis key of this cluster (several clusters can share one Redis).
    #[arg(long, default_value = "sipshard", value_name = "NS")]
    pub redis_prefix: String,

    /// Changes kept while Redis is unreachable; beyond, they are dropped and counted, and the
    /// node republishes all its bindings once Redis is back.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub redis_queue: usize,

    /// How often this node's changes are written to Redis: a crash loses at most the changes of
    /// this interval plus one Redis round trip.
    #[arg(long, default_value_t = 1, value_name = "MS")]
    pub redis_publish_interval_ms: u64,

    /// About how many changes the change stream keeps; a node cut off for longer loads the
    /// whole state again.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub redis_stream_length: usize,

    /// How far apart the nodes' clocks may be; another node's change stamped further ahead is
    /// clamped (and counted).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub max_clock_skew_ms: u64,
}

impl Args {
    /// Validate relations between flags that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_empty() {
            return Err("at least one --listen address is required".into());
        }
        if self.tcp_max_connections == 0 || self.tcp_max_connections_per_ip == 0 {
            return Err("--tcp-max-connections(-per-ip) must be at least 1".into());
        }
        if self.tcp_message_timeout_ms == 0 || self.tcp_idle_timeout == 0 {
            return Err(
                "--tcp-message-timeout-ms and --tcp-idle-timeout must be at least 1".into(),
            );
        }
        if self.tcp_max_queued < self.max_message {
            return Err("--tcp-max-queued must hold at least one --max-message".into());
        }
        self.validate_tls()?;
        if let Some(a) = &self.advertise {
            startup::check_advertise(a)?;
        }
        if self.shards == Some(0) {
            return Err("--shards must be at least 1".into());
        }
        if self.min_expires > self.max_expires {
            return Err("--min-expires must not exceed --max-expires".into());
        }
        if self.fsync_interval_ms == 0 {
            return Err("--fsync-interval-ms must be at least 1".into());
        }
        if self.max_message < 512 || self.max_message > 65_535 {
            return Err("--max-message must be between 512 and 65535".into());
        }
        if self.nonce_ttl == 0 {
            return Err("--nonce-ttl must be at least 1 second".into());
        }
        if self.users.is_some() && self.auth_realm().is_none() {
            return Err("--users needs a --realm (or a --domain to take it from)".into());
        }
        if let Some(i) = self.probe_interval {
            if !(0.05..=3600.0).contains(&i) {
                return Err("--probe-interval must be between 0.05 and 3600 seconds".into());
            }
        }
        if let Some(i) = self.nat_ping_interval {
            if !(0.1..=3600.0).contains(&i) {
                return Err("--nat-ping-interval must be between 0.1 and 3600 seconds".into());
            }
            if self.nat == NatMode::Off {
                return Err(
                    "--nat-ping-interval pings contacts behind NAT: not with --nat off".into(),
                );
            }
        }
        if self.probe_failures == 0 {
            return Err("--probe-failures must be at least 1".into());
        }
        if self.rx_coalesce_us > 100_000 {
            return Err("--rx-coalesce-us must be at most 100000".into());
        }
        if self.max_queue_delay_ms > 60_000 {
            return Err("--max-queue-delay-ms must be at most 60000".into());
        }
        Ok(())
    }

    /// The TLS flags agree with each other and with the listeners and routes.
    fn validate_tls(&self) -> Result<(), String> {
        let listens = self.listen.iter().any(|l| l.tls);
        if listens && self.tls_cert.is_none() {
            return Err("a tls: listener needs --tls-cert and --tls-key".into());
        }
        if self.tls_verify_client != ClientAuth::None && !listens {
            return Err("--tls-verify-client needs a tls: listener".into());
        }
        if !self.tls_trust.is_empty() && self.tls_verify_client == ClientAuth::None {
            return Err("--tls-trust needs --tls-verify-client optional or required".into());
        }
        let routes_tls = self
            .routes
            .iter()
            .any(|r| r.route.transport == Transport::Tls);
        if routes_tls && !listens {
            return Err("a tls: route needs a tls: listener (our Via names it)".into());
        }
        if self.tls_handshakes == 0 || self.tls_handshake_timeout_ms == 0 {
            return Err(
                "--tls-handshakes and --tls-handshake-timeout-ms must be at least 1".into(),
            );
        }
        Ok(())
    }

    fn tls_settings(&self) -> TlsSettings {
        let route_names = self
            .routes
            .iter()
            .filter(|r| r.route.transport == Transport::Tls)
            .flat_map(|r| r.route.targets.iter().copied().zip(r.hosts.iter().cloned()))
            .collect();
        TlsSettings {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            verify_client: self.tls_verify_client,
            trust: self.tls_trust.clone(),
            handshakes: self.tls_handshakes,
            handshake_backlog: self.tls_handshake_backlog,
            handshake_timeout: Duration::from_millis(self.tls_handshake_timeout_ms),
            route_names,
        }
    }

    /// The realm challenges name: `--realm`, else the first `--domain`.
    /// The typed settings the runtime starts from: every flag interpreted here, in one place.
    pub fn settings(&self) -> Result<Settings, String> {
        self.validate()?;
        let cpus = startup::shard_cpus(self.shards, self.cpus.as_ref())?;
        let shards = cpus.len();
        // A redirect domain is one of ours: its REGISTERs are served and its users looked up.
        let mut domains = self.domains.clone();
        for d in &self.redirect_domains {
            if !domains.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                domains.push(d.clone());
            }
        }
        Ok(Settings {
            cpus,
            admin: self.admin_settings()?,
            allow_shared_port: self.allow_shared_port,
            listen: self.listen.clone(),
            tls: self.tls_settings(),
            tcp: TcpSettings {
                max_connections: self.tcp_max_connections,
                max_per_ip_per_shard: self.tcp_max_connections_per_ip.div_ceil(shards),
                message_timeout: Duration::from_millis(self.tcp_message_timeout_ms),
                idle_timeout: Duration::from_secs(self.tcp_idle_timeout),
                max_queued: self.tcp_max_queued,
                send_timeout: Duration::from_millis(self.tcp_send_timeout_ms),
                connect_timeout: Duration::from_millis(self.tcp_connect_timeout_ms),
                max_message: self.max_message,
                receive: self.tcp_receive,
            },
            sockets: SocketSettings {
                rcvbuf: self.rcvbuf,
                sndbuf: self.sndbuf,
                steering: self.steering,
                timestamps: self.max_queue_delay_ms > 0,
            },
            receive: ReceiveSettings {
                udp: self.udp_receive,
                coalesce: Duration::from_micros(u64::from(self.rx_coalesce_us)),
                max_queue_delay_ms: self.max_queue_delay_ms,
            },
            domains,
            advertise: self.advertise.clone(),
            proxy: self.proxy_config(shards),
            state: self.state_dir.as_ref().map(|dir| StateSettings {
                dir: dir.clone(),
                fsync_interval: Duration::from_millis(self.fsync_interval_ms),
            }),
            metrics: self.metrics,
            hep: self.hep.map(|(transport, collector)| HepSettings {
                transport,
                collector,
                percent: self.hep_sample,
                capture_id: self.hep_id,
            }),
            auth: self.auth_settings(),
            cluster: self.cluster_settings()?,
            probe: self.probe_interval.map(|secs| ProbeSettings {
                interval: Duration::from_secs_f64(secs),
                failures: self.probe_failures,
            }),
        })
    }

    /// The proxy's configuration, but for its local identity (known once bound).
    fn proxy_config(&self, shards: usize) -> ProxyConfig {
        ProxyConfig {
            local: LocalIdentity::default(),
            routes: self.routes.iter().map(|r| r.route.clone()).collect(),
            record_route: self.record_route,
            redirect: RedirectPolicy {
                all: self.redirect,
                domains: self
                    .redirect_domains
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
            },
            registrar: RegistrarConfig {
                default_expires: self.default_expires,
                min_expires: self.min_expires,
                max_expires: self.max_expires,
                max_bindings_per_aor: self.max_bindings_per_aor,
                max_bindings: self.max_bindings,
                nat: self.nat,
                flow_timer: self.flow_timer,
            },
            max_message: self.max_message,
            udp_mtu: self.udp_mtu,
            edge_path: !self.no_path,
            flow_key: match &self.auth_secret {
                Some(s) => FlowKey::from_secret(&s.0),
                None => FlowKey::new(random_key()),
            },
            nat_ping: self.nat_ping_interval.map(|secs| NatPingConfig {
                interval_ms: (secs * 1000.0) as u64,
                method: self.nat_ping_method,
                failures: self.nat_ping_failures,
            }),
            // With random steering a source's requests are spread over every shard.
            pike: self.pike.map(|rate| {
                let per_shard = match self.steering {
                    Steering::Random => rate.div_ceil(shards as u32),
                    Steering::Flow => rate,
                };
                (per_shard, self.pike_cooldown)
            }),
        }
    }

    fn auth_settings(&self) -> Option<AuthSettings> {
        Some(AuthSettings {
            users: self.users.clone()?,
            aliases: self.aliases.clone(),
            realm: self.auth_realm()?.to_owned(),
            secret: self.auth_secret.as_ref().map(|s| s.0.clone()),
            nonce_ttl: self.nonce_ttl,
            nonce_bind_ip: self.nonce_bind_ip,
            mode: self.auth_mode,
        })
    }

    pub fn auth_realm(&self) -> Option<&str> {
        self.realm
            .as_deref()
            .or(self.domains.first().map(String::as_str))
    }

    /// `--admin` with its token, checked: a token file must hold a token, and without one
    /// only a loopback address may be served.
    fn admin_settings(&self) -> Result<Option<AdminSettings>, String> {
        let Some(addr) = self.admin else {
            if self.admin_token_file.is_some() {
                return Err("--admin-token-file needs --admin".into());
            }
            return Ok(None);
        };
        let token = self
            .admin_token_file
            .as_deref()
            .map(startup::read_token)
            .transpose()?;
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "--admin {addr} is not a loopback address: anyone who reaches it could remove \
                 registrations; give --admin-token-file, or serve it on 127.0.0.1 or [::1]"
            ));
        }
        Ok(Some(AdminSettings { addr, token }))
    }

    /// `--redis` and its companions, checked.
    fn cluster_settings(&self) -> Result<Option<ClusterSettings>, String> {
        let Some(url) = &self.redis else {
            if self.node_id.is_some()
                || self.redis_password_file.is_some()
                || self.redis_ca.is_some()
            {
                return Err("--node-id, --redis-password-file and --redis-ca need --redis".into());
            }
            return Ok(None);
        };
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => crate::transport::socket::host_name()
                .ok_or("--redis: no host name to name this node by; give --node-id")?,
        };
        check_node_id(&node_id)?;
        let password = self
            .redis_password_file
            .as_deref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| format!("cannot read --redis-password-file {}: {e}", p.display()))
            })
            .transpose()?;
        let tls_ca = self
            .redis_ca
            .as_deref()
            .map(|p| {
                std::fs::read(p).map_err(|e| format!("cannot read --redis-ca {}: {e}", p.display()))
            })
            .transpose()?;
        let redis = parse_endpoint(url)?;
        if tls_ca.is_some() && !redis.is_tls() {
            return Err("--redis-ca needs a rediss:// --redis".into());
        }
        if self.redis_queue == 0 || self.redis_stream_length == 0 {
            return Err("--redis-queue and --redis-stream-length must be at least 1".into());
        }
        Ok(Some(ClusterSettings {
            redis,
            password,
            tls_ca,
            node_id,
            prefix: self.redis_prefix.clone(),
            queue_limit: self.redis_queue,
            publish_interval: Duration::from_millis(self.redis_publish_interval_ms.max(1)),
            stream_length: self.redis_stream_length,
            max_skew_ms: self.max_clock_skew_ms,
            tombstone_ttl: Duration::from_secs(u64::from(self.max_expires))
                + Duration::from_millis(2 * self.max_clock_skew_ms),
        }))
    }

    pub fn effective_log_level(&self) -> log::LevelFilter {
        let base = match self.log_level {
            LogLevel::Error => 0,
            LogLevel::Warn => 1,
            LogLevel::Info => 2,
            LogLevel::Debug => 3,
            LogLevel::Trace => 4,
        };
        match base + self.verbose as usize {
            0 => log::LevelFilter::Error,
            1 => log::LevelFilter::Warn,
            2 => log::LevelFilter::Info,
            3 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs() {
        let both = parse_listen("[::1]:5070").unwrap();
        assert_eq!((both.udp, both.tcp), (true, true));
        assert_eq!(both.addr, "[::1]:5070".parse().unwrap());
        let udp = parse_listen("udp:127.0.0.1:5060").unwrap();
        assert_eq!((udp.udp, udp.tcp), (true, false));
        let tcp = parse_listen("tcp:0.0.0.0:5060").unwrap();
        assert_eq!((tcp.udp, tcp.tcp), (false, true));
        let tls = parse_listen("tls:127.0.0.1:5061").unwrap();
        assert_eq!((tls.udp, tls.tcp, tls.tls), (false, false, true));
        assert!(parse_listen("sctp:127.0.0.1:5060").is_err());
        assert!(parse_listen("127.0.0.1").is_err());
    }

    #[test]
    fn the_command_line_is_consistent_and_ctl_parses() {
        use clap::CommandFactory;
        // Catches two arguments under one id (the server's --admin and ctl's), among others.
        Args::command().debug_assert();
        let argv = [
            "sipshard",
            "ctl",
            "bindings",
            "--json",
            "--admin",
            "127.0.0.1:9",
        ];
        let args = Args::try_parse_from(argv).unwrap();
        match args.command {
            Some(Command::Ctl(ctl)) => assert!(ctl.json && ctl.admin == "127.0.0.1:9"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hep_collectors() {
        assert_eq!(
            parse_hep("udp:127.0.0.1:9060").unwrap(),
            (Transport::Udp, "127.0.0.1:9060".parse().unwrap())
        );
        assert_eq!(parse_hep("udp:localhost:9060").unwrap().1.port(), 9060);
        assert_eq!(parse_hep("tcp:127.0.0.1:9061").unwrap().0, Transport::Tcp);
        for bad in [
            "127.0.0.1:9060",
            "udp:",
            "udp:127.0.0.1",
            "sctp:1.2.3.4:5",
            "tls:1.2.3.4:5",
            "tcp:",
        ] {
            assert!(parse_hep(bad).is_err(), "{bad}");
        }
        let parse = |extra: &[&str]| {
            let mut argv = vec!["sipshard", "--listen", "127.0.0.1:5060"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map_err(|e| e.to_string())
        };
        let hep = parse(&["--hep", "udp:127.0.0.1:9060", "--hep-sample", "25"])
            .unwrap()
            .settings()
            .unwrap()
            .hep
            .unwrap();
        assert_eq!((hep.percent, hep.capture_id), (25, 1));
        assert!(parse(&["--hep-sample", "101"]).is_err());
        assert!(parse(&["--hep", "udp:127.0.0.1:9060", "--hep-id", "-1"]).is_err());
        assert!(parse(&[]).unwrap().settings().unwrap().hep.is_none());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!("0,2-3".parse::<CpuList>().unwrap().0, vec![0, 2, 3]);
        assert!("3-1".parse::<CpuList>().is_err());
        assert!("".parse::<CpuList>().is_err());
    }

    #[test]
    fn routes() {
        let r = parse_route("Biloxi.example.com=127.0.0.1:5070")
            .unwrap()
            .route;
        assert_eq!(r.domain, "biloxi.example.com");
        assert_eq!(r.targets, vec!["127.0.0.1:5070".parse().unwrap()]);
        assert!(parse_route("nohost").is_err());
        let r = parse_route("*=127.0.0.1:5070, 127.0.0.1:5080")
            .unwrap()
            .route;
        assert_eq!(r.domain, "*");
        assert_eq!(
            r.targets,
            vec![
                "127.0.0.1:5070".parse().unwrap(),
                "127.0.0.1:5080".parse().unwrap()
            ]
        );
        assert!(parse_route("x=127.0.0.1:5070,").is_err());
        assert_eq!(r.transport, Transport::Udp);
        let r = parse_route("x=tcp:127.0.0.1:5070,127.0.0.1:5080")
            .unwrap()
            .route;
        assert_eq!((r.transport, r.targets.len()), (Transport::Tcp, 2));
        let r = parse_route("x=tls:localhost:5061,[::1]:5062").unwrap();
        assert_eq!(r.route.transport, Transport::Tls);
        assert_eq!(r.hosts, ["localhost", "::1"]);
    }

    #[test]
    fn tls_flags_must_agree() {
        let v = |extra: &[&str]| {
            let mut args = vec!["sipshard"];
            args.extend_from_slice(extra);
            Args::parse_from(args).validate()
        };
        assert!(v(&["--listen", "tls:127.0.0.1:5061"])
            .unwrap_err()
            .contains("--tls-cert"));
        let with_cert = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
        assert!(v(&[&with_cert[..], &["--listen", "tls:127.0.0.1:5061"]].concat()).is_ok());
        assert!(
            v(&[&with_cert[..], &["--route", "x=tls:127.0.0.1:5061"]].concat())
                .unwrap_err()
                .contains("tls: listener")
        );
        assert!(v(&["--tls-trust", "trunk.example.net"])
            .unwrap_err()
            .contains("--tls-verify-client"));
    }

    #[test]
    fn failover_and_redirect_flags() {
        let a = Args::parse_from([
            "sipshard",
            "--route",
            "biloxi.example.com=127.0.0.1:5070,127.0.0.1:5080",
            "--probe-interval",
            "0.5",
            "--probe-failures",
            "2",
            "--redirect-domain",
            "Biloxi.example.com",
            "--auth",
            "callers",
        ]);
        a.validate().unwrap();
        assert_eq!(a.routes[0].route.targets.len(), 2);
        assert_eq!(a.probe_interval, Some(0.5));
        assert_eq!(a.redirect_domains, ["Biloxi.example.com"]);
        assert!(!a.redirect);
        assert_eq!(a.auth_mode, AuthMode::Callers);
        let bad = |flag: &str, v: &str| Args::parse_from(["sipshard", flag, v]).validate().is_err();
        assert!(bad("--probe-interval", "0"));
        assert!(bad("--probe-failures", "0"));
    }

    #[test]
    fn defaults_are_valid() {
        let a = Args::parse_from(["sipshard"]);
        a.validate().unwrap();
        assert_eq!(
            a.listen,
            vec![ListenSpec {
                addr: "0.0.0.0:5060".parse().unwrap(),
                udp: true,
                tcp: true,
                tls: false
            }]
        );
        assert_eq!(a.max_expires, 7200);
        assert!(a.users.is_none());
        assert_eq!(a.auth_mode, AuthMode::All);
        assert_eq!(a.nonce_ttl, 300);
    }

    #[test]
    fn auth_flags() {
        let a = Args::parse_from([
            "sipshard",
            "--domain",
            "biloxi.example.com",
            "--users",
            "/etc/users",
            "--auth",
            "register",
            "--auth-secret",
            "hex:00ff10",
        ]);
        a.validate().unwrap();
        assert_eq!(a.auth_realm(), Some("biloxi.example.com"));
        assert_eq!(a.auth_mode, AuthMode::Register);
        assert_eq!(a.auth_secret.unwrap().0, vec![0, 0xff, 0x10]);
        let a = Args::parse_from(["sipshard", "--users", "u", "--realm", "r"]);
        assert_eq!(a.auth_realm(), Some("r"));
        assert!(Args::parse_from(["sipshard", "--users", "u"])
            .validate()
            .is_err());
        assert!(Args::try_parse_from(["sipshard", "--aliases", "a"]).is_err());
        assert!(Args::try_parse_from(["sipshard", "--auth-secret", "hex:abc"]).is_err());
        assert!(Args::try_parse_from(["sipshard", "--auth-secret", ""]).is_err());
        let s: AuthSecret = "correct horse".parse().unwrap();
        assert_eq!(s.0, b"correct horse");
        assert!(!format!("{s:?}").contains("horse"));
    }
}
