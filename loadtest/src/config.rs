//! The resolved run configuration: what the engine needs, checked once, in engine units
//! (nanoseconds, byte strings), built from the command line.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use sipshard::sip::Transport;

use crate::cli::{CallArgs, Common, OptionsArgs, RegisterArgs, Users};
use crate::tls::Tls;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Register,
    Call,
    Options,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Register => "register",
            Scenario::Call => "call",
            Scenario::Options => "options",
        }
    }
}

/// Which halves of a call this process plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// UACs call UAS users registered by this same process (through the target).
    Both,
    UacOnly,
    UasOnly,
}

/// Passwords by user name; `*` applies to everyone.
#[derive(Clone, Debug, Default)]
pub struct Passwords(HashMap<String, String>);

impl Passwords {
    pub fn parse(text: &str) -> Result<Passwords, String> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, p) = line
                .split_once(':')
                .ok_or_else(|| format!("password file line {}: want user:password", n + 1))?;
            map.insert(u.trim().to_string(), p.to_string());
        }
        Ok(Passwords(map))
    }

    pub fn get(&self, user: &str) -> Option<&str> {
        self.0
            .get(user)
            .or_else(|| self.0.get("*"))
            .map(String::as_str)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub scenario: Scenario,
    pub role: Role,
    pub target: Option<SocketAddr>,
    /// UDP, or TCP or TLS: every socket of a worker is then a connection to `target`.
    pub transport: Transport,
    /// `--transport tls`: the client configuration the connections share.
    pub tls: Option<Tls>,
    pub rate: f64,
    pub duration_ns: u64,
    pub threads: usize,
    pub cpus: Option<Vec<usize>>,
    pub local_ip: IpAddr,
    /// Local ports to bind, per worker, per socket (0 = any). Filled from `--local-port`, or by
    /// the rate search from the previous trial so registrations stay valid across trials.
    pub fixed_ports: Vec<Vec<u16>>,
    pub domain: String,
    pub t1_ns: u64,
    pub t2_ns: u64,
    pub expect: Vec<u16>,
    pub drain_ns: u64,
    pub hold_ns: u64,
    pub users: usize,
    pub user_prefix: String,
    pub passwords: Passwords,
    pub expires: u32,
    /// Request-URI of calls with `--uac-only`.
    pub to_uri: Option<String>,
    pub answer: u16,
    pub live: bool,
    pub csv: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub hgrm: Option<PathBuf>,
}

/// How many sockets (UDP) or connections (TCP) each worker opens: `--ports` each, or
/// `--connections` spread as evenly as they go.
fn sockets_per_worker(c: &Common) -> Result<Vec<usize>, String> {
    let Some(total) = c.connections else {
        return Ok(vec![c.ports; c.threads]);
    };
    if !c.transport.is_stream() {
        return Err(
            "--connections needs --transport tcp or tls (UDP sockets are set with --ports)".into(),
        );
    }
    if total < c.threads {
        return Err(format!(
            "--connections {total} is fewer than --threads {}: every worker needs one",
            c.threads
        ));
    }
    Ok((0..c.threads)
        .map(|w| total / c.threads + usize::from(w < total % c.threads))
        .collect())
}

const MS: u64 = 1_000_000;
const S: f64 = 1e9;

impl Config {
    fn base(c: &Common, scenario: Scenario, role: Role) -> Result<Config, String> {
        if role != Role::UasOnly && c.target.is_none() {
            return Err("--target is required".into());
        }
        if !(c.rate > 0.0 && c.rate.is_finite()) && role != Role::UasOnly {
            return Err("--rate must be positive".into());
        }
        if c.threads == 0 || c.ports == 0 {
            return Err("--threads and --ports must be at least 1".into());
        }
        let sockets = sockets_per_worker(c)?;
        if c.transport.is_stream() && c.target.is_none() {
            return Err(format!(
                "--transport {} needs --target: the generator connects, it does not listen",
                c.transport.name()
            ));
        }
        if c.tls.any() && c.transport != Transport::Tls {
            return Err("the --tls-* flags need --transport tls".into());
        }
        let tls = match c.target {
            Some(target) if c.transport == Transport::Tls => Some(Tls::new(&c.tls, target.ip())?),
            _ => None,
        };
        if c.duration < 0.0 || c.drain < 0.0 {
            return Err("--duration and --drain must not be negative".into());
        }
        if c.t1_ms == 0 || c.t2_ms < c.t1_ms {
            return Err("need 0 < --t1-ms <= --t2-ms".into());
        }
        // The target's address, with its port unless it is 5060: a Request-URI without a
        // port means 5060 (RFC 3263), so a proxy on another port would rightly take
        // `sip:127.0.0.1` for someone else and forward the request there.
        let domain = c.domain.clone().unwrap_or_else(|| match c.target {
            Some(SocketAddr::V6(a)) if a.port() == 5060 => format!("[{}]", a.ip()),
            Some(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            Some(a) if a.port() == 5060 => a.ip().to_string(),
            Some(a) => a.to_string(),
            None => c.local_ip.to_string(),
        });
        let mut next_port = c.local_port;
        let fixed_ports = sockets
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        let port = next_port;
                        if port != 0 {
                            next_port = next_port.saturating_add(1);
                        }
                        port
                    })
                    .collect()
            })
            .collect();
        Ok(Config {
            scenario,
            role,
            target: c.target,
            transport: c.transport,
            tls,
            rate: c.rate,
            duration_ns: (c.duration * S) as u64,
            threads: c.threads,
            cpus: c.cpus.as_ref().map(|l| l.0.clone()),
            local_ip: c.local_ip,
            fixed_ports,
            domain,
            t1_ns: c.t1_ms * MS,
            t2_ns: c.t2_ms * MS,
            expect: c.expect.clone(),
            drain_ns: (c.drain * S) as u64,
            hold_ns: 0,
            users: 0,
            user_prefix: String::new(),
            passwords: Passwords::default(),
            expires: 3600,
            to_uri: None,
            answer: 200,
            live: !c.quiet,
            csv: c.csv.clone(),
            json: c.json.clone(),
            hgrm: c.hgrm.clone(),
        })
    }

    fn users(
        &mut self,
        u: &Users,
        default_users: usize,
        default_prefix: &str,
    ) -> Result<(), String> {
        self.users = u.users.unwrap_or(default_users);
        self.user_prefix = u
            .user_prefix
            .clone()
            .unwrap_or_else(|| default_prefix.to_string());
        self.expires = u.expires;
        if let Some(f) = &u.password_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            self.passwords = Passwords::parse(&text)?;
        }
        Ok(())
    }

    pub fn register(a: &RegisterArgs) -> Result<Config, String> {
        let mut c = Config::base(&a.common, Scenario::Register, Role::UacOnly)?;
        c.users(&a.users, 1000, "user")?;
        if c.users == 0 {
            return Err("--users must be at least 1".into());
        }
        Ok(c)
    }

    pub fn call(a: &CallArgs) -> Result<Config, String> {
        let role = match (a.uac_only, a.uas_only) {
            (true, _) => Role::UacOnly,
            (_, true) => Role::UasOnly,
            _ => Role::Both,
        };
        let mut c = Config::base(&a.common, Scenario::Call, role)?;
        c.users(&a.users, 100, "uas")?;
        if role == Role::Both && c.users == 0 {
            return Err("--users must be at least 1".into());
        }
        if role == Role::UasOnly && a.users.users.is_none() {
            // Answering an external UAC registers nobody unless asked to.
            c.users = 0;
        }
        if role == Role::UasOnly && c.users == 0 && c.transport.is_stream() {
            return Err(format!(
                "--uas-only over {} needs --users: calls reach this side on the connections \
                 its users registered over",
                c.transport.name()
            ));
        }
        if role == Role::UasOnly && c.users > 0 && c.target.is_none() {
            return Err("--uas-only with --users needs --target to register through".into());
        }
        c.hold_ns = a.hold * MS;
        c.to_uri = a.to.clone();
        if let Some(to) = &c.to_uri {
            let uri = sipshard::sip::Uri::parse(to.as_bytes());
            if uri.map_or(true, |u| !u.is_sip()) || to.bytes().any(|b| b <= b' ') {
                return Err(format!("--to {to}: not a SIP URI"));
            }
        }
        if !(200..=699).contains(&a.answer) {
            return Err("--answer must be a final status (200-699)".into());
        }
        c.answer = a.answer;
        Ok(c)
    }

    pub fn options(a: &OptionsArgs) -> Result<Config, String> {
        Config::base(&a.common, Scenario::Options, Role::UacOnly)
    }

    /// `--tls-handshakes-only`: the run measures TLS handshakes instead of its scenario.
    pub fn handshakes_only(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.handshakes_only)
    }

    /// The scenario's name in reports (`tls-handshakes` when only handshakes are measured).
    pub fn scenario_name(&self) -> &'static str {
        if self.handshakes_only() {
            "tls-handshakes"
        } else {
            self.scenario.name()
        }
    }

    /// True when this status ends an attempt successfully.
    pub fn is_success(&self, code: u16) -> bool {
        (200..300).contains(&code) || self.expect.contains(&code)
    }

    /// Does this process start attempts on a schedule?
    pub fn has_client(&self) -> bool {
        self.role != Role::UasOnly
    }

    /// Does this process answer calls?
    pub fn has_server(&self) -> bool {
        self.scenario == Scenario::Call && self.role != Role::UacOnly
    }

    /// Users this process registers before its main phase (the UAS users of a call run).
    pub fn registers_first(&self) -> bool {
        self.has_server() && self.users > 0 && self.target.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_with(flags: &[&str]) -> Result<Config, String> {
        use clap::Parser;
        let base = ["sipshard-load", "call", "--target", "127.0.0.1:5060"];
        let cli =
            crate::cli::Cli::try_parse_from(base.iter().chain(flags)).map_err(|e| e.to_string())?;
        match cli.cmd {
            crate::cli::Cmd::Call(a) => Config::call(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn connections_spread_over_workers_and_need_tcp() {
        let c = call_with(&["--transport", "tcp", "--connections", "5", "--threads", "2"]);
        let c = c.unwrap();
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!(c.fixed_ports, vec![vec![0; 3], vec![0; 2]]);
        let c = call_with(&[
            "--transport",
            "tcp",
            "--threads",
            "2",
            "--local-port",
            "7000",
        ]);
        assert_eq!(c.unwrap().fixed_ports[1], (7008..7016).collect::<Vec<_>>());
        let e = call_with(&["--connections", "4"]).unwrap_err();
        assert!(e.contains("--connections needs --transport tcp"), "{e}");
        let e = call_with(&["--transport", "tcp", "--connections", "1", "--threads", "2"]);
        assert!(e.unwrap_err().contains("fewer than --threads"));
        let e = call_with(&["--transport", "tls"]).unwrap_err();
        assert!(e.contains("needs --tls-ca FILE"), "{e}");
        let e = call_with(&["--tls-insecure"]).unwrap_err();
        assert!(e.contains("need --transport tls"), "{e}");
        let e = call_with(&["--transport", "tcp", "--uas-only"]).unwrap_err();
        assert!(e.contains("needs --users"), "{e}");
    }

    #[test]
    fn tls_flags_are_checked_before_anything_connects() {
        let c = call_with(&["--transport", "tls", "--tls-insecure", "--connections", "3"]);
        let c = c.unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(
            (tls.verify, tls.resume, tls.name.as_str()),
            ("insecure", true, "127.0.0.1")
        );
        assert_eq!(c.fixed_ports, vec![vec![0; 3]]);
        assert_eq!(c.scenario_name(), "call");
        let c = call_with(&[
            "--transport",
            "tls",
            "--tls-insecure",
            "--tls-no-resume",
            "--tls-handshakes-only",
        ]);
        let c = c.unwrap();
        assert!(!c.tls.as_ref().unwrap().resume);
        assert_eq!(c.scenario_name(), "tls-handshakes");
        let e = call_with(&["--transport", "tls", "--tls-ca", "/nonexistent/ca.pem"]);
        assert!(e.unwrap_err().contains("/nonexistent/ca.pem"));
        let e = call_with(&[
            "--transport",
            "tls",
            "--tls-ca",
            "/nonexistent/ca.pem",
            "--tls-insecure",
        ]);
        assert!(e.unwrap_err().contains("cannot be used with"));
        let e = call_with(&[
            "--transport",
            "tls",
            "--tls-insecure",
            "--tls-cert",
            "c.pem",
        ]);
        assert!(e.unwrap_err().contains("--tls-key"));
        let e = call_with(&[
            "--transport",
            "tls",
            "--tls-insecure",
            "--tls-server-name",
            "a b",
        ]);
        let e = e.unwrap_err();
        assert!(e.contains("not a DNS name"), "{e}");
        let e = call_with(&["--transport", "tcp", "--tls-handshakes-only"]).unwrap_err();
        assert!(e.contains("need --transport tls"), "{e}");
    }

    #[test]
    fn password_file() {
        let p = Passwords::parse("# users\nalice:secret\n*:default:with:colons\n").unwrap();
        assert_eq!(p.get("alice"), Some("secret"));
        assert_eq!(p.get("bob"), Some("default:with:colons"));
        assert!(Passwords::parse("nocolon").is_err());
        assert_eq!(Passwords::default().get("x"), None);
    }
}
