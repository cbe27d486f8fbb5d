//! The one declaration of every metric family.
//!
//! Each [`Family`] says its name, help, type, labels, where its values come from, how the
//! node-level series is derived from the shards' values, and whether (and how) it shows in the
//! shard's exit log. The publisher ([`super::Published`]), the Prometheus text
//! ([`super::render`]) and the exit log ([`super::log_line`]) all walk [`FAMILIES`]: a new
//! family is one entry here, nothing else.
//!
//! Names and label sets are a contract with dashboards and the tests that scrape them: rename
//! nothing here without saying so in the changelog.

use std::borrow::Cow;

use super::publish::{Latency, LATENCY_BUCKETS_NS};
use crate::counters::{Counters, DropReason, HepCounters, NatCounters, TcpCounters, METHODS};
use crate::sip::ParseError;

/// `sipshard_tcp_connection_events_total{event}`.
const TCP_EVENTS: [&str; 6] = [
    "accepted",
    "connected",
    "refused_node_limit",
    "refused_per_ip",
    "connect_failed",
    "closed",
];
/// `sipshard_tcp_closed_total{reason}`.
const TCP_CLOSE_REASONS: [&str; 4] = ["message_timeout", "idle", "backlog", "framing"];
/// `sipshard_tls_handshakes_total{result}`.
const TLS_HANDSHAKE_RESULTS: [&str; 6] = [
    "full",
    "resumed",
    "bad_certificate",
    "timed_out",
    "failed",
    "shed",
];
/// `sipshard_udp_mtu_transport_total{event}`.
const MTU_EVENTS: [&str; 2] = ["switched_to_tcp", "fell_back_to_udp"];
/// `sipshard_tcp_handoffs_total{result}` and `sipshard_tls_handoffs_total{result}`.
const HANDOFF_RESULTS: [&str; 6] = [
    "handed",
    "ring_full",
    "unsent",
    "queue_full",
    "announcement_ring_full",
    "announcement_learned",
];

/// What one shard publishes: its counters and the two gauges of its copy of the location table.
pub struct Source<'a> {
    pub counters: &'a Counters,
    pub latency: &'a Latency,
    pub bindings: u64,
    pub aors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Cumulative `_bucket{le=...}` series, then `_sum` (seconds) and `_count`, from a
    /// [`Latency`]: [`LATENCY_BUCKETS_NS`] slots, then the sum in nanoseconds, then the count.
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// How the node-level series (`shard="total"`) is derived from the shards' series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// Each shard counts only its own traffic, so the node's value is the sum.
    Sum,
    /// Replicated state: every shard holds the whole location table, so a sum would count each
    /// binding once per shard. The copies differ only by changes still in flight between shards
    /// (applied at the latest on the next housekeeping tick), so the node's value is the largest
    /// copy: never less than what some shard serves, never a multiple of it.
    Max,
}

/// The values of a family's label (besides `shard`), in slot order.
pub struct Label {
    pub name: &'static str,
    pub count: usize,
    pub value: fn(usize) -> Cow<'static, str>,
}

/// The exit log's per-shard lines (`shard N: ...`), each the families that declare it, in
/// table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// `N received, N sent, N replies, N dropped`, always.
    Traffic,
    /// `auth N ok, N challenges, ..., N reloads`, when authentication is on.
    Auth,
    /// `next hop changes: N`, when the prober runs.
    NextHops,
}

impl Line {
    pub const ALL: [Line; 3] = [Line::Traffic, Line::Auth, Line::NextHops];

    /// What comes before the items (`tests/common/auth.rs` finds its line by `: auth `, and
    /// `tests/rfc3665_flows.rs` by `next hop changes: `).
    pub fn prefix(self) -> &'static str {
        match self {
            Line::Traffic => "",
            Line::Auth => "auth ",
            Line::NextHops => "next hop changes: ",
        }
    }
}

/// How a family shows in the exit log: items `N word`, joined by `, ` (`N` alone when the word
/// is empty).
pub enum Log {
    No,
    /// One item: the family summed over its label values.
    Total(Line, &'static str),
    /// One item per label value, with these words (one per value).
    Each(Line, &'static [&'static str]),
}

pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// The label besides `shard`; `None`: one series per shard (a histogram's `le` is implied).
    pub label: Option<Label>,
    /// Leave out series whose value is 0 (status codes: 600 possible, a handful used).
    pub sparse: bool,
    pub node: Node,
    /// The value of slot `i`: label value `i` (always 0 without a label); for a histogram see
    /// [`Kind::Histogram`].
    pub read: fn(&Source, usize) -> u64,
    pub log: Log,
}

impl Family {
    /// Slots this family takes in a shard's published block.
    pub fn width(&self) -> usize {
        match (&self.kind, &self.label) {
            (Kind::Histogram, _) => LATENCY_BUCKETS_NS.len() + 2,
            (_, Some(l)) => l.count,
            (_, None) => 1,
        }
    }
}

/// Slots in one shard's published block: every family's, in table order.
pub fn slots() -> usize {
    FAMILIES.iter().map(Family::width).sum()
}

/// Replies are counted by status code 0..700; codes below 100 are not SIP statuses.
const FIRST_STATUS: usize = 100;
const REGISTRATION_EVENTS: [&str; 4] = ["added", "refreshed", "removed", "expired"];
const DIRECTIONS: [&str; 2] = ["sent", "received"];
const AUTH_RESULTS: [&str; 6] = [
    "ok",
    "challenge",
    "stale",
    "failure",
    "malformed",
    "forbidden",
];

fn auth_result(c: &Counters, i: usize) -> u64 {
    [
        c.auth_ok,
        c.auth_challenges,
        c.auth_stale,
        c.auth_failures,
        c.auth_malformed,
        c.auth_forbidden,
    ][i]
}

fn parse_errors(c: &Counters, i: usize) -> u64 {
    // A handful of kinds, in first-seen order: a scan is cheaper than a map.
    let kind = ParseError::KINDS[i];
    c.parse_errors
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |&(_, n)| n)
}

fn latency(l: &Latency, i: usize) -> u64 {
    match i.checked_sub(LATENCY_BUCKETS_NS.len()) {
        None => l.buckets[i],
        Some(0) => l.sum_ns,
        Some(_) => l.count,
    }
}

/// Every family, in the order of the Prometheus text.
pub static FAMILIES: &[Family] = &[
    Family {
        name: "sipshard_datagrams_received_total",
        help: "UDP datagrams received.",
        kind: Kind::Counter,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.datagrams_received,
        log: Log::Total(Line::Traffic, "received"),
    },
    Family {
        name: "sipshard_datagrams_sent_total",
        help: "UDP datagrams sent (forwarded or replies).",
        kind: Kind::Counter,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.datagrams_sent,
        log: Log::Total(Line::Traffic, "sent"),
    },
    Family {
        name: "sipshard_requests_forwarded_total",
        help: "Requests forwarded, by method.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "method",
            count: METHODS.len(),
            value: |i| Cow::Borrowed(METHODS[i].as_str()),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| s.counters.requests_forwarded[i],
        log: Log::No,
    },
    Family {
        name: "sipshard_responses_forwarded_total",
        help: "Responses forwarded, by class.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "class",
            count: 6,
            value: |i| Cow::Owned(format!("{}xx", i + 1)),
        }),
        sparse: false,
        node: Node::Sum,
        // Counters index the classes 1..=6 by the status' first digit.
        read: |s, i| s.counters.responses_forwarded[i + 1],
        log: Log::No,
    },
    Family {
        name: "sipshard_replies_total",
        help: "Replies generated by the proxy, by status.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "status",
            count: 700 - FIRST_STATUS,
            value: |i| Cow::Owned((FIRST_STATUS + i).to_string()),
        }),
        sparse: true,
        node: Node::Sum,
        read: |s, i| s.counters.replies[FIRST_STATUS + i],
        log: Log::Total(Line::Traffic, "replies"),
    },
    Family {
        name: "sipshard_drops_total",
        help: "Datagrams dropped without an answer, by reason.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "reason",
            count: DropReason::ALL.len(),
            value: |i| Cow::Borrowed(DropReason::ALL[i].name()),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| s.counters.dropped(DropReason::ALL[i]),
        log: Log::Total(Line::Traffic, "dropped"),
    },
    Family {
        name: "sipshard_parse_errors_total",
        help: "Messages that failed to parse or validate, by kind.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "kind",
            count: ParseError::KINDS.len(),
            value: |i| Cow::Borrowed(ParseError::KINDS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| parse_errors(s.counters, i),
        log: Log::No,
    },
    Family {
        name: "sipshard_registrations_total",
        help: "Binding changes made by REGISTER or expiry.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "event",
            count: REGISTRATION_EVENTS.len(),
            value: |i| Cow::Borrowed(REGISTRATION_EVENTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| {
            let c = s.counters;
            [
                c.registrations_added,
                c.registrations_refreshed,
                c.registrations_removed,
                c.registrations_expired,
            ][i]
        },
        log: Log::No,
    },
    Family {
        name: "sipshard_replication_messages_total",
        help: "Location changes exchanged between shards.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "direction",
            count: DIRECTIONS.len(),
            value: |i| Cow::Borrowed(DIRECTIONS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| [s.counters.replication_sent, s.counters.replication_received][i],
        log: Log::No,
    },
    Family {
        name: "sipshard_next_hop_changes_total",
        help: "Next-hop state changes (down or up, from the OPTIONS prober) applied by the shard.",
        kind: Kind::Counter,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.next_hop_changes,
        log: Log::Total(Line::NextHops, ""),
    },
    Family {
        name: "sipshard_auth_total",
        help: "Digest authentication outcomes.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "result",
            count: AUTH_RESULTS.len(),
            value: |i| Cow::Borrowed(AUTH_RESULTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| auth_result(s.counters, i),
        log: Log::Each(
            Line::Auth,
            &[
                "ok",
                "challenges",
                "stale",
                "failed",
                "malformed",
                "forbidden",
            ],
        ),
    },
    Family {
        name: "sipshard_auth_trusted_total",
        help: "Requests let through without credentials: their TLS peer's verified certificate \
               names a --tls-trust name.",
        kind: Kind::Counter,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.auth_trusted,
        log: Log::No,
    },
    Family {
        name: "sipshard_auth_reloads_total",
        help: "Users files (SIGHUP) applied by the shard after start-up.",
        kind: Kind::Counter,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.auth_reloads,
        log: Log::Total(Line::Auth, "reloads"),
    },
    Family {
        name: "sipshard_tcp_connections",
        help: "TCP connections open on the shard.",
        kind: Kind::Gauge,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.tcp.open,
        log: Log::No,
    },
    Family {
        name: "sipshard_tcp_connection_events_total",
        help: "TCP connections accepted, opened, refused by a limit, failed to open, closed.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "event",
            count: TCP_EVENTS.len(),
            value: |i| Cow::Borrowed(TCP_EVENTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| connection_event(&s.counters.tcp, i),
        log: Log::No,
    },
    Family {
        name: "sipshard_tcp_closed_total",
        help: "TCP connections closed by sipshard, by limit (the rest closed by the peer).",
        kind: Kind::Counter,
        label: Some(Label {
            name: "reason",
            count: TCP_CLOSE_REASONS.len(),
            value: |i| Cow::Borrowed(TCP_CLOSE_REASONS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| close_reason(&s.counters.tcp, i),
        log: Log::No,
    },
    Family {
        name: "sipshard_tls_connections",
        help: "TLS connections open on the shard (handshaking included).",
        kind: Kind::Gauge,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.tls.open,
        log: Log::No,
    },
    Family {
        name: "sipshard_tls_connection_events_total",
        help: "TLS connections accepted, opened, refused by a limit, failed to open (TCP or \
               handshake), closed.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "event",
            count: TCP_EVENTS.len(),
            value: |i| Cow::Borrowed(TCP_EVENTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| connection_event(&s.counters.tls, i),
        log: Log::No,
    },
    Family {
        name: "sipshard_tls_closed_total",
        help: "TLS connections closed by sipshard, by limit (the rest closed by the peer).",
        kind: Kind::Counter,
        label: Some(Label {
            name: "reason",
            count: TCP_CLOSE_REASONS.len(),
            value: |i| Cow::Borrowed(TCP_CLOSE_REASONS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| close_reason(&s.counters.tls, i),
        log: Log::No,
    },
    Family {
        name: "sipshard_tls_handshakes_total",
        help: "TLS handshakes, both directions: completed full or resumed; failed on the \
               peer's certificate, on the deadline, otherwise; connections shed because the \
               shard's handshake line was full.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "result",
            count: TLS_HANDSHAKE_RESULTS.len(),
            value: |i| Cow::Borrowed(TLS_HANDSHAKE_RESULTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| {
            let h = &s.counters.tls_handshakes;
            [
                h.full,
                h.resumed,
                h.bad_certificate,
                h.timed_out,
                h.failed,
                h.shed,
            ][i]
        },
        log: Log::No,
    },
    Family {
        name: "sipshard_sips_refused_total",
        help: "Requests for a sips: URI refused (480) because their next hop is not TLS.",
        kind: Kind::Counter,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.sips_refused,
        log: Log::No,
    },
    Family {
        name: "sipshard_nat_total",
        help: "Contacts registered from behind NAT (--nat), STUN Binding requests answered on \
               the SIP port, pings sent to contacts behind NAT and answered \
               (--nat-ping-interval), and bindings removed for unanswered pings.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "event",
            count: NatCounters::EVENTS.len(),
            value: |i| Cow::Borrowed(NatCounters::EVENTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| s.counters.nat.values()[i],
        log: Log::No,
    },
    Family {
        name: "sipshard_hep_total",
        help: "SIP capture (--hep): messages captured, packets sent to the collector, messages \
               too large for a HEP packet, and packets the kernel refused (never retried).",
        kind: Kind::Counter,
        label: Some(Label {
            name: "result",
            count: HepCounters::RESULTS.len(),
            value: |i| Cow::Borrowed(HepCounters::RESULTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| s.counters.hep.values()[i],
        log: Log::No,
    },
    Family {
        name: "sipshard_udp_mtu_transport_total",
        help: "Requests too large for UDP (--udp-mtu) sent over TCP instead, and those of them \
               whose connection was refused, sent over UDP after all (RFC 3261 section 18.1.1).",
        kind: Kind::Counter,
        label: Some(Label {
            name: "event",
            count: MTU_EVENTS.len(),
            value: |i| Cow::Borrowed(MTU_EVENTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| [s.counters.udp_mtu_switches, s.counters.tcp.udp_fallbacks][i],
        log: Log::No,
    },
    Family {
        name: "sipshard_tcp_ring_receives_total",
        help: "Receive completions the shard's io_uring ring handed to plain TCP connections \
               (--tcp-receive multishot): bytes received without a read system call.",
        kind: Kind::Counter,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, _| s.counters.tcp.ring_receives,
        log: Log::No,
    },
    Family {
        name: "sipshard_tcp_handoffs_total",
        help: "Messages handed to the shard that owns their connection, or dropped because its \
               ring was full; messages no connection could take; messages dropped because \
               their connection's queue was full; and news of connections peers opened to the \
               shard that another shard did not get because its ring was full.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "result",
            count: HANDOFF_RESULTS.len(),
            value: |i| Cow::Borrowed(HANDOFF_RESULTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| handoff_result(&s.counters.tcp, i),
        log: Log::No,
    },
    Family {
        name: "sipshard_tls_handoffs_total",
        help: "The same as sipshard_tcp_handoffs_total, for TLS connections.",
        kind: Kind::Counter,
        label: Some(Label {
            name: "result",
            count: HANDOFF_RESULTS.len(),
            value: |i| Cow::Borrowed(HANDOFF_RESULTS[i]),
        }),
        sparse: false,
        node: Node::Sum,
        read: |s, i| handoff_result(&s.counters.tls, i),
        log: Log::No,
    },
    Family {
        name: "sipshard_bindings",
        help: "Live bindings in the shard's location table (every shard holds the whole table: \
               shard=\"total\" is the node's count, not a sum).",
        kind: Kind::Gauge,
        label: None,
        sparse: false,
        node: Node::Max,
        read: |s, _| s.bindings,
        log: Log::No,
    },
    Family {
        name: "sipshard_aors",
        help: "Addresses of record in the shard's location table (every shard holds the whole \
               table: shard=\"total\" is the node's count, not a sum).",
        kind: Kind::Gauge,
        label: None,
        sparse: false,
        node: Node::Max,
        read: |s, _| s.aors,
        log: Log::No,
    },
    Family {
        name: "sipshard_processing_seconds",
        help: "Time spent deciding and rewriting one datagram (1 in 64 sampled).",
        kind: Kind::Histogram,
        label: None,
        sparse: false,
        node: Node::Sum,
        read: |s, i| latency(s.latency, i),
        log: Log::No,
    },
];

/// Slot `i` of `sipshard_{tcp,tls}_connection_events_total`.
fn connection_event(t: &TcpCounters, i: usize) -> u64 {
    [
        t.accepted,
        t.connected,
        t.refused_node_limit,
        t.refused_per_ip,
        t.connect_failed,
        t.closed,
    ][i]
}

/// Slot `i` of `sipshard_{tcp,tls}_closed_total`.
fn close_reason(t: &TcpCounters, i: usize) -> u64 {
    [
        t.closed_message_timeout,
        t.closed_idle,
        t.closed_backlog,
        t.closed_framing,
    ][i]
}

/// Slot `i` of `sipshard_{tcp,tls}_handoffs_total` ([`HANDOFF_RESULTS`]).
fn handoff_result(t: &TcpCounters, i: usize) -> u64 {
    [
        t.handoffs,
        t.handoffs_dropped,
        t.unsent,
        t.queue_full,
        t.announcements_dropped,
        t.announcements_learned,
    ][i]
}
