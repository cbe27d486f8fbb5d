//! One shard: a glommio executor pinned to its CPU, with its own listen sockets, its own core
//! (and so its own copy of the location table) and its rings to the other shards. Its tasks
//! share it through `Rc` and `RefCell`, never a lock.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::{TcpListener, UdpSocket};

use super::capture::{self as hep_capture, Capture};
use super::clock::{self, now, wall_clock_ns};
use super::message_log::Seen;
use super::reload::{salt_seed, Reload};
use super::settings::HepSettings;
use super::BoundSocket;
use crate::auth::{AuthMode, Authenticator};
use crate::counters::{Counters, DropReason};
use crate::location::{LocationTable, Now};
use crate::metrics::{Latency, Published};
use crate::proxy::nat_ping::{self, PingBatch};
use crate::proxy::next_hop::HopState;
use crate::proxy::{Action, Core, ProxyConfig};
use crate::replication::Links;
use crate::sip::rewrite::DEFAULT_HEADROOM;
use crate::sip::{PacketBuf, ParseError, Source, Target, Transport};
use crate::transport::batch::BATCH;
use crate::transport::tcp::handoff::{Handed, Handoff, HandoffEnds};
use crate::transport::tcp::secure::TlsSide;
use crate::transport::tcp::{self, StreamHost, Tcp, TcpSettings};
use crate::transport::tls::TlsContext;
use crate::transport::udp::{self, Datapath, ReceiveTuning, UdpReceive};
use crate::transport::udp_ring;

/// How often a shard checks for shutdown, takes in changes and publishes its counters.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(200);
/// Quiet pike sources and held-back auth failures are dealt with every this many ticks.
const PURGE_EVERY_TICKS: u32 = 5;

/// Everything a shard starts with, handed over to its executor thread.
pub struct ShardSetup {
    pub id: u16,
    pub cfg: &'static ProxyConfig,
    /// Shards serving on this node (readiness, in the admin API).
    pub serving: Arc<AtomicUsize>,
    pub tcp: TcpSettings,
    pub tls: TlsContext,
    /// The node's open TCP and TLS connections, shared by every shard (one atomic, no lock).
    pub node_connections: Arc<AtomicUsize>,
    /// This shard's ends of the rings that carry messages to other shards' connections (and
    /// the news of the connections peers open to each shard).
    pub handoff: HandoffEnds,
    /// The location table loaded from `--state-dir` (empty without it).
    pub seed: LocationTable,
    /// One socket per listener, in listener order.
    pub sockets: Vec<BoundSocket>,
    pub links: Links,
    /// Set by SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
    pub published: Arc<Published>,
    pub auth: Option<(Authenticator, AuthMode)>,
    /// New users files and certificates after SIGHUP.
    pub reload: mpsc::Receiver<Reload>,
    pub receive: ReceiveTuning,
    /// Next-hop health changes from the prober (with `--probe-interval`).
    pub health: Option<rtrb::Consumer<HopState>>,
    /// SIP capture (`--hep`): this shard's socket to the collector, and the settings.
    pub capture: Option<(hep_capture::Endpoint, HepSettings)>,
}

/// Everything one shard's tasks share.
struct Shard {
    id: u16,
    /// Itself, for the tasks it spawns (outgoing connections).
    me: Weak<Shard>,
    core: RefCell<Core>,
    /// The UDP socket of each UDP listener, by listener index.
    udp: Vec<Option<UdpSocket>>,
    /// Its TCP and TLS transports, which share its rings to the other shards.
    tcp: Tcp,
    tls: Tcp,
    /// The buffer a stream message is decided in (one at a time: deciding never awaits).
    stream_pkt: RefCell<PacketBuf>,
    /// Rings to and from the other shards (and the persister).
    links: RefCell<Links>,
    /// Sampled processing times.
    latency: RefCell<Latency>,
    /// Where the housekeeping tick publishes counters for the metrics endpoint.
    published: Arc<Published>,
    /// Next-hop state changes from the prober, when probing is on.
    health: Option<RefCell<rtrb::Consumer<HopState>>>,
    /// SIP capture, with `--hep`: what is captured waits here for the next flush.
    capture: Option<RefCell<Capture>>,
}

/// The receive ring of UDP listener `idx` with `--udp-receive multishot`; `None` (recvmmsg)
/// otherwise, or when the kernel cannot (said once per listener).
fn start_intake(shard: &Shard, idx: usize, tuning: ReceiveTuning) -> Option<udp_ring::Intake> {
    if tuning.receive != UdpReceive::Multishot {
        return None;
    }
    let sock = shard.udp.get(idx)?.as_ref()?;
    match udp_ring::Intake::start(sock.as_raw_fd(), shard.max_message()) {
        Ok(intake) => {
            log::info!("UDP listener {idx}: multishot receive");
            Some(intake)
        }
        Err(e) => {
            log::warn!("UDP listener {idx}: no multishot receive ({e}), receiving with recvmmsg");
            None
        }
    }
}

/// Serve until `stop` is set; returns the shard's counters.
pub async fn run(mut setup: ShardSetup) -> Counters {
    let (stop, tuning) = (Arc::clone(&setup.stop), setup.receive);
    let serving = Arc::clone(&setup.serving);
    let (handoff, inbound) = Handoff::connect(std::mem::take(&mut setup.handoff)).await;
    let (udp, tcp_listeners) = take_sockets(std::mem::take(&mut setup.sockets));
    let (shard, reload) = Shard::new(setup, handoff, udp);
    let mut tasks = Vec::new();
    for (idx, sock) in shard.udp.iter().enumerate() {
        if sock.is_some() {
            let task = match start_intake(&shard, idx, tuning) {
                Some(intake) => {
                    let dp = Rc::clone(&shard);
                    let receive = udp_ring::receive_loop(dp, idx, tuning, wall_clock_ns, intake);
                    glommio::spawn_local(receive).detach()
                }
                None => {
                    let receive = udp::receive_loop(Rc::clone(&shard), idx, tuning, wall_clock_ns);
                    glommio::spawn_local(receive).detach()
                }
            };
            tasks.push(task);
        }
    }
    for (idx, transport, listener) in tcp_listeners {
        let accept = tcp::accept_loop(Rc::clone(&shard), transport, listener, idx);
        tasks.push(glommio::spawn_local(accept).detach());
    }
    for rx in inbound {
        let shard = Rc::clone(&shard);
        tasks.push(
            glommio::spawn_local(async move {
                while let Some(handed) = rx.recv().await {
                    shard.take_handed(handed);
                }
            })
            .detach(),
        );
    }
    if shard.capture.is_some() {
        let flusher = Rc::clone(&shard);
        tasks.push(glommio::spawn_local(async move { flusher.capture_loop().await }).detach());
    }
    if shard.core.borrow().config().nat_ping.is_some() {
        let pinger = Rc::clone(&shard);
        tasks.push(glommio::spawn_local(async move { pinger.nat_ping_loop().await }).detach());
    }
    serving.fetch_add(1, Ordering::Relaxed);
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(HOUSEKEEPING_TICK).await;
        ticks += 1;
        shard.housekeeping(&reload, ticks % PURGE_EVERY_TICKS == 0);
    }
    serving.fetch_sub(1, Ordering::Relaxed);
    for t in &tasks {
        t.cancel();
    }
    for t in tasks {
        let _ = t.await;
    }
    shard.tcp.close_all();
    shard.tls.close_all();
    shard.drain_before_exit().await;
    shard.send_capture();
    let counters = shard.counters(&shard.core.borrow());
    counters
}

/// The TCP listeners of a shard, for TCP or TLS, with their indices.
type StreamListeners = Vec<(usize, Transport, TcpListener)>;

/// Hand the bound sockets to glommio (on this shard's executor): the UDP socket of each
/// listener by index (`None` for a TCP or TLS one), and the stream listeners.
fn take_sockets(sockets: Vec<BoundSocket>) -> (Vec<Option<UdpSocket>>, StreamListeners) {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for (idx, s) in sockets.into_iter().enumerate() {
        // glommio links socket2 0.4, so each socket is handed over as its descriptor.
        // SAFETY: `into_raw_fd` releases the descriptor, which the glommio socket now owns alone.
        match s {
            BoundSocket::Udp(s) => {
                udp.push(Some(unsafe { UdpSocket::from_raw_fd(s.into_raw_fd()) }))
            }
            BoundSocket::Stream(t, s) => {
                udp.push(None);
                tcp.push((idx, t, unsafe { TcpListener::from_raw_fd(s.into_raw_fd()) }));
            }
        }
    }
    (udp, tcp)
}

impl Shard {
    fn new(
        setup: ShardSetup,
        handoff: Handoff,
        udp: Vec<Option<UdpSocket>>,
    ) -> (Rc<Shard>, mpsc::Receiver<Reload>) {
        let mut core = Core::with_table(setup.cfg, setup.seed);
        core.start_nat_pings(setup.id, handoff.shards());
        if let Some((authn, mode)) = setup.auth {
            core.set_auth(authn, mode, salt_seed());
        }
        let max_message = setup.cfg.max_message;
        let local = setup.cfg.local.listen.iter().map(|l| l.bound).collect();
        let capture = setup
            .capture
            .map(|(endpoint, hep)| RefCell::new(Capture::new(endpoint, hep, local)));
        let handoff = Rc::new(handoff);
        let shard = Rc::new_cyclic(|me| Shard {
            id: setup.id,
            me: me.clone(),
            core: RefCell::new(core),
            udp,
            tcp: Tcp::new(
                setup.id,
                setup.tcp,
                Arc::clone(&setup.node_connections),
                Rc::clone(&handoff),
            ),
            tls: Tcp::new_tls(
                setup.id,
                setup.tcp,
                setup.node_connections,
                handoff,
                TlsSide::new(setup.tls),
            ),
            stream_pkt: RefCell::new(PacketBuf::new(max_message, DEFAULT_HEADROOM)),
            links: RefCell::new(setup.links),
            latency: RefCell::new(Latency::default()),
            published: setup.published,
            health: setup.health.map(RefCell::new),
            capture,
        });
        (shard, setup.reload)
    }

    /// Off the packet path, every tick: new users, other shards' changes (an idle shard still
    /// takes them in, for gauges and the purge), next-hop states, the lapsed bindings, and the counters
    /// for the metrics endpoint.
    fn housekeeping(&self, reload: &mpsc::Receiver<Reload>, purge: bool) {
        let mut core = self.core.borrow_mut();
        while let Ok(r) = reload.try_recv() {
            match r {
                Reload::Users(users) => core.reload_users(users),
                Reload::TlsServer(server) => {
                    if let Some(side) = &self.tls.tls {
                        side.reload(server);
                    }
                }
            }
        }
        self.exchange(&mut core);
        self.apply_hop_states(&mut core);
        core.purge_lapsed(now());
        if purge {
            core.purge(now());
        }
        let instant = std::time::Instant::now();
        self.tcp.sweep(instant);
        self.tls.sweep(instant);
        let (bindings, aors) = core.table_sizes();
        self.published.publish(
            &self.counters(&core),
            &self.latency.borrow(),
            bindings,
            aors,
        );
    }

    /// The core's counters with the transports' own.
    fn counters(&self, core: &Core) -> Counters {
        let mut c = core.counters().clone();
        c.tcp = self.tcp.counters.borrow().clone();
        c.tcp.open = self.tcp.open_connections() as u64;
        c.tls = self.tls.counters.borrow().clone();
        c.tls.open = self.tls.open_connections() as u64;
        if let Some(side) = &self.tls.tls {
            c.tls_handshakes = side.counters.borrow().clone();
        }
        if let Some(capture) = &self.capture {
            c.hep = capture.borrow().counters.clone();
        }
        c
    }

    /// Every [`hep_capture::FLUSH_INTERVAL`]: send what stream traffic captured (a UDP batch
    /// flushes its own at its end). Runs until the task is cancelled.
    async fn capture_loop(&self) {
        loop {
            glommio::timer::sleep(hep_capture::FLUSH_INTERVAL).await;
            self.send_capture();
        }
    }

    /// Last changes out before the rings are dropped (which tells the persister we are done).
    async fn drain_before_exit(&self) {
        self.exchange(&mut self.core.borrow_mut());
        for _ in 0..1000 {
            if self.links.borrow().backlog_len() == 0 {
                break;
            }
            self.links.borrow_mut().flush_backlog();
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Apply what other shards changed and the prober published (before deciding anything).
    fn take_in(&self, core: &mut Core) {
        self.links.borrow_mut().drain(|rec| core.apply_replica(rec));
        self.apply_hop_states(core);
        self.take_closed_flows(core);
    }

    /// Tell the core which peers' connections closed (its Outbound flows on them are dead).
    fn take_closed_flows(&self, core: &mut Core) {
        for (transport, stream) in [(Transport::Tcp, &self.tcp), (Transport::Tls, &self.tls)] {
            for conn in stream.take_closed_accepted() {
                core.flow_closed(transport, conn);
            }
        }
    }

    /// Send this shard's location changes to every other peer and apply theirs.
    fn exchange(&self, core: &mut Core) {
        self.take_closed_flows(core);
        let mut links = self.links.borrow_mut();
        links.flush_backlog();
        for rec in core.take_replication() {
            links.send(rec);
        }
        links.drain(|rec| core.apply_replica(rec));
    }

    /// Apply the next-hop changes the prober published (one acquire load when there are none).
    fn apply_hop_states(&self, core: &mut Core) {
        if let Some(rx) = &self.health {
            let mut rx = rx.borrow_mut();
            while let Ok(s) = rx.pop() {
                core.apply_hop_state(s);
            }
        }
    }
}

impl Datapath for Shard {
    fn udp_socket(&self, idx: usize) -> Option<&UdpSocket> {
        self.udp.get(idx).and_then(Option::as_ref)
    }

    fn send_stream(&self, to: Target, listener: usize, bytes: &[u8]) {
        self.send(to, listener, bytes);
    }

    fn max_message(&self) -> usize {
        self.core.borrow().config().max_message
    }

    fn shares_the_executor(&self) -> bool {
        self.tcp.open_connections() + self.tls.open_connections() > 0
            || self.udp.iter().flatten().count() > 1
    }

    fn start_batch(&self, kernel_drops: u64) {
        let mut core = self.core.borrow_mut();
        core.count_drops(DropReason::QueueFull, kernel_drops);
        self.take_in(&mut core);
    }

    fn shed(&self) {
        self.core.borrow_mut().count_received_shed();
    }

    fn handle(&self, now: Now, src: Source, listener: usize, pkt: &mut PacketBuf) -> Action {
        let seen = Seen::before(pkt.as_slice());
        let action = self.core.borrow_mut().handle(now, src, listener, pkt);
        if let Some(seen) = seen {
            seen.after(&src, &action, pkt.as_slice());
        }
        action
    }

    fn end_batch(&self) {
        self.exchange(&mut self.core.borrow_mut());
    }

    fn record_latency(&self, ns: u64) {
        self.latency.borrow_mut().record(ns);
    }

    fn count_sent(&self, sent: u64, failed: u64) {
        self.core.borrow_mut().count_sent(sent, failed);
    }

    #[inline]
    fn capture_received(&self, src: Source, listener: usize, bytes: &[u8], unix_ns: u64) {
        if let Some(c) = &self.capture {
            c.borrow_mut().received(src, listener, bytes, unix_ns);
        }
    }

    #[inline]
    fn capture_sent(&self, to: Target, listener: usize, bytes: &[u8]) {
        if let Some(c) = &self.capture {
            c.borrow_mut().sent(to, listener, bytes);
        }
    }

    #[inline]
    fn flush_capture(&self) {
        if let Some(c) = &self.capture {
            c.borrow_mut().batch_done();
        }
    }
}

impl Shard {
    /// Send everything captured so far (the capture task's timer, and the exit).
    fn send_capture(&self) {
        if let Some(c) = &self.capture {
            c.borrow_mut().flush();
        }
    }
}

/// Sending what the core decided, whatever the transport, from any task of the shard.
impl Shard {
    /// Send `bytes` to `to` by listener `listener`, now or by queueing: nothing here waits.
    /// Captured (`--hep`) where it leaves: here over UDP, on the connection that takes it
    /// over a stream (by the shard that owns the connection, with its peer's address).
    fn send(&self, to: Target, listener: usize, bytes: &[u8]) {
        match to.transport {
            Transport::Udp => {
                self.capture_sent(to, listener, bytes);
                self.send_udp_now(listener, to.addr, bytes);
            }
            Transport::Tcp | Transport::Tls => self.send_on_stream(to, listener, bytes),
        }
    }

    fn send_udp_now(&self, listener: usize, to: SocketAddr, bytes: &[u8]) {
        let sent = match self.udp_socket(listener) {
            Some(sock) => udp::send_now(sock, bytes, to).is_ok(),
            None => false,
        };
        self.count_sent(u64::from(sent), u64::from(!sent));
    }

    /// Over TCP or TLS: on the connection named when another shard owns it (handed over);
    /// else on the named or newest connection to the address here; else on the connection the
    /// address itself opened to another shard (handed over: nothing can connect to it); else on
    /// a new connection.
    fn send_on_stream(&self, to: Target, listener: usize, bytes: &[u8]) {
        let stream = self.stream(to.transport);
        if let Some(owner) = to.conn.map(|c| c.shard()).filter(|&s| s != self.id) {
            stream.hand_over(owner, to, listener, bytes);
            return;
        }
        if self.send_existing(to, listener, bytes) {
            return;
        }
        if to.flow {
            self.flow_failed(bytes);
            return;
        }
        if let Some(conn) = stream.accepted_elsewhere(to.addr) {
            let to = Target {
                conn: Some(conn),
                ..to
            };
            stream.hand_over(conn.shard(), to, listener, bytes);
            return;
        }
        self.connect_and_send(to, listener, bytes);
    }

    /// What another shard sent over its ring: a message for a connection of this shard, or
    /// news of a connection a peer opened to that shard.
    fn take_handed(&self, handed: Handed) {
        match handed {
            Handed::Message {
                to,
                listener,
                bytes,
            } => self.send_handed(to, listener, &bytes),
            Handed::Announce(a) => self.stream(a.transport).learn_accepted(a),
            Handed::Withdraw(a) => self.stream(a.transport).forget_accepted(a),
            Handed::NatPingAnswer(key) => self.core.borrow_mut().nat_ping_answered(key),
        }
    }

    /// Send a slot's pings, a sendmmsg per listener (nearly always just one) and batch.
    fn send_pings(
        &self,
        pings: &[nat_ping::Ping],
        batch: &PingBatch,
        headers: &mut mmsg::SendHeaders,
    ) {
        let mut datagrams = Vec::with_capacity(pings.len());
        let mut listeners: Vec<usize> = pings.iter().map(|p| p.listener).collect();
        listeners.sort_unstable();
        listeners.dedup();
        for l in listeners {
            datagrams.clear();
            let mine = pings.iter().filter(|p| p.listener == l);
            datagrams.extend(mine.map(|p| (batch.bytes_of(p), p.to)));
            let (sent, failed) = match self.udp_socket(l) {
                Some(sock) => udp::send_many(sock, headers, &datagrams),
                None => (0, datagrams.len() as u64),
            };
            self.count_sent(sent, failed);
        }
    }

    /// Every [`nat_ping::SLOT_MS`]: send the NAT pings that came due (each by the listener its
    /// contact registered on), and hand the answers that came here to other shards' pings
    /// to their owners. Runs until the task is cancelled.
    async fn nat_ping_loop(&self) {
        let mut batch = PingBatch::default();
        let mut headers = mmsg::SendHeaders::new(BATCH);
        loop {
            glommio::timer::sleep(Duration::from_millis(nat_ping::SLOT_MS)).await;
            batch.clear();
            let (written, foreign) = {
                let mut core = self.core.borrow_mut();
                (
                    core.nat_pings(now(), &mut batch),
                    core.take_foreign_ping_answers(),
                )
            };
            self.send_pings(&batch.pings[..written], &batch, &mut headers);
            // Pings for other shards' contacts are few (`--steering random` only): a full ring
            // loses an answer, which the next ping makes up for.
            for (owner, key) in foreign {
                let _ = self.tcp.tell(owner, Handed::NatPingAnswer(key));
            }
            self.exchange(&mut self.core.borrow_mut());
        }
    }

    /// A message handed over for a connection of this shard: on it, else on the newest
    /// connection to its address here, else on a new connection. Never handed on again: two
    /// shards whose copies of the other's connections are stale (a lost withdrawal) would
    /// pass it back and forth.
    fn send_handed(&self, to: Target, listener: usize, bytes: &[u8]) {
        if self.send_existing(to, listener, bytes) {
            return;
        }
        if to.flow {
            self.flow_failed(bytes);
        } else {
            self.connect_and_send(to, listener, bytes);
        }
    }

    /// A request for an Outbound flow whose connection is gone: answered with 430 (a peer
    /// behind NAT accepts no new connection, so none is opened).
    fn flow_failed(&self, request: &[u8]) {
        let mut pkt = PacketBuf::from_message(request, DEFAULT_HEADROOM);
        let action = self.core.borrow_mut().flow_failed(&mut pkt);
        if let Action::Forward { to, socket } | Action::Reply { to, socket } = action {
            self.send(to, socket, pkt.as_slice());
        }
    }

    /// On the connection `to` names, else the newest to its address, if this shard has it;
    /// captured with the connection's peer address.
    fn send_existing(&self, to: Target, listener: usize, bytes: &[u8]) -> bool {
        let stream = self.stream(to.transport);
        let Some(peer) = stream.send_existing(to.conn, to.addr, bytes) else {
            return false;
        };
        self.capture_sent(Target { addr: peer, ..to }, listener, bytes);
        true
    }

    /// On a new connection this shard opens to `to` (and then reuses).
    fn connect_and_send(&self, to: Target, listener: usize, bytes: &[u8]) {
        self.capture_sent(to, listener, bytes);
        if let Some(me) = self.me.upgrade() {
            let fallback = to.fallback_udp;
            tcp::connect_and_send(&me, to.transport, to.addr, listener, bytes, fallback);
        }
    }
}

impl StreamHost for Shard {
    fn stream(&self, transport: Transport) -> &Tcp {
        match transport {
            Transport::Tls => &self.tls,
            _ => &self.tcp,
        }
    }

    fn fall_back_to_udp(&self, to: SocketAddr, mut bytes: Box<[u8]>) {
        // Our Via is the request's first: it names TCP, which it is no longer.
        const OURS: &[u8] = b"\nVia: SIP/2.0/TCP ";
        if let Some(at) = memchr::memmem::find(&bytes, OURS) {
            bytes[at + OURS.len() - 4..at + OURS.len() - 1].copy_from_slice(b"UDP");
        }
        let sock = self
            .udp
            .iter()
            .flatten()
            .find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == to.is_ipv4()));
        let sent = sock.is_some_and(|s| udp::send_now(s, &bytes, to).is_ok());
        self.count_sent(u64::from(sent), u64::from(!sent));
        self.tcp.counters.borrow_mut().udp_fallbacks += u64::from(sent);
    }

    fn on_stream_message(&self, src: Source, listener: usize, msg: &[u8]) {
        self.capture_received(src, listener, msg, wall_clock_ns());
        let mut pkt = self.stream_pkt.borrow_mut();
        if !pkt.set_contents(msg) {
            return;
        }
        let action = {
            let mut core = self.core.borrow_mut();
            // What other shards changed first, as before a datagram batch: a call sent after
            // another shard's 200 OK to a REGISTER must find the binding.
            self.take_in(&mut core);
            let seen = Seen::before(pkt.as_slice());
            let action = core.handle(clock::now(), src, listener, &mut pkt);
            if let Some(seen) = seen {
                seen.after(&src, &action, pkt.as_slice());
            }
            self.exchange(&mut core);
            action
        };
        if let Action::Forward { to, socket } | Action::Reply { to, socket } = action {
            self.send(to, socket, pkt.as_slice());
        }
    }

    fn on_stream_broken(&self, src: Source, listener: usize, bytes: &[u8], err: ParseError) {
        let mut pkt = self.stream_pkt.borrow_mut();
        let bytes = &bytes[..bytes.len().min(self.core.borrow().config().max_message)];
        self.capture_received(src, listener, bytes, wall_clock_ns());
        if !pkt.set_contents(bytes) {
            return;
        }
        let action = self.core.borrow_mut().reject(src, listener, &mut pkt, err);
        if let Action::Reply { to, socket } = action {
            self.send(to, socket, pkt.as_slice());
        }
    }
}
