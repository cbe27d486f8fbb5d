//! Loss recovery: calls go through a small UDP relay that drops every third INVITE (the first
//! transmission; its retransmission passes). RFC 3261 Timer A must recover every call.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sipshard_testkit::free_ports;
use sipshard_testkit::loadgen::{run_json, show, u};

/// Relay datagrams between clients and `upstream`, one upstream-facing socket per client so
/// answers find their way back. Drops the first transmission of every `nth` INVITE (by branch).
fn relay(
    upstream: SocketAddr,
    nth: u64,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    front.set_nonblocking(true).unwrap();
    let addr = front.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut backs: HashMap<SocketAddr, UdpSocket> = HashMap::new();
        let mut buf = vec![0u8; 8192];
        let mut invites = 0u64;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            while let Ok((n, from)) = front.recv_from(&mut buf) {
                idle = false;
                if buf[..n].starts_with(b"INVITE ") && seen.insert(branch(&buf[..n])) {
                    invites += 1;
                    if invites % nth == 0 {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                let back = backs.entry(from).or_insert_with(|| {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.set_nonblocking(true).unwrap();
                    s
                });
                let _ = back.send_to(&buf[..n], upstream);
            }
            for (client, back) in &backs {
                while let Ok((n, _)) = back.recv_from(&mut buf) {
                    idle = false;
                    let _ = front.send_to(&buf[..n], client);
                }
            }
            if idle {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    });
    (addr, h)
}

fn branch(msg: &[u8]) -> Vec<u8> {
    let at = msg
        .windows(7)
        .position(|w| w == b"branch=")
        .expect("INVITE without branch");
    msg[at + 7..]
        .iter()
        .take_while(|&&b| b != b';' && b != b'\r' && b != b',')
        .copied()
        .collect()
}

#[test]
fn retransmissions_recover_calls_when_every_third_invite_is_dropped() {
    let base = free_ports(2);
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let (relay_addr, h) = relay(
        format!("127.0.0.1:{base}").parse().unwrap(),
        3,
        stop.clone(),
        dropped.clone(),
    );
    let (target, port) = (relay_addr.to_string(), base.to_string());
    #[rustfmt::skip]
    let (out, r) = run_json("lossy", &[
        "call", "--target", &target, "--local-port", &port, "--ports", "2", "--users", "10",
        "--rate", "50", "--duration", "2", "--hold", "10",
    ], Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let dropped = dropped.load(Ordering::Relaxed);
    assert!(dropped >= 33, "relay dropped only {dropped}");
    assert_eq!(u(&r, "attempted"), 100, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 100, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
    // Each dropped INVITE costs one retransmission, T1 later.
    assert!(
        u(&r, "retransmissions_by_kind.invite") >= dropped,
        "{r:#} dropped {dropped}"
    );
    // The generator knows the loss was not its own doing.
    assert_eq!(u(&r, "generator_socket_drops"), 0, "{r:#}");
    assert_eq!(r["loss_beyond_generator"], true, "{r:#}");
    // ...which shows in the latency: some calls took at least T1.
    assert!(
        r["latency_ms"]["invite_to_200"]["max"].as_f64().unwrap() >= 500.0,
        "{r:#}"
    );
}
