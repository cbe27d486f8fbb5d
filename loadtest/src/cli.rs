//! Command-line interface (clap derive): the scenarios and the flags they share.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sipshard::config::CpuList;
use sipshard::sip::Transport;

#[derive(Parser, Debug)]
#[command(
    name = "sipshard-load",
    version,
    about = "Open-loop SIP load generator: REGISTER storms, full calls, OPTIONS pings, rate search",
    long_about = "Open-loop SIP load generator. Attempts start on a fixed schedule whatever the \
                  target answers; latencies are measured from the scheduled send time and the \
                  generator's own lag is reported separately, so a slow generator is never \
                  mistaken for a slow target."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// REGISTER storm: first registrations, then refreshes, answering digest challenges.
    Register(RegisterArgs),
    /// Calls per RFC 3665 section 3.1: INVITE (SDP) -> 100/180 -> 200 -> ACK -> hold -> BYE -> 200.
    Call(CallArgs),
    /// OPTIONS pings.
    Options(OptionsArgs),
    /// RFC 7502-style search for the highest rate held with zero failures.
    FindMax(FindMaxArgs),
}

/// Flags every scenario has.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Where requests go: the proxy, registrar or server under test (IP:PORT).
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// Attempts started per second, on a fixed schedule (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds during which attempts are started (in-flight ones are then drained).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Worker threads; each owns its sockets, call table and timers.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin worker threads to these CPUs, round-robin (e.g. `1` or `0,2-3`).
    #[arg(long)]
    pub cpus: Option<CpuList>,
    /// Local UDP sockets per worker thread (distinct ports spread over a flow-hashing proxy);
    /// over TCP, connections per worker thread.
    #[arg(long, default_value_t = 8)]
    pub ports: usize,
    /// `udp`, `tcp` or `tls`: over tcp and tls every request and answer goes over persistent
    /// connections to `--target` (opened before the run from the worker's own local ports),
    /// as SIPp's `-t t1`; over tls each connection does a TLS handshake first.
    #[arg(long, default_value = "udp", value_parser = parse_transport)]
    pub transport: Transport,
    /// With `--transport tcp` or `tls`: connections in all, spread over the worker threads
    /// (replaces `--ports`); with `--tls-handshakes-only`, handshakes in progress at once.
    #[arg(long)]
    pub connections: Option<usize>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// First local port; sockets take consecutive ports from here (0: any free ports).
    #[arg(long, default_value_t = 0)]
    pub local_port: u16,
    /// Local address to bind and to advertise in Via, Contact and SDP.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,
    /// SIP domain for AORs and Request-URIs (default: the target's IP, and its port unless
    /// it is 5060).
    #[arg(long)]
    pub domain: Option<String>,
    /// RFC 3261 T1 in milliseconds (retransmission base; 64*T1 is the transaction timeout).
    #[arg(long, default_value_t = 500)]
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds (cap of non-INVITE retransmission intervals).
    #[arg(long, default_value_t = 4000)]
    pub t2_ms: u64,
    /// Final status codes that count as success instead of failure (repeatable: `--expect 486`).
    #[arg(long)]
    pub expect: Vec<u16>,
    /// Seconds to wait after the schedule ends for attempts still in flight.
    #[arg(long, default_value_t = 40.0)]
    pub drain: f64,
    /// Write a machine-readable report.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write each histogram as an HdrHistogram percentile distribution (`.hgrm`) into this dir.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write one row per second (rate, outcomes, latency) for plotting.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// No live line every second.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--transport tls`: how the target is verified, what we show it, and the handshake mode.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Verify the target's certificate against the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "FILE", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// The name the target's certificate must carry (a DNS name or an IP address; default:
    /// the target's IP); a DNS name is also sent as SNI, with --tls-insecure too.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// INSECURE, for tests and benchmarks only: accept any certificate from the target (its
    /// chain, name and dates are not checked; the handshake's signature still is).
    #[arg(long)]
    pub tls_insecure: bool,
    /// Show this client certificate (PEM chain, leaf first) to the target; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Never resume a TLS session: every handshake is a full one (by default the connections
    /// share one session cache, so later handshakes resume with TLS 1.3 tickets).
    #[arg(long)]
    pub tls_no_resume: bool,
    /// Measure TLS handshakes instead of the scenario: each of --connections slots opens a
    /// connection, completes the handshake, checks it with a keep-alive ping, closes it and
    /// starts over, as fast as the target answers, for --duration seconds (--rate is unused).
    #[arg(long)]
    pub tls_handshakes_only: bool,
}

impl TlsArgs {
    /// Was any TLS flag given (they all need `--transport tls`)?
    pub fn any(&self) -> bool {
        self.tls_ca.is_some()
            || self.tls_server_name.is_some()
            || self.tls_insecure
            || self.tls_cert.is_some()
            || self.tls_no_resume
            || self.tls_handshakes_only
    }
}

/// Digest credentials and the users they belong to.
#[derive(Args, Debug, Clone)]
pub struct Users {
    /// Number of users (AORs `<prefix><n>@<domain>`, n from 0; default 1000 for register, 100
    /// for call).
    #[arg(long)]
    pub users: Option<usize>,
    /// User name prefix (default `user` for register, `uas` for call).
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// `user:password` per line (`*:password` for every user), used when challenged.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Expires asked for in REGISTER (seconds).
    #[arg(long, default_value_t = 3600)]
    pub expires: u32,
}

#[derive(Args, Debug, Clone)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub users: Users,
}

#[derive(Args, Debug, Clone)]
pub struct CallArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub users: Users,
    /// Milliseconds between the ACK and the BYE.
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
    /// Only place calls (to `--to`), answering nothing: drive an external UAS.
    #[arg(long, requires = "to", conflicts_with = "uas_only")]
    pub uac_only: bool,
    /// Request-URI and To of every call with `--uac-only` (e.g. `sip:service@127.0.0.1:5070`).
    #[arg(long)]
    pub to: Option<String>,
    /// Only answer calls, for `--duration` seconds: be the UAS of an external UAC.
    #[arg(long)]
    pub uas_only: bool,
    /// Final status the answering side gives to INVITE (200, or e.g. 486 to test `--expect`).
    #[arg(long, default_value_t = 200)]
    pub answer: u16,
}

#[derive(Args, Debug, Clone)]
pub struct OptionsArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct FindMaxArgs {
    #[command(subcommand)]
    pub scenario: FindMaxScenario,
}

#[derive(Subcommand, Debug)]
pub enum FindMaxScenario {
    /// Search the call rate (`--rate` is the first trial's rate, `--duration` each trial's).
    Call {
        #[command(flatten)]
        call: CallArgs,
        #[command(flatten)]
        search: SearchArgs,
    },
    /// Search the REGISTER rate.
    Register {
        #[command(flatten)]
        register: RegisterArgs,
        #[command(flatten)]
        search: SearchArgs,
    },
    /// Search the OPTIONS rate.
    Options {
        #[command(flatten)]
        options: OptionsArgs,
        #[command(flatten)]
        search: SearchArgs,
    },
}

/// How the search steps (RFC 7502 section 4: trials of fixed duration, zero failures allowed).
#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    /// Never try above this rate.
    #[arg(long, default_value_t = 200_000.0)]
    pub max_rate: f64,
    /// Multiply the rate by this after each clean trial until one fails.
    #[arg(long, default_value_t = 2.0)]
    pub growth: f64,
    /// Stop bisecting when the bracket is narrower than this percentage of the clean rate.
    #[arg(long, default_value_t = 5.0)]
    pub precision: f64,
    /// A trial whose generator send or receive lag p99 exceeds this (ms) did not keep its
    /// schedule: it says nothing about the target.
    #[arg(long, default_value_t = 20.0)]
    pub max_lag_ms: f64,
    /// Also count a trial as failed when the scenario's main latency p99 (INVITE->200,
    /// REGISTER->200 or OPTIONS->200) exceeds this many milliseconds (default: failures only,
    /// as RFC 7502).
    #[arg(long)]
    pub max_latency_ms: Option<f64>,
    /// Seconds of rest between trials.
    #[arg(long, default_value_t = 1.0)]
    pub cooldown: f64,
    /// Seconds of rest after a trial that was not clean, so a stateful target's leftover
    /// transactions (Timer B/F, 64*T1) die before the next trial reuses the same ports.
    #[arg(long, default_value_t = 32.0)]
    pub settle: f64,
    /// Give up after this many trials.
    #[arg(long, default_value_t = 16)]
    pub max_trials: usize,
}

/// `--transport`: the transports the generator speaks.
fn parse_transport(s: &str) -> Result<Transport, String> {
    match Transport::from_token(s.as_bytes()) {
        Some(t) => Ok(t),
        None => Err(format!("{s}: want udp, tcp or tls")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cpu_lists() {
        // The flag parses (clap once panicked here on `Option<Vec<usize>>`).
        let a = Cli::try_parse_from([
            "sipshard-load",
            "options",
            "--target",
            "127.0.0.1:5060",
            "--rate",
            "1",
            "--cpus",
            "0,2-4",
        ]);
        assert!(a.is_ok(), "{a:?}");
    }

    #[test]
    fn find_max_parses_call_flags() {
        let cli = Cli::try_parse_from([
            "sipshard-load",
            "find-max",
            "call",
            "--target",
            "127.0.0.1:5060",
            "--rate",
            "500",
            "--hold",
            "10",
            "--max-rate",
            "4000",
        ])
        .unwrap();
        match cli.cmd {
            Cmd::FindMax(FindMaxArgs {
                scenario: FindMaxScenario::Call { call, search },
            }) => {
                assert_eq!(call.common.rate, 500.0);
                assert_eq!(call.hold, 10);
                assert_eq!(search.max_rate, 4000.0);
            }
            other => panic!("{other:?}"),
        }
    }
}
