//! tcp-floor: the floor of `scripts/bench.sh tcp` (issue 14: "glommio's own TCP, or multishot
//! receive into provided buffers if that measures better"). A forwarder over TCP that does
//! what any stream proxy must and nothing more: it accepts the flooder's connections, cuts
//! each byte stream into messages by Content-Length (sipshard's own framer) and writes every
//! whole message to one connection to the sink. No parsing beyond the framing, no lookup, no
//! rewrite. Two ways to receive, the two the issue names:
//!
//! - `--io glommio`: glommio's `TcpStream`, shaped as sipshard's connections are (a reader
//!   task per connection reading 4 KiB at a time and yielding after each read, one writer
//!   task that gathers whatever the readers queued into one write);
//! - `--io multishot`: a ring of our own, no executor: one multishot accept, one multishot
//!   receive (`IORING_RECV_MULTISHOT`) per connection into a ring of provided buffers, and
//!   what a turn's completions framed leaves as one send submitted with the next wait (one
//!   `io_uring_enter` per turn, none to receive).
//!
//! - `--io glommio-multishot`: the second's receive inside the first's executor, the design
//!   sipshard took (src/transport/tcp/ring.rs): the ring of our own signals an eventfd
//!   (`IORING_REGISTER_EVENTFD`) when completions arrive, and a glommio task waits for it with
//!   a read; the writes are the first's. It differs from sipshard's ring in what a floor can
//!   leave out: the kernel's default task work (sipshard's is cooperative: a busy shard is not
//!   interrupted for every arrival), no bound on the completions a turn takes, and one
//!   outbox for every connection.
//!
//! The difference between the two at a fixed rate and at saturation is the most sipshard's
//! connections could gain from receiving the second way.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use sipshard::sip::{Frame, Framer, ParseError};
use udp_tools::uring_bufs::BufRing;

/// Bare TCP forwarder (the benchmark's TCP floor).
#[derive(Parser)]
#[command(name = "tcp-floor")]
struct Args {
    /// Address to accept connections on.
    #[arg(long, default_value = "127.0.0.1:5080")]
    listen: SocketAddr,
    /// Where every message goes (one connection, opened at start).
    #[arg(long)]
    to: SocketAddr,
    /// How connections are read.
    #[arg(long, value_enum, default_value_t = Io::Glommio)]
    io: Io,
    /// `--io multishot`: provided receive buffers (a power of two).
    #[arg(long, default_value_t = 256)]
    buffers: u16,
    /// Bytes per read (`--io glommio`) or per provided buffer (`--io multishot`); 4 KiB is
    /// sipshard's read size.
    #[arg(long, default_value_t = 4096)]
    read_size: usize,
    /// Stop by itself after this many seconds (the benchmark stops it sooner with SIGTERM).
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Io {
    Glommio,
    Multishot,
    GlommioMultishot,
}

/// The largest message framed (sipshard's default `--max-message`).
const MAX_MESSAGE: usize = 64 * 1024;

fn main() {
    let args = Args::parse();
    udp_tools::stop_on_signals();
    eprintln!("tcp-floor: tcp:{} -> tcp:{}", args.listen, args.to);
    let counts = match args.io {
        Io::Glommio => glommio_floor::run(&args),
        Io::Multishot => multishot_floor::run(&args),
        Io::GlommioMultishot => multishot_in_glommio::run(&args),
    };
    eprintln!(
        "tcp-floor: {} connections, {} messages forwarded ({} bytes), {} broken streams",
        counts.connections, counts.messages, counts.bytes, counts.broken
    );
}

fn fail(what: &str) -> ! {
    eprintln!("tcp-floor: {what}");
    std::process::exit(1);
}

#[derive(Default)]
struct Counts {
    connections: u64,
    messages: u64,
    bytes: u64,
    broken: u64,
}

/// One connection's bytes not yet framed, and its framer.
struct Unframed {
    framer: Framer,
    buf: Vec<u8>,
}

impl Unframed {
    fn new() -> Unframed {
        Unframed {
            framer: Framer::new(MAX_MESSAGE),
            buf: Vec::new(),
        }
    }

    /// Frame `data`, just read: whole messages are appended to `out` (how many is returned),
    /// the rest is kept for the next read. With nothing kept from before, messages are framed
    /// where they were read, without a copy into the connection's buffer.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<u64, ParseError> {
        if !self.buf.is_empty() {
            self.buf.extend_from_slice(data);
            let buf = std::mem::take(&mut self.buf);
            let (messages, rest) = self.split(&buf, out)?;
            self.buf = buf;
            self.buf.drain(..self.buf.len() - rest);
            return Ok(messages);
        }
        let (messages, rest) = self.split(data, out)?;
        self.buf.extend_from_slice(&data[data.len() - rest..]);
        Ok(messages)
    }

    /// Append the whole messages at the front of `bytes` to `out`; how many, and how many
    /// bytes are left at the end.
    fn split(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) -> Result<(u64, usize), ParseError> {
        let mut messages = 0;
        loop {
            let frame = self.framer.frame(bytes)?;
            match frame {
                Frame::Message { len } => {
                    out.extend_from_slice(&bytes[..len]);
                    messages += 1;
                }
                Frame::Ping { .. } | Frame::Skip { .. } => {}
                Frame::Partial => return Ok((messages, bytes.len())),
            }
            bytes = &bytes[frame.consumed()..];
        }
    }
}

/// Listen on `listen` and take the first connection: the sink listens once the flooder runs,
/// which connects to us first.
fn accept_first(listen: SocketAddr) -> (std::net::TcpListener, TcpStream) {
    let listener = std::net::TcpListener::bind(listen)
        .unwrap_or_else(|e| fail(&format!("bind {listen}: {e}")));
    let (first, _) = listener
        .accept()
        .unwrap_or_else(|e| fail(&format!("accept: {e}")));
    let _ = first.set_nodelay(true);
    (listener, first)
}

fn connect_sink(to: SocketAddr) -> TcpStream {
    let sink = TcpStream::connect(to).unwrap_or_else(|e| fail(&format!("connect {to}: {e}")));
    let _ = sink.set_nodelay(true);
    sink
}

mod glommio_floor {
    //! `--io glommio`: sipshard's shape of connection, minus SIP.

    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
    use glommio::net::TcpListener;
    use glommio::{LocalExecutorBuilder, Placement};

    /// What the readers framed and the writer has not taken yet.
    pub(super) type Outbox = Rc<RefCell<Vec<u8>>>;

    #[derive(Default)]
    pub(super) struct Shared {
        connections: Cell<u64>,
        messages: Cell<u64>,
        pub(super) bytes: Cell<u64>,
        broken: Cell<u64>,
    }

    pub fn run(args: &Args) -> Counts {
        let (listen, to, read_size) = (args.listen, args.to, args.read_size);
        let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("tcp-floor")
            .spawn(move || forward(listen, to, read_size, deadline))
            .unwrap_or_else(|e| fail(&format!("executor: {e}")))
            .join()
            .unwrap_or_else(|e| fail(&format!("executor: {e}")))
    }

    async fn forward(listen: SocketAddr, to: SocketAddr, read_size: usize, end: Instant) -> Counts {
        let listener =
            TcpListener::bind(listen).unwrap_or_else(|e| fail(&format!("bind {listen}: {e}")));
        let shared = Rc::new(Shared::default());
        let accepting = glommio::spawn_local(accept(listener, to, shared.clone(), read_size));
        while !udp_tools::stopped() && Instant::now() < end {
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        accepting.cancel().await;
        Counts {
            connections: shared.connections.get(),
            messages: shared.messages.get(),
            bytes: shared.bytes.get(),
            broken: shared.broken.get(),
        }
    }

    /// Accept connections and start a reader for each; the sink is connected at the first
    /// (the flooder's sink listens from then on), and its writer started.
    async fn accept(listener: TcpListener, to: SocketAddr, shared: Rc<Shared>, read_size: usize) {
        let mut next = listener.accept().await;
        let sink = glommio::net::TcpStream::connect(to)
            .await
            .unwrap_or_else(|e| fail(&format!("connect {to}: {e}")));
        let _ = sink.set_nodelay(true);
        let outbox: Outbox = Rc::default();
        // A doorbell: a full channel means the writer has been told already.
        let (bell, rung) = local_channel::new_bounded(1);
        let bell = Rc::new(bell);
        glommio::spawn_local(write(sink, outbox.clone(), rung, shared.clone())).detach();
        while let Ok(stream) = next {
            let _ = stream.set_nodelay(true);
            shared.connections.set(shared.connections.get() + 1);
            let reader = read(
                stream,
                outbox.clone(),
                bell.clone(),
                shared.clone(),
                read_size,
            );
            glommio::spawn_local(reader).detach();
            next = listener.accept().await;
        }
    }

    /// Read, frame, queue, yield: as sipshard's `read_loop`.
    async fn read(
        mut stream: glommio::net::TcpStream,
        outbox: Outbox,
        bell: Rc<LocalSender<()>>,
        shared: Rc<Shared>,
        read_size: usize,
    ) {
        let mut unframed = Unframed::new();
        let mut chunk = vec![0u8; read_size];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            match unframed.feed(&chunk[..n], &mut outbox.borrow_mut()) {
                Ok(m) => shared.messages.set(shared.messages.get() + m),
                Err(_) => {
                    shared.broken.set(shared.broken.get() + 1);
                    return;
                }
            }
            let _ = bell.try_send(());
            futures_lite::future::yield_now().await;
        }
    }

    /// Write whatever the readers queued since the last write, in one write.
    pub(super) async fn write(
        mut sink: glommio::net::TcpStream,
        outbox: Outbox,
        rung: LocalReceiver<()>,
        shared: Rc<Shared>,
    ) {
        let mut batch = Vec::new();
        while rung.recv().await.is_some() {
            std::mem::swap(&mut *outbox.borrow_mut(), &mut batch);
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = sink.write_all(&batch).await {
                fail(&format!("write to the sink: {e}"));
            }
            shared.bytes.set(shared.bytes.get() + batch.len() as u64);
            batch.clear();
        }
    }
}

mod multishot_floor {
    //! `--io multishot`: a ring of our own, receives without system calls.

    use super::*;
    use std::os::fd::IntoRawFd;

    /// The buffer group of the receive buffers.
    pub(super) const GROUP: u16 = 1;
    /// `user_data` of the accept and of the send; a receive's is its connection's index.
    pub(super) const ACCEPT: u64 = u64::MAX;
    pub(super) const SEND: u64 = u64::MAX - 1;
    /// How long one wait may last, so that SIGTERM and the deadline are noticed.
    const WAIT: Duration = Duration::from_millis(200);

    pub(super) struct Conn {
        pub(super) fd: i32,
        pub(super) unframed: Unframed,
    }

    /// The one send to the sink in flight, and the bytes queued behind it.
    #[derive(Default)]
    struct Out {
        queued: Vec<u8>,
        flight: Vec<u8>,
        /// How much of `flight` the kernel took so far; `None` when no send is in flight.
        sent: Option<usize>,
    }

    impl Out {
        /// The send of what is left of `flight` (which must not move until it completes).
        fn send(&self, fd: i32) -> squeue::Entry {
            let rest = &self.flight[self.sent.unwrap_or(0)..];
            opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
                .build()
                .user_data(SEND)
        }

        /// Start a send of what is queued, if any and none is in flight.
        fn start(&mut self, fd: i32, pending: &mut Vec<squeue::Entry>) {
            if self.sent.is_none() && !self.queued.is_empty() {
                std::mem::swap(&mut self.queued, &mut self.flight);
                self.queued.clear();
                self.sent = Some(0);
                pending.push(self.send(fd));
            }
        }

        /// The send took `n` bytes: send the rest, or finish.
        fn sent(
            &mut self,
            n: usize,
            fd: i32,
            pending: &mut Vec<squeue::Entry>,
            counts: &mut Counts,
        ) {
            counts.bytes += n as u64;
            let sent = self.sent.unwrap_or(0) + n;
            if sent < self.flight.len() {
                self.sent = Some(sent);
                pending.push(self.send(fd));
            } else {
                self.sent = None;
            }
        }
    }

    pub fn run(args: &Args) -> Counts {
        let (listener, first) = accept_first(args.listen);
        let sink = connect_sink(args.to);
        let entries = u32::from(args.buffers).next_power_of_two().max(64) * 2;
        let mut ring = IoUring::builder()
            .setup_cqsize(entries * 2)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .unwrap_or_else(|e| fail(&format!("io_uring: {e}")));
        let mut bufs = BufRing::new(args.buffers, args.read_size, false)
            .unwrap_or_else(|e| fail(&format!("buffer ring: {e}")));
        // SAFETY: `bufs` outlives the loop, and the group is unregistered before it goes.
        unsafe { bufs.register(&ring.submitter(), GROUP) }
            .unwrap_or_else(|e| fail(&format!("register the buffer ring: {e}")));
        let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
        let first = first.into_raw_fd();
        let counts = forward(
            &mut ring,
            &mut bufs,
            [listener.as_raw_fd(), first, sink.as_raw_fd()],
            deadline,
        );
        let _ = ring.submitter().unregister_buf_ring(GROUP);
        counts
    }

    /// The loop, given the listener, the first connection and the sink.
    fn forward(ring: &mut IoUring, bufs: &mut BufRing, fds: [i32; 3], end: Instant) -> Counts {
        let [listener, first, sink] = fds;
        let mut counts = Counts {
            connections: 1,
            ..Counts::default()
        };
        let mut conns = vec![Some(Conn {
            fd: first,
            unframed: Unframed::new(),
        })];
        let mut out = Out::default();
        let mut pending = vec![accept(listener), receive(first, 0)];
        let wait = types::Timespec::from(WAIT);
        while !udp_tools::stopped() && Instant::now() < end {
            submit(ring, &mut pending, &wait);
            for cqe in ring.completion() {
                match cqe.user_data() {
                    ACCEPT => accepted(&cqe, listener, &mut conns, &mut pending, &mut counts),
                    // The sink went (the flooder stopped): nothing more to forward.
                    SEND if cqe.result() < 0 => return counts,
                    SEND => out.sent(cqe.result() as usize, sink, &mut pending, &mut counts),
                    i => received(
                        &cqe,
                        i as usize,
                        bufs,
                        &mut conns,
                        &mut out.queued,
                        &mut pending,
                        &mut counts,
                    ),
                }
            }
            bufs.publish();
            out.start(sink, &mut pending);
        }
        for conn in conns.into_iter().flatten() {
            // SAFETY: the descriptor accept gave us, closed once.
            unsafe { libc::close(conn.fd) };
        }
        counts
    }

    pub(super) fn accept(listener: i32) -> squeue::Entry {
        opcode::AcceptMulti::new(types::Fd(listener))
            .build()
            .user_data(ACCEPT)
    }

    pub(super) fn receive(fd: i32, index: usize) -> squeue::Entry {
        opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(index as u64)
    }

    pub(super) fn accepted(
        cqe: &cqueue::Entry,
        listener: i32,
        conns: &mut Vec<Option<Conn>>,
        pending: &mut Vec<squeue::Entry>,
        counts: &mut Counts,
    ) {
        if !cqueue::more(cqe.flags()) {
            pending.push(accept(listener));
        }
        let fd = cqe.result();
        if fd < 0 {
            return;
        }
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and option; failure only leaves Nagle on.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
        counts.connections += 1;
        pending.push(receive(fd, conns.len()));
        conns.push(Some(Conn {
            fd,
            unframed: Unframed::new(),
        }));
    }

    /// A receive's completion: frame what came, give the buffer back; re-arm a receive the
    /// kernel ended for want of buffers; close a connection at its end.
    pub(super) fn received(
        cqe: &cqueue::Entry,
        index: usize,
        bufs: &mut BufRing,
        conns: &mut [Option<Conn>],
        out: &mut Vec<u8>,
        pending: &mut Vec<squeue::Entry>,
        counts: &mut Counts,
    ) {
        let bid = cqueue::buffer_select(cqe.flags());
        let Some(conn) = conns.get_mut(index).and_then(Option::as_mut) else {
            if let Some(bid) = bid {
                bufs.give_back(bid);
            }
            return;
        };
        let mut broken = false;
        if let Some(bid) = bid {
            match conn.unframed.feed(bufs.stream_data(bid, cqe.result()), out) {
                Ok(m) => counts.messages += m,
                Err(_) => broken = true,
            }
            bufs.give_back(bid);
        }
        let result = cqe.result();
        if broken || result == 0 || (result < 0 && result != -libc::ENOBUFS) {
            counts.broken += u64::from(broken);
            // SAFETY: the descriptor accept gave us, closed once (the slot is emptied).
            unsafe { libc::close(conn.fd) };
            conns[index] = None;
        } else if !cqueue::more(cqe.flags()) {
            pending.push(receive(conn.fd, index));
        }
    }

    /// Queue `pending` and wait for a completion, at most `wait`: one io_uring_enter.
    fn submit(ring: &mut IoUring, pending: &mut Vec<squeue::Entry>, wait: &types::Timespec) {
        for entry in pending.drain(..) {
            // SAFETY: receives select buffers `bufs` owns until the end of `run`; a send
            // points into `Out::flight`, which does not move while that send is in flight.
            while unsafe { ring.submission().push(&entry) }.is_err() {
                ring.submit()
                    .unwrap_or_else(|e| fail(&format!("submit: {e}")));
            }
        }
        let args = types::SubmitArgs::new().timespec(wait);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => fail(&format!("io_uring_enter: {e}")),
        }
    }
}

mod multishot_in_glommio {
    //! `--io glommio-multishot`: a ring of our own inside glommio's executor.

    use super::glommio_floor::{write, Outbox, Shared};
    use super::multishot_floor::{accept, accepted, receive, received, Conn, ACCEPT, GROUP};
    use super::*;
    use glommio::channels::local_channel;
    use glommio::io::BufferedFile;
    use glommio::{LocalExecutorBuilder, Placement};
    use std::os::fd::{FromRawFd, IntoRawFd};

    pub fn run(args: &Args) -> Counts {
        let (listener, first) = accept_first(args.listen);
        let (to, buffers, read_size) = (args.to, args.buffers, args.read_size);
        let end = Instant::now() + Duration::from_secs(args.max_seconds);
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("tcp-floor")
            .spawn(move || async move {
                let sink = glommio::net::TcpStream::connect(to)
                    .await
                    .unwrap_or_else(|e| fail(&format!("connect {to}: {e}")));
                let _ = sink.set_nodelay(true);
                let fds = [listener.into_raw_fd(), first.into_raw_fd()];
                forward(sink, fds, buffers, read_size, end).await
            })
            .unwrap_or_else(|e| fail(&format!("executor: {e}")))
            .join()
            .unwrap_or_else(|e| fail(&format!("executor: {e}")))
    }

    /// The loop: drain the ring's completions into the outbox, ring the writer, wait on the
    /// eventfd while nothing is left.
    async fn forward(
        sink: glommio::net::TcpStream,
        fds: [i32; 2],
        buffers: u16,
        read_size: usize,
        end: Instant,
    ) -> Counts {
        let [listener, first] = fds;
        let shared = Rc::new(Shared::default());
        let outbox: Outbox = Rc::default();
        let (bell, rung) = local_channel::new_bounded(1);
        glommio::spawn_local(write(sink, outbox.clone(), rung, shared.clone())).detach();
        // No task-run flags: completions are posted (and the eventfd signalled) while the
        // thread sleeps in glommio's ring. (Deferred task work would wait for this ring to be
        // entered, which nothing does while idle; sipshard's ring runs cooperative task work.)
        let entries = u32::from(buffers).next_power_of_two().max(64) * 2;
        let mut ring: IoUring = IoUring::builder()
            .setup_cqsize(entries * 2)
            .build(entries)
            .unwrap_or_else(|e| fail(&format!("io_uring: {e}")));
        let mut bufs = BufRing::new(buffers, read_size, false)
            .unwrap_or_else(|e| fail(&format!("buffer ring: {e}")));
        // SAFETY: `bufs` outlives the loop; the process ends with it.
        unsafe { bufs.register(&ring.submitter(), GROUP) }
            .unwrap_or_else(|e| fail(&format!("register the buffer ring: {e}")));
        // SAFETY: plain eventfd creation; checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 || ring.submitter().register_eventfd(efd).is_err() {
            fail("eventfd");
        }
        // SAFETY: the eventfd is ours; the file owns it from here.
        let wake = Rc::new(unsafe { BufferedFile::from_raw_fd(efd) });
        glommio::spawn_local(stop_at(end, efd)).detach();
        let mut counts = Counts {
            connections: 1,
            ..Counts::default()
        };
        let mut conns = vec![Some(Conn {
            fd: first,
            unframed: Unframed::new(),
        })];
        let mut pending = vec![accept(listener), receive(first, 0)];
        while !udp_tools::stopped() && Instant::now() < end {
            for entry in pending.drain(..) {
                // SAFETY: receives select buffers `bufs` owns until the end of the loop.
                while unsafe { ring.submission().push(&entry) }.is_err() {
                    let _ = ring.submit();
                }
                let _ = ring.submit();
            }
            {
                let mut out = outbox.borrow_mut();
                for cqe in ring.completion() {
                    match cqe.user_data() {
                        ACCEPT => accepted(&cqe, listener, &mut conns, &mut pending, &mut counts),
                        i => received(
                            &cqe,
                            i as usize,
                            &mut bufs,
                            &mut conns,
                            &mut out,
                            &mut pending,
                            &mut counts,
                        ),
                    }
                }
            }
            bufs.publish();
            if !outbox.borrow().is_empty() {
                let _ = bell.try_send(());
            }
            if pending.is_empty() && ring.completion().is_empty() {
                // Blocks until a completion is posted (the counter is then reset).
                let _ = wake.read_at(0, 8).await;
            } else {
                futures_lite::future::yield_now().await;
            }
        }
        counts.bytes = shared.bytes.get();
        counts
    }

    /// Wake the loop at SIGTERM or the deadline, so that it sees them.
    async fn stop_at(end: Instant, efd: i32) {
        while !udp_tools::stopped() && Instant::now() < end {
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        let one = 1u64;
        // SAFETY: an 8-byte write to our eventfd.
        unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
    }
}
