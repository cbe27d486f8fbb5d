//! The stateless proxy's decisions (RFC 3261 sections 16.3-16.7 and 16.11). No I/O.
//!
//! [`Core::handle`] takes one datagram in its receive buffer and returns an [`Action`]: forward
//! it (the buffer has been rewritten in place), send the reply now in the buffer, or drop it.
//! The shard runtime owns sockets and clocks; it passes the time in and sends what comes out.
//! A core owns its shard's location table and counters; location changes it makes are queued
//! for the other shards ([`Core::take_replication`]) and theirs are applied with
//! [`Core::apply_replica`].
//!
//! A request goes through the stages of `request` (validate, route, local, authenticate,
//! target, edit), a response through `response`; either ends in a `Decision`, which
//! [`Core::handle`] turns into the buffer's new contents and the [`Action`].

pub mod auth;
pub mod auth_log;
pub mod branch;
pub mod closed_flows;
pub mod flow;
pub mod keep;
pub mod nat_ping;
pub mod next_hop;
pub mod pike;
pub mod redirect;
pub mod reply;

mod alias;
mod remove;
mod request;
mod response;
mod upkeep;

use std::mem::MaybeUninit;

use crate::counters::{Counters, DropReason};
use crate::identity::LocalIdentity;
use crate::location::{LocationTable, Now};
use crate::registrar::{self, RegistrarConfig};
use crate::sip::{Edits, Message, PacketBuf, ParseError, Source, Target, Transport};
use crate::stun;

use auth::ShardAuth;
use next_hop::HopHealth;
pub use next_hop::StaticRoute;
use redirect::RedirectPolicy;
use reply::ReplySource;

/// The methods this proxy accepts (it forwards any method; these are the ones it knows).
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, PRACK, UPDATE, SUBSCRIBE, NOTIFY, REFER, MESSAGE, PUBLISH";

/// The parameter of our Via that names the connection a request came in on.
const CONN_PARAM: &[u8] = b"sc";

/// Max-Forwards written into a request that has none (RFC 3261 section 16.6 item 3).
pub const DEFAULT_MAX_FORWARDS: u8 = 70;

/// Read-only configuration shared by every shard.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub local: LocalIdentity,
    pub routes: Vec<StaticRoute>,
    pub record_route: bool,
    /// Answer with 302 instead of forwarding (`--redirect`, `--redirect-domain`).
    pub redirect: RedirectPolicy,
    pub registrar: RegistrarConfig,
    pub max_message: usize,
    /// Per-source flood protection: (requests per second per shard, cool-down seconds).
    pub pike: Option<(u32, u64)>,
    /// A request that would leave over UDP larger than this goes over TCP instead (RFC 3261
    /// section 18.1.1), when we listen on TCP; 0 never switches.
    pub udp_mtu: usize,
    /// Pings to UDP contacts behind NAT (`--nat-ping-interval`), when on.
    pub nat_ping: Option<nat_ping::NatPingConfig>,
    /// Add our Path, with a flow token, to REGISTERs forwarded to another registrar (an edge
    /// proxy, RFC 3327 and RFC 5626); `--no-path` turns it off.
    pub edge_path: bool,
    /// What flow tokens are signed with.
    pub flow_key: flow::FlowKey,
}

impl ProxyConfig {
    /// A proxy and registrar for `local` with what `sipshard` does without flags (no static
    /// route, no Record-Route, no redirect, the registrar's defaults, 65,507-byte messages, no
    /// pike, the 1,300-byte UDP limit, no NAT pings, Path on REGISTERs it forwards), flow tokens
    /// signed with `flow_key`. Change fields with struct update syntax.
    pub fn new(local: LocalIdentity, flow_key: flow::FlowKey) -> ProxyConfig {
        ProxyConfig {
            local,
            routes: vec![],
            record_route: false,
            redirect: RedirectPolicy::default(),
            registrar: RegistrarConfig::default(),
            max_message: 65_507,
            pike: None,
            udp_mtu: 1300,
            nat_ping: None,
            edge_path: true,
            flow_key,
        }
    }
}

/// What the runtime does with the datagram after [`Core::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Send the rewritten message to `to` from listener `socket`.
    Forward {
        to: Target,
        socket: usize,
    },
    /// Send the reply now in the buffer to `to` from listener `socket`.
    Reply {
        to: Target,
        socket: usize,
    },
    Drop(DropReason),
}

/// What a decision produced, before the buffer is touched.
enum Decision {
    /// Apply `Core::edits` to the first `len` bytes and send them.
    Forward {
        to: Target,
        socket: usize,
        len: usize,
    },
    /// Send `Core::reply`.
    Reply {
        to: Target,
        socket: usize,
        status: u16,
    },
    /// Send `Core::reply`, which is not SIP (a STUN answer).
    Answer {
        to: Target,
        socket: usize,
    },
    Drop(DropReason),
}

/// One shard's proxy and registrar state.
///
/// Driven with byte strings, no sockets: register bob, then call him.
///
/// ```
/// use std::net::SocketAddr;
/// use sipshard::identity::LocalIdentity;
/// use sipshard::location::Now;
/// use sipshard::proxy::{Action, Core, ProxyConfig};
/// use sipshard::proxy::flow::FlowKey;
/// use sipshard::sip::rewrite::DEFAULT_HEADROOM;
/// use sipshard::sip::{PacketBuf, Source, Target, Transport};
///
/// let listen: SocketAddr = "192.0.2.10:5060".parse().unwrap();
/// let local = LocalIdentity::new(&[(Transport::Udp, listen)], &[], None, &["example.com".into()], None);
/// let cfg: &'static ProxyConfig = Box::leak(Box::new(ProxyConfig::new(local, FlowKey::new([7; 32]))));
/// let mut core = Core::new(cfg);
/// let now = Now { unix_ms: 1_700_000_000_000 };
/// let mut send = |from: &str, text: &str| {
///     let mut pkt = PacketBuf::from_message(text.as_bytes(), DEFAULT_HEADROOM);
///     let action = core.handle(now, Source::udp(from.parse().unwrap()), 0, &mut pkt);
///     (action, String::from_utf8_lossy(pkt.as_slice()).into_owned())
/// };
///
/// let (action, reply) = send("192.0.2.60:5062",
///     "REGISTER sip:example.com SIP/2.0\r\n\
///      Via: SIP/2.0/UDP 192.0.2.60:5062;branch=z9hG4bKreg1\r\n\
///      From: <sip:bob@example.com>;tag=r1\r\nTo: <sip:bob@example.com>\r\n\
///      Call-ID: reg-bob\r\nCSeq: 1 REGISTER\r\n\
///      Contact: <sip:bob@192.0.2.60:5062>\r\nContent-Length: 0\r\n\r\n");
/// let to = Target::udp("192.0.2.60:5062".parse().unwrap());
/// assert_eq!(action, Action::Reply { to, socket: 0 });
/// assert!(reply.starts_with("SIP/2.0 200 OK\r\n"));
///
/// let (action, invite) = send("192.0.2.30:5060",
///     "INVITE sip:bob@example.com SIP/2.0\r\n\
///      Via: SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n\
///      From: <sip:alice@example.net>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
///      Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
/// assert_eq!(action, Action::Forward { to, socket: 0 });
/// assert!(invite.starts_with("INVITE sip:bob@192.0.2.60:5062 SIP/2.0\r\n"));
/// assert!(invite.contains("Max-Forwards: 69\r\n"));
/// ```
pub struct Core {
    cfg: &'static ProxyConfig,
    /// This shard's copy of the location table. (Public until the runtime asks through
    /// [`Core::table_sizes`].)
    table: LocationTable,
    /// (Public until the runtime counts through [`Core::counters`] and the `count_*` methods.)
    counters: Counters,
    /// Edits of the message being forwarded (reused; never reallocated).
    edits: Box<Edits>,
    /// The reply being composed (reused).
    reply: Vec<u8>,
    /// Extra header lines for the reply being composed (reused).
    extra: Vec<u8>,
    /// The registrar's Date line, formatted once per second.
    date: registrar::DateLine,
    /// Location changes made here, stamped, waiting to be sent to the other shards.
    outbox: registrar::Outbox,
    /// Per-source flood protection (`--pike`), when on.
    pike: Option<pike::Pike>,
    /// Digest authentication, when `--users` is given.
    auth: Option<ShardAuth>,
    /// Which next hops of the static routes are down (this shard's copy of the prober's view).
    hops: HopHealth,
    /// Pings to the contacts behind NAT registered through this shard, when on.
    pinger: Option<nat_ping::Pinger>,
    /// Peers' connections known closed: Outbound flows on them are skipped.
    closed_flows: closed_flows::ClosedFlows,
}

impl Core {
    pub fn new(cfg: &'static ProxyConfig) -> Core {
        Self::with_table(cfg, LocationTable::new())
    }

    /// A core whose location table starts as `table` (loaded from `--state-dir`).
    pub fn with_table(cfg: &'static ProxyConfig, table: LocationTable) -> Core {
        Core {
            cfg,
            table,
            counters: Counters::default(),
            edits: Box::new(Edits::new()),
            reply: Vec::with_capacity(4096),
            extra: Vec::with_capacity(2048),
            date: registrar::DateLine::default(),
            outbox: registrar::Outbox::default(),
            pike: cfg
                .pike
                .map(|(rate, cooldown)| pike::Pike::new(rate, cooldown)),
            auth: None,
            hops: HopHealth::default(),
            pinger: None,
            closed_flows: closed_flows::ClosedFlows::default(),
        }
    }

    pub fn config(&self) -> &'static ProxyConfig {
        self.cfg
    }

    /// Handle one message received on listener `socket` from `src`.
    pub fn handle(&mut self, now: Now, src: Source, socket: usize, pkt: &mut PacketBuf) -> Action {
        self.counters.datagrams_received += 1;
        if self.pike_blocks(now, src, pkt.as_slice()) {
            return self.drop_counted(DropReason::Flood);
        }
        let decision = self.decide(now, src, socket, pkt);
        self.finish(decision, pkt)
    }

    /// Flood protection looks at requests only (responses answer what we sent), before any
    /// parsing: a blocked source costs one hash lookup.
    fn pike_blocks(&mut self, now: Now, src: Source, datagram: &[u8]) -> bool {
        let Some(p) = &mut self.pike else {
            return false;
        };
        if datagram.starts_with(b"SIP/") {
            return false;
        }
        let pike::Verdict::Block { newly } = p.check(src.addr.ip(), now.unix_ms) else {
            return false;
        };
        if newly {
            log::warn!("pike: {} exceeded its request rate; blocked", src.addr.ip());
        }
        true
    }

    /// Parse the datagram once, in place, and decide; nothing is written to `pkt` yet.
    fn decide(&mut self, now: Now, src: Source, socket: usize, pkt: &mut PacketBuf) -> Decision {
        if src.transport == Transport::Udp && stun::looks_like_stun(pkt.as_slice()) {
            return self.on_stun(pkt.as_slice(), src, socket);
        }
        if pkt.len() > self.cfg.max_message {
            self.counters.parse_error(ParseError::TooLarge);
            return self.salvage_reply(pkt.as_slice(), src, socket, 513, "Message Too Large");
        }
        // Parsed in place: the header index is some 3 KB, too much to move on every datagram.
        let mut slot = MaybeUninit::uninit();
        match Message::parse_in(&mut slot, pkt.as_mut_slice()) {
            Ok(msg) if msg.is_request() => self.on_request(msg, src, socket, now),
            Ok(msg) => self.on_response(msg, src, socket),
            Err(ParseError::Empty) => Decision::Drop(DropReason::Keepalive),
            Err(e) => {
                self.counters.parse_error(e);
                self.salvage_reply(pkt.as_slice(), src, socket, e.status(), e.reason())
            }
        }
    }

    /// Answer a message its transport could not frame (a stream broken for good): the reply,
    /// when the bytes allow one, is composed into `pkt`.
    pub fn reject(
        &mut self,
        src: Source,
        socket: usize,
        pkt: &mut PacketBuf,
        err: ParseError,
    ) -> Action {
        self.counters.datagrams_received += 1;
        self.counters.parse_error(err);
        let decision = self.salvage_reply(pkt.as_slice(), src, socket, err.status(), err.reason());
        self.finish(decision, pkt)
    }

    /// Carry out a decision on the buffer: apply the edits or copy the reply in, and count.
    fn finish(&mut self, decision: Decision, pkt: &mut PacketBuf) -> Action {
        match decision {
            Decision::Forward { to, socket, len } => {
                pkt.truncate(len);
                if self.edits.apply(pkt).is_ok() {
                    return Action::Forward { to, socket };
                }
                self.drop_counted(DropReason::RewriteFailed)
            }
            Decision::Reply { to, socket, status } => {
                if pkt.set_contents(&self.reply) {
                    self.counters.reply(status);
                    return Action::Reply { to, socket };
                }
                self.drop_counted(DropReason::RewriteFailed)
            }
            Decision::Answer { to, socket } => {
                if pkt.set_contents(&self.reply) {
                    return Action::Reply { to, socket };
                }
                self.drop_counted(DropReason::RewriteFailed)
            }
            Decision::Drop(r) => self.drop_counted(r),
        }
    }

    /// A STUN message on a UDP listener (RFC 5626 section 4.4.2): a Binding request is
    /// answered with the address it came from; anything else is dropped and counted.
    fn on_stun(&mut self, datagram: &[u8], src: Source, socket: usize) -> Decision {
        match stun::classify(datagram) {
            stun::Stun::BindingRequest {
                transaction,
                fingerprint,
            } => {
                stun::binding_success(&transaction, src.addr, fingerprint, &mut self.reply);
                self.counters.nat.stun_answered += 1;
                Decision::Answer {
                    to: Target::udp(src.addr),
                    socket,
                }
            }
            stun::Stun::Other => Decision::Drop(DropReason::Stun),
            stun::Stun::Malformed(why) => {
                log::debug!("STUN from {}: {why}", src.addr);
                Decision::Drop(DropReason::Stun)
            }
        }
    }

    fn drop_counted(&mut self, reason: DropReason) -> Action {
        self.counters.drop(reason);
        Action::Drop(reason)
    }

    /// Reply to a datagram that did not parse (or is too large to), when its Via and dialog
    /// headers can be found by a tolerant scan.
    fn salvage_reply(
        &mut self,
        datagram: &[u8],
        src: Source,
        socket: usize,
        status: u16,
        reason: &str,
    ) -> Decision {
        match ReplySource::salvage(datagram) {
            Some(rs) => self.reply_with(&rs, src, socket, status, reason),
            None => Decision::Drop(DropReason::Unparseable),
        }
    }

    fn reply_to(
        &mut self,
        msg: &Message<'_>,
        src: Source,
        socket: usize,
        status: u16,
        reason: &str,
    ) -> Decision {
        self.extra.clear();
        self.reply_extra(msg, src, socket, status, reason)
    }

    /// Reply with the header lines already in `self.extra`. ACKs are never answered.
    fn reply_extra(
        &mut self,
        msg: &Message<'_>,
        src: Source,
        socket: usize,
        status: u16,
        reason: &str,
    ) -> Decision {
        if msg.method() == Some(crate::sip::Method::Ack) {
            return Decision::Drop(DropReason::Unanswerable);
        }
        match ReplySource::from_message(msg) {
            Some(rs) => self.reply_with(&rs, src, socket, status, reason),
            None => Decision::Drop(DropReason::Unanswerable),
        }
    }

    fn reply_with(
        &mut self,
        rs: &ReplySource<'_>,
        src: Source,
        socket: usize,
        status: u16,
        reason: &str,
    ) -> Decision {
        let to = rs.destination(src);
        let Some(socket) = self.cfg.local.socket_for(socket, &to) else {
            return Decision::Drop(DropReason::NoSocket);
        };
        let keep = keep::negotiates(status, rs.cseq_method(), self.cfg.record_route)
            .then_some(self.cfg.registrar.flow_timer);
        rs.compose(&mut self.reply, status, reason, src.addr, &self.extra, keep);
        Decision::Reply { to, socket, status }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keep;
#[cfg(test)]
mod tests_path;
#[cfg(test)]
mod tests_tcp;
