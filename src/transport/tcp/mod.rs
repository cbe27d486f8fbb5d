//! SIP over TCP on the shard-per-core model.
//!
//! Each shard has its own SO_REUSEPORT listener per TCP address, so the kernel spreads
//! connections over the shards, and a connection lives on the shard that accepted (or opened)
//! it for its whole life: its reads and writes are that shard's glommio (io_uring) operations
//! and its state is in that shard's [`ConnTable`], never locked. Connection ids name their
//! shard ([`ConnId::shard`]); a message that must leave on another shard's connection is handed
//! to that shard over a ring ([`handoff`]). A send that names no open connection reuses the
//! newest one to that address on this shard, else the one that address opened to another
//! shard (nothing can connect to it: this shard's [`AcceptedElsewhere`], which the other shards
//! keep up to date with news over the same rings), or opens one.
//!
//! TLS is this same transport with a handshake before the first byte ([`secure`]): each shard
//! has a second [`Tcp`], for TLS, with its own table and counters.

pub mod buffers;
pub mod conn;
pub mod gather;
pub mod handoff;
pub mod ring;
pub mod secure;
pub mod table;

use std::cell::{OnceCell, RefCell};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

use crate::counters::TcpCounters;
use crate::sip::{ConnId, Source, Target, Transport};
use conn::{CloseReason, Conn, Event, Queued};
use handoff::{Accepted, Handed, Handoff};
use ring::{Received, RecvRing};
use secure::TlsSide;
use table::{AcceptedElsewhere, ConnTable, Refusal};

/// Receive buffers of a shard's [`RecvRing`], of [`conn::READ_CHUNK`] bytes each (1 MiB): a
/// buffer is given back as soon as its bytes are framed, so this bounds what a turn of the
/// shard takes in, not what connections hold.
const RECV_BUFFERS: u16 = 256;

/// Limits and timeouts of the TCP transport (each a flag; see docs/tuning.md).
#[derive(Clone, Copy, Debug)]
pub struct TcpSettings {
    pub max_connections: usize,
    pub max_per_ip_per_shard: usize,
    pub message_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_queued: usize,
    /// A connection whose queue is full and that took no byte for this long is closed.
    pub send_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_message: usize,
    /// How plain TCP connections are read (`--tcp-receive`).
    pub receive: TcpReceive,
}

/// How plain TCP connections are read (TLS connections are always read as streams: rustls
/// takes its records from glommio's stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpReceive {
    /// A multishot receive per connection on the shard's own ring ([`ring`]).
    Multishot,
    /// glommio's stream reads, a read (a system call) at a time.
    Stream,
}

/// What a connection's messages are handed to: the shard's core and its sends.
pub trait StreamHost: 'static {
    /// The shard's transport for `TCP` or `TLS`.
    fn stream(&self, transport: Transport) -> &Tcp;
    /// One whole message from `src` on `listener`: decide it and send what comes out.
    fn on_stream_message(&self, src: Source, listener: usize, msg: &[u8]);
    /// A stream that cannot be framed any more: answer it when the bytes allow (the
    /// connection closes after the answer).
    fn on_stream_broken(
        &self,
        src: Source,
        listener: usize,
        bytes: &[u8],
        err: crate::sip::ParseError,
    );
    /// A request sent over TCP only for its size, whose connection to `to` was refused: send
    /// it over UDP after all (RFC 3261 section 18.1.1).
    fn fall_back_to_udp(&self, to: SocketAddr, bytes: Box<[u8]>);
}

/// One shard's TCP transport, or its TLS transport (TCP with [`TlsSide`]).
pub struct Tcp {
    transport: Transport,
    cfg: TcpSettings,
    table: RefCell<ConnTable<Conn>>,
    /// Connections of the whole node (every shard's), for `--tcp-max-connections`.
    node_connections: Arc<AtomicUsize>,
    /// The rings to the other shards (shared with the shard's other transport): messages for
    /// their connections, and the news of the connections peers open to this one.
    handoff: Rc<Handoff>,
    /// The connections peers opened to the other shards, as those shards announced them.
    elsewhere: RefCell<AcceptedElsewhere>,
    pub counters: RefCell<TcpCounters>,
    /// The handshakes, for TLS.
    pub tls: Option<TlsSide>,
    /// The receive ring of plain TCP connections, started with the first of them (none with
    /// `--tcp-receive stream`, for TLS, or when the kernel has no multishot receive).
    recv_ring: OnceCell<Option<Rc<RecvRing>>>,
    /// Connections peers opened (to this shard or, withdrawn, to another) that closed since
    /// the shard last took them: the core skips the Outbound flows on them.
    closed_accepted: RefCell<Vec<ConnId>>,
}

impl Tcp {
    /// The TCP transport of shard `shard`, with its rings to the other shards.
    pub fn new(
        shard: u16,
        cfg: TcpSettings,
        node_connections: Arc<AtomicUsize>,
        handoff: Rc<Handoff>,
    ) -> Tcp {
        Tcp {
            transport: Transport::Tcp,
            cfg,
            table: RefCell::new(ConnTable::new(shard, cfg.max_per_ip_per_shard)),
            node_connections,
            handoff,
            elsewhere: RefCell::new(AcceptedElsewhere::default()),
            counters: RefCell::new(TcpCounters::default()),
            tls: None,
            recv_ring: OnceCell::new(),
            closed_accepted: RefCell::default(),
        }
    }

    /// The TLS transport of shard `shard`: TCP's limits (and node-wide connection count) and
    /// rings, its own connections.
    pub fn new_tls(
        shard: u16,
        cfg: TcpSettings,
        node_connections: Arc<AtomicUsize>,
        handoff: Rc<Handoff>,
        tls: TlsSide,
    ) -> Tcp {
        Tcp {
            transport: Transport::Tls,
            tls: Some(tls),
            ..Tcp::new(shard, cfg, node_connections, handoff)
        }
    }

    /// The shard's receive ring for plain TCP connections, started on first use; none when
    /// connections are read as streams.
    fn recv_ring(&self) -> Option<&Rc<RecvRing>> {
        self.recv_ring
            .get_or_init(|| {
                if self.transport != Transport::Tcp || self.cfg.receive != TcpReceive::Multishot {
                    return None;
                }
                RecvRing::start(RECV_BUFFERS, conn::READ_CHUNK)
                    .map_err(|e| {
                        log::warn!("tcp: no multishot receive ({e}): connections read as streams")
                    })
                    .ok()
            })
            .as_ref()
    }

    pub fn open_connections(&self) -> usize {
        self.table.borrow().len()
    }

    /// Reserve a place for a connection with `peer`, or say why there is none.
    fn admit(&self, peer: SocketAddr) -> Result<(), Refusal> {
        self.table.borrow().admits(peer)?;
        let node = self.node_connections.fetch_add(1, Ordering::Relaxed);
        if node >= self.cfg.max_connections {
            self.node_connections.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::NodeLimit);
        }
        Ok(())
    }

    fn count_refusal(&self, r: Refusal) {
        let mut c = self.counters.borrow_mut();
        match r {
            Refusal::NodeLimit => c.refused_node_limit += 1,
            Refusal::PerIpLimit => c.refused_per_ip += 1,
        }
    }

    fn register(&self, peer: SocketAddr, listener: usize) -> Rc<Conn> {
        let mut table = self.table.borrow_mut();
        let id = table.next_id();
        let conn = Rc::new(Conn::new(id, peer, listener, self.cfg.max_queued));
        table.insert(id, peer, Rc::clone(&conn));
        conn
    }

    /// Close a connection (idempotent) and account for it.
    pub fn close(&self, conn: &Conn, why: CloseReason) {
        if !conn.mark_closed(why) {
            return;
        }
        if let Some(ring) = self.recv_ring.get().and_then(Option::as_ref) {
            ring.unwatch(conn.id.0);
        }
        self.table.borrow_mut().remove(conn.id);
        // At shutdown every shard is stopping: nobody needs the news, and nobody reads it.
        if conn.was_announced() && why != CloseReason::Shutdown {
            self.tell_others(Handed::Withdraw, conn);
            self.closed_accepted.borrow_mut().push(conn.id);
        }
        self.node_connections.fetch_sub(1, Ordering::Relaxed);
        let mut c = self.counters.borrow_mut();
        c.closed += 1;
        match why {
            CloseReason::MessageTimeout => c.closed_message_timeout += 1,
            CloseReason::Idle => c.closed_idle += 1,
            CloseReason::Backlog => c.closed_backlog += 1,
            CloseReason::Framing => c.closed_framing += 1,
            CloseReason::ConnectFailed => c.connect_failed += 1,
            CloseReason::Peer | CloseReason::Shutdown | CloseReason::Handshake => {}
        }
        log::debug!(
            "{} {} ({:?}): closed: {why:?}",
            self.transport.name(),
            conn.peer,
            conn.id
        );
    }

    /// Close the connections past a deadline (slowloris, idle): run on the shard's
    /// housekeeping tick, so a deadline is kept to within that tick.
    pub fn sweep(&self, now: std::time::Instant) {
        let (message, idle) = (self.cfg.message_timeout, self.cfg.idle_timeout);
        let overdue: Vec<(Rc<Conn>, CloseReason)> = self
            .table
            .borrow()
            .all()
            .filter_map(|c| Some((Rc::clone(c), c.overdue(now, message, idle)?)))
            .collect();
        for (c, why) in overdue {
            self.close(&c, why);
        }
    }

    /// Close every connection (at shutdown).
    pub fn close_all(&self) {
        let all: Vec<Rc<Conn>> = self.table.borrow().all().cloned().collect();
        for c in all {
            self.close(&c, CloseReason::Shutdown);
        }
    }

    /// Tell the other shards that `conn`'s peer connected here, once the connection is ready
    /// for SIP: a message for the peer's address that reaches them then comes here, since
    /// nothing can connect to that address. Only connections peers open are announced: each
    /// shard opens and reuses its own.
    pub fn announce(&self, conn: &Conn) {
        conn.mark_announced();
        self.tell_others(Handed::Announce, conn);
    }

    /// Send `news` of `conn` to every other shard, counting the shards whose ring was full
    /// (those fall back to opening connections of their own to its peer).
    fn tell_others(&self, news: fn(Accepted) -> Handed, conn: &Conn) {
        let about = Accepted {
            transport: self.transport,
            peer: conn.peer,
            conn: conn.id,
        };
        let lost = self.handoff.tell_others(|| news(about));
        self.counters.borrow_mut().announcements_dropped += lost;
    }

    /// Another shard announced a connection its peer opened to it.
    pub fn learn_accepted(&self, a: Accepted) {
        self.counters.borrow_mut().announcements_learned += 1;
        self.elsewhere.borrow_mut().announce(a.peer, a.conn);
    }

    /// Hand `news` to shard `shard` over the ring; false when the ring is full.
    pub fn tell(&self, shard: u16, news: Handed) -> bool {
        self.handoff.send(shard as usize, news)
    }

    /// Another shard withdrew a connection it had announced: it closed.
    pub fn forget_accepted(&self, a: Accepted) {
        self.elsewhere.borrow_mut().withdraw(a.peer, a.conn);
        self.closed_accepted.borrow_mut().push(a.conn);
    }

    /// The connections peers opened that closed (here, or on another shard that withdrew
    /// them) since the last call.
    pub fn take_closed_accepted(&self) -> Vec<ConnId> {
        std::mem::take(&mut self.closed_accepted.borrow_mut())
    }

    /// The connection `peer` opened to another shard, as far as this shard has heard.
    pub fn accepted_elsewhere(&self, peer: SocketAddr) -> Option<ConnId> {
        self.elsewhere.borrow().get(peer)
    }

    /// Hand a message for a connection of shard `owner` to that shard, counted.
    pub fn hand_over(&self, owner: u16, to: Target, listener: usize, bytes: &[u8]) {
        let message = Handed::Message {
            to,
            listener,
            bytes: bytes.into(),
        };
        let ok = self.handoff.send(owner as usize, message);
        let mut c = self.counters.borrow_mut();
        if ok {
            c.handoffs += 1;
        } else {
            c.handoffs_dropped += 1;
        }
    }

    /// Queue `bytes` on an open connection of this shard: the one named, else the newest to
    /// `to`. Returns the connection's peer address (where the message goes, which a target
    /// naming a connection need not say), `None` when there is no such connection.
    pub fn send_existing(
        &self,
        conn: Option<ConnId>,
        to: SocketAddr,
        bytes: &[u8],
    ) -> Option<SocketAddr> {
        let found = {
            let table = self.table.borrow();
            conn.and_then(|id| table.get(id).cloned())
                .or_else(|| table.to_peer(to).cloned())
        };
        let c = found?;
        match c.send(bytes) {
            Queued::Yes => Some(c.peer),
            Queued::Closed => None,
            // A peer that reads, only slower than we send for a moment (or a connection still
            // opening), loses this message; one that has stopped reading is disconnected.
            Queued::Overflow => {
                if c.stalled_for(self.cfg.send_timeout) {
                    self.close(&c, CloseReason::Backlog);
                } else {
                    self.counters.borrow_mut().queue_full += 1;
                }
                Some(c.peer)
            }
        }
    }
}

/// Accept connections on one listener of this shard, forever (until the task is cancelled).
pub async fn accept_loop<H: StreamHost>(
    host: Rc<H>,
    transport: Transport,
    listener: TcpListener,
    idx: usize,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::debug!("tcp accept on listener {idx}: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let tcp = host.stream(transport);
        if let Err(r) = tcp.admit(peer) {
            tcp.count_refusal(r);
            drop(stream);
            continue;
        }
        tcp.counters.borrow_mut().accepted += 1;
        let conn = tcp.register(peer, idx);
        let _ = stream.set_nodelay(true);
        match transport {
            // Announced once its handshake is done: a failed one is never news.
            Transport::Tls => secure::accept(&host, conn, stream),
            _ => {
                tcp.announce(&conn);
                start_plain(&host, transport, conn, stream);
            }
        }
    }
}

/// Open a connection to `to` for `bytes` (and whatever is sent to `to` while it connects);
/// `fallback_udp`: see [`Target::fallback_udp`](crate::sip::Target).
pub fn connect_and_send<H: StreamHost>(
    host: &Rc<H>,
    transport: Transport,
    to: SocketAddr,
    listener: usize,
    bytes: &[u8],
    fallback_udp: bool,
) {
    let tcp = host.stream(transport);
    if let Err(r) = tcp.admit(to) {
        tcp.count_refusal(r);
        tcp.counters.borrow_mut().unsent += 1;
        return;
    }
    let conn = tcp.register(to, listener);
    conn.send_marked(bytes, fallback_udp);
    let (h, c) = (Rc::clone(host), Rc::clone(&conn));
    let timeout = tcp.cfg.connect_timeout;
    let task = glommio::spawn_local(async move {
        match TcpStream::connect_timeout(to, timeout).await {
            Ok(stream) => {
                h.stream(transport).counters.borrow_mut().connected += 1;
                let _ = stream.set_nodelay(true);
                match transport {
                    Transport::Tls => secure::connect(&h, c, stream).await,
                    _ => start_plain(&h, transport, c, stream),
                }
            }
            Err(e) => {
                log::debug!("{} connect to {to}: {e}", transport.name());
                let fallbacks = c.take_fallbacks().await;
                h.stream(transport).close(&c, CloseReason::ConnectFailed);
                for bytes in fallbacks {
                    h.fall_back_to_udp(to, bytes);
                }
            }
        }
    })
    .detach();
    conn.adopt_task(task);
}

/// Start serving an established plain TCP connection: its bytes come from the shard's
/// receive ring when there is one, else from reads of the stream.
fn start_plain<H: StreamHost>(
    host: &Rc<H>,
    transport: Transport,
    conn: Rc<Conn>,
    stream: TcpStream,
) {
    let Some(ring) = host.stream(transport).recv_ring() else {
        return start(host, transport, conn, stream, false);
    };
    let fd = stream.as_raw_fd();
    // The writer owns the stream, and with it the socket, until the connection closes; with
    // no writer (the connection closed meanwhile) the stream is gone.
    if !start_writer(host, transport, &conn, stream) {
        return;
    }
    let (h, c) = (Rc::clone(host), Rc::clone(&conn));
    let mut inbound = conn::Inbound::new(h.stream(transport).cfg.max_message);
    let mut on_event = event_handler(host, transport, &conn, false);
    ring.watch(
        fd,
        conn.id.0,
        Box::new(move |received| match received {
            // After a framing error the writer closes the connection once the answer is out.
            Received::Bytes(data) => {
                h.stream(transport).counters.borrow_mut().ring_receives += 1;
                inbound.feed(&c, data, &mut on_event).is_ok()
            }
            Received::End => {
                h.stream(transport).close(&c, CloseReason::Peer);
                false
            }
        }),
    );
}

/// Start the reader and writer of an established connection (over TLS: once the handshake
/// is done; `trusted`: its peer proved a `--tls-trust` name).
fn start<H, S>(host: &Rc<H>, transport: Transport, conn: Rc<Conn>, stream: S, trusted: bool)
where
    H: StreamHost,
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (rd, wr) = futures_lite::io::split(stream);
    start_writer(host, transport, &conn, wr);
    let (h, c) = (Rc::clone(host), Rc::clone(&conn));
    let on_event = event_handler(host, transport, &conn, trusted);
    let reader = glommio::spawn_local(async move {
        let cfg = h.stream(transport).cfg;
        let why = conn::read_loop(&c, rd, &cfg, on_event).await;
        // After a framing error the writer closes the connection once the answer is out.
        if why != CloseReason::Framing {
            h.stream(transport).close(&c, why);
        }
    })
    .detach();
    conn.adopt_task(reader);
}

/// Start the task that writes what is queued for `conn` to `wr`; false (and `wr` dropped)
/// when the connection is closed or its outbox was taken already. A receive must not be
/// armed then: the socket goes with `wr`, and its descriptor's number may soon name another.
fn start_writer<H, W>(host: &Rc<H>, transport: Transport, conn: &Rc<Conn>, wr: W) -> bool
where
    H: StreamHost,
    W: AsyncWrite + Unpin + 'static,
{
    if conn.is_closed() {
        return false;
    }
    let Some(rx) = conn.take_outbox() else {
        return false;
    };
    let (h, c) = (Rc::clone(host), Rc::clone(conn));
    let writer = glommio::spawn_local(async move {
        let why = conn::write_loop(Rc::clone(&c), rx, wr).await;
        h.stream(transport).close(&c, why);
    })
    .detach();
    conn.adopt_task(writer);
    true
}

/// What becomes of each frame of `conn`: a message goes to the shard's core; a broken stream
/// is answered, then closed once the answer is out.
fn event_handler<H: StreamHost>(
    host: &Rc<H>,
    transport: Transport,
    conn: &Rc<Conn>,
    trusted: bool,
) -> impl FnMut(Event<'_>) {
    let (h, c) = (Rc::clone(host), Rc::clone(conn));
    let src = Source {
        transport,
        addr: conn.peer,
        conn: Some(conn.id),
        trusted,
    };
    move |ev| match ev {
        Event::Message(msg) => h.on_stream_message(src, c.listener, msg),
        Event::Broken(bytes, e) => {
            h.on_stream_broken(src, c.listener, bytes, e);
            c.close_after_flush();
        }
    }
}
