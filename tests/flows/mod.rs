//! Helpers of `tests/rfc3665_flows.rs`: SIPp agents playing the flow scenarios, checks of the
//! messages the UAS received, sipshard's exit counters, and the table of results in
//! `docs/rfc3665-flows.md`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sipshard_testkit::peers::sipp::{
    header_values, traced_messages, Agent, Calls, Scenario, Sipp, SippOutcome,
};
use sipshard_testkit::{tail, Scratch, SipClient};

/// Calls per flow, and the rate they are started at (calls per second).
pub const CALLS: u32 = 50;
pub const RATE: u32 = 10;

/// `127\.0\.0\.1:PORT`, as the scenarios' regular expressions want an address.
pub fn esc(port: u16) -> String {
    format!("127\\.0\\.0\\.1:{port}")
}

/// The start of the Via a sipshard on `port` writes (its deterministic branch prefix).
pub fn our_via(port: u16) -> String {
    format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsS")
}

/// The start of a SIPp agent's own Via.
pub fn ua_via(port: u16) -> String {
    format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK")
}

/// A scenario of `tests/scenarios/` with its `@NAME@` placeholders replaced, in `dir`.
pub fn scenario(dir: &Scratch, name: &str, subs: &[(&str, String)]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name);
    let mut xml = fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for (k, v) in subs {
        xml = xml.replace(k, v);
    }
    assert!(
        !xml.contains("@P") && !xml.contains("@BOB@"),
        "{name}: a placeholder is left unreplaced"
    );
    dir.write(name, &xml)
}

/// Register `user@domain` at `registrar` with a Contact at 127.0.0.1:`port`.
pub fn register(registrar: SocketAddr, user: &str, domain: &str, port: u16) {
    let aor = format!("sip:{user}@{domain}");
    let contact = format!("sip:{user}@127.0.0.1:{port}");
    let ok = SipClient::new().register(registrar, &aor, &[&contact], Some(3600));
    assert_eq!(ok.status, 200, "REGISTER {aor} failed:\n{}", ok.text);
}

/// Start the UAS scenario `file` on `port` (Bob), message log on.
pub fn uas(dir: &Scratch, file: &str, subs: &[(&str, String)], port: u16, extra: &[&str]) -> Sipp {
    agent(dir, "uas", file, subs, port, None, extra)
}

/// Start the UAC scenario `file` on `port` (Alice) towards `to`: CALLS calls at RATE per second.
pub fn uac(
    dir: &Scratch,
    file: &str,
    subs: &[(&str, String)],
    port: u16,
    to: SocketAddr,
    extra: &[&str],
) -> Sipp {
    agent(dir, "uac", file, subs, port, Some((to, RATE)), extra)
}

fn agent(
    dir: &Scratch,
    name: &str,
    file: &str,
    subs: &[(&str, String)],
    port: u16,
    remote: Option<(SocketAddr, u32)>,
    extra: &[&str],
) -> Sipp {
    let path = scenario(dir, file, subs);
    Agent {
        name,
        scenario: Scenario::File(&path),
        port,
        service: "bob",
        calls: CALLS,
        remote,
        timeout: Duration::from_secs(if remote.is_some() { 45 } else { 60 }),
        extra,
        trace_msg: true,
    }
    .start(dir)
}

/// The top Via of every `method` request in a message log, by Call-ID.
pub fn top_vias(log: &str, method: &str) -> std::collections::HashMap<String, Vec<String>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    for m in traced_messages(log, &format!("{method} ")) {
        if let (Some(id), Some(via)) = (value(&m, "Call-ID"), value(&m, "Via")) {
            out.entry(id.to_string()).or_default().push(via.to_string());
        }
    }
    out
}

/// What every request of one method must look like at the UAS.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The Request-URI.
    pub ruri: String,
    /// Each Via value's start, top first (one value per line).
    pub vias: Vec<String>,
    pub max_forwards: u32,
    /// Route values, exactly (none: the proxies consumed theirs).
    pub routes: Vec<String>,
    /// Record-Route values, exactly, when checked.
    pub record_routes: Option<Vec<String>>,
}

/// Check every `method` request in a SIPp message log against `want`; at least `min` of them.
/// Returns them.
pub fn check(log: &str, method: &str, min: u32, want: &Expect) -> Vec<Vec<String>> {
    let msgs: Vec<Vec<String>> = traced_messages(log, &format!("{method} "))
        .into_iter()
        .filter(|m| m[0].ends_with(" SIP/2.0"))
        .collect();
    assert!(
        msgs.len() >= min as usize,
        "{} {method} requests in the log, expected at least {min}:\n{}",
        msgs.len(),
        tail(log, 3000)
    );
    for m in &msgs {
        let ruri = m[0].split(' ').nth(1).unwrap_or("");
        assert_eq!(ruri, want.ruri, "{method} Request-URI:\n{m:#?}");
        let vias: Vec<&str> = header_values(m, "Via").collect();
        assert!(
            vias.len() == want.vias.len()
                && vias
                    .iter()
                    .zip(&want.vias)
                    .all(|(v, w)| v.starts_with(w.as_str())),
            "{method}: Via stack is not {:#?}:\n{m:#?}",
            want.vias
        );
        let mf: Vec<&str> = header_values(m, "Max-Forwards").collect();
        assert_eq!(
            mf,
            [want.max_forwards.to_string()],
            "{method} Max-Forwards:\n{m:#?}"
        );
        let routes = list(m, "Route");
        assert_eq!(routes, want.routes, "{method} Route:\n{m:#?}");
        if let Some(rr) = &want.record_routes {
            assert_eq!(
                &list(m, "Record-Route"),
                rr,
                "{method} Record-Route:\n{m:#?}"
            );
        }
    }
    msgs
}

/// The values of a list header, split at ", " (the URIs here hold no commas).
pub fn list(msg: &[String], name: &str) -> Vec<String> {
    header_values(msg, name)
        .flat_map(|v| v.split(", "))
        .map(str::to_string)
        .collect()
}

/// A header's value in one traced message.
pub fn value<'a>(msg: &'a [String], name: &'a str) -> Option<&'a str> {
    header_values(msg, name).next()
}

/// One row of `docs/rfc3665-flows.md`. Written when the flow passes ([`Row::pass`]); a row
/// dropped without passing (the test failed) is written as failed.
pub struct Row {
    flow: &'static str,
    title: &'static str,
    files: String,
    done: bool,
}

impl Row {
    pub fn new(flow: &'static str, title: &'static str, files: &[&str]) -> Row {
        Row {
            flow,
            title,
            files: files
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
            done: false,
        }
    }

    /// Record a pass with the UAC's statistics and what was checked.
    pub fn pass(self, calls: &Calls, checked: &str) {
        self.pass_uac(&[&calls.uac], checked);
    }

    /// The same from the UACs of one or more runs (summed).
    pub fn pass_uac(mut self, uacs: &[&SippOutcome], checked: &str) {
        let sum = |f: &dyn Fn(&SippOutcome) -> u64| uacs.iter().map(|u| f(u)).sum::<u64>();
        let result = format!(
            "pass: {} calls, {} successful, {} failed",
            sum(&|u| u.stat("TotalCallCreated").unwrap_or(0)),
            sum(&|u| u.successful()),
            sum(&|u| u.failed())
        );
        self.write(&result, checked);
        self.done = true;
    }

    fn write(&self, result: &str, checked: &str) {
        let dir = rows_dir();
        let _ = fs::create_dir_all(&dir);
        let line = format!(
            "| {} | {} | {} | {} | {} |\n",
            self.flow, self.title, self.files, result, checked
        );
        let _ = fs::write(dir.join(format!("{}.row", self.flow)), line);
        regenerate_table(&dir);
    }
}

impl Drop for Row {
    fn drop(&mut self) {
        if !self.done {
            self.write("FAILED", "see the test output");
        }
    }
}

fn rows_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("rfc3665-flows")
}

/// Rewrite `docs/rfc3665-flows.md` from every row present, in flow order.
fn regenerate_table(dir: &Path) {
    let mut rows: Vec<(u32, String)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let minor: u32 = name
                .strip_prefix("3.")?
                .strip_suffix(".row")?
                .parse()
                .ok()?;
            Some((minor, fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    rows.sort();
    let mut doc = String::from(
        "# RFC 3665 session flows through sipshard\n\n\
         Generated by `cargo test --release --test rfc3665_flows` (each flow test rewrites its\n\
         row and this file; do not edit by hand). Every flow runs the SIPp scenario pair of\n\
         `tests/scenarios/` through real sipshard processes on loopback: 50 calls at 10 calls/s,\n\
         and passes only with zero failed calls at both agents and every check below holding\n\
         for every message the UAS received. Section 3.5 (session through a SIP ALG) is not\n\
         here: an ALG is a NAT function, not a proxy.\n\n\
         | flow | RFC 3665 title | scenarios | result | checked at the UAS and at sipshard |\n\
         |---|---|---|---|---|\n",
    );
    for (_, r) in rows {
        doc.push_str(&r);
    }
    let _ = fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rfc3665-flows.md"),
        doc,
    );
}
