//! Overload (issue 7): a one-shard sipshard flooded for ten seconds with far more INVITEs than
//! it can handle keeps answering OPTIONS keepalives and keeps its location table, sheds the
//! excess (counted), and then carries normal call load with zero failed calls.
//!
//! A flooder on one core cannot offer ten times what a shard on the other core handles, so
//! during the flood the proxy gets a tenth of its CPU: the test stops it for 9 ms of every
//! 10 ms (SIGSTOP/SIGCONT, what CPU bandwidth control does). The proxy is pinned to CPU 0 and
//! the flood to CPU 1. The test measures the overload factor (INVITEs offered / INVITEs
//! forwarded) and fails below 10x: a passing run shows shedding at work, never an idle proxy.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipshard_testkit::loadgen::{run_json, show, u};
use sipshard_testkit::scrape::{scrape, value as metric};
use sipshard_testkit::{free_ports, Proxy};

const FLOOD: Duration = Duration::from_secs(10);
/// The proxy's CPU during the flood: runs `RUN` out of every `RUN + STOPPED`.
const RUN: Duration = Duration::from_millis(1);
const STOPPED: Duration = Duration::from_millis(9);
/// INVITEs per second offered during the flood: some ten times what the throttled proxy
/// forwards, and no more, so that the proxy's queue is bounded by its shedding rather than
/// overflowing (the kernel then drops keepalives too, before the proxy can see them).
const FLOOD_RATE: f64 = 200_000.0;
/// Distinct prepared INVITEs the flooder cycles through (one sendmmsg batch).
const FLOOD_BATCH: usize = 64;

fn request(sock: &UdpSocket, to: SocketAddr, msg: &str, expect: &str, limit: Duration) -> bool {
    let wire = msg.replace('\n', "\r\n");
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    // Retransmit every 100 ms like a keepalive client that wants an answer within `limit`.
    while Instant::now() < deadline {
        sock.send_to(wire.as_bytes(), to).unwrap();
        let resend = Instant::now() + Duration::from_millis(100);
        while Instant::now() < resend.min(deadline) {
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            if let Ok(n) = sock.recv(&mut buf) {
                if buf[..n].starts_with(expect.as_bytes()) {
                    return true;
                }
            }
        }
    }
    false
}

fn register(ua: &UdpSocket, proxy: SocketAddr, user: &str, contact: SocketAddr) {
    let me = ua.local_addr().unwrap();
    let msg = format!(
        "REGISTER sip:{proxy} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{user}\nMax-Forwards: 70\nFrom: <sip:{user}@{proxy}>;tag=r{user}\nTo: <sip:{user}@{proxy}>\nCall-ID: reg-{user}@{me}\nCSeq: 1 REGISTER\nContact: <sip:{user}@{contact}>\nExpires: 600\nContent-Length: 0\n\n"
    );
    assert!(
        request(ua, proxy, &msg, "SIP/2.0 200", Duration::from_secs(3)),
        "REGISTER {user} not answered"
    );
}

/// INVITEs to `user` with distinct Call-IDs and branches, as a flood of call attempts.
fn flood_messages(proxy: SocketAddr, from: SocketAddr, user: &str) -> Vec<Vec<u8>> {
    (0..FLOOD_BATCH)
        .map(|i| {
            let sdp = "v=0\r\no=flood 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
            format!(
                "INVITE sip:{user}@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKfl{i}\r\nMax-Forwards: 70\r\nFrom: <sip:flood@example.org>;tag=f{i}\r\nTo: <sip:{user}@{proxy}>\r\nCall-ID: flood-{i}@example.org\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
            .into_bytes()
        })
        .collect()
}

/// Send the prepared messages, round-robin over `socks` (connected to the proxy), with
/// sendmmsg at `FLOOD_RATE` until `stop`; returns how many were sent.
fn flood(socks: &[UdpSocket], msgs: &[Vec<u8>], stop: &AtomicBool) -> u64 {
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        })
        .collect();
    // SAFETY: all-zero mmsghdr is valid; each is pointed at one iovec below.
    let mut hdrs: Vec<libc::mmsghdr> = (0..msgs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0u64;
    let start = Instant::now();
    for sock in socks.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = start + Duration::from_secs_f64(sent as f64 / FLOOD_RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // SAFETY: the headers point at iovecs and buffers that live across the call; the
        // socket is connected, so no address is needed.
        let n =
            unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
        sent += n.max(0) as u64;
    }
    sent
}

#[test]
fn ten_seconds_of_overload_then_normal_load_with_zero_failed_calls() {
    let base = free_ports(2);
    let proxy: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", base + 1).parse().unwrap();
    #[rustfmt::skip]
    let sipshard = Proxy::builder().port(base).args(&[
        "--shards", "1", "--cpus", "0",
        "--metrics", &metrics.to_string(),
        // A queue that holds more than the shedding limit's worth, so that shedding by age,
        // not the kernel's tail drop, is what bounds it.
        "--rcvbuf", "4194304", "--max-queue-delay-ms", "10",
    ]).start();

    // A sink that never reads (the flood's destination) and a phone that does.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bob = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    register(&ua, proxy, "sink", sink.local_addr().unwrap());
    register(&ua, proxy, "bob", bob.local_addr().unwrap());

    // The flood, pinned to CPU 1, from several source ports.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
            let socks: Vec<UdpSocket> = (0..4)
                .map(|_| {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.connect(proxy).unwrap();
                    s
                })
                .collect();
            let msgs = flood_messages(proxy, socks[0].local_addr().unwrap(), "sink");
            sent.store(flood(&socks, &msgs, &stop), Ordering::Relaxed);
        })
    };

    let throttle = {
        let (stop, pid) = (Arc::clone(&stop), sipshard.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: plain kill(2) on the child we started.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                std::thread::sleep(STOPPED);
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGCONT) };
                std::thread::sleep(RUN);
            }
        })
    };

    // Keepalives during the flood: each must be answered within a second.
    let prober = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = prober.local_addr().unwrap();
    let (mut probes, mut answered) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < FLOOD {
        probes += 1;
        let msg = format!(
            "OPTIONS sip:{proxy} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKka{probes}\nMax-Forwards: 70\nFrom: <sip:monitor@{me}>;tag=m\nTo: <sip:{proxy}>\nCall-ID: keepalive-{probes}@{me}\nCSeq: {probes} OPTIONS\nContent-Length: 0\n\n"
        );
        if request(&prober, proxy, &msg, "SIP/2.0 200", Duration::from_secs(1)) {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    throttle.join().unwrap();
    let offered = sent.load(Ordering::Relaxed);

    std::thread::sleep(Duration::from_millis(500));
    let during = scrape(metrics);
    let shed = metric(
        &during,
        "sipshard_drops_total{shard=\"total\",reason=\"overload\"}",
    );
    let queue_full = metric(
        &during,
        "sipshard_drops_total{shard=\"total\",reason=\"queue_full\"}",
    );
    let forwarded = metric(
        &during,
        "sipshard_requests_forwarded_total{shard=\"total\",method=\"INVITE\"}",
    );
    let factor = offered as f64 / forwarded.max(1) as f64;
    eprintln!(
        "flood: {offered} INVITEs offered in {FLOOD:?}, {forwarded} forwarded, {shed} shed, \
         {queue_full} dropped by the kernel: offered {factor:.1}x what one shard handled; \
         keepalives answered {answered}/{probes}"
    );
    assert!(
        shed > 0,
        "nothing shed: the flood did not overload the shard"
    );
    assert!(
        factor >= 10.0,
        "offered only {factor:.1}x what the shard handled: not an overload"
    );
    assert!(
        answered * 10 >= probes * 9,
        "keepalives answered {answered}/{probes} during the overload"
    );
    // The table is intact: both bindings, and bob still reached.
    assert_eq!(metric(&during, "sipshard_bindings{shard=\"total\"}"), 2);
    let mut buf = [0u8; 4096];
    bob.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let message = format!(
        "MESSAGE sip:bob@{proxy} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKafter\nMax-Forwards: 70\nFrom: <sip:monitor@{me}>;tag=m\nTo: <sip:bob@{proxy}>\nCall-ID: after-flood@{me}\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n"
    )
    .replace('\n', "\r\n");
    let mut reached = false;
    for _ in 0..5 {
        prober.send_to(message.as_bytes(), proxy).unwrap();
        if let Ok(n) = bob.recv(&mut buf) {
            reached = buf[..n].starts_with(b"MESSAGE ");
            break;
        }
    }
    assert!(reached, "bob's binding did not survive the overload");

    // Normal load after recovery: every call succeeds.
    #[rustfmt::skip]
    let (out, r) = run_json("overload-after", &[
        "call", "--target", &proxy.to_string(), "--users", "50", "--rate", "300",
        "--duration", "4", "--hold", "50", "--cpus", "1",
    ], Duration::from_secs(90));
    drop(sipshard);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(u(&r, "attempted"), 1200, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 1200, "{r:#}");
}
