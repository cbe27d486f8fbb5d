//! Replication lag driver of `scripts/bench-cluster.sh`: how long after node A answers a
//! REGISTER with 200 OK does node B route calls for that AOR.
//!
//! Open loop: REGISTERs for fresh AORs (`<prefix><i>@<domain>`, one each, Expires 3600) go to A
//! at `--rate` per second for `--duration` seconds, on a fixed schedule whatever A answers. They
//! are sent from the driver's `contact` socket and name that socket as their Contact, so a node
//! that routes the AOR forwards the request to us. For every `--sample-every`-th AOR, as soon as
//! A's 200 OK arrives, the driver sends an OPTIONS for the AOR (`sip:<prefix><i>@<domain>`) to B
//! from its `probe` socket every `--probe-interval-us`, until B forwards one to the contact
//! socket (it then arrives there as a request; it is not answered) instead of answering it (480
//! while B does not know the AOR). The lag of that sample is the arrival time of the first
//! forwarded OPTIONS minus the arrival time of the 200 OK, both read on the driver's clock. Its
//! resolution is the probe interval: a binding B learnt between two probes is seen at the next.
//!
//! Everything is bounded: REGISTERs by `--rate` x `--duration` (no retransmissions: one that
//! has no answer after `--register-timeout-ms` counts as unanswered), each sample's probing by
//! `--give-up-ms` (counted as not routed), the whole run by the two. Single-threaded, two UDP
//! sockets, waiting in ppoll between events (timer slack 1 ns), pinned by the script.
//!
//! Prints one JSON object (and writes it to `--json` when given); latencies in ms from
//! HdrHistogram (µs resolution, 3 significant digits).
//!
//! Build: `cargo build --release --example cluster-lag-driver`.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

struct Args {
    a: SocketAddr,
    b: SocketAddr,
    domain: String,
    prefix: String,
    rate: f64,
    duration: f64,
    sample_every: u64,
    probe_interval: Duration,
    give_up: Duration,
    register_timeout: Duration,
    json: Option<String>,
}

fn die(msg: &str) -> ! {
    eprintln!("cluster-lag-driver: {msg}");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        a: "127.0.0.1:5060".parse().unwrap(),
        b: "127.0.0.1:5061".parse().unwrap(),
        domain: "bench.example.com".into(),
        prefix: "lag".into(),
        rate: 10_000.0,
        duration: 10.0,
        sample_every: 20,
        probe_interval: Duration::from_micros(1000),
        give_up: Duration::from_millis(2000),
        register_timeout: Duration::from_millis(2000),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        let bad = |what: &str| -> ! { die(&format!("bad {what}")) };
        match flag.as_str() {
            "--a" => a.a = value().parse().unwrap_or_else(|_| bad("--a")),
            "--b" => a.b = value().parse().unwrap_or_else(|_| bad("--b")),
            "--domain" => a.domain = value(),
            "--prefix" => a.prefix = value(),
            "--rate" => a.rate = value().parse().unwrap_or_else(|_| bad("--rate")),
            "--duration" => a.duration = value().parse().unwrap_or_else(|_| bad("--duration")),
            "--sample-every" => {
                a.sample_every = value().parse().unwrap_or_else(|_| bad("--sample-every"))
            }
            "--probe-interval-us" => {
                a.probe_interval = Duration::from_micros(
                    value()
                        .parse()
                        .unwrap_or_else(|_| bad("--probe-interval-us")),
                )
            }
            "--give-up-ms" => {
                a.give_up =
                    Duration::from_millis(value().parse().unwrap_or_else(|_| bad("--give-up-ms")))
            }
            "--register-timeout-ms" => {
                a.register_timeout = Duration::from_millis(
                    value()
                        .parse()
                        .unwrap_or_else(|_| bad("--register-timeout-ms")),
                )
            }
            "--json" => a.json = Some(value()),
            "-h" | "--help" => {
                eprintln!(
                    "cluster-lag-driver --a ADDR --b ADDR [--domain D] [--prefix P] [--rate R] \
                     [--duration S] [--sample-every N] [--probe-interval-us U] [--give-up-ms M] \
                     [--register-timeout-ms M] [--json FILE]"
                );
                std::process::exit(0);
            }
            _ => die(&format!("unknown flag {flag}")),
        }
    }
    if !(a.rate > 0.0 && a.duration > 0.0) {
        die("--rate and --duration must be positive");
    }
    a.sample_every = a.sample_every.max(1);
    a
}

/// A sampled AOR whose route through B is being probed.
struct Sample {
    index: u64,
    /// When A's 200 OK arrived.
    ok_at: Instant,
    /// When the next OPTIONS is due.
    next_probe: Instant,
    probes: u32,
}

/// Status code (responses) or None (requests), and the Call-ID.
fn parse(msg: &[u8]) -> (Option<u16>, Option<&str>) {
    let Ok(text) = std::str::from_utf8(msg) else {
        return (None, None);
    };
    let status = text
        .strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok());
    let mut call_id = None;
    for line in text.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("Call-ID") || name == "i" {
                call_id = Some(value.trim());
                break;
            }
        }
    }
    (status, call_id)
}

/// The AOR index in a Call-ID `<tag><index>.<rest>` (`lr` REGISTERs, `lp` probes).
fn index_of(call_id: &str, tag: &str) -> Option<u64> {
    let rest = call_id.strip_prefix(tag)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn hist() -> Histogram<u64> {
    // µs, up to 10 minutes.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()
}

fn ms(h: &Histogram<u64>, q: f64) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    json!(h.value_at_quantile(q) as f64 / 1000.0)
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "count": h.len(),
        "p50": ms(h, 0.50),
        "p90": ms(h, 0.90),
        "p99": ms(h, 0.99),
        "p999": ms(h, 0.999),
        "max": if h.is_empty() { serde_json::Value::Null } else { json!(h.max() as f64 / 1000.0) },
        "mean": if h.is_empty() { serde_json::Value::Null } else { json!((h.mean() / 10.0).round() / 100.0) },
    })
}

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(8 << 20);
    let _ = socket2::SockRef::from(&s).set_send_buffer_size(8 << 20);
    s.set_nonblocking(true).unwrap();
    s
}

/// Wait until one of the sockets is readable or `timeout` passed.
fn wait(fds: [i32; 2], timeout: Duration) {
    let mut pfd = [
        libc::pollfd {
            fd: fds[0],
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: fds[1],
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: pfd and ts are live for the call; a null sigmask leaves the mask alone.
    unsafe { libc::ppoll(pfd.as_mut_ptr(), 2, &ts, std::ptr::null()) };
}

fn send(sock: &UdpSocket, msg: &[u8], to: SocketAddr, failed: &mut u64) {
    loop {
        match sock.send_to(msg, to) {
            Ok(_) => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A full send buffer: count it, the schedule goes on (open loop).
            Err(_) => {
                *failed += 1;
                return;
            }
        }
    }
}

fn main() {
    let args = parse_args();
    // Precise wake-ups from ppoll (the default slack is 50 µs).
    // SAFETY: prctl with PR_SET_TIMERSLACK takes one integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };

    let contact = bind();
    let probe = bind();
    let c_addr = contact.local_addr().unwrap();
    let p_addr = probe.local_addr().unwrap();
    let fds = [contact.as_raw_fd(), probe.as_raw_fd()];
    let (domain, prefix) = (&args.domain, &args.prefix);

    let total = (args.rate * args.duration).round() as u64;
    let step_ns = 1e9 / args.rate;
    let sched = |i: u64| Duration::from_nanos((i as f64 * step_ns) as u64);

    // Per AOR: when its REGISTER was sent (None: answered, or never sent).
    let mut sent_at: Vec<Option<Instant>> = vec![None; total as usize];
    let mut pending: VecDeque<Sample> = VecDeque::new();
    let mut register_ms = hist();
    let mut send_late = hist();
    let mut lag = hist();
    let mut probes_per_sample = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
    let (mut reg_ok, mut reg_failed, mut send_errors) = (0u64, 0u64, 0u64);
    let (mut probes_sent, mut forwarded_late, mut unexpected) = (0u64, 0u64, 0u64);
    let mut samples = 0u64;
    let mut given_up = 0u64;
    let mut probe_answers: BTreeMap<u16, u64> = BTreeMap::new();
    let mut reg_statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    let mut msg = Vec::with_capacity(1024);
    let mut next = 0u64;
    let mut last_send = None;

    let start = Instant::now();
    let deadline = start + sched(total) + args.register_timeout.max(args.give_up) + args.give_up;
    loop {
        let now = Instant::now();
        // REGISTERs that are due (all of them if the driver fell behind: open loop).
        while next < total && start + sched(next) <= now {
            msg.clear();
            let i = next;
            use std::io::Write as _;
            write!(
                msg,
                "REGISTER sip:{domain} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {c_addr};branch=z9hG4bKlr{i};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{prefix}{i}@{domain}>;tag=lr{i}\r\n\
                 To: <sip:{prefix}{i}@{domain}>\r\n\
                 Call-ID: lr{i}.{prefix}@cluster-lag-driver\r\n\
                 CSeq: 1 REGISTER\r\n\
                 Contact: <sip:{prefix}{i}@{c_addr}>\r\n\
                 Expires: 3600\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .unwrap();
            let t = Instant::now();
            send(&contact, &msg, args.a, &mut send_errors);
            let late = t.saturating_duration_since(start + sched(i));
            send_late.saturating_record(late.as_micros() as u64 + 1);
            sent_at[i as usize] = Some(t);
            last_send = Some(t);
            next += 1;
        }
        // Probes that are due; samples past --give-up-ms are abandoned.
        let now = Instant::now();
        let mut k = 0;
        while k < pending.len() {
            let s = &mut pending[k];
            if now.duration_since(s.ok_at) > args.give_up {
                given_up += 1;
                pending.remove(k);
                continue;
            }
            if s.next_probe <= now {
                let (i, n) = (s.index, s.probes);
                msg.clear();
                use std::io::Write as _;
                write!(
                    msg,
                    "OPTIONS sip:{prefix}{i}@{domain} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {p_addr};branch=z9hG4bKlp{i}x{n};rport\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:lagprobe@{domain}>;tag=lp{i}\r\n\
                     To: <sip:{prefix}{i}@{domain}>\r\n\
                     Call-ID: lp{i}.{n}.{prefix}@cluster-lag-driver\r\n\
                     CSeq: 1 OPTIONS\r\n\
                     Content-Length: 0\r\n\r\n"
                )
                .unwrap();
                send(&probe, &msg, args.b, &mut send_errors);
                probes_sent += 1;
                s.probes += 1;
                // Every interval after the first probe, not drifting with the loop's delays.
                s.next_probe += args.probe_interval;
                if s.next_probe < now {
                    s.next_probe = now + args.probe_interval;
                }
            }
            k += 1;
        }
        // Everything that arrived: 200 OKs from A and forwarded OPTIONS from B on the contact
        // socket, B's answers to probes on the probe socket.
        loop {
            let n = match contact.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let at = Instant::now();
            match parse(&buf[..n]) {
                (Some(code), Some(cid)) if code >= 200 => {
                    let Some(i) = index_of(cid, "lr").filter(|&i| i < total) else {
                        unexpected += 1;
                        continue;
                    };
                    let Some(t) = sent_at[i as usize].take() else {
                        continue; // a retransmitted answer
                    };
                    *reg_statuses.entry(code).or_default() += 1;
                    if !(200..300).contains(&code) {
                        reg_failed += 1;
                        continue;
                    }
                    reg_ok += 1;
                    register_ms.saturating_record(at.duration_since(t).as_micros() as u64 + 1);
                    if i % args.sample_every == 0 {
                        samples += 1;
                        pending.push_back(Sample {
                            index: i,
                            ok_at: at,
                            next_probe: at,
                            probes: 0,
                        });
                    }
                }
                (Some(_), _) => {} // provisional
                (None, Some(cid)) => match index_of(cid, "lp") {
                    Some(i) => {
                        if let Some(k) = pending.iter().position(|s| s.index == i) {
                            let s = pending.remove(k).unwrap();
                            lag.saturating_record(
                                at.duration_since(s.ok_at).as_micros() as u64 + 1,
                            );
                            probes_per_sample.saturating_record(s.probes.max(1) as u64);
                        } else {
                            forwarded_late += 1; // a later probe of a sample already routed
                        }
                    }
                    None => unexpected += 1,
                },
                (None, None) => unexpected += 1,
            }
        }
        loop {
            let n = match probe.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            match parse(&buf[..n]) {
                (Some(code), _) => *probe_answers.entry(code).or_default() += 1,
                _ => unexpected += 1,
            }
        }
        // Done when every REGISTER was sent and answered (or timed out) and no sample is left.
        let now = Instant::now();
        let registers_settled = next == total
            && (reg_ok + reg_failed == total
                || last_send
                    .is_some_and(|t: Instant| now.duration_since(t) > args.register_timeout));
        if (registers_settled && pending.is_empty()) || now > deadline {
            break;
        }
        // Sleep until the next REGISTER or probe is due, or something arrives.
        let mut due = if next < total {
            start + sched(next)
        } else {
            now + Duration::from_millis(5)
        };
        for s in &pending {
            due = due.min(s.next_probe);
        }
        if due > now {
            wait(fds, (due - now).min(Duration::from_millis(5)));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let unanswered = sent_at.iter().filter(|t| t.is_some()).count() as u64;
    let routed = lag.len();
    let out = json!({
        "a": args.a.to_string(),
        "b": args.b.to_string(),
        "target_rate": args.rate,
        "duration_s": args.duration,
        // REGISTERs sent per second over the schedule's span.
        "achieved_rate": match last_send {
            Some(t) if next > 1 => json!(((next - 1) as f64 / t.duration_since(start).as_secs_f64()).round()),
            _ => serde_json::Value::Null,
        },
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "registers_sent": next,
        "registers_ok": reg_ok,
        "registers_failed": reg_failed,
        "registers_unanswered": unanswered,
        "register_statuses": reg_statuses,
        "register_to_200_ms": summary(&register_ms),
        "send_lateness_ms": summary(&send_late),
        "generator_kept_schedule": !send_late.is_empty() && send_late.value_at_quantile(0.99) < 5_000,
        "send_errors": send_errors,
        "sample_every": args.sample_every,
        "probe_interval_us": args.probe_interval.as_micros() as u64,
        "give_up_ms": args.give_up.as_millis() as u64,
        "samples": samples,
        "samples_routed": routed,
        "samples_not_routed": given_up + pending.len() as u64,
        "lag_ms": summary(&lag),
        "probes_sent": probes_sent,
        "probes_per_sample": {
            "p50": if probes_per_sample.is_empty() { 0 } else { probes_per_sample.value_at_quantile(0.5) },
            "p99": if probes_per_sample.is_empty() { 0 } else { probes_per_sample.value_at_quantile(0.99) },
            "max": probes_per_sample.max(),
        },
        "probe_answers": probe_answers,
        "forwarded_after_routed": forwarded_late,
        "unexpected_messages": unexpected,
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{text}\n")).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
    println!("{text}");
}
