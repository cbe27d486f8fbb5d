//! udp-flood: offered load for a SIP forwarder, and the sink that counts what it forwards.
//!
//! `register` binds `USER` to the sink's address with one REGISTER datagram and waits for the
//! 200. `run` sends INVITEs for `sip:USER@PROXY` from many source ports with sendmmsg, at a
//! fixed rate or as fast as it can, while draining the sink with recvmmsg in the same thread
//! (so the flooder is one busy thread, pinned by the caller). Every INVITE is a new
//! transaction: its branch, From tag and Call-ID carry a counter written into fixed-width
//! digits of a prepared template, so no message is formatted or allocated on the way out.
//!
//! Each measured step warms up, then counts over a window: datagrams sent and received at the
//! sink, the CPU time the system under test consumed (every thread of every process in the
//! trees of `--pid`), and the kernel's drop counters of the proxy's and the sink's ports.
//! Results are JSON lines on stdout; a readable line per step goes to stderr.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, Parser, Subcommand};
use udp_tools::invite::{invite_template, SLOT};
use udp_tools::{
    bind_udp, cpu_of, own_cpu_ns, process_trees, set_receive_timeout, stream, udp_drops,
    write_digits, CpuSample, RecvBatch, SendBatch, Wait, MAX_DATAGRAM,
};

#[derive(Parser)]
#[command(name = "udp-flood", about = "SIP request flooder with a counting sink")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bind USER to CONTACT at the proxy with one REGISTER; exit 0 on a 200.
    Register(RegisterArgs),
    /// Flood the proxy and count what reaches the sink.
    Run(RunArgs),
    /// Open idle TCP connections to the proxy and measure the memory they cost it.
    Idle(IdleArgs),
}

/// `--transport tls`: the PEM files the connections use.
#[derive(ClapArgs, Clone)]
struct TlsArgs {
    /// CA that issued the proxy's certificate (the proxy must prove `--tls-name`).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// The name the proxy's certificate carries.
    #[arg(long, default_value = "localhost")]
    tls_name: String,
    /// The sink's certificate and key (the proxy connects to the sink over TLS).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

#[derive(ClapArgs)]
struct IdleArgs {
    /// The proxy under test (TCP, or TLS with `--transport tls`).
    #[arg(long)]
    proxy: SocketAddr,
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "tls"])]
    transport: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Process(es) whose memory is measured, with all their descendants.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Seconds to wait with the connections open before measuring.
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
    /// Name of the system under test, copied into the JSON.
    #[arg(long, default_value = "sut")]
    label: String,
}

#[derive(ClapArgs)]
struct RegisterArgs {
    /// The proxy/registrar.
    #[arg(long)]
    proxy: SocketAddr,
    #[arg(long, default_value = "bench")]
    user: String,
    /// Address the binding points to (the sink of `run`).
    #[arg(long)]
    contact: SocketAddr,
    /// Transport of the contact (`tcp`, `tls`: the proxy reaches the sink over it).
    #[arg(long, default_value = "udp", value_parser = ["udp", "tcp", "tls"])]
    transport: String,
    #[arg(long, default_value_t = 3600)]
    expires: u32,
}

#[derive(ClapArgs)]
struct RunArgs {
    /// The forwarder under test.
    #[arg(long)]
    proxy: SocketAddr,
    /// Where forwarded requests arrive (bound here).
    #[arg(long)]
    sink: SocketAddr,
    #[arg(long, default_value = "bench")]
    user: String,
    /// Name of the system under test, copied into the JSON.
    #[arg(long, default_value = "sut")]
    label: String,
    /// Process(es) whose CPU time is measured, with all their descendants.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Source sockets (ports) the requests come from, used in turn; over TCP, connections.
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// `udp`, or `tcp`/`tls`: requests go over `--sources` persistent connections to the
    /// proxy, and the sink is a TCP (TLS) listener (register the sink with the same transport).
    #[arg(long, default_value = "udp", value_parser = ["udp", "tcp", "tls"])]
    transport: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Datagrams per sendmmsg at most.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Seconds sent before the counting window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds counted.
    #[arg(long, default_value_t = 3.0)]
    window: f64,
    /// Offered rate of a single step (requests/s); 0 = as fast as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Search the saturation rate instead: offered rates START, START*FACTOR, ... up to MAX
    /// until fewer than 99 % are forwarded (each lossy step is tried twice), a bisection
    /// between the last clean and the first lossy rate, then one step as fast as possible.
    #[arg(long)]
    ramp: bool,
    #[arg(long, default_value_t = 10_000)]
    start: u64,
    #[arg(long, default_value_t = 1.25)]
    factor: f64,
    #[arg(long, default_value_t = 1_000_000)]
    max_rate: u64,
    /// Bisection steps after the first lossy rate.
    #[arg(long, default_value_t = 2)]
    bisect: u32,
    /// Tries of a step whose flooder or forwarder was starved of CPU by other work.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Forwarded/sent at or above which a step counts as clean.
    #[arg(long, default_value_t = 0.99)]
    clean_ratio: f64,
}

/// Send times are remembered for this many recent counters (a ring).
const SENT_RING: usize = 1 << 20;

/// One request buffer per batch slot, and where its counter digits go.
struct Stamper {
    bufs: Vec<Vec<u8>>,
    slots: Vec<usize>,
    next: u64,
    /// When each recent counter was sent (nanoseconds since `epoch`).
    sent_at: Vec<u64>,
}

impl Stamper {
    fn new(template: &str, batch: usize) -> Stamper {
        let slots: Vec<usize> = template.match_indices(SLOT).map(|(i, _)| i).collect();
        assert_eq!(slots.len(), 3, "branch, tag and Call-ID are stamped");
        Stamper {
            bufs: vec![template.as_bytes().to_vec(); batch],
            slots,
            next: 1,
            sent_at: vec![0; SENT_RING],
        }
    }

    /// Stamp the next `n` counters into slots 0..n, sent at `now_ns`.
    fn stamp(&mut self, n: usize, now_ns: u64) {
        for buf in &mut self.bufs[..n] {
            for &at in &self.slots {
                write_digits(&mut buf[at..at + SLOT.len()], self.next);
            }
            self.sent_at[self.next as usize % SENT_RING] = now_ns;
            self.next += 1;
        }
    }
}

/// The counter stamped into a forwarded request's Call-ID (which proxies leave alone).
fn counter_of(datagram: &[u8]) -> Option<u64> {
    const NAME: &[u8] = b"\nCall-ID: ";
    let at = datagram.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let digits = datagram.get(at..at + SLOT.len())?;
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + (d - b'0') as u64)
    })
}

/// Latencies at or above this (microseconds) are counted as this.
const LATENCY_CAP_US: u64 = 200_000;

/// Forwarding latency (send to sink) of a sample of the requests, in microseconds.
struct Latency {
    /// Count per microsecond up to `buckets.len() - 1`; the last bucket holds the rest.
    buckets: Vec<u32>,
    samples: u64,
}

impl Latency {
    /// One request in this many received is timed.
    const SAMPLE_EVERY: u64 = 8;

    fn new() -> Latency {
        Latency {
            buckets: vec![0; LATENCY_CAP_US as usize + 1],
            samples: 0,
        }
    }
    fn clear(&mut self) {
        self.buckets.iter_mut().for_each(|b| *b = 0);
        self.samples = 0;
    }
    fn record(&mut self, us: u64) {
        let i = (us as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.samples += 1;
    }
    /// The `q` quantile in microseconds (0 without samples).
    fn quantile(&self, q: f64) -> u64 {
        if self.samples == 0 {
            return 0;
        }
        let rank = ((self.samples as f64 * q).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (us, &n) in self.buckets.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                return us as u64;
            }
        }
        (self.buckets.len() - 1) as u64
    }
}

/// Counters read at the edges of a window.
#[derive(Clone, Copy, Default)]
struct Snapshot {
    at: Option<Instant>,
    sent: u64,
    received: u64,
    replies: u64,
    send_errors: u64,
    cpu: CpuSample,
    own_ns: u64,
    proxy_drops: u64,
    sink_drops: u64,
}

struct StepResult {
    offered: u64,
    window_s: f64,
    sent: u64,
    received: u64,
    replies: u64,
    send_errors: u64,
    cpu_ns: u64,
    cpu_stat_ns: u64,
    own_ns: u64,
    proxy_drops: u64,
    sink_drops: u64,
    /// Latency quantiles (p50, p99, p99.9) in microseconds, and how many were timed.
    latency_us: [u64; 3],
    latency_samples: u64,
    /// Whether both sides had their CPUs (see [`StepResult::starved`]).
    valid: bool,
}

impl StepResult {
    fn ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.received as f64 / self.sent as f64
        }
    }
    fn fwd_rate(&self) -> f64 {
        self.received as f64 / self.window_s
    }
    fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.window_s
    }
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.received.max(1) as f64
    }
    /// Clean: nearly everything sent was forwarded and the flooder kept up with the offer.
    fn clean(&self, min_ratio: f64) -> bool {
        self.ratio() >= min_ratio
            && (self.offered == 0 || self.sent_rate() >= 0.97 * self.offered as f64)
    }
    /// Share of a core the flooder and the system under test got in the window (percent).
    fn flood_pct(&self) -> f64 {
        self.own_ns as f64 / 1e9 / self.window_s * 100.0
    }
    fn sut_pct(&self) -> f64 {
        self.cpu_ns as f64 / 1e9 / self.window_s * 100.0
    }
    /// Someone else's work took the CPUs: the flooder (a busy loop, so ~100 % when it runs)
    /// got less than 80 % of its core, or messages were lost while the forwarder got less
    /// than 80 % of its core. Such a step measures the machine, not the forwarder.
    fn starved(&self, min_ratio: f64) -> bool {
        self.flood_pct() < 80.0 || (self.ratio() < min_ratio && self.sut_pct() < 80.0)
    }
    /// The flooder could not send what was asked (it, not the forwarder, was the limit).
    fn generator_short(&self) -> bool {
        self.offered > 0 && self.sent_rate() < 0.97 * self.offered as f64
    }

    fn json(&self, label: &str) -> String {
        let w = self.window_s;
        format!(
            "{{\"label\":\"{label}\",\"offered\":{},\"window_s\":{w:.3},\"sent\":{},\"received\":{},\
             \"sent_rate\":{:.0},\"fwd_rate\":{:.0},\"ratio\":{:.5},\"replies\":{},\"send_errors\":{},\
             \"sut_cpu_ms\":{:.1},\"sut_cpu_stat_ms\":{:.1},\"sut_cpu_pct\":{:.1},\
             \"cpu_us_per_msg\":{:.3},\"cpu_us_per_msg_stat\":{:.3},\"proxy_drops\":{},\
             \"sink_drops\":{},\"flood_cpu_pct\":{:.1},\"latency_p50_us\":{},\
             \"latency_p99_us\":{},\"latency_p999_us\":{},\"latency_samples\":{},\"valid\":{}}}",
            self.offered,
            self.sent,
            self.received,
            self.sent_rate(),
            self.fwd_rate(),
            self.ratio(),
            self.replies,
            self.send_errors,
            self.cpu_ns as f64 / 1e6,
            self.cpu_stat_ns as f64 / 1e6,
            self.cpu_ns as f64 / 1e9 / w * 100.0,
            self.cpu_us_per_msg(),
            self.cpu_stat_ns as f64 / 1000.0 / self.received.max(1) as f64,
            self.proxy_drops,
            self.sink_drops,
            self.own_ns as f64 / 1e9 / w * 100.0,
            self.latency_us[0],
            self.latency_us[1],
            self.latency_us[2],
            self.latency_samples,
            self.valid,
        )
    }

    fn human(&self, label: &str) -> String {
        let offered = if self.offered == 0 {
            "max".to_string()
        } else {
            self.offered.to_string()
        };
        format!(
            "{label:>9} offered {offered:>7}/s sent {:>8.0}/s fwd {:>8.0}/s ratio {:.4} \
             cpu {:>6.2} us/msg ({:>5.1}% of a core) latency p50 {} p99 {} us \
             drops proxy {} sink {} replies {} flood cpu {:.0}%",
            self.sent_rate(),
            self.fwd_rate(),
            self.ratio(),
            self.cpu_us_per_msg(),
            self.cpu_ns as f64 / 1e9 / self.window_s * 100.0,
            self.latency_us[0],
            self.latency_us[1],
            self.proxy_drops,
            self.sink_drops,
            self.replies,
            self.own_ns as f64 / 1e9 / self.window_s * 100.0,
        )
    }
}

struct Flood {
    sources: Vec<UdpSocket>,
    sink: UdpSocket,
    /// `--transport tcp`: the connections requests leave on (then `sources` is empty), and
    /// the listener the proxy forwards to (next to the UDP sink on the same port).
    tcp_sources: Option<stream::Sources>,
    tcp_sink: Option<stream::Sink>,
    stamper: Stamper,
    send: SendBatch,
    sink_batch: RecvBatch,
    reply_batch: RecvBatch,
    pids: Vec<u32>,
    proxy_port: u16,
    sink_port: u16,
    batch: usize,
    // Running totals (never reset).
    sent: u64,
    received: u64,
    replies: u64,
    send_errors: u64,
    first_reply: Option<String>,
    epoch: Instant,
    latency: Latency,
}

impl Flood {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn snapshot(&self, pids: &[u32]) -> Snapshot {
        Snapshot {
            at: Some(Instant::now()),
            sent: self.sent,
            received: self.received,
            replies: self.replies,
            send_errors: self.send_errors,
            cpu: cpu_of(pids),
            own_ns: own_cpu_ns(),
            proxy_drops: udp_drops(self.proxy_port),
            sink_drops: udp_drops(self.sink_port),
        }
    }

    /// Take everything queued at the sink, timing a sample; returns how many messages.
    fn drain_sink(&mut self) -> u64 {
        let mut total = self.drain_tcp_sink();
        let fd = self.sink.as_raw_fd();
        loop {
            let n = self.sink_batch.recv(fd, Wait::No).unwrap_or(0);
            if n > 0 {
                let now = self.now_ns();
                for i in 0..n {
                    if !(self.received + total + i as u64).is_multiple_of(Latency::SAMPLE_EVERY) {
                        continue;
                    }
                    let Some(c) = counter_of(self.sink_batch.datagram(i)) else {
                        continue;
                    };
                    // Only counters still in the ring (and from this run) can be timed.
                    if c == 0 || c >= self.stamper.next || self.stamper.next - c > SENT_RING as u64
                    {
                        continue;
                    }
                    let sent = self.stamper.sent_at[c as usize % SENT_RING];
                    self.latency.record(now.saturating_sub(sent) / 1000);
                }
            }
            total += n as u64;
            if n < self.sink_batch.capacity() {
                return total;
            }
        }
    }

    /// The TCP sink's share of [`drain_sink`](Self::drain_sink).
    fn drain_tcp_sink(&mut self) -> u64 {
        let Some(sink) = self.tcp_sink.as_mut() else {
            return 0;
        };
        let now = self.epoch.elapsed().as_nanos() as u64;
        let (stamper, latency, mut index) = (&self.stamper, &mut self.latency, self.received);
        sink.drain(|m| {
            if index.is_multiple_of(Latency::SAMPLE_EVERY) {
                if let Some(c) = counter_of(m) {
                    if c != 0 && c < stamper.next && stamper.next - c <= SENT_RING as u64 {
                        let sent = stamper.sent_at[c as usize % SENT_RING];
                        latency.record(now.saturating_sub(sent) / 1000);
                    }
                }
            }
            index += 1;
        })
    }

    /// Send `n` stamped requests on source `src`; returns how many left.
    fn send_batch(&mut self, src: usize, n: usize) -> Result<usize, ()> {
        let bufs = self.stamper.bufs[..n].iter().map(|b| &b[..]);
        match self.tcp_sources.as_mut() {
            Some(tcp) => tcp.send(src, bufs).map_err(|_| ()),
            None => {
                let fd = self.sources[src].as_raw_fd();
                self.send.send(fd, bufs).map_err(|_| ())
            }
        }
    }

    fn source_count(&self) -> usize {
        self.tcp_sources
            .as_ref()
            .map_or(self.sources.len(), |t| t.len())
    }

    /// Count (and remember the first of) replies the proxy sent back to the sources: a
    /// forwarder that answers instead of forwarding is misconfigured.
    fn drain_replies(&mut self) {
        if let Some(tcp) = self.tcp_sources.as_mut() {
            self.replies += tcp.drain_replies(&mut self.first_reply);
        }
        for s in &self.sources {
            while let Ok(n) = self.reply_batch.recv(s.as_raw_fd(), Wait::No) {
                if n == 0 {
                    break;
                }
                if self.first_reply.is_none() {
                    let d = self.reply_batch.datagram(0);
                    let line = d.split(|&b| b == b'\r').next().unwrap_or(d);
                    self.first_reply = Some(String::from_utf8_lossy(line).into_owned());
                }
                self.replies += n as u64;
            }
        }
    }

    /// Offer `rate` requests/s (0: as fast as possible) for warmup + window seconds.
    fn step(&mut self, rate: u64, warmup: f64, window: f64) -> StepResult {
        // Leftovers of the previous step are not this step's.
        std::thread::sleep(Duration::from_millis(200));
        self.drain_sink();
        self.drain_replies();
        let pids = process_trees(&self.pids);
        let t0 = Instant::now();
        let warm_end = t0 + Duration::from_secs_f64(warmup);
        let end = warm_end + Duration::from_secs_f64(window);
        let mut start: Option<Snapshot> = None;
        let mut sent_here = 0u64;
        let mut src = 0usize;
        let mut iter = 0u64;
        let n_sources = self.source_count();
        loop {
            let now = Instant::now();
            if start.is_none() && now >= warm_end {
                start = Some(self.snapshot(&pids));
                self.latency.clear();
            }
            if now >= end {
                break;
            }
            let due = if rate == 0 {
                self.batch
            } else {
                let target = ((now - t0).as_nanos() * rate as u128 / 1_000_000_000) as u64;
                (target.saturating_sub(sent_here) as usize).min(self.batch)
            };
            if due > 0 {
                let t = self.now_ns();
                self.stamper.stamp(due, t);
                match self.send_batch(src, due) {
                    Ok(k) => {
                        self.sent += k as u64;
                        sent_here += k as u64;
                    }
                    Err(_) => {
                        self.send_errors += 1;
                        // Skip this slot of the schedule rather than retry it at once.
                        sent_here += due as u64;
                    }
                }
                src = (src + 1) % n_sources;
            }
            self.received += self.drain_sink();
            iter += 1;
            if iter.is_multiple_of(1024) {
                self.drain_replies();
            }
        }
        let stop = self.snapshot(&pids);
        let start = start.unwrap_or(stop);
        let secs = stop
            .at
            .unwrap()
            .duration_since(start.at.unwrap())
            .as_secs_f64();
        StepResult {
            offered: rate,
            window_s: secs.max(1e-9),
            sent: stop.sent - start.sent,
            received: stop.received - start.received,
            replies: stop.replies - start.replies,
            send_errors: stop.send_errors - start.send_errors,
            cpu_ns: stop.cpu.sched_ns.saturating_sub(start.cpu.sched_ns),
            cpu_stat_ns: stop.cpu.stat_ns.saturating_sub(start.cpu.stat_ns),
            own_ns: stop.own_ns - start.own_ns,
            proxy_drops: stop.proxy_drops.saturating_sub(start.proxy_drops),
            sink_drops: stop.sink_drops.saturating_sub(start.sink_drops),
            latency_us: [
                self.latency.quantile(0.5),
                self.latency.quantile(0.99),
                self.latency.quantile(0.999),
            ],
            latency_samples: self.latency.samples,
            valid: true,
        }
    }
}

fn report(label: &str, r: &StepResult, kind: &str) {
    eprintln!("{}", r.human(label));
    println!("{{\"kind\":\"{kind}\",\"step\":{}}}", r.json(label));
}

/// One step at `rate`, repeated (up to `--attempts` times) while other work starved the
/// flooder or the forwarder; the last attempt is returned, marked invalid if still starved.
fn measure(f: &mut Flood, a: &RunArgs, rate: u64, kind: &str) -> StepResult {
    for attempt in 1..=a.attempts.max(1) {
        let mut r = f.step(rate, a.warmup, a.window);
        if !r.starved(a.clean_ratio) {
            report(&a.label, &r, kind);
            return r;
        }
        r.valid = false;
        if attempt == a.attempts.max(1) {
            eprintln!(
                "{:>9} still starved of CPU after {attempt} attempts",
                a.label
            );
            report(&a.label, &r, kind);
            return r;
        }
        eprintln!(
            "{:>9} starved of CPU (flooder {:.0} %, forwarder {:.0} %): measuring again",
            a.label,
            r.flood_pct(),
            r.sut_pct()
        );
        report(&a.label, &r, "starved");
        std::thread::sleep(Duration::from_secs(1));
    }
    unreachable!("the last attempt returns")
}

fn run(a: RunArgs) -> Result<(), String> {
    let sink =
        bind_udp(a.sink, Some(64 << 20), true).map_err(|e| format!("sink {}: {e}", a.sink))?;
    let tcp = a.transport != "udp";
    let tls = tls_setup(&a.transport, &a.tls)?;
    let tcp_sink = if tcp {
        let sink_tls = tls.as_ref().and_then(|t| t.sink.clone());
        let s = stream::Sink::bind(a.sink, sink_tls);
        Some(s.map_err(|e| format!("TCP sink {}: {e}", a.sink))?)
    } else {
        None
    };
    let tcp_sources = if tcp {
        let s = stream::Sources::connect(a.proxy, a.sources.max(1), tls.as_ref());
        Some(s.map_err(|e| format!("connecting to {}: {e}", a.proxy))?)
    } else {
        None
    };
    let mut sources = Vec::new();
    for _ in 0..if tcp { 0 } else { a.sources.max(1) } {
        let s = bind_udp("127.0.0.1:0".parse().unwrap(), Some(4 << 20), true)
            .map_err(|e| format!("source socket: {e}"))?;
        sources.push(s);
    }
    let batch = a.batch.clamp(1, 1024);
    let template = invite_template(&a.user, a.proxy, &a.transport.to_uppercase());
    let mut f = Flood {
        sources,
        sink,
        tcp_sources,
        tcp_sink,
        stamper: Stamper::new(&template, batch),
        send: SendBatch::new(batch, a.proxy),
        sink_batch: RecvBatch::new(64, 4096),
        reply_batch: RecvBatch::new(32, MAX_DATAGRAM),
        pids: a.pids.clone(),
        proxy_port: a.proxy.port(),
        sink_port: a.sink.port(),
        batch,
        sent: 0,
        received: 0,
        replies: 0,
        send_errors: 0,
        first_reply: None,
        epoch: Instant::now(),
        latency: Latency::new(),
    };
    eprintln!(
        "udp-flood: {} -> {} (sink {}), {}-byte INVITEs, {} source ports, batches of {batch}",
        a.label,
        a.proxy,
        a.sink,
        template.len(),
        a.sources
    );
    if !a.ramp {
        measure(&mut f, &a, a.rate.unwrap_or(0), "fixed");
        finish(&f);
        return Ok(());
    }

    let mut results: Vec<StepResult> = Vec::new();
    let mut last_clean: Option<u64> = None;
    let mut first_lossy: Option<u64> = None;
    let mut rate = a.start.max(1);
    while rate <= a.max_rate {
        let mut r = measure(&mut f, &a, rate, "ramp");
        if !r.valid {
            // The machine, not the forwarder, decided this step: do not climb on it.
            eprintln!(
                "{:>9} ramp stopped at {rate}/s: no valid measurement",
                a.label
            );
            results.push(r);
            break;
        }
        if !r.clean(a.clean_ratio) && !r.generator_short() {
            // One lossy step on a noisy machine is not yet saturation: try it again.
            let again = measure(&mut f, &a, rate, "ramp");
            results.push(r);
            r = again;
        }
        let short = r.generator_short();
        let clean = r.clean(a.clean_ratio);
        results.push(r);
        if clean {
            last_clean = Some(rate);
        } else {
            first_lossy = Some(rate);
            break;
        }
        if short {
            break;
        }
        rate = ((rate as f64) * a.factor).round() as u64;
    }
    if let (Some(mut lo), Some(mut hi)) = (last_clean, first_lossy) {
        for _ in 0..a.bisect {
            let mid = (lo + hi) / 2;
            if mid <= lo || mid >= hi {
                break;
            }
            let r = measure(&mut f, &a, mid, "bisect");
            if r.clean(a.clean_ratio) {
                lo = mid;
            } else {
                hi = mid;
            }
            results.push(r);
        }
        last_clean = Some(lo);
    }
    let max = measure(&mut f, &a, 0, "max");
    // The saturation point: the step that forwarded the most per second (paced or flat out).
    // Its CPU per message is the cost when saturated; the flat-out step is reported too, as
    // some forwarders get less efficient when overloaded.
    let peak = results
        .iter()
        .chain(std::iter::once(&max))
        .max_by(|x, y| x.fwd_rate().total_cmp(&y.fwd_rate()))
        .expect("the flat-out step at least");
    let saturation = peak.fwd_rate();
    let best_clean = results
        .iter()
        .filter(|r| r.clean(a.clean_ratio))
        .map(|r| r.fwd_rate())
        .fold(0.0, f64::max);
    let pct = |r: &StepResult, ns: u64| ns as f64 / 1e9 / r.window_s * 100.0;
    let all_valid = results.iter().all(|r| r.valid) && max.valid;
    let generator_limited = results.iter().any(|r| r.generator_short())
        || pct(&max, max.own_ns) > 95.0 && pct(&max, max.cpu_ns) < 90.0;
    eprintln!(
        "{:>9} saturation {:.0}/s forwarded at {:.2} us/msg (offered {}; best clean step {:.0}/s, \
         max clean offered {}; flat out {:.2} us/msg){}",
        a.label,
        saturation,
        peak.cpu_us_per_msg(),
        if peak.offered == 0 {
            "flat out".to_string()
        } else {
            format!("{}/s", peak.offered)
        },
        best_clean,
        last_clean.unwrap_or(0),
        max.cpu_us_per_msg(),
        if generator_limited {
            " [flooder-limited: the forwarder had CPU to spare]"
        } else {
            ""
        }
    );
    println!(
        "{{\"kind\":\"summary\",\"label\":\"{}\",\"saturation_msgs_per_s\":{saturation:.0},\
         \"saturation_offered\":{},\"best_clean_fwd_rate\":{best_clean:.0},\"max_clean_offered\":{},\
         \"cpu_us_per_msg_saturated\":{:.3},\"sut_cpu_pct_saturated\":{:.1},\
         \"flood_cpu_pct_saturated\":{:.1},\"cpu_us_per_msg_flat_out\":{:.3},\
         \"flat_out_fwd_rate\":{:.0},\"flooder_limited\":{generator_limited},\
         \"all_steps_valid\":{all_valid}}}",
        a.label,
        peak.offered,
        last_clean.unwrap_or(0),
        peak.cpu_us_per_msg(),
        pct(peak, peak.cpu_ns),
        pct(peak, peak.own_ns),
        max.cpu_us_per_msg(),
        max.fwd_rate(),
    );
    finish(&f);
    Ok(())
}

fn finish(f: &Flood) {
    eprintln!(
        "udp-flood: {} sent, {} received in all, {} replies, {} send errors",
        f.sent, f.received, f.replies, f.send_errors
    );
    if let Some(r) = &f.first_reply {
        eprintln!("udp-flood: the proxy answered instead of forwarding, e.g. {r:?}");
    }
}

fn register(a: RegisterArgs) -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    set_receive_timeout(&sock, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    let (user, proxy, contact, expires) = (&a.user, a.proxy, a.contact, a.expires);
    let param = match a.transport.as_str() {
        "tcp" => ";transport=tcp",
        "tls" => ";transport=tls",
        _ => "",
    };
    for attempt in 1..=3u32 {
        let req = format!(
            "REGISTER sip:{proxy} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-reg{}{attempt};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{proxy}>;tag=reg{}\r\n\
             To: <sip:{user}@{proxy}>\r\n\
             Call-ID: reg-{}@127.0.0.1\r\n\
             CSeq: {attempt} REGISTER\r\n\
             Contact: <sip:{user}@{contact}{param}>\r\n\
             Expires: {expires}\r\n\
             User-Agent: udp-flood\r\n\
             Content-Length: 0\r\n\r\n",
            std::process::id(),
            std::process::id(),
            std::process::id(),
        );
        sock.send_to(req.as_bytes(), proxy)
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            let reply = String::from_utf8_lossy(&buf[..n]);
            let status = reply.lines().next().unwrap_or("").to_string();
            if status.starts_with("SIP/2.0 1") {
                continue;
            }
            if status.starts_with("SIP/2.0 200") {
                eprintln!("udp-flood: registered {user} -> {contact} at {proxy}: {status}");
                return Ok(());
            }
            return Err(format!("REGISTER refused: {status}"));
        }
    }
    Err(format!("no answer to REGISTER from {proxy}"))
}

/// `idle`: the memory (proportional set size, shared pages split between the processes
/// sharing them, so Kamailio's shared-memory pool counts once) of the proxy's process tree
/// before and with N idle connections open, and how many it still holds at the end.
fn idle(a: IdleArgs) -> Result<(), String> {
    udp_tools::raise_open_files(a.connections as u64 + 1024);
    let pids = process_trees(&a.pids);
    let before = udp_tools::memory_of(&pids);
    let tls = tls_setup(&a.transport, &a.tls)?;
    let (mut conns, err) = stream::open_idle(a.proxy, a.connections, tls.as_ref());
    if let Some(e) = &err {
        eprintln!("udp-flood: stopped after {} connections: {e}", conns.len());
    }
    std::thread::sleep(Duration::from_secs_f64(a.hold));
    let pids = process_trees(&a.pids);
    let after = udp_tools::memory_of(&pids);
    let held = conns
        .iter_mut()
        .map(stream::still_open)
        .filter(|&open| open)
        .count();
    let n = conns.len().max(1) as f64;
    let per = |b: u64, a: u64| a.saturating_sub(b) as f64 / n;
    eprintln!(
        "{:>9} {} idle connections ({} still open): {:.0} bytes each (PSS), {:.0} (RSS)",
        a.label,
        conns.len(),
        held,
        per(before.pss, after.pss),
        per(before.rss, after.rss)
    );
    println!(
        "{{\"kind\":\"idle\",\"label\":\"{}\",\"connections\":{},\"held\":{held},\
         \"pss_before\":{},\"pss_after\":{},\"rss_before\":{},\"rss_after\":{},\
         \"pss_bytes_per_connection\":{:.0},\"rss_bytes_per_connection\":{:.0}}}",
        a.label,
        conns.len(),
        before.pss,
        after.pss,
        before.rss,
        after.rss,
        per(before.pss, after.pss),
        per(before.rss, after.rss),
    );
    drop(conns);
    match err {
        Some(e) => Err(format!("opened only some connections: {e}")),
        None => Ok(()),
    }
}

fn main() {
    let res = match Cli::parse().cmd {
        Cmd::Register(a) => register(a),
        Cmd::Run(a) => run(a),
        Cmd::Idle(a) => idle(a),
    };
    if let Err(e) = res {
        eprintln!("udp-flood: {e}");
        std::process::exit(1);
    }
}

/// The TLS side of `--transport tls` (`None` for the other transports).
fn tls_setup(transport: &str, a: &TlsArgs) -> Result<Option<stream::Tls>, String> {
    if transport != "tls" {
        return Ok(None);
    }
    let ca = a.tls_ca.as_ref().ok_or("--transport tls needs --tls-ca")?;
    let sink = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(udp_tools::tls::server_config(c, k)?),
        _ => None,
    };
    Ok(Some(stream::Tls {
        client: udp_tools::tls::client_config(ca)?,
        name: rustls_pki_types::ServerName::try_from(a.tls_name.clone())
            .map_err(|e| format!("--tls-name: {e}"))?,
        sink,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_counters_are_read_back() {
        let t = invite_template("bench", "127.0.0.1:5060".parse().unwrap(), "UDP");
        let mut s = Stamper::new(&t, 2);
        s.next = 4_294_967_301;
        s.stamp(2, 7);
        assert_eq!(counter_of(&s.bufs[0]), Some(4_294_967_301));
        assert_eq!(counter_of(&s.bufs[1]), Some(4_294_967_302));
        assert_eq!(s.sent_at[4_294_967_302 % SENT_RING], 7);
        let text = String::from_utf8(s.bufs[1].clone()).unwrap();
        assert!(text.contains("branch=z9hG4bK-fl4294967302;"));
        assert!(text.ends_with("a=sendrecv\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn latency_quantiles() {
        // Quantiles are capped at LATENCY_CAP_US.
        assert_eq!(LATENCY_CAP_US, 200_000);
        let mut l = Latency::new();
        assert_eq!(l.quantile(0.5), 0);
        for us in 1..=100 {
            l.record(us);
        }
        l.record(10_000_000);
        assert_eq!(l.quantile(0.5), 51);
        assert_eq!(l.quantile(1.0), 200_000);
    }
}
