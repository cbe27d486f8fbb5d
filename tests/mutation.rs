//! The mutation suite (issue 19): several thousand mutations of a valid INVITE and REGISTER
//! (crates/testkit/src/mutate) sent to the binary over UDP and over TCP. Never a crash or a
//! hang (a liveness probe every 100 cases, and every case's marker bounded in time), never a
//! changed body, every case the strict rules cover refused, carried-only fields forwarded
//! unchanged. Every violation is collected and reported at once, grouped by field and
//! operator: the list is a to-do list, not a first failure.

use std::collections::BTreeMap;
use std::time::Instant;

use sipshard_testkit::mutate::{cases, Base, Case, DEFAULT_SEED};
use sipshard_testkit::robustness::verdict::{describe, violation};
use sipshard_testkit::robustness::{Outcome, Runner, Sender};
use sipshard_testkit::ua::register;
use sipshard_testkit::{Proxy, Ua};

/// Violations listed in the failure message, at most (the rest are counted).
const LISTED: usize = 50;

#[test]
fn mutated_requests_are_refused_or_carried_and_never_crash_the_proxy() {
    let all = cases(DEFAULT_SEED);
    let (invites, registers): (Vec<&Case>, Vec<&Case>) =
        all.iter().partition(|c| c.base == Base::Invite);
    let mut report = Report::default();
    for (batch, stream) in [
        (&invites, false),
        (&invites, true),
        (&registers, false),
        (&registers, true),
    ] {
        let started = Instant::now();
        let went_on = run_batch(batch, stream, &mut report);
        let transport = if stream { "TCP" } else { "UDP" };
        eprintln!(
            "{} cases over {transport} in {:?}",
            batch.len(),
            started.elapsed()
        );
        if !went_on {
            break;
        }
    }
    // Every violation, not only the first LISTED: the lead's to-do list.
    let full = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mutation-violations.txt");
    std::fs::write(&full, report.violations.join("\n")).expect("write the violations");
    assert!(
        report.violations.is_empty(),
        "{}all of them: {}",
        report.summary(),
        full.display()
    );
}

/// A proxy of its own for each batch (a REGISTER batch leaves bindings, and the same
/// Call-ID and CSeq again would be out of order), with bob registered at a sink socket.
fn proxy_with_bob() -> (Proxy, Ua) {
    let bob = Ua::new();
    let route = format!("*={}", bob.addr);
    // One shard: one sender's messages are handled in order (the markers rely on it). No
    // switch to TCP for large requests: bob listens on UDP only. Foreign domains (an odd but
    // valid Request-URI host) go to bob too, so nothing leaves 127.0.0.1. Every reconnection
    // over TCP registers bob from another port: room for all of those bindings.
    let proxy = Proxy::start(&[
        "--domain",
        "example.com",
        "--shards",
        "1",
        "--udp-mtu",
        "0",
        "--route",
        &route,
        "--max-bindings-per-aor",
        "100000",
    ]);
    let contact = format!("<sip:bob@{}>", bob.addr);
    let r = register(&bob, proxy.addr, "bob", "example.com", &contact, 1, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    (proxy, bob)
}

/// Every case of `batch` over one transport; false when the proxy died or hung for good.
fn run_batch(batch: &[&Case], stream: bool, report: &mut Report) -> bool {
    let (proxy, bob) = proxy_with_bob();
    let sender = if stream {
        Sender::tcp(proxy.addr)
    } else {
        Sender::udp()
    };
    let sink = bob.sock.try_clone().expect("clone bob's socket");
    let mut runner = Runner::new(proxy.addr, sender, sink, "example.com");
    // MUTATION_TRACE=1: every case's outcome on stderr.
    let trace = std::env::var_os("MUTATION_TRACE").is_some();
    for (i, case) in batch.iter().enumerate() {
        if i % 100 == 0 && !(process_alive(proxy.pid()) && runner.alive()) {
            report.fatal(case, stream, "liveness probe failed before this case");
            return false;
        }
        match runner.run(case) {
            Ok(outcome) => {
                if trace {
                    eprintln!(
                        "{} {} -> {}",
                        runner.sender.transport(),
                        case.describe(),
                        describe(&outcome)
                    );
                }
                report.check(case, &outcome, stream)
            }
            Err(_) if process_alive(proxy.pid()) && runner.alive() => {
                report.fatal(case, stream, "no answer to the marker after it")
            }
            Err(_) => {
                report.fatal(case, stream, "the proxy died or hung on this case");
                return false;
            }
        }
    }
    true
}

/// Whether the process exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

#[derive(Default)]
struct Report {
    violations: Vec<String>,
    /// (base, field, operator, transport, what went wrong) -> count.
    groups: BTreeMap<(String, &'static str, &'static str, &'static str, String), usize>,
    checked: usize,
}

impl Report {
    fn check(&mut self, case: &Case, outcome: &Outcome, stream: bool) {
        self.checked += 1;
        if let Some(why) = violation(case, outcome, stream) {
            self.add(case, stream, &why, &describe(outcome));
        }
    }

    fn fatal(&mut self, case: &Case, stream: bool, why: &str) {
        self.add(case, stream, why, "no marker answer");
    }

    fn add(&mut self, case: &Case, stream: bool, why: &str, outcome: &str) {
        let transport = if stream { "TCP" } else { "UDP" };
        let kind = why.split(':').next().unwrap_or(why).to_string();
        let key = (
            case.base.name().to_string(),
            case.field,
            case.operator,
            transport,
            kind,
        );
        *self.groups.entry(key).or_default() += 1;
        self.violations.push(format!(
            "{transport} {} -> {outcome}: {why}",
            case.describe()
        ));
    }

    fn summary(&self) -> String {
        let mut out = format!(
            "{} violations in {} cases checked; by (base, field, operator, transport, violation):\n",
            self.violations.len(),
            self.checked
        );
        for ((base, field, op, transport, kind), n) in &self.groups {
            out.push_str(&format!("  {base} {field} {op} {transport}: {kind} x{n}\n"));
        }
        out.push_str(&format!("first {LISTED} violations:\n"));
        for v in self.violations.iter().take(LISTED) {
            out.push_str(&format!("  {v}\n"));
        }
        out
    }
}
