//! Command-line flags and the validated configuration built from them.
//!
//! Every flag has a sane default so that `sipshard` with no flags serves as a registrar and
//! stateless proxy on `0.0.0.0:5060` with one shard per core.

use std::net::SocketAddr;
use std::str::FromStr;

use clap::{Parser, ValueEnum};

/// How datagrams are spread over the shards' SO_REUSEPORT sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Steering {
    /// The kernel's 4-tuple hash: one peer always lands on the same shard.
    Flow,
    /// A classic BPF program returns a random socket index: even spread even with few peers.
    Random,
}

/// A static next hop: requests for `domain` (or every foreign domain for `*`) go to `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    /// Lower-case domain, or `*`.
    pub domain: String,
    pub target: SocketAddr,
}

impl FromStr for StaticRoute {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (domain, target) = s
            .split_once('=')
            .ok_or_else(|| format!("expected DOMAIN=HOST:PORT, got {s:?}"))?;
        if domain.is_empty() {
            return Err(format!("empty domain in route {s:?}"));
        }
        let target = resolve(target)?;
        Ok(StaticRoute {
            domain: domain.to_ascii_lowercase(),
            target,
        })
    }
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
#[command(name = "sipshard", version, about)]
pub struct Args {
    /// UDP address to listen on (repeatable; IPv4 and IPv6). Every shard binds each one with
    /// SO_REUSEPORT.
    #[arg(long = "listen", value_name = "ADDR", default_value = "0.0.0.0:5060")]
    pub listen: Vec<SocketAddr>,

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

    /// Static next hop for a foreign domain, `DOMAIN=HOST:PORT` (repeatable; `*` = default).
    #[arg(long = "route", value_name = "DOMAIN=HOST:PORT")]
    pub routes: Vec<StaticRoute>,

    /// Add Record-Route to dialog-creating requests so in-dialog requests pass through us.
    #[arg(long)]
    pub record_route: bool,

    /// After a partial batch, wait up to this long (microseconds) before receiving again when
    /// datagrams arrive fast enough for the wait to save executor wake-ups; 0 never waits.
    /// Trades at most this much added latency for fewer wake-ups (less CPU) at moderate load.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 500)]
    pub rx_coalesce_us: u32,

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

    /// Largest datagram accepted; larger ones get 513 Message Too Large.
    #[arg(long, default_value_t = 65_507)]
    pub max_message: usize,

    /// Diagnostics level (nothing is logged per message at the default).
    #[arg(long, value_enum, default_value = "warn")]
    pub log_level: LogLevel,

    /// Raise the log level by one step per use (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Args {
    /// Validate relations between flags that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_empty() {
            return Err("at least one --listen address is required".into());
        }
        if self.shards == Some(0) {
            return Err("--shards must be at least 1".into());
        }
        if self.min_expires > self.max_expires {
            return Err("--min-expires must not exceed --max-expires".into());
        }
        if self.max_message < 512 || self.max_message > 65_535 {
            return Err("--max-message must be between 512 and 65535".into());
        }
        if self.rx_coalesce_us > 100_000 {
            return Err("--rx-coalesce-us must be at most 100000".into());
        }
        if let (Some(n), Some(cpus)) = (self.shards, &self.cpus) {
            if cpus.0.len() < n {
                return Err(format!("--cpus lists {} CPUs for {n} shards", cpus.0.len()));
            }
        }
        Ok(())
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
    fn cpu_lists() {
        assert_eq!("0,2-3".parse::<CpuList>().unwrap().0, vec![0, 2, 3]);
        assert!("3-1".parse::<CpuList>().is_err());
        assert!("".parse::<CpuList>().is_err());
    }

    #[test]
    fn routes() {
        let r: StaticRoute = "Biloxi.example.com=127.0.0.1:5070".parse().unwrap();
        assert_eq!(r.domain, "biloxi.example.com");
        assert_eq!(r.target, "127.0.0.1:5070".parse().unwrap());
        assert!("nohost".parse::<StaticRoute>().is_err());
    }

    #[test]
    fn defaults_are_valid() {
        let a = Args::parse_from(["sipshard"]);
        a.validate().unwrap();
        assert_eq!(
            a.listen,
            vec!["0.0.0.0:5060".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(a.max_expires, 7200);
    }
}
