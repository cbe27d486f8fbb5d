//! Reports: the live line every second (and its CSV row), the human summary, the JSON report
//! and the `.hgrm` percentile distributions.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::{Config, Role, Scenario};
use crate::engine::{RunOutput, Shared};
use crate::stats::{new_hist, Counters, Percentiles, Side};

/// Label of the scenario's main latency in the live line.
fn main_label(cfg: &Config) -> &'static str {
    match cfg.scenario {
        Scenario::Call => "inv->200",
        Scenario::Register => "reg->200",
        Scenario::Options => "opt->200",
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// The reporter thread: once a second, merge the workers' snapshots, print the live line,
/// append a CSV row.
pub struct Live {
    csv: Option<BufWriter<File>>,
}

impl Live {
    pub fn new(cfg: &Config) -> Live {
        let csv = cfg.csv.as_ref().and_then(|p| match File::create(p) {
            Ok(f) => {
                let mut w = BufWriter::new(f);
                let _ = writeln!(
                    w,
                    "second,target_rate,achieved_rate,in_flight,attempted,succeeded,failed,\
                     failed_timeout,failed_status,failed_unexpected,retransmissions,\
                     latency_p50_ms,latency_p99_ms,lag_p99_ms,rx_lag_p99_ms,answered,answered_ok,answered_failed"
                );
                Some(w)
            }
            Err(e) => {
                eprintln!("cannot create {}: {e}", p.display());
                None
            }
        });
        Live { csv }
    }

    pub fn run(mut self, cfg: &Config, shared: &Shared) {
        let all_done = || shared.workers_done.load(Ordering::Acquire) >= cfg.threads;
        let start = loop {
            let s = shared.main_start.load(Ordering::Acquire);
            if s != 0 {
                break s;
            }
            if all_done() || shared.aborted() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut main = new_hist();
        let mut lag = new_hist();
        let mut rx_lag = new_hist();
        let mut prev_attempted = 0;
        let mut second = 1u64;
        loop {
            // Read a little after the second boundary, once every worker has published.
            let due = start + second * 1_000_000_000 + 150_000_000;
            loop {
                let now = shared.now();
                if now >= due || all_done() {
                    break;
                }
                std::thread::sleep(Duration::from_nanos((due - now).min(50_000_000)));
            }
            if all_done() {
                break;
            }
            let mut c = Counters::default();
            main.reset();
            lag.reset();
            rx_lag.reset();
            for s in &shared.snapshots {
                let mut s = s.lock().unwrap();
                let _ = main.add(&s.main);
                let _ = lag.add(&s.lag);
                let _ = rx_lag.add(&s.rx_lag);
                s.main.reset();
                s.lag.reset();
                s.rx_lag.reset();
                c.add(&s.counters);
            }
            let achieved = c.client.attempted - prev_attempted;
            prev_attempted = c.client.attempted;
            if cfg.live {
                eprintln!(
                    "{}",
                    live_line(cfg, second, achieved, &c, &main, &lag, &rx_lag)
                );
            }
            if let Some(w) = &mut self.csv {
                let cl = &c.client;
                let _ = writeln!(
                    w,
                    "{second},{},{achieved},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{},{},{}",
                    if cfg.has_client() { cfg.rate } else { 0.0 },
                    cl.in_flight(),
                    cl.attempted,
                    cl.succeeded,
                    cl.failed(),
                    cl.failed_timeout,
                    cl.failed_status,
                    cl.failed_unexpected,
                    c.retrans.total(),
                    ms(&main, 0.5),
                    ms(&main, 0.99),
                    ms(&lag, 0.99),
                    ms(&rx_lag, 0.99),
                    c.server.attempted,
                    c.server.succeeded,
                    c.server.failed(),
                );
            }
            second += 1;
        }
        if let Some(mut w) = self.csv.take() {
            let _ = w.flush();
        }
    }
}

fn live_line(
    cfg: &Config,
    second: u64,
    achieved: u64,
    c: &Counters,
    main: &Histogram<u64>,
    lag: &Histogram<u64>,
    rx_lag: &Histogram<u64>,
) -> String {
    let causes = |s: &Side| {
        format!(
            "fail {} (timeout {}, status {}, unexpected {})",
            s.failed(),
            s.failed_timeout,
            s.failed_status,
            s.failed_unexpected
        )
    };
    if cfg.handshakes_only() {
        let h = &c.handshakes;
        return format!(
            "{second:>4}s handshakes {achieved}/s total {} (full {}, resumed {}) failed {} connect->pong p50 {:.2} p99 {:.2} ms",
            h.done(),
            h.full,
            h.resumed,
            h.failed,
            ms(main, 0.5),
            ms(main, 0.99),
        );
    }
    if cfg.role == Role::UasOnly {
        return format!(
            "{second:>4}s answered {} ok {} in-flight {} {} rtx {}",
            c.server.attempted,
            c.server.succeeded,
            c.server.in_flight(),
            causes(&c.server),
            c.retrans.total()
        );
    }
    format!(
        "{second:>4}s rate {achieved}/{} in-flight {} ok {} {} rtx {} {} p50 {:.2} p99 {:.2} ms lag p99 send {:.2} recv {:.2} ms",
        cfg.rate,
        c.client.in_flight(),
        c.client.succeeded,
        causes(&c.client),
        c.retrans.total(),
        main_label(cfg),
        ms(main, 0.5),
        ms(main, 0.99),
        ms(lag, 0.99),
        ms(rx_lag, 0.99),
    )
}

#[derive(Serialize, Debug, Clone, Copy)]
pub struct Causes {
    pub timeout: u64,
    pub unexpected_status: u64,
    pub unexpected_message: u64,
}

impl From<&Side> for Causes {
    fn from(s: &Side) -> Causes {
        Causes {
            timeout: s.failed_timeout,
            unexpected_status: s.failed_status,
            unexpected_message: s.failed_unexpected,
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct SideReport {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub failures_by_cause: Causes,
}

impl From<&Side> for SideReport {
    fn from(s: &Side) -> SideReport {
        SideReport {
            attempted: s.attempted,
            succeeded: s.succeeded,
            failed: s.failed(),
            failures_by_cause: s.into(),
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct RetransReport {
    pub invite: u64,
    pub non_invite: u64,
    pub ack: u64,
    pub response: u64,
}

/// `--transport tls`: the handshakes of the run.
#[derive(Serialize, Debug, Clone)]
pub struct TlsReport {
    /// `connections`: the handshakes that opened the run's connections, one after the other
    /// before the run; `handshakes-only`: every cycle of `--tls-handshakes-only`.
    pub mode: &'static str,
    /// `ca` (verified against `--tls-ca`) or `insecure` (`--tls-insecure`).
    pub verify: &'static str,
    /// Whether sessions could be resumed (false with `--tls-no-resume`).
    pub resume: bool,
    /// Handshakes completed (full + resumed).
    pub handshakes: u64,
    pub full: u64,
    pub resumed: u64,
    /// resumed / handshakes (0 when there were none).
    pub resumption_rate: f64,
    pub failed: u64,
    /// Handshakes completed per second: over the run's duration (handshakes-only), or over
    /// the time spent opening the connections (connections).
    pub handshakes_per_s: f64,
    /// From the TCP connect to the pong that confirmed the handshake.
    pub handshake_ms: Percentiles,
    /// handshakes-only: the worker threads' CPU time over the run's duration, per thread (near
    /// 1.0: the generator was the limit, not the target).
    pub generator_cpu: Option<f64>,
    /// handshakes-only: what the first failed handshake said.
    pub first_failure: Option<String>,
}

impl TlsReport {
    fn new(cfg: &Config, out: &RunOutput) -> Option<TlsReport> {
        let tls = cfg.tls.as_ref()?;
        let h = &out.stats.counters.handshakes;
        let per_s = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let secs = if tls.handshakes_only {
            out.send_secs
        } else {
            out.open_secs
        };
        Some(TlsReport {
            mode: if tls.handshakes_only {
                "handshakes-only"
            } else {
                "connections"
            },
            verify: tls.verify,
            resume: tls.resume,
            handshakes: h.done(),
            full: h.full,
            resumed: h.resumed,
            resumption_rate: if h.done() > 0 {
                h.resumed as f64 / h.done() as f64
            } else {
                0.0
            },
            failed: h.failed,
            handshakes_per_s: per_s(h.done(), secs),
            handshake_ms: Percentiles::of(&out.stats.hists.tls_handshake),
            generator_cpu: tls.handshakes_only.then(|| {
                let busy = out.stats.cpu_ns as f64 / 1e9;
                busy / secs.max(1e-9) / cfg.threads as f64
            }),
            first_failure: out.stats.first_failure.clone(),
        })
    }

    /// The summary's lines.
    fn summary(&self, s: &mut String) {
        let verify = match self.verify {
            "ca" => "target verified with --tls-ca",
            _ => "target NOT verified (--tls-insecure)",
        };
        let resume = if self.resume { "" } else { ", --tls-no-resume" };
        if self.mode == "handshakes-only" {
            s.push_str(&format!(
                "  handshakes  {} completed, {:.1}/s (full {}, resumed {}: {:.1}% resumed), {} failed; {verify}{resume}\n",
                self.handshakes,
                self.handshakes_per_s,
                self.full,
                self.resumed,
                self.resumption_rate * 100.0,
                self.failed,
            ));
        } else {
            s.push_str(&format!(
                "  tls         {} handshakes opening the connections, {:.1}/s one at a time (full {}, resumed {}: {:.1}% resumed); {verify}{resume}\n",
                self.handshakes,
                self.handshakes_per_s,
                self.full,
                self.resumed,
                self.resumption_rate * 100.0,
            ));
        }
        if let Some(f) = &self.first_failure {
            s.push_str(&format!("  first failure: {f}\n"));
        }
        if let Some(cpu) = self.generator_cpu {
            s.push_str(&format!(
                "  the generator's threads were busy {:.0}% of the run{}\n",
                cpu * 100.0,
                if cpu > 0.9 {
                    ": WARNING, the generator may be the limit, not the target"
                } else {
                    ""
                }
            ));
        }
    }
}

/// The machine report (`--json`).
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub scenario: &'static str,
    pub role: &'static str,
    pub target: Option<String>,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// `--transport tls`: handshakes, full and resumed, and their rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    /// Sockets (UDP) or connections (TCP) in all.
    pub sockets: usize,
    /// Connections the target closed or broke during the run.
    pub connections_lost: u64,
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub threads: usize,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retransmissions: u64,
    pub retransmissions_by_kind: RetransReport,
    pub failures_by_cause: Causes,
    pub unexpected_statuses: BTreeMap<String, u64>,
    /// How late attempts were sent, relative to their schedule.
    pub generator_lag_ms: Percentiles,
    /// How long received datagrams waited before the generator read them.
    pub generator_rx_lag_ms: Percentiles,
    pub generator_kept_schedule: bool,
    /// Datagrams the generator's own sockets dropped because it did not read them in time.
    pub generator_socket_drops: u64,
    /// Retransmissions were needed although the generator dropped nothing and read every
    /// datagram well within T1: datagrams were lost beyond it (in the target, as a rule).
    pub loss_beyond_generator: bool,
    pub latency_ms: BTreeMap<&'static str, Percentiles>,
    /// The calling side's attempts (for `call` with both sides: the calls placed).
    pub calling: SideReport,
    /// The answering side's calls (for `call` with both sides or `--uas-only`).
    pub answering: SideReport,
    pub registered_users: u64,
    pub registration_failures: u64,
    pub stray_messages: u64,
    pub unparseable: u64,
    pub send_errors: u64,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub wall_s: f64,
    pub error: Option<String>,
}

/// The generator's own receive lag below which its retransmissions cannot be its own doing:
/// half of T1 (500 ms), the earliest a request is resent.
pub const LOSS_RX_LAG_MS: f64 = 250.0;

/// Lag p99 above which the generator is considered not to have kept its schedule by default.
pub const DEFAULT_MAX_LAG_MS: f64 = 20.0;

impl Report {
    pub fn new(cfg: &Config, out: &RunOutput, max_lag_ms: f64) -> Report {
        let c = &out.stats.counters;
        let h = &out.stats.hists;
        let primary = if cfg.role == Role::UasOnly {
            &c.server
        } else {
            &c.client
        };
        let lag = Percentiles::of(&h.lag);
        let rx_lag = Percentiles::of(&h.rx_lag);
        let duration = cfg.duration_ns as f64 / 1e9;
        let kept = cfg.role == Role::UasOnly
            || (lag.p99 <= max_lag_ms
                && rx_lag.p99 <= max_lag_ms
                && c.socket_drops == 0
                && out.send_secs <= duration * 1.01 + max_lag_ms / 1000.0);
        let loss_beyond_generator =
            c.retrans.total() > 0 && c.socket_drops == 0 && rx_lag.max <= LOSS_RX_LAG_MS;
        let mut latency = BTreeMap::new();
        for (name, hist) in h.named() {
            // The generator's own lag and the TLS handshakes have their own places.
            if !name.starts_with("generator_") && name != "tls_handshake" {
                latency.insert(name, Percentiles::of(hist));
            }
        }
        Report {
            scenario: cfg.scenario_name(),
            role: match cfg.role {
                Role::Both => "both",
                Role::UacOnly => "uac",
                Role::UasOnly => "uas",
            },
            target: cfg.target.map(|t| t.to_string()),
            transport: cfg.transport.name(),
            tls: TlsReport::new(cfg, out),
            sockets: cfg.fixed_ports.iter().map(Vec::len).sum(),
            connections_lost: c.connections_lost,
            // A closed loop (handshakes only) has no target rate; what it achieved is the
            // handshakes it completed.
            target_rate: if cfg.has_client() && !cfg.handshakes_only() {
                cfg.rate
            } else {
                0.0
            },
            achieved_rate: match (cfg.has_client(), cfg.handshakes_only()) {
                _ if out.send_secs <= 0.0 => 0.0,
                (_, true) => c.client.succeeded as f64 / out.send_secs,
                (true, false) => c.client.attempted as f64 / out.send_secs,
                (false, false) => 0.0,
            },
            duration_s: duration,
            threads: cfg.threads,
            attempted: primary.attempted,
            succeeded: primary.succeeded,
            failed: primary.failed(),
            retransmissions: c.retrans.total(),
            retransmissions_by_kind: RetransReport {
                invite: c.retrans.invite,
                non_invite: c.retrans.non_invite,
                ack: c.retrans.ack,
                response: c.retrans.response,
            },
            failures_by_cause: primary.into(),
            unexpected_statuses: out
                .stats
                .unexpected_statuses
                .nonzero()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
            generator_lag_ms: lag,
            generator_rx_lag_ms: rx_lag,
            generator_kept_schedule: kept,
            generator_socket_drops: c.socket_drops,
            loss_beyond_generator,
            latency_ms: latency,
            calling: (&c.client).into(),
            answering: (&c.server).into(),
            registered_users: c.registered,
            registration_failures: c.registration_failed,
            stray_messages: c.stray,
            unparseable: c.unparseable,
            send_errors: c.send_errors,
            datagrams_sent: c.datagrams_sent,
            datagrams_received: c.datagrams_received,
            wall_s: out.wall_secs,
            error: out.error.clone(),
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let p = |s: &mut String, name: &str, q: &Percentiles| {
            if q.count > 0 {
                s.push_str(&format!(
                    "    {name:<16}{:>9}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>9.3}\n",
                    q.count, q.p50, q.p90, q.p99, q.p999, q.max
                ));
            }
        };
        if self.scenario == "tls-handshakes" {
            self.handshakes_summary(&mut s, p);
            return s;
        }
        s.push_str(&format!(
            "sipshard-load {} ({} side{}) -> {} over {}, {} thread(s), {} {}\n",
            self.scenario,
            self.role,
            if self.role == "both" { "s" } else { "" },
            self.target.as_deref().unwrap_or("-"),
            self.transport,
            self.threads,
            self.sockets,
            if self.transport == "udp" {
                "sockets"
            } else {
                "connections"
            },
        ));
        if self.connections_lost > 0 {
            s.push_str(&format!(
                "  WARNING: the target closed {} connection(s) during the run\n",
                self.connections_lost
            ));
        }
        if self.role != "uas" {
            s.push_str(&format!(
                "  rate        target {}/s, achieved {:.1}/s\n",
                self.target_rate, self.achieved_rate
            ));
        }
        if let Some(tls) = &self.tls {
            tls.summary(&mut s);
        }
        let side = |s: &mut String, label: &str, verbs: [&str; 2], c: &SideReport| {
            let f = &c.failures_by_cause;
            s.push_str(&format!(
                "  {label:<12}{} {}, {} {}, {} failed (timeout {}, unexpected status {}, \
                 unexpected message {})\n",
                c.attempted,
                verbs[0],
                c.succeeded,
                verbs[1],
                c.failed,
                f.timeout,
                f.unexpected_status,
                f.unexpected_message
            ));
        };
        if self.role != "uas" {
            side(
                &mut s,
                "attempts",
                ["attempted", "succeeded"],
                &self.calling,
            );
        }
        if self.role != "uac" && self.scenario == "call" {
            side(
                &mut s,
                "answered",
                ["received", "completed"],
                &self.answering,
            );
        }
        if self.registered_users + self.registration_failures > 0 {
            s.push_str(&format!(
                "  registered  {} users ({} failed)\n",
                self.registered_users, self.registration_failures
            ));
        }
        if !self.unexpected_statuses.is_empty() {
            let list: Vec<String> = self
                .unexpected_statuses
                .iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect();
            s.push_str(&format!("  statuses    {}\n", list.join(", ")));
        }
        let r = &self.retransmissions_by_kind;
        s.push_str(&format!(
            "  retransmit  {} (INVITE {}, non-INVITE {}, ACK {}, responses {})\n",
            self.retransmissions, r.invite, r.non_invite, r.ack, r.response
        ));
        if self.stray_messages + self.unparseable + self.send_errors > 0 {
            s.push_str(&format!(
                "  other       {} stray, {} unparseable, {} send errors\n",
                self.stray_messages, self.unparseable, self.send_errors
            ));
        }
        let any_latency = self.latency_ms.values().any(|q| q.count > 0);
        if any_latency || self.role != "uas" {
            s.push_str(&format!(
                "  latency ms  {:>13}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
                "count", "p50", "p90", "p99", "p99.9", "max"
            ));
        }
        for (name, q) in &self.latency_ms {
            p(&mut s, name, q);
        }
        if self.role != "uas" {
            p(&mut s, "send lag", &self.generator_lag_ms);
            p(&mut s, "receive lag", &self.generator_rx_lag_ms);
            if self.generator_socket_drops > 0 {
                s.push_str(&format!(
                    "  WARNING: the generator's own sockets dropped {} datagrams (it did not read \
                     them in time)\n",
                    self.generator_socket_drops
                ));
            }
            if self.loss_beyond_generator {
                s.push_str(&format!(
                    "  {} retransmissions although the generator dropped nothing and read every \
                     datagram in time: datagrams were lost beyond it (the target's limit)\n",
                    self.retransmissions
                ));
            }
            if self.generator_kept_schedule {
                s.push_str("  the generator kept its schedule\n");
            } else {
                s.push_str(&format!(
                    "  WARNING: the generator fell behind (send lag p99 {:.1} ms, receive lag p99 \
                     {:.1} ms): these results measure the generator, not the target\n",
                    self.generator_lag_ms.p99, self.generator_rx_lag_ms.p99
                ));
            }
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("  ERROR: {e}\n"));
        }
        s
    }
}

impl Report {
    /// The summary of `--tls-handshakes-only`: no scenario ran, only handshakes.
    fn handshakes_summary(&self, s: &mut String, p: impl Fn(&mut String, &str, &Percentiles)) {
        s.push_str(&format!(
            "sipshard-load tls handshakes -> {}, {} thread(s), {} connection(s) at a time, {:.1} s\n",
            self.target.as_deref().unwrap_or("-"),
            self.threads,
            self.sockets,
            self.wall_s,
        ));
        if let Some(tls) = &self.tls {
            tls.summary(s);
            s.push_str(&format!(
                "  latency ms  {:>13}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
                "count", "p50", "p90", "p99", "p99.9", "max"
            ));
            p(s, "connect->pong", &tls.handshake_ms);
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("  ERROR: {e}\n"));
        }
    }
}

/// Write `report` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, report: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Write one histogram (microseconds) as an HdrHistogram percentile distribution in
/// milliseconds: the format of `outputPercentileDistribution`, which the HdrHistogram plotter
/// and most tooling read.
pub fn write_hgrm(w: &mut impl Write, h: &Histogram<u64>) -> std::io::Result<()> {
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    w,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(w, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0,
        )
    };
    writeln!(w, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]")?;
    writeln!(
        w,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // Sub-buckets per bucket: the power of two above 2 * 10^sigfig.
        (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two()
    )?;
    Ok(())
}

/// Write every non-empty histogram of the run into `dir/<name>.hgrm`.
pub fn write_hgrms(dir: &Path, out: &RunOutput) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, h) in out.stats.hists.named() {
        if h.is_empty() {
            continue;
        }
        let path = dir.join(format!("{name}.hgrm"));
        let f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = BufWriter::new(f);
        write_hgrm(&mut w, h)
            .and_then(|_| w.flush())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_has_the_standard_shape() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&mut out, &h).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().contains("Value"));
        assert_eq!(lines.next(), Some(""));
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "0.010");
        let rows: Vec<&str> = text.lines().filter(|l| l.ends_with(" 1000")).collect();
        assert!(!rows.is_empty(), "{text}");
        assert!(text.contains("#[Max     =       10.0"), "{text}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
    }
}
