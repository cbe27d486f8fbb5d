//! udp-spray: the floor a NAT pinger is compared with. It sends one small datagram over and
//! over at a fixed rate, spread over time the way sipshard's pinger spreads its pings: every
//! `--slot-ms` it sends that slot's share with sendmmsg calls of `--batch` datagrams, and
//! sleeps in between. Nothing is formatted, looked up or received: what it costs is the kernel's
//! send path and the wake-ups, which a pinger cannot avoid. Prints one JSON line (datagrams
//! sent and refused, its own CPU time) and exits after `--seconds`.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use udp_tools::{bind_udp, own_cpu_ns, SendBatch};

/// Fixed-rate sender of small datagrams in timed batches (the NAT ping floor).
#[derive(Parser)]
#[command(name = "udp-spray")]
struct Args {
    /// Address to send from (sipshard's listener address when comparing with its pings).
    #[arg(long)]
    from: SocketAddr,
    /// Where every datagram goes.
    #[arg(long)]
    to: SocketAddr,
    /// Datagrams a second.
    #[arg(long)]
    rate: u64,
    /// Milliseconds between batches (sipshard's pinger: 20).
    #[arg(long, default_value_t = 20)]
    slot_ms: u64,
    /// Datagrams per sendmmsg call at most (sipshard's: 32).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// What each datagram carries: a keep-alive CRLF pair or an OPTIONS of a ping's size.
    #[arg(long, value_enum, default_value_t = Payload::Crlf)]
    payload: Payload,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Payload {
    Crlf,
    Options,
}

/// An OPTIONS of the size sipshard's pings have (its branch, tags and Call-ID are the ping's
/// id in hex; here fixed).
const OPTIONS: &[u8] = b"OPTIONS sip:u123456@10.0.0.2:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.9.0.1:5060;branch=z9hG4bKnp0000000000000000000000000000;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:pinger@10.9.0.1:5060>;tag=0000000000000000\r\n\
To: <sip:u123456@10.0.0.2:5060>\r\nCall-ID: np0000000000000000.1\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

fn main() {
    let args = Args::parse();
    let sock = bind_udp(args.from, None, false).unwrap_or_else(|e| {
        eprintln!("udp-spray: cannot bind {}: {e}", args.from);
        std::process::exit(1);
    });
    let payload: &[u8] = match args.payload {
        Payload::Crlf => b"\r\n\r\n",
        Payload::Options => OPTIONS,
    };
    let fd = sock.as_raw_fd();
    let mut send = SendBatch::new(args.batch, args.to);
    let slot = Duration::from_millis(args.slot_ms.max(1));
    let start = Instant::now();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut slots = 0u32;
    let cpu_before = own_cpu_ns();
    while start.elapsed() < Duration::from_secs(args.seconds) {
        slots += 1;
        // Send what is due by the end of this slot, so the rate holds over the run whatever
        // the sleeps overshoot.
        let due = args.rate * (slot * slots).as_millis() as u64 / 1000;
        let n = due.saturating_sub(sent + failed) as usize;
        let (s, f) = send.send_all(fd, n, |_| payload);
        sent += s;
        failed += f;
        if let Some(rest) = (start + slot * slots).checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    let cpu_ns = own_cpu_ns() - cpu_before;
    println!(
        "{{\"sent\":{sent},\"failed\":{failed},\"seconds\":{:.3},\"cpu_ns\":{cpu_ns},\"payload_bytes\":{}}}",
        start.elapsed().as_secs_f64(),
        payload.len()
    );
}
