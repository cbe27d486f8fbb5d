//! One worker thread: its sockets, call tables, timers, pacer and statistics, and the event loop
//! that drives them. Nothing here is shared with other workers except a few atomics for phase
//! changes and a once-a-second snapshot for the live report.
//!
//! The scenario logic lives in `uac.rs` (calls), `register.rs`, `options.rs` (client
//! transactions) and `uas.rs` (the answering side); each adds methods to [`Core`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hdrhistogram::Histogram;
use sipshard::sip::{Frame, HeaderName, Message, ParseError, PONG};

use super::io::{Io, RxBatch, BATCH};
use super::pacer::Pacer;
use super::timers::{Table, Timer, Timers};
use super::Shared;
use crate::config::{Config, Role, Scenario};
use crate::msg::Local;
use crate::stats::{new_hist, record_ns, Cause, Stats};

/// What a client slot is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Free,
    Invite,
    /// REGISTER for `users[user]`.
    Register,
    Options,
}

/// Where a call (or a non-INVITE transaction) stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CState {
    /// Request sent, retransmitting on Timer A/E (RFC 3261 sections 17.1.1.2, 17.1.2.2).
    #[default]
    Calling,
    /// A provisional arrived: INVITE retransmissions stop; non-INVITE ones go on at T2.
    Proceeding,
    /// 2xx received and ACKed; holding until the BYE.
    Established,
    /// BYE sent, retransmitting on Timer E.
    ByeSent,
}

/// One attempt this side started: a call, a REGISTER or an OPTIONS. Its buffers keep their
/// capacity across reuse so steady-state calls allocate nothing.
pub struct Call {
    pub gen: u32,
    /// Bumped whenever the slot's timer is re-armed; older heap entries are ignored.
    pub token: u32,
    pub kind: Kind,
    pub state: CState,
    /// Registration of a UAS user before the call phase (counted apart from the scenario).
    pub setup: bool,
    pub sock: u16,
    /// Where the current request goes.
    pub dest: SocketAddr,
    /// Latency origin of the current phase: the scheduled start (INVITE, REGISTER, OPTIONS) or
    /// the scheduled BYE time.
    pub origin: u64,
    /// First transmission of the current transaction (for the 64*T1 timeout).
    pub txn_start: u64,
    /// Current retransmission interval.
    pub rtx: u64,
    /// Branch sequence: distinct branches for the transactions of one call.
    pub seq: u32,
    pub cseq: u32,
    /// Callee (calls) or index into `Core::users` (REGISTER).
    pub user: u32,
    pub got_18x: bool,
    pub auth_tried: bool,
    /// The request to retransmit.
    pub req: Vec<u8>,
    /// The ACK for the 2xx, re-sent when the 2xx is retransmitted (section 13.2.2.4).
    pub ack: Vec<u8>,
    /// `From`, `To` (with the remote tag) and `Call-ID` lines of the dialog.
    pub dlg: Vec<u8>,
    /// `Route:` line built from the 2xx's Record-Route, reversed (section 12.1.2).
    pub route: Vec<u8>,
    /// Request-URI of in-dialog requests (the remote target, or the first route if strict).
    pub ruri: Vec<u8>,
    /// Where in-dialog requests go (section 12.2.1.1 and 8.1.2).
    pub next_hop: Option<SocketAddr>,
}

impl Default for Call {
    fn default() -> Call {
        Call {
            gen: 0,
            token: 0,
            kind: Kind::Free,
            state: CState::Calling,
            setup: false,
            sock: 0,
            dest: SocketAddr::from(([127, 0, 0, 1], 0)),
            origin: 0,
            txn_start: 0,
            rtx: 0,
            seq: 0,
            cseq: 0,
            user: 0,
            got_18x: false,
            auth_tried: false,
            req: Vec::new(),
            ack: Vec::new(),
            dlg: Vec::new(),
            route: Vec::new(),
            ruri: Vec::new(),
            next_hop: None,
        }
    }
}

/// Where an answered call stands on the UAS side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DState {
    #[default]
    Free,
    /// Final response sent; re-sending it until the ACK (sections 13.3.1.4 and 17.2.1).
    Answered,
    /// ACK received; waiting for the BYE.
    Confirmed,
}

/// One call this side answered.
#[derive(Default)]
pub struct Dialog {
    pub gen: u32,
    pub token: u32,
    pub state: DState,
    pub sock: u16,
    pub peer: Option<SocketAddr>,
    /// When the call was answered; once confirmed, when the ACK came.
    pub started: u64,
    pub rtx: u64,
    /// Key in `Core::dialog_index` (hash of Call-ID and From tag).
    pub key: u64,
    pub call_id: Vec<u8>,
    /// The final response, for retransmission.
    pub resp: Vec<u8>,
    pub final_code: u16,
}

/// A user this worker registers (register scenario, or a UAS user of `call`).
#[derive(Clone, Copy, Debug)]
pub struct User {
    /// The global user number (the name is `<prefix><index>`).
    pub index: u32,
    /// The socket it registers from and is reachable at.
    pub sock: u16,
    pub cseq: u32,
}

/// The histograms the live line shows, reset every second.
pub struct Interval {
    pub main: Histogram<u64>,
    pub lag: Histogram<u64>,
    pub rx_lag: Histogram<u64>,
}

impl Default for Interval {
    fn default() -> Self {
        Interval {
            main: new_hist(),
            lag: new_hist(),
            rx_lag: new_hist(),
        }
    }
}

/// CLOCK_REALTIME in nanoseconds: the clock of kernel receive timestamps.
fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Hashes that are already hashes: the dialog index is keyed by an FNV-1a of Call-ID and tag.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type DialogIndex = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Registering this worker's users (UAS side of `call`).
    Registering,
    /// Waiting for the other workers to finish registering.
    WaitStart,
    /// Attempts on schedule (or answering, for `--uas-only`).
    Main,
    /// Schedule over: finishing in-flight attempts.
    Drain,
    Done,
}

/// Most REGISTERs in flight during the registration phase, so a registrar is not flooded.
const SETUP_WINDOW: usize = 256;
/// Most attempts started per loop turn, so receiving keeps up with a backlog, and so that a
/// generator catching up sends no burst a target's default socket buffer (about 200 KB, some
/// 90 datagrams on loopback) could not take: its loss would be blamed on the target.
const START_PER_TURN: usize = 64;
/// How late a timer may fire so that it shares a wake-up with the pacer. SIP's timers are
/// counted in hundreds of milliseconds (T1 = 500 ms) and the wheel's buckets are 1 ms wide,
/// while every wake-up from an idle wait costs tens of microseconds on a VM. Most deadlines
/// are stale (lazily cancelled: the answer came first), so at a few thousand calls per second
/// they would otherwise double the wake-ups.
const TIMER_SLACK_NS: u64 = 1_000_000;
/// Most `recvmmsg` batches taken from one ready socket per loop turn. Near the generator's
/// ceiling the socket must be drained every turn: a standing queue of thousands of datagrams
/// (each a cold skb and a cold receive buffer) makes every datagram dearer to handle, and a
/// generator that once fell behind would stay behind at a rate it could otherwise hold. The
/// backlog belongs in the pacer (calls not yet started: counted as send lag, no memory) rather
/// than in the kernel. The cap only keeps timers and other sockets served under a flood.
const RECV_BATCHES_PER_TURN: usize = 64;

pub struct Core {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    pub nonce: u32,
    pub io: Io,
    pub timers: Timers,
    pub now: u64,
    pub calls: Vec<Call>,
    pub free_calls: Vec<u32>,
    pub dialogs: Vec<Dialog>,
    pub free_dialogs: Vec<u32>,
    pub dialog_index: DialogIndex,
    pub dialogs_live: usize,
    pub users: Vec<User>,
    pub stats: Stats,
    pub interval: Interval,
    /// SDP body per socket.
    pub sdp: Vec<Vec<u8>>,
    pub target: SocketAddr,
    pub next_sock: usize,
    pub scratch: Vec<u8>,
    pub phase: Phase,
    pacer: Pacer,
    setup_next: usize,
    setup_live: usize,
    setup_done: usize,
    main_start: u64,
    next_tick: u64,
    client_finished: bool,
    server_linger_from: Option<u64>,
}

impl Core {
    pub fn new(id: usize, cfg: Arc<Config>, shared: Arc<Shared>, io: Io, nonce: u32) -> Core {
        let sdp = io.socks.iter().map(|s| crate::msg::sdp(s.local)).collect();
        let target = cfg.target.unwrap_or(io.socks[0].local);
        // Users of this worker: global user i belongs to worker i % threads.
        let mut users = Vec::new();
        let has_users = cfg.scenario == Scenario::Register || cfg.registers_first();
        if has_users {
            let mut i = id;
            while i < cfg.users {
                let k = i / cfg.threads;
                users.push(User {
                    index: i as u32,
                    sock: (k % io.socks.len()) as u16,
                    cseq: 0,
                });
                i += cfg.threads;
            }
        }
        // The TLS handshakes that opened this worker's connections, before the run.
        let mut stats = Stats::default();
        for h in &io.handshakes {
            stats.handshake(h.resumed, h.ns);
        }
        let phase = if cfg.registers_first() {
            Phase::Registering
        } else {
            Phase::WaitStart
        };
        Core {
            id,
            cfg,
            shared,
            nonce,
            io,
            timers: Timers::with_capacity(1 << 14),
            now: 0,
            calls: Vec::with_capacity(1 << 12),
            free_calls: Vec::with_capacity(1 << 12),
            dialogs: Vec::new(),
            free_dialogs: Vec::new(),
            dialog_index: DialogIndex::default(),
            dialogs_live: 0,
            users,
            stats,
            interval: Interval::default(),
            sdp,
            target,
            next_sock: 0,
            scratch: Vec::with_capacity(256),
            phase,
            pacer: Pacer::idle(),
            setup_next: 0,
            setup_live: 0,
            setup_done: 0,
            main_start: 0,
            next_tick: u64::MAX,
            client_finished: false,
            server_linger_from: None,
        }
    }

    #[inline]
    pub fn clock(&self) -> u64 {
        self.shared.base.elapsed().as_nanos() as u64
    }

    /// Where socket `sock` is reached (its address and transport), for Via and Contact.
    #[inline]
    pub fn local(&self, sock: usize) -> Local {
        Local {
            addr: self.io.socks[sock].local,
            transport: self.cfg.transport,
        }
    }

    /// A socket for the next attempt, round-robin over this worker's ports.
    #[inline]
    pub fn pick_sock(&mut self) -> u16 {
        let s = self.next_sock;
        self.next_sock = (s + 1) % self.io.socks.len();
        s as u16
    }

    // ---- client table ----

    pub fn alloc_call(&mut self, kind: Kind) -> u32 {
        let slot = match self.free_calls.pop() {
            Some(s) => s,
            None => {
                self.calls.push(Call::default());
                (self.calls.len() - 1) as u32
            }
        };
        let c = &mut self.calls[slot as usize];
        c.kind = kind;
        c.state = CState::Calling;
        c.setup = false;
        c.seq = 0;
        c.got_18x = false;
        c.auth_tried = false;
        c.next_hop = None;
        slot
    }

    pub fn free_call(&mut self, slot: u32) {
        let c = &mut self.calls[slot as usize];
        c.kind = Kind::Free;
        c.gen = c.gen.wrapping_add(1);
        c.token = c.token.wrapping_add(1);
        self.free_calls.push(slot);
    }

    #[inline]
    pub fn arm_call(&mut self, slot: u32, at: u64) {
        let c = &mut self.calls[slot as usize];
        c.token = c.token.wrapping_add(1);
        self.timers.arm(at, Table::Client, slot, c.token);
    }

    /// Send (or re-send) the slot's stored request.
    #[inline]
    pub fn send_req(&mut self, slot: u32) {
        let c = &self.calls[slot as usize];
        self.io.socks[c.sock as usize].out.push(c.dest, &c.req);
    }

    /// An attempt ended well: count it and free the slot.
    pub fn succeed(&mut self, slot: u32) {
        if self.calls[slot as usize].setup {
            self.stats.counters.registered += 1;
            self.setup_finished();
        } else {
            self.stats.counters.client.succeeded += 1;
        }
        self.free_call(slot);
    }

    /// An attempt ended badly.
    pub fn fail(&mut self, slot: u32, cause: Cause) {
        if self.calls[slot as usize].setup {
            self.stats.counters.registration_failed += 1;
            self.setup_finished();
        } else {
            self.stats.counters.client.fail(cause);
        }
        self.free_call(slot);
    }

    /// A final status nobody asked for.
    pub fn fail_status(&mut self, slot: u32, code: u16) {
        self.stats.unexpected_statuses.bump(code);
        self.fail(slot, Cause::UnexpectedStatus);
    }

    fn setup_finished(&mut self) {
        self.setup_live -= 1;
        self.setup_done += 1;
    }

    /// Record the lag of an attempt scheduled at `sched` and started now.
    #[inline]
    pub fn record_start(&mut self, sched: u64) {
        let lag = self.now.saturating_sub(sched);
        record_ns(&mut self.stats.hists.lag, lag);
        record_ns(&mut self.interval.lag, lag);
        self.stats.counters.client.attempted += 1;
        self.stats.last_start = self.now;
    }

    /// Retransmission / timeout of a non-INVITE client transaction (Timer E and F, RFC 3261
    /// section 17.1.2.2): re-send at T1, 2*T1, ... capped at T2 (T2 straight away once a
    /// provisional came), give up at 64*T1. Returns false when it timed out (slot freed).
    pub fn non_invite_timer(&mut self, slot: u32) -> bool {
        let (t1, t2) = (self.cfg.t1_ns, self.cfg.t2_ns);
        let deadline = self.calls[slot as usize].txn_start + 64 * t1;
        if self.now >= deadline {
            self.fail(slot, Cause::Timeout);
            return false;
        }
        if !self.retransmits() {
            self.arm_call(slot, deadline);
            return true;
        }
        self.send_req(slot);
        self.stats.counters.retrans.non_invite += 1;
        let c = &mut self.calls[slot as usize];
        c.rtx = if c.state == CState::Proceeding {
            t2
        } else {
            (c.rtx * 2).min(t2)
        };
        let at = (self.now + c.rtx).min(deadline);
        self.arm_call(slot, at);
        true
    }

    /// Start a non-INVITE client transaction with the request already in `req`.
    pub fn start_non_invite(&mut self, slot: u32) {
        let t1 = self.cfg.t1_ns;
        let c = &mut self.calls[slot as usize];
        c.txn_start = self.now;
        c.rtx = t1;
        self.send_req(slot);
        let first = if self.retransmits() { t1 } else { 64 * t1 };
        self.arm_call(slot, self.now + first);
    }

    // ---- answering side ----

    pub fn alloc_dialog(&mut self) -> u32 {
        let slot = match self.free_dialogs.pop() {
            Some(s) => s,
            None => {
                self.dialogs.push(Dialog::default());
                (self.dialogs.len() - 1) as u32
            }
        };
        self.dialogs_live += 1;
        slot
    }

    pub fn free_dialog(&mut self, slot: u32) {
        let d = &mut self.dialogs[slot as usize];
        d.state = DState::Free;
        d.gen = d.gen.wrapping_add(1);
        d.token = d.token.wrapping_add(1);
        let key = d.key;
        if self.dialog_index.get(&key) == Some(&slot) {
            self.dialog_index.remove(&key);
        }
        self.dialogs_live -= 1;
        self.free_dialogs.push(slot);
    }

    #[inline]
    pub fn arm_dialog(&mut self, slot: u32, at: u64) {
        let d = &mut self.dialogs[slot as usize];
        d.token = d.token.wrapping_add(1);
        self.timers.arm(at, Table::Server, slot, d.token);
    }

    // ---- dispatch ----

    pub fn on_datagram(&mut self, sock: usize, from: Option<SocketAddr>, data: &mut [u8]) {
        self.stats.counters.datagrams_received += 1;
        // Parsed in place: the view is a few KB, moving it out of a Result costs as much as a
        // short parse.
        let mut slot = MaybeUninit::uninit();
        let msg = match Message::parse_in(&mut slot, data) {
            Ok(m) => m,
            // CRLF keepalives (RFC 5626 section 3.5.1) are not errors.
            Err(ParseError::Empty) => return,
            Err(_) => {
                self.stats.counters.unparseable += 1;
                return;
            }
        };
        let Some(from) = from else { return };
        if msg.is_request() {
            self.on_request(sock, from, msg);
        } else {
            self.on_response(sock, from, msg);
        }
    }

    fn on_response(&mut self, sock: usize, from: SocketAddr, msg: &Message<'_>) {
        let Some(id) = msg
            .header(HeaderName::Via)
            .and_then(crate::msg::top_branch)
            .and_then(|b| crate::msg::parse_branch(b, self.nonce))
        else {
            self.stats.counters.stray += 1;
            return;
        };
        let live = self
            .calls
            .get(id.slot as usize)
            .is_some_and(|c| c.gen == id.gen && c.kind != Kind::Free);
        if !live {
            self.stray_response(sock, from, msg);
            return;
        }
        match self.calls[id.slot as usize].kind {
            Kind::Invite => self.invite_response(id.slot, msg),
            Kind::Register => self.register_response(id.slot, msg),
            Kind::Options => self.options_response(id.slot, msg),
            Kind::Free => {}
        }
    }

    fn on_timer(&mut self, t: Timer) {
        match t.table {
            Table::Client => {
                let live = self
                    .calls
                    .get(t.slot as usize)
                    .is_some_and(|c| c.token == t.token && c.kind != Kind::Free);
                if !live {
                    return;
                }
                match self.calls[t.slot as usize].kind {
                    Kind::Invite => self.invite_timer(t.slot, t.at),
                    Kind::Register | Kind::Options => {
                        self.non_invite_timer(t.slot);
                    }
                    Kind::Free => {}
                }
            }
            Table::Server => {
                let live = self
                    .dialogs
                    .get(t.slot as usize)
                    .is_some_and(|d| d.token == t.token && d.state != DState::Free);
                if live {
                    self.dialog_timer(t.slot);
                }
            }
        }
    }

    /// Start the next scheduled attempt of the scenario.
    fn start_attempt(&mut self, sched: u64, k: u64) {
        match self.cfg.scenario {
            Scenario::Call => self.start_call(sched, k),
            Scenario::Register => {
                let u = (k % self.users.len() as u64) as usize;
                self.start_register(u, sched, false);
            }
            Scenario::Options => self.start_options(sched),
        }
    }

    pub fn client_in_flight(&self) -> u64 {
        self.stats.counters.client.in_flight()
    }

    // ---- phases ----

    fn step_phase(&mut self) {
        match self.phase {
            Phase::Registering => {
                while self.setup_next < self.users.len() && self.setup_live < SETUP_WINDOW {
                    let u = self.setup_next;
                    self.setup_next += 1;
                    self.setup_live += 1;
                    let now = self.now;
                    self.start_register(u, now, true);
                }
                if self.setup_done == self.users.len() {
                    if self.stats.counters.registration_failed > 0 {
                        self.shared.abort_with(format!(
                            "worker {}: {} of {} UAS users failed to register through {}",
                            self.id,
                            self.stats.counters.registration_failed,
                            self.users.len(),
                            self.target
                        ));
                        return;
                    }
                    let n = self.shared.registered.fetch_add(1, Ordering::AcqRel) + 1;
                    if n == self.cfg.threads {
                        self.shared.set_start(self.clock() + 20_000_000);
                    }
                    self.phase = Phase::WaitStart;
                }
            }
            Phase::WaitStart => {
                let start = self.shared.main_start.load(Ordering::Acquire);
                if start != 0 {
                    self.main_start = start;
                    self.next_tick = start + 1_000_000_000;
                    let end = start + self.cfg.duration_ns;
                    self.pacer = if self.cfg.has_client() {
                        if self.cfg.scenario == Scenario::Register && self.users.is_empty() {
                            Pacer::idle()
                        } else {
                            Pacer::new(self.cfg.rate, self.cfg.threads, self.id, start, end)
                        }
                    } else {
                        Pacer::idle()
                    };
                    self.phase = Phase::Main;
                }
            }
            Phase::Main => {
                let stop = self.shared.stop.load(Ordering::Relaxed);
                if stop {
                    self.pacer.stop(self.now);
                }
                let over = if self.cfg.has_client() {
                    self.pacer.done()
                } else {
                    stop || self.now >= self.main_start + self.cfg.duration_ns
                };
                if over || self.now >= self.hard_deadline() {
                    self.phase = Phase::Drain;
                }
            }
            Phase::Drain => {
                let hard = self.now >= self.hard_deadline();
                if self.cfg.has_client() && !self.client_finished {
                    if self.client_in_flight() > 0 && !hard {
                        return;
                    }
                    self.give_up_clients();
                    self.client_finished = true;
                    self.shared.clients_active.fetch_sub(1, Ordering::AcqRel);
                }
                if !self.cfg.has_server() {
                    self.phase = Phase::Done;
                    return;
                }
                // Other workers' calls may still reach this worker's answering side.
                if self.shared.clients_active.load(Ordering::Acquire) > 0 && !hard {
                    return;
                }
                if self.dialogs_live == 0 || hard {
                    self.phase = Phase::Done;
                    return;
                }
                // In a two-sided run every dialog ends with its BYE once all calls are done:
                // linger a moment for stragglers. An answer-only run waits up to --drain.
                if self.cfg.role == Role::Both {
                    let since = *self.server_linger_from.get_or_insert(self.now);
                    if self.now >= since + (2 * self.cfg.t1_ns).max(1_000_000_000) {
                        self.phase = Phase::Done;
                    }
                }
            }
            Phase::Done => {}
        }
    }

    fn hard_deadline(&self) -> u64 {
        self.main_start + self.cfg.duration_ns + self.cfg.drain_ns
    }

    /// Count attempts still unfinished at the hard deadline as timeouts.
    fn give_up_clients(&mut self) {
        for slot in 0..self.calls.len() as u32 {
            if self.calls[slot as usize].kind != Kind::Free {
                self.fail(slot, Cause::Timeout);
            }
        }
    }

    /// Fail answered-but-unfinished dialogs at the end (no ACK or no BYE came).
    fn give_up_dialogs(&mut self) {
        for slot in 0..self.dialogs.len() as u32 {
            if self.dialogs[slot as usize].state != DState::Free {
                self.stats.counters.server.fail(Cause::Timeout);
                self.free_dialog(slot);
            }
        }
    }

    fn tick(&mut self) {
        if self.now < self.next_tick {
            return;
        }
        self.next_tick += 1_000_000_000;
        if self.next_tick <= self.now {
            // Stalled for more than a second: skip ahead.
            self.next_tick = self.now + 1_000_000_000;
        }
        self.publish();
    }

    fn publish(&mut self) {
        let mut snap = self.shared.snapshots[self.id].lock().unwrap();
        let _ = snap.main.add(&self.interval.main);
        let _ = snap.lag.add(&self.interval.lag);
        let _ = snap.rx_lag.add(&self.interval.rx_lag);
        snap.counters = self.stats.counters.clone();
        drop(snap);
        self.interval.main.reset();
        self.interval.lag.reset();
        self.interval.rx_lag.reset();
    }

    /// Run the event loop until the run is over; returns what was measured.
    pub fn run(mut self) -> Stats {
        let mut rx = RxBatch::new();
        let mut ready = Vec::with_capacity(self.io.socks.len());
        loop {
            self.now = self.clock();
            if self.shared.aborted() {
                break;
            }
            self.step_phase();
            if self.phase == Phase::Done {
                break;
            }
            while let Some(t) = self.timers.pop_due(self.now) {
                self.on_timer(t);
            }
            let mut started = 0;
            if self.phase == Phase::Main {
                while started < START_PER_TURN {
                    let k = self.pacer.taken();
                    match self.pacer.take_due(self.now) {
                        Some(sched) => {
                            self.start_attempt(sched, k);
                            started += 1;
                        }
                        None => break,
                    }
                }
            }
            self.flush();
            let now = self.clock();
            let mut next = now + 50_000_000;
            if let Some(t) = self.pacer.next_due() {
                if self.phase == Phase::Main {
                    next = next.min(t);
                }
            }
            if let Some(t) = self.timers.next_at() {
                next = next.min(t + TIMER_SLACK_NS);
            }
            next = next.min(self.next_tick);
            if matches!(self.phase, Phase::Registering | Phase::WaitStart) {
                next = next.min(now + 1_000_000);
            }
            let busy = started == START_PER_TURN || self.io.pending() > 0;
            let timeout = if busy { 0 } else { next.saturating_sub(now) };
            if let Err(e) = self.io.wait(timeout, &mut ready) {
                self.shared
                    .abort_with(format!("worker {}: wait: {e}", self.id));
                break;
            }
            for &s in &ready {
                if self.io.socks[s].stream.is_some() {
                    self.on_stream_readable(s);
                    continue;
                }
                for _ in 0..RECV_BATCHES_PER_TURN {
                    let n = rx.recv(self.io.socks[s].fd).unwrap_or_default();
                    self.now = self.clock();
                    let real = realtime_ns();
                    // Datagrams queued before the main phase (stale traffic from an earlier
                    // run to a reused port) say nothing about keeping up with the schedule.
                    let measured = matches!(self.phase, Phase::Main | Phase::Drain);
                    for i in 0..n {
                        let (data, from, stamp) = rx.get(i);
                        if stamp > 0 && measured {
                            let waited = real.saturating_sub(stamp);
                            record_ns(&mut self.stats.hists.rx_lag, waited);
                            record_ns(&mut self.interval.rx_lag, waited);
                        }
                        self.on_datagram(s, from, data);
                    }
                    if n < BATCH {
                        break;
                    }
                }
            }
            self.flush();
            if self.phase != Phase::Registering && self.phase != Phase::WaitStart {
                self.now = self.clock();
                self.tick();
            }
        }
        self.give_up_clients();
        self.give_up_dialogs();
        self.flush();
        self.stats.counters.socket_drops = self.io.socket_drops();
        self.publish();
        self.stats
    }

    /// Read a readable connection and handle every whole message in it (a CRLF keep-alive
    /// ping is answered with a pong, RFC 5626 section 4.4.1).
    fn on_stream_readable(&mut self, s: usize) {
        let Some(mut st) = self.io.socks[s].stream.take() else {
            return;
        };
        let mut open = st.fill();
        let peer = st.peer;
        let mut at = 0;
        loop {
            match st.frame(at) {
                Ok(Frame::Message { len }) => {
                    self.now = self.clock();
                    self.on_datagram(s, Some(peer), st.bytes(at, len));
                    at += len;
                }
                Ok(Frame::Ping { len }) => {
                    self.io.socks[s].out.push(peer, PONG);
                    at += len;
                }
                Ok(Frame::Skip { len }) => at += len,
                Ok(Frame::Partial) => break,
                // The framing is lost: nothing more on this connection can be trusted.
                Err(_) => {
                    self.stats.counters.unparseable += 1;
                    open = false;
                    break;
                }
            }
        }
        st.consume(at);
        self.io.socks[s].stream = Some(st);
        if !open {
            self.stats.counters.connections_lost += 1;
            self.io.close(s);
        }
    }

    /// Do requests get retransmitted on a timer? Not over TCP: the transport does it
    /// (RFC 3261 sections 17.1.1.2 and 17.1.2.2 start Timers A and E on unreliable transports
    /// only; Timers B and F still end the transaction).
    #[inline]
    pub fn retransmits(&self) -> bool {
        !self.cfg.transport.is_stream()
    }

    pub fn flush(&mut self) {
        let (sent, dropped) = self.io.flush();
        self.stats.counters.datagrams_sent += sent;
        self.stats.counters.send_errors += dropped;
    }
}
