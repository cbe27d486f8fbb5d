//! Counters owned by one shard. Plain integers: only the owning shard writes them, and the
//! runtime reads them on the shard itself (its housekeeping tick copies them for the metrics
//! endpoint, which declares how each one is exported; this module knows nothing of that).

use crate::sip::{Method, ParseError};

/// Why a datagram was dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Only CRLFs: a keepalive (RFC 5626 section 3.5.1).
    Keepalive,
    /// A STUN message that is not a Binding request, or is malformed.
    Stun,
    /// A request too broken to answer (no usable Via) or a response that does not parse.
    Unparseable,
    /// A response whose top Via is not ours (RFC 3261 section 16.11).
    StrayResponse,
    /// A response with no Via below ours.
    NoNextVia,
    /// The next hop of a response is a host name we cannot resolve on the packet path.
    Unresolvable,
    /// The ACK for a reply we generated ourselves (absorbed, RFC 3261 section 16.11).
    AbsorbedAck,
    /// An answer to one of our NAT pings (absorbed: it ends there).
    NatPingAnswer,
    /// The in-place rewrite could not be applied (no room, too many edits).
    RewriteFailed,
    /// No socket of the destination's address family.
    NoSocket,
    /// A request that cannot be answered locally (an ACK or a reply to a reply).
    Unanswerable,
    /// A datagram larger than the receive buffer (truncated by the kernel).
    Truncated,
    /// The send failed (socket buffer full or the destination refused it).
    SendFailed,
    /// The source exceeded its request rate (`--pike`).
    Flood,
    /// Shed unprocessed: it waited in the receive queue longer than `--max-queue-delay-ms`.
    Overload,
    /// Dropped by the kernel: the socket's receive queue was full (`--rcvbuf`).
    QueueFull,
}

impl DropReason {
    pub const ALL: [DropReason; 16] = [
        DropReason::Keepalive,
        DropReason::Stun,
        DropReason::Unparseable,
        DropReason::StrayResponse,
        DropReason::NoNextVia,
        DropReason::Unresolvable,
        DropReason::AbsorbedAck,
        DropReason::NatPingAnswer,
        DropReason::RewriteFailed,
        DropReason::NoSocket,
        DropReason::Unanswerable,
        DropReason::Truncated,
        DropReason::SendFailed,
        DropReason::Flood,
        DropReason::Overload,
        DropReason::QueueFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Keepalive => "keepalive",
            DropReason::Stun => "stun",
            DropReason::Unparseable => "unparseable",
            DropReason::StrayResponse => "stray_response",
            DropReason::NoNextVia => "no_next_via",
            DropReason::Unresolvable => "unresolvable",
            DropReason::AbsorbedAck => "absorbed_ack",
            DropReason::NatPingAnswer => "nat_ping_answer",
            DropReason::RewriteFailed => "rewrite_failed",
            DropReason::NoSocket => "no_socket",
            DropReason::Unanswerable => "unanswerable",
            DropReason::Truncated => "truncated",
            DropReason::SendFailed => "send_failed",
            DropReason::Flood => "flood",
            DropReason::Overload => "overload",
            DropReason::QueueFull => "queue_full",
        }
    }
}

/// Methods counted separately; everything else is `Other`.
pub const METHODS: [Method; 15] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Register,
    Method::Options,
    Method::Info,
    Method::Prack,
    Method::Update,
    Method::Subscribe,
    Method::Notify,
    Method::Refer,
    Method::Message,
    Method::Publish,
    Method::Other,
];

/// Everything one shard counts.
#[derive(Clone, Debug)]
pub struct Counters {
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    pub requests_forwarded: [u64; METHODS.len()],
    /// Index 1..=6 by status class.
    pub responses_forwarded: [u64; 7],
    /// Locally generated replies by status code.
    pub replies: Box<[u64; 700]>,
    pub drops: [u64; DropReason::ALL.len()],
    /// Parse errors by [`ParseError::kind`], in first-seen order (a handful of kinds).
    pub parse_errors: Vec<(&'static str, u64)>,
    pub registrations_added: u64,
    pub registrations_refreshed: u64,
    pub registrations_removed: u64,
    pub registrations_expired: u64,
    pub replication_sent: u64,
    pub replication_received: u64,
    /// Requests authenticated and authorised.
    pub auth_ok: u64,
    /// 401/407 challenges sent (all of them, stale ones included).
    pub auth_challenges: u64,
    /// Challenges with stale=TRUE (right credentials, expired nonce or reused nc).
    pub auth_stale: u64,
    /// Challenges answering credentials for our realm that failed (wrong password, unknown
    /// user, tampered or foreign nonce).
    pub auth_failures: u64,
    /// 400 for malformed credentials.
    pub auth_malformed: u64,
    /// 403: authenticated, but not the owner of the To (REGISTER) or From user.
    pub auth_forbidden: u64,
    /// Requests let through without credentials: their TLS peer is trusted (`--tls-trust`).
    pub auth_trusted: u64,
    /// Users files applied on this shard after start-up.
    pub auth_reloads: u64,
    /// Next-hop state changes (up or down) applied on this shard, as published by the prober.
    pub next_hop_changes: u64,
    /// Requests sent over TCP because they were too large for UDP (`--udp-mtu`).
    pub udp_mtu_switches: u64,
    /// `sips:` requests refused because their next hop is not TLS.
    pub sips_refused: u64,
    /// Contacts behind NAT: registered, kept open, found dead.
    pub nat: NatCounters,
    /// The TCP transport's counters (copied in by the runtime; the core never writes them).
    pub tcp: TcpCounters,
    /// The TLS transport's connections (the same events as TCP's) and its handshakes.
    pub tls: TcpCounters,
    pub tls_handshakes: TlsCounters,
    /// SIP capture (`--hep`; copied in by the runtime, the core never writes them).
    pub hep: HepCounters,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            datagrams_received: 0,
            datagrams_sent: 0,
            requests_forwarded: [0; METHODS.len()],
            responses_forwarded: [0; 7],
            replies: Box::new([0; 700]),
            drops: [0; DropReason::ALL.len()],
            parse_errors: Vec::new(),
            registrations_added: 0,
            registrations_refreshed: 0,
            registrations_removed: 0,
            registrations_expired: 0,
            replication_sent: 0,
            replication_received: 0,
            auth_ok: 0,
            auth_challenges: 0,
            auth_stale: 0,
            auth_failures: 0,
            auth_malformed: 0,
            auth_forbidden: 0,
            auth_reloads: 0,
            auth_trusted: 0,
            next_hop_changes: 0,
            udp_mtu_switches: 0,
            sips_refused: 0,
            nat: NatCounters::default(),
            tcp: TcpCounters::default(),
            tls: TcpCounters::default(),
            tls_handshakes: TlsCounters::default(),
            hep: HepCounters::default(),
        }
    }
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    #[inline]
    pub fn reply(&mut self, status: u16) {
        if let Some(c) = self.replies.get_mut(status as usize) {
            *c += 1;
        }
    }

    #[inline]
    pub fn forwarded_request(&mut self, m: Method) {
        // METHODS lists the variants in declaration order (checked by a test).
        self.requests_forwarded[m as usize] += 1;
    }

    #[inline]
    pub fn forwarded_response(&mut self, status: u16) {
        self.responses_forwarded[(status / 100).min(6) as usize] += 1;
    }

    pub fn parse_error(&mut self, e: ParseError) {
        let kind = e.kind();
        match self.parse_errors.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.parse_errors.push((kind, 1)),
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Add another shard's counters (for totals).
    pub fn add(&mut self, o: &Counters) {
        self.tcp.add(&o.tcp);
        self.tls.add(&o.tls);
        self.tls_handshakes.add(&o.tls_handshakes);
        self.hep.add(&o.hep);
        self.datagrams_received += o.datagrams_received;
        self.datagrams_sent += o.datagrams_sent;
        for (a, b) in self.requests_forwarded.iter_mut().zip(o.requests_forwarded) {
            *a += b;
        }
        for (a, b) in self
            .responses_forwarded
            .iter_mut()
            .zip(o.responses_forwarded)
        {
            *a += b;
        }
        for (a, b) in self.replies.iter_mut().zip(o.replies.iter()) {
            *a += b;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        for &(k, n) in &o.parse_errors {
            match self.parse_errors.iter_mut().find(|(x, _)| *x == k) {
                Some((_, m)) => *m += n,
                None => self.parse_errors.push((k, n)),
            }
        }
        self.registrations_added += o.registrations_added;
        self.registrations_refreshed += o.registrations_refreshed;
        self.registrations_removed += o.registrations_removed;
        self.registrations_expired += o.registrations_expired;
        self.replication_sent += o.replication_sent;
        self.replication_received += o.replication_received;
        self.auth_ok += o.auth_ok;
        self.auth_challenges += o.auth_challenges;
        self.auth_stale += o.auth_stale;
        self.auth_failures += o.auth_failures;
        self.auth_malformed += o.auth_malformed;
        self.auth_forbidden += o.auth_forbidden;
        self.auth_trusted += o.auth_trusted;
        self.auth_reloads += o.auth_reloads;
        self.next_hop_changes += o.next_hop_changes;
        self.sips_refused += o.sips_refused;
        self.nat.add(&o.nat);
        self.udp_mtu_switches += o.udp_mtu_switches;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_listed_in_declaration_order() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(*m as usize, i, "{}", m.as_str());
        }
    }
}

/// Contacts behind NAT (`--nat`, STUN keep-alives, `--nat-ping-interval`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatCounters {
    /// Contacts registered (added or refreshed) from behind NAT.
    pub registered: u64,
    /// STUN Binding requests answered.
    pub stun_answered: u64,
    /// Contacts of dialogs set up from behind NAT given an alias of their source.
    pub aliased: u64,
    /// Pings sent to contacts behind NAT.
    pub pings_sent: u64,
    /// Pings answered.
    pub pings_answered: u64,
    /// Bindings removed because their pings went unanswered `--nat-ping-failures` times.
    pub ping_removals: u64,
    /// REGISTERs forwarded to another registrar with our Path (and its flow token) on top.
    pub path_added: u64,
    /// Requests sent down the flow their flow token named; tokens refused (forged, tampered,
    /// from before a restart: 403); flows found gone (430).
    pub flow_routed: u64,
    pub flow_forged: u64,
    pub flow_failed: u64,
}

impl NatCounters {
    /// The names of [`Self::values`], in order (the `event` label of the metric).
    pub const EVENTS: [&'static str; 10] = [
        "registered",
        "stun_answered",
        "aliased",
        "ping_sent",
        "ping_answered",
        "ping_removed",
        "path_added",
        "flow_routed",
        "flow_forged",
        "flow_failed",
    ];

    pub fn values(&self) -> [u64; 10] {
        [
            self.registered,
            self.stun_answered,
            self.aliased,
            self.pings_sent,
            self.pings_answered,
            self.ping_removals,
            self.path_added,
            self.flow_routed,
            self.flow_forged,
            self.flow_failed,
        ]
    }

    fn add(&mut self, o: &NatCounters) {
        self.registered += o.registered;
        self.stun_answered += o.stun_answered;
        self.aliased += o.aliased;
        self.pings_sent += o.pings_sent;
        self.pings_answered += o.pings_answered;
        self.ping_removals += o.ping_removals;
        self.path_added += o.path_added;
        self.flow_routed += o.flow_routed;
        self.flow_forged += o.flow_forged;
        self.flow_failed += o.flow_failed;
    }
}

/// Counters of one shard's TCP transport (written by the transport, not the core).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Connections open now (a gauge).
    pub open: u64,
    /// Connections accepted from peers.
    pub accepted: u64,
    /// Connections opened to next hops.
    pub connected: u64,
    /// Opening a connection failed or timed out.
    pub connect_failed: u64,
    /// Connections refused: the node held `--tcp-max-connections`.
    pub refused_node_limit: u64,
    /// Connections refused: the source IP held its share of `--tcp-max-connections-per-ip`.
    pub refused_per_ip: u64,
    /// Connections closed, for any reason.
    pub closed: u64,
    /// Closed: a message stayed incomplete past `--tcp-message-timeout-ms` (slowloris).
    pub closed_message_timeout: u64,
    /// Closed: idle past `--tcp-idle-timeout`.
    pub closed_idle: u64,
    /// Closed: the peer's queue was full (`--tcp-max-queued`) and it took nothing for
    /// `--tcp-send-timeout-ms`.
    pub closed_backlog: u64,
    /// Messages dropped: the peer's queue was full, though the peer still reads.
    pub queue_full: u64,
    /// Closed: the stream could not be framed (no Content-Length, too large, ...).
    pub closed_framing: u64,
    /// Requests switched to TCP for their size whose connection was refused, sent over UDP
    /// after all (RFC 3261 section 18.1.1).
    pub udp_fallbacks: u64,
    /// Messages handed to the shard owning their connection.
    pub handoffs: u64,
    /// Messages dropped: the ring to the owning shard was full.
    pub handoffs_dropped: u64,
    /// News of a connection a peer opened to this shard (announced when ready, withdrawn when
    /// closed) that another shard did not get: its ring was full. Without an announcement that
    /// shard opens a connection of its own to the peer's address; without a withdrawal it
    /// hands that address's messages here, and this shard opens one.
    pub announcements_dropped: u64,
    /// News of connections peers opened to other shards, learned here.
    pub announcements_learned: u64,
    /// Messages dropped: no connection could take them (the connection is gone and no new one
    /// could be opened, or the target names a transport we do not serve).
    pub unsent: u64,
    /// Receive completions the shard's ring handed to connections (`--tcp-receive
    /// multishot`): bytes received without a read of the shard's.
    pub ring_receives: u64,
}

impl TcpCounters {
    pub fn add(&mut self, o: &TcpCounters) {
        self.open += o.open;
        self.accepted += o.accepted;
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.refused_node_limit += o.refused_node_limit;
        self.refused_per_ip += o.refused_per_ip;
        self.closed += o.closed;
        self.closed_message_timeout += o.closed_message_timeout;
        self.closed_idle += o.closed_idle;
        self.closed_backlog += o.closed_backlog;
        self.closed_framing += o.closed_framing;
        self.udp_fallbacks += o.udp_fallbacks;
        self.ring_receives += o.ring_receives;
        self.handoffs += o.handoffs;
        self.handoffs_dropped += o.handoffs_dropped;
        self.announcements_dropped += o.announcements_dropped;
        self.announcements_learned += o.announcements_learned;
        self.unsent += o.unsent;
        self.queue_full += o.queue_full;
    }
}

/// Handshakes of one shard's TLS transport, both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsCounters {
    /// Completed with a full handshake.
    pub full: u64,
    /// Completed by resuming an earlier session (ticket or session id).
    pub resumed: u64,
    /// The peer's certificate was refused (or missing under `--tls-verify-client required`).
    pub bad_certificate: u64,
    /// Not done within `--tls-handshake-timeout-ms`.
    pub timed_out: u64,
    /// Anything else: not TLS, a protocol error, the peer went away.
    pub failed: u64,
    /// Connections closed at once: the shard's handshake line was full.
    pub shed: u64,
}

impl TlsCounters {
    pub fn add(&mut self, o: &TlsCounters) {
        self.full += o.full;
        self.resumed += o.resumed;
        self.bad_certificate += o.bad_certificate;
        self.timed_out += o.timed_out;
        self.failed += o.failed;
        self.shed += o.shed;
    }
}

/// SIP capture (`--hep`): packets for the collector, from the capture point to the socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HepCounters {
    /// Messages put in the shard's capture buffer.
    pub captured: u64,
    /// Packets the kernel took for the collector.
    pub sent: u64,
    /// Messages not captured: too large for one HEP packet (64 KiB, a stream's message).
    pub too_large: u64,
    /// Packets the kernel refused (socket buffer full, collector unreachable), never retried:
    /// the capture buffer is emptied by every flush, so it is never full and a message is
    /// never refused for want of room.
    pub send_failed: u64,
}

impl HepCounters {
    /// The names of [`Self::values`], in order (the `result` label of the metric).
    pub const RESULTS: [&'static str; 4] = ["captured", "sent", "too_large", "send_failed"];

    pub fn values(&self) -> [u64; 4] {
        [self.captured, self.sent, self.too_large, self.send_failed]
    }

    fn add(&mut self, o: &HepCounters) {
        self.captured += o.captured;
        self.sent += o.sent;
        self.too_large += o.too_large;
        self.send_failed += o.send_failed;
    }
}
