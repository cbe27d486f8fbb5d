//! udp-floor-uring: the floor of bench-forward.sh on io_uring instead of recvmmsg/sendmmsg
//! (issue 20's first step: the limit a UDP datapath on io_uring aims for). No parsing, no
//! lookup, no rewrite, as udp-floor:
//!
//! - one multishot `RECVMSG` (`IORING_RECV_MULTISHOT`) receives every datagram into a buffer
//!   the kernel takes from a ring of provided buffers: no system call to receive;
//! - each datagram is sent as a `SENDMSG` from the buffer it arrived in, and that buffer goes
//!   back to the ring when the send completes;
//! - the sends queued in a turn are submitted together with the wait for the next
//!   completions: one `io_uring_enter` per turn (`--sqpoll`: none while the kernel's
//!   submission thread is awake, at the price of that thread's CPU);
//! - or (`--send sendmmsg`) a turn's datagrams leave with one sendmmsg, and the receive's
//!   completions run as cooperative task work at that call's return: no wait while busy, one
//!   system call per turn, none to receive.
//!
//! Without `--to` it only receives and discards.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use udp_tools::uring_bufs::{BufRing, SockAddr};
use udp_tools::{bind_udp, MAX_DATAGRAM};

/// Bare io_uring UDP forwarder (the benchmark's io_uring floor).
#[derive(Parser)]
#[command(name = "udp-floor-uring")]
struct Args {
    /// Address to receive on.
    #[arg(long, default_value = "127.0.0.1:5080")]
    listen: SocketAddr,
    /// Where every datagram is sent; without it, every datagram is discarded.
    #[arg(long)]
    to: Option<SocketAddr>,
    /// Provided receive buffers (a power of two, at most 32,768): datagrams in flight at most.
    /// Few is faster: with 4,096 buffers of 64 KiB every datagram lands in memory of its own
    /// (saturation 183,000-217,000/s here against 216,000-249,000/s with 128).
    #[arg(long, default_value_t = 256)]
    buffers: u16,
    /// SO_RCVBUF in bytes (as the proxies get; the kernel caps it at net.core.rmem_max).
    #[arg(long)]
    rcvbuf: Option<usize>,
    /// Let a kernel thread poll the submission queue (IORING_SETUP_SQPOLL), idling after
    /// this many milliseconds without work; its CPU is not this process's.
    #[arg(long, value_name = "MS")]
    sqpoll: Option<u32>,
    /// Stop by itself after this many seconds (the benchmark stops it sooner with SIGTERM).
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
    /// How forwarded datagrams leave: `sendmsg` (an io_uring SENDMSG each, submitted with the
    /// next wait) or `sendmmsg` (one sendmmsg system call per turn; the receive's completions
    /// are then run as task work at that call's return, so a busy turn needs no wait).
    #[arg(long, value_enum, default_value_t = SendMode::Sendmsg)]
    send: SendMode,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SendMode {
    Sendmsg,
    Sendmmsg,
}

/// The buffer group of the receive buffers.
const GROUP: u16 = 1;
/// `user_data` of the multishot receive and of its cancellation; a send's is its buffer id.
const RECV: u64 = u64::MAX;
const CANCEL: u64 = u64::MAX - 1;
/// How long one wait may last, so that SIGTERM and the deadline are noticed.
const WAIT: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Counts {
    received: u64,
    sent: u64,
    failed: u64,
    truncated: u64,
    rearmed: u64,
    /// Sends submitted and not completed.
    in_flight: u64,
    /// The multishot receive has ended (after its cancellation).
    receive_ended: bool,
}

fn main() {
    let args = Args::parse();
    udp_tools::stop_on_signals();
    let sock = bind_udp(args.listen, args.rcvbuf, false).unwrap_or_else(|e| {
        fail(&format!("cannot bind {}: {e}", args.listen));
    });
    let mut ring = build_ring(&args).unwrap_or_else(|e| fail(&format!("io_uring: {e}")));
    let mut bufs = BufRing::new(args.buffers, MAX_DATAGRAM, args.listen.is_ipv6())
        .unwrap_or_else(|e| fail(&format!("buffer ring: {e}")));
    // SAFETY: `bufs` lives until the end of main, and the group is unregistered before.
    unsafe { bufs.register(&ring.submitter(), GROUP) }
        .unwrap_or_else(|e| fail(&format!("register the buffer ring: {e}")));
    let to = args.to.map(SockAddr::from);
    match args.to {
        Some(to) => eprintln!("udp-floor-uring: {} -> {to}", args.listen),
        None => eprintln!("udp-floor-uring: {} -> discarded", args.listen),
    }
    let mut counts = match (args.send, args.to) {
        (SendMode::Sendmmsg, Some(to)) => {
            forward_mmsg(&mut ring, &mut bufs, sock.as_raw_fd(), to, &args)
        }
        _ => forward(&mut ring, &mut bufs, sock.as_raw_fd(), to.as_ref(), &args),
    };
    finish(&mut ring, &mut bufs, sock.as_raw_fd(), &mut counts);
    let _ = ring.submitter().unregister_buf_ring(GROUP);
    eprintln!(
        "udp-floor-uring: {} received, {} sent, {} failed, {} truncated, receive re-armed {} times",
        counts.received, counts.sent, counts.failed, counts.truncated, counts.rearmed
    );
}

fn fail(what: &str) -> ! {
    eprintln!("udp-floor-uring: {what}");
    std::process::exit(1);
}

fn build_ring(args: &Args) -> std::io::Result<IoUring> {
    // Room for a send per buffer and the receive.
    let entries = u32::from(args.buffers).next_power_of_two().max(64) * 2;
    let mut builder = IoUring::builder();
    builder.setup_cqsize(entries * 2);
    match args.sqpoll {
        Some(idle_ms) => builder.setup_sqpoll(idle_ms),
        // Deferred task work runs only inside io_uring_enter on this ring, which the sendmmsg
        // mode does not call while busy; cooperative task work runs at any return from the
        // kernel (the sendmmsg call), without an interrupt.
        None if args.send == SendMode::Sendmmsg => {
            builder.setup_single_issuer().setup_coop_taskrun()
        }
        None => builder.setup_single_issuer().setup_defer_taskrun(),
    };
    builder.build(entries)
}

/// The loop: until SIGTERM or `--max-seconds`.
fn forward(
    ring: &mut IoUring,
    bufs: &mut BufRing,
    fd: i32,
    to: Option<&SockAddr>,
    args: &Args,
) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut counts = Counts::default();
    let mut pending: Vec<squeue::Entry> = vec![receive(bufs, fd)];
    let wait = types::Timespec::from(WAIT);
    while !udp_tools::stopped() && Instant::now() < deadline {
        // Sends to a socket complete within the submission: waiting for one completion more
        // than the sends makes the call return on the next datagram, not on those sends (one
        // io_uring_enter per datagram at low rates instead of two).
        let want = 1 + pending
            .iter()
            .filter(|e| e.get_user_data() < CANCEL)
            .count();
        submit_pending(ring, &mut pending);
        submit_and_wait(ring, want, &wait);
        for cqe in ring.completion() {
            complete(&cqe, bufs, fd, to, &mut pending, &mut counts);
        }
        bufs.publish();
    }
    counts
}

/// The loop with sends by sendmmsg: a turn takes up to a batch of completed receives, sends
/// them with one sendmmsg from their buffers and gives the buffers back; it waits in
/// io_uring_enter only when no receive completed meanwhile.
fn forward_mmsg(
    ring: &mut IoUring,
    bufs: &mut BufRing,
    fd: i32,
    to: SocketAddr,
    args: &Args,
) -> Counts {
    const BATCH: usize = 64;
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut counts = Counts::default();
    let mut headers = mmsg::SendHeaders::new(BATCH);
    let mut out: Vec<(u16, usize, usize)> = Vec::with_capacity(BATCH);
    let mut pending: Vec<squeue::Entry> = vec![receive(bufs, fd)];
    let wait = types::Timespec::from(WAIT);
    while !udp_tools::stopped() && Instant::now() < deadline {
        if ring.completion().is_empty() || !pending.is_empty() {
            submit_pending(ring, &mut pending);
            submit_and_wait(ring, 1, &wait);
        }
        for cqe in ring.completion().take(BATCH) {
            if !cqueue::more(cqe.flags()) && !udp_tools::stopped() {
                counts.rearmed += 1;
                pending.push(receive(bufs, fd));
            }
            let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
                continue;
            };
            counts.received += 1;
            match bufs.payload(bid, cqe.result()) {
                Some((offset, len, truncated)) => {
                    counts.truncated += u64::from(truncated);
                    out.push((bid, offset, len));
                }
                None => bufs.give_back(bid),
            }
        }
        let (sent, failed) =
            headers.send_all(fd, out.len(), |i| (bufs.slice(out[i].1, out[i].2), to));
        counts.sent += sent;
        counts.failed += failed;
        for (bid, _, _) in out.drain(..) {
            bufs.give_back(bid);
        }
        bufs.publish();
    }
    counts
}

/// Cancel the receive and wait (at most a second) for it and the sends in flight to end: an
/// operation in flight holds the socket, and a ring torn down at exit releases it only later,
/// in the kernel's own time, while the next forwarder of the benchmark wants the port.
fn finish(ring: &mut IoUring, bufs: &mut BufRing, fd: i32, counts: &mut Counts) {
    let mut pending = vec![opcode::AsyncCancel::new(RECV).build().user_data(CANCEL)];
    let deadline = Instant::now() + Duration::from_secs(1);
    let wait = types::Timespec::from(Duration::from_millis(50));
    while !(counts.receive_ended && counts.in_flight == 0) && Instant::now() < deadline {
        submit_pending(ring, &mut pending);
        let _ = ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&wait));
        for cqe in ring.completion() {
            // Datagrams that still arrive are not forwarded.
            complete(&cqe, bufs, fd, None, &mut Vec::new(), counts);
        }
        bufs.publish();
    }
}

/// Submit what is queued and wait for `want` completions, at most `wait`.
fn submit_and_wait(ring: &mut IoUring, want: usize, wait: &types::Timespec) {
    match ring
        .submitter()
        .submit_with_args(want, &types::SubmitArgs::new().timespec(wait))
    {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
        Err(e) => fail(&format!("io_uring_enter: {e}")),
    }
}

/// Move what this turn queued into the submission queue (it goes with the next wait).
fn submit_pending(ring: &mut IoUring, pending: &mut Vec<squeue::Entry>) {
    for entry in pending.drain(..) {
        // SAFETY: every entry points into `BufRing` memory (buffers, message headers, the
        // destination), which lives until the ring is gone and is not reused before the
        // operation completes (a buffer returns to the kernel only on its send's completion).
        while unsafe { ring.submission().push(&entry) }.is_err() {
            ring.submit()
                .unwrap_or_else(|e| fail(&format!("submit: {e}")));
        }
    }
}

/// The multishot receive (armed again whenever the kernel ends it, e.g. when it ran out of
/// buffers).
fn receive(bufs: &BufRing, fd: i32) -> squeue::Entry {
    opcode::RecvMsgMulti::new(types::Fd(fd), bufs.recv_header(), GROUP)
        .build()
        .user_data(RECV)
}

fn complete(
    cqe: &cqueue::Entry,
    bufs: &mut BufRing,
    fd: i32,
    to: Option<&SockAddr>,
    pending: &mut Vec<squeue::Entry>,
    counts: &mut Counts,
) {
    if cqe.user_data() == CANCEL {
        return;
    }
    if cqe.user_data() != RECV {
        // A send finished: its buffer is the kernel's again.
        counts.in_flight -= 1;
        if cqe.result() < 0 {
            counts.failed += 1;
        } else {
            counts.sent += 1;
        }
        bufs.give_back(cqe.user_data() as u16);
        return;
    }
    if !cqueue::more(cqe.flags()) {
        if cqe.result() == -libc::ECANCELED || udp_tools::stopped() {
            counts.receive_ended = true;
        } else {
            counts.rearmed += 1;
            pending.push(receive(bufs, fd));
        }
    }
    let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
        return; // an error without a datagram (ENOBUFS: every buffer was in flight)
    };
    counts.received += 1;
    let Some((offset, len, truncated)) = bufs.payload(bid, cqe.result()) else {
        bufs.give_back(bid);
        return;
    };
    counts.truncated += u64::from(truncated);
    match to {
        Some(to) => {
            counts.in_flight += 1;
            pending.push(
                opcode::SendMsg::new(types::Fd(fd), bufs.send_header(bid, offset, len, to))
                    .build()
                    .user_data(u64::from(bid)),
            );
        }
        None => bufs.give_back(bid),
    }
}
