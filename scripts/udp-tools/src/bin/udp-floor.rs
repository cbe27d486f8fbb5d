//! udp-floor: the cheapest UDP forwarder there is, as the floor a SIP proxy is compared with.
//! It receives batches with recvmmsg and sends every datagram unchanged to one fixed address
//! with sendmmsg: no parsing, no lookup, no rewrite. Without `--to` it only receives and
//! discards (a sink: the HEP collector of bench-forward.sh's sipshard-hep).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use udp_tools::{bind_udp, set_receive_timeout, RecvBatch, SendBatch, Wait, MAX_DATAGRAM};

/// Bare recvmmsg/sendmmsg UDP forwarder (the benchmark's floor).
#[derive(Parser)]
#[command(name = "udp-floor")]
struct Args {
    /// Address to receive on.
    #[arg(long, default_value = "127.0.0.1:5080")]
    listen: SocketAddr,
    /// Where every datagram is sent; without it, every datagram is discarded.
    #[arg(long)]
    to: Option<SocketAddr>,
    /// Datagrams per recvmmsg/sendmmsg call at most.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// SO_RCVBUF in bytes (as the proxies get; the kernel caps it at net.core.rmem_max).
    #[arg(long)]
    rcvbuf: Option<usize>,
    /// Stop by itself after this many seconds (the benchmark stops it sooner with SIGTERM).
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
}

fn main() {
    let args = Args::parse();
    udp_tools::stop_on_signals();
    let sock = bind_udp(args.listen, args.rcvbuf, false).unwrap_or_else(|e| {
        eprintln!("udp-floor: cannot bind {}: {e}", args.listen);
        std::process::exit(1);
    });
    // The receive timeout only serves to notice SIGTERM and the deadline; the signal also
    // interrupts the call.
    set_receive_timeout(&sock, Duration::from_millis(200)).expect("SO_RCVTIMEO");
    let fd = sock.as_raw_fd();
    let mut recv = RecvBatch::new(args.batch, MAX_DATAGRAM);
    let mut send = args.to.map(|to| SendBatch::new(args.batch, to));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let (mut received, mut sent, mut failed) = (0u64, 0u64, 0u64);
    match args.to {
        Some(to) => eprintln!("udp-floor: {} -> {to}", args.listen),
        None => eprintln!("udp-floor: {} -> discarded", args.listen),
    }
    while !udp_tools::stopped() && Instant::now() < deadline {
        let n = match recv.recv(fd, Wait::ForOne) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("udp-floor: receive: {e}");
                continue;
            }
        };
        received += n as u64;
        let Some(send) = send.as_mut() else {
            continue;
        };
        // A datagram the kernel refuses is skipped; the rest of the batch still goes.
        let (s, f) = send.send_all(fd, n, |i| recv.datagram(i));
        sent += s;
        failed += f;
    }
    eprintln!("udp-floor: {received} received, {sent} sent, {failed} failed");
}
