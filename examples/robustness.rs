//! The mutation suite's cases (crates/testkit/src/mutate) against any SIP proxy on 127.0.0.1:
//! sipshard or Kamailio, for scripts/bench-robustness.sh and the soak test.
//!
//!   robustness run --target IP:PORT --sink-port N [--register-first] [--json FILE]
//!                  [--transport udp|tcp] [--domain example.com] [--seed 19]
//!   robustness trickle --target IP:PORT --rate R --duration S [--seed 19]
//!
//! `run` sends every case (INVITE cases first, then REGISTER), with a sink UA on
//! 127.0.0.1:N standing for bob (the target must forward `sip:bob@DOMAIN` there:
//! `--register-first` registers bob with the sink as his contact), classifies each case as
//! forwarded, refused (a 3xx-6xx answer), accepted (a 1xx/2xx answer) or dropped with the
//! markers of `sipshard_testkit::robustness`, and prints the counts per field; `--json` also
//! writes every case's outcome. `trickle` sends the cases cyclically at R per second for S
//! seconds over UDP and prints how many it sent: no classification, just steady hostile load.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sipshard_testkit::mutate::{cases, Base, Case, DEFAULT_SEED};
use sipshard_testkit::robustness::verdict::Tally;
use sipshard_testkit::robustness::{Outcome, Runner, Sender};
use sipshard_testkit::ua::register;
use sipshard_testkit::Ua;

/// The outcome classes, in the order the table prints them.
const CLASSES: [&str; 5] = ["forwarded", "refused", "dropped", "accepted", "unsendable"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Options::parse(&args[1..]).and_then(|o| run(&o)),
        Some("trickle") => Options::parse(&args[1..]).and_then(|o| trickle(&o)),
        _ => Err("usage: robustness run|trickle --target IP:PORT ... (see the file's docs)".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("robustness: {e}");
            ExitCode::from(2)
        }
    }
}

/// The command line, every flag of both subcommands.
struct Options {
    target: SocketAddr,
    sink_port: u16,
    register_first: bool,
    json: Option<String>,
    tcp: bool,
    domain: String,
    seed: u64,
    rate: u64,
    duration: f64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            target: ([127, 0, 0, 1], 5060).into(),
            sink_port: 0,
            register_first: false,
            json: None,
            tcp: false,
            domain: "example.com".into(),
            seed: DEFAULT_SEED,
            rate: 100,
            duration: 10.0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
            let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
            match flag.as_str() {
                "--target" => o.target = value()?.parse().map_err(|e| bad(&e))?,
                "--sink-port" => o.sink_port = value()?.parse().map_err(|e| bad(&e))?,
                "--register-first" => o.register_first = true,
                "--json" => o.json = Some(value()?),
                "--transport" => o.tcp = value()?.eq_ignore_ascii_case("tcp"),
                "--domain" => o.domain = value()?,
                "--seed" => o.seed = value()?.parse().map_err(|e| bad(&e))?,
                "--rate" => o.rate = value()?.parse().map_err(|e| bad(&e))?,
                "--duration" => o.duration = value()?.parse().map_err(|e| bad(&e))?,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if !o.target.ip().is_loopback() {
            return Err(format!(
                "--target {}: only 127.0.0.1 is ever a target",
                o.target
            ));
        }
        Ok(o)
    }
}

fn run(o: &Options) -> Result<(), String> {
    let sink = UdpSocket::bind(("127.0.0.1", o.sink_port)).map_err(|e| format!("sink: {e}"))?;
    if o.register_first {
        register_bob(o, &sink)?;
    }
    let sender = if o.tcp {
        Sender::tcp(o.target)
    } else {
        Sender::udp()
    };
    let mut runner = Runner::new(o.target, sender, sink, &o.domain);
    let all = cases(o.seed);
    let (invites, registers): (Vec<&Case>, Vec<&Case>) =
        all.iter().partition(|c| c.base == Base::Invite);
    let mut tally = Tally::default();
    let mut outcomes = Vec::with_capacity(all.len());
    let started = Instant::now();
    for case in invites.into_iter().chain(registers) {
        let outcome = run_one(&mut runner, case)?;
        tally.add(case, &outcome);
        outcomes.push((case, outcome));
    }
    print_table(&tally);
    eprintln!(
        "{} cases in {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
    match &o.json {
        Some(path) => write_json(path, &tally, &outcomes),
        None => Ok(()),
    }
}

/// One case; a hang is counted as a drop when the target still answers afterwards.
fn run_one(runner: &mut Runner, case: &Case) -> Result<Outcome, String> {
    match runner.run(case) {
        Ok(outcome) => Ok(outcome),
        Err(_) if runner.alive() => Ok(Outcome::Dropped),
        Err(_) => Err(format!(
            "the target stopped answering at {}",
            case.describe()
        )),
    }
}

/// REGISTER bob with the sink as his contact, from the sink's own socket.
fn register_bob(o: &Options, sink: &UdpSocket) -> Result<(), String> {
    let sock = sink.try_clone().map_err(|e| e.to_string())?;
    let ua = Ua {
        addr: sock.local_addr().unwrap(),
        sock,
    };
    let contact = format!("<sip:bob@{}>", ua.addr);
    let reply =
        std::panic::catch_unwind(|| register(&ua, o.target, "bob", &o.domain, &contact, 1, ""))
            .map_err(|_| "no answer to the REGISTER for bob".to_string())?;
    if !reply.starts_with("SIP/2.0 200") {
        return Err(format!(
            "REGISTER for bob: {}",
            reply.lines().next().unwrap_or("")
        ));
    }
    Ok(())
}

fn print_table(tally: &Tally) {
    println!(
        "{:<9} {:<18} {:>9} {:>8} {:>8} {:>8} {:>10}",
        "base", "field", CLASSES[0], CLASSES[1], CLASSES[2], CLASSES[3], CLASSES[4]
    );
    for ((base, field), row) in &tally.rows {
        let n = |c: &str| row.get(c).copied().unwrap_or(0);
        println!(
            "{base:<9} {field:<18} {:>9} {:>8} {:>8} {:>8} {:>10}",
            n(CLASSES[0]),
            n(CLASSES[1]),
            n(CLASSES[2]),
            n(CLASSES[3]),
            n(CLASSES[4])
        );
    }
}

/// `{"fields": {"INVITE via.host": {"forwarded": n, ...}}, "cases": [{id, base, field, ...}]}`.
fn write_json(path: &str, tally: &Tally, outcomes: &[(&Case, Outcome)]) -> Result<(), String> {
    let fields: BTreeMap<String, _> = tally
        .rows
        .iter()
        .map(|((base, field), row)| (format!("{base} {field}"), row.clone()))
        .collect();
    let cases: Vec<_> = outcomes
        .iter()
        .map(|(c, o)| {
            serde_json::json!({
                "id": c.id, "base": c.base.name(), "field": c.field, "operator": c.operator,
                "expect": format!("{:?}", c.expect), "outcome": o.class(),
                "status": match o { Outcome::Answered(s) => Some(*s), _ => None },
                "case": c.describe(),
            })
        })
        .collect();
    let doc = serde_json::json!({ "fields": fields, "cases": cases });
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap())
        .map_err(|e| format!("{path}: {e}"))
}

/// The cases over UDP, cyclically, at `rate` per second for `duration` seconds.
fn trickle(o: &Options) -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let me = sock.local_addr().unwrap();
    let all: Vec<Vec<u8>> = cases(o.seed)
        .iter()
        .map(|c| c.bytes_for(me, "UDP"))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
    let (start, total) = (Instant::now(), Duration::from_secs_f64(o.duration.max(0.0)));
    let (mut sent, mut unsendable, mut buf) = (0u64, 0u64, vec![0u8; 65_535]);
    while start.elapsed() < total {
        let bytes = &all[((sent + unsendable) as usize) % all.len()];
        match sock.send_to(bytes, o.target) {
            Ok(_) => sent += 1,
            Err(_) => unsendable += 1,
        }
        // Answers are read and thrown away, so that the socket's buffer never fills.
        while sock.recv(&mut buf).is_ok() {}
        let next = interval * (sent + unsendable) as u32;
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait.min(total.saturating_sub(start.elapsed())));
        }
    }
    println!(
        "sent {sent} mutation cases to {} in {:.1} s ({unsendable} too large for a datagram)",
        o.target,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
