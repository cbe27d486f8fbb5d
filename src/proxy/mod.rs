//! The stateless proxy's decisions (RFC 3261 sections 16.3-16.7 and 16.11). No I/O.
//!
//! [`Core::handle`] takes one datagram in its receive buffer and returns an [`Action`]: forward
//! it (the buffer has been rewritten in place), send the reply now in the buffer, or drop it.
//! The shard runtime owns sockets and clocks; it passes the time in and sends what comes out.
//! A core owns its shard's location table and counters; location changes it makes are queued
//! for the other shards ([`Core::take_replication`]) and theirs are applied with
//! [`Core::apply_replica`].

pub mod auth;
pub mod branch;
pub mod next_hop;
pub mod pike;
pub mod redirect;
pub mod reply;

mod upkeep;

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};

use crate::config::StaticRoute;
use crate::counters::{Counters, DropReason};
use crate::identity::LocalIdentity;
use crate::location::{AorKey, LocationTable, Now};
use crate::registrar::{self, RegistrarConfig};
use crate::sip::header::CommaSplit;
use crate::sip::uri::parse_host;
use crate::sip::{
    Edits, HeaderName, Message, Method, NameAddr, PacketBuf, ParseError, Scheme, Source, Span,
    Target, Transport, Uri,
};

use auth::{Role, ShardAuth};
use branch::{BranchKey, BRANCH_LEN, BRANCH_PREFIX};
use next_hop::HopHealth;
use redirect::RedirectPolicy;
use reply::{host_is, rport_name_end, ReplySource};

/// The methods this proxy accepts (it forwards any method; these are the ones it knows).
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, PRACK, UPDATE, SUBSCRIBE, NOTIFY, REFER, MESSAGE, PUBLISH";

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
    Forward {
        to: Target,
        socket: usize,
        len: usize,
    },
    Reply {
        to: Target,
        socket: usize,
        status: u16,
    },
    Drop(DropReason),
}

/// One shard's proxy and registrar state.
pub struct Core {
    cfg: &'static ProxyConfig,
    /// This shard's copy of the location table. (Public until the runtime asks through
    /// [`Core::table_sizes`].)
    pub table: LocationTable,
    /// (Public until the runtime counts through [`Core::counters`] and the `count_*` methods.)
    pub counters: Counters,
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
        }
    }

    pub fn config(&self) -> &'static ProxyConfig {
        self.cfg
    }

    /// Handle one message received on listener `socket` from `src`.
    pub fn handle(&mut self, now: Now, src: Source, socket: usize, pkt: &mut PacketBuf) -> Action {
        self.counters.datagrams_received += 1;
        // Flood protection looks at requests only (responses answer what we sent), before any
        // parsing: a blocked source costs one hash lookup.
        if let Some(p) = &mut self.pike {
            if !pkt.as_slice().starts_with(b"SIP/") {
                if let pike::Verdict::Block { newly } = p.check(src.addr.ip(), now.unix_ms) {
                    if newly {
                        log::warn!("pike: {} exceeded its request rate; blocked", src.addr.ip());
                    }
                    self.counters.drop(DropReason::Flood);
                    return Action::Drop(DropReason::Flood);
                }
            }
        }
        let decision = if pkt.len() > self.cfg.max_message {
            self.counters.parse_error(ParseError::TooLarge);
            match ReplySource::salvage(pkt.as_slice()) {
                Some(rs) => self.reply_with(&rs, src, socket, 513, "Message Too Large"),
                None => Decision::Drop(DropReason::Unparseable),
            }
        } else {
            // Parsed in place: the header index is some 3 KB, too much to move on every
            // datagram.
            let mut slot = MaybeUninit::uninit();
            match Message::parse_in(&mut slot, pkt.as_mut_slice()) {
                Ok(msg) if msg.is_request() => self.on_request(msg, src, socket, now),
                Ok(msg) => self.on_response(msg, socket),
                Err(ParseError::Empty) => Decision::Drop(DropReason::Keepalive),
                Err(e) => {
                    self.counters.parse_error(e);
                    match ReplySource::salvage(pkt.as_slice()) {
                        Some(rs) => self.reply_with(&rs, src, socket, e.status(), e.reason()),
                        None => Decision::Drop(DropReason::Unparseable),
                    }
                }
            }
        };
        match decision {
            Decision::Forward { to, socket, len } => {
                pkt.truncate(len);
                match self.edits.apply(pkt) {
                    Ok(()) => Action::Forward { to, socket },
                    Err(_) => {
                        self.counters.drop(DropReason::RewriteFailed);
                        Action::Drop(DropReason::RewriteFailed)
                    }
                }
            }
            Decision::Reply { to, socket, status } => {
                if pkt.set_contents(&self.reply) {
                    self.counters.reply(status);
                    Action::Reply { to, socket }
                } else {
                    self.counters.drop(DropReason::RewriteFailed);
                    Action::Drop(DropReason::RewriteFailed)
                }
            }
            Decision::Drop(r) => {
                self.counters.drop(r);
                Action::Drop(r)
            }
        }
    }

    fn on_request(&mut self, msg: &Message<'_>, src: Source, socket: usize, now: Now) -> Decision {
        let cfg = self.cfg;
        let local = &cfg.local;
        let method = msg.method().unwrap_or(Method::Other);
        if let Err(e) = msg.validate_request() {
            self.counters.parse_error(e);
            return self.reply_to(msg, src, socket, e.status(), e.reason());
        }
        let Some(ruri) = msg.request_uri() else {
            return self.reply_to(msg, src, socket, 400, "Bad Request - Malformed Request-URI");
        };
        if let Scheme::Other(_) = ruri.scheme {
            return self.reply_to(msg, src, socket, 416, "Unsupported URI Scheme");
        }
        if method == Method::Ack && self.is_ack_for_local_reply(msg) {
            return Decision::Drop(DropReason::AbsorbedAck);
        }
        // RFC 3261 section 16.3 item 5: we support no extensions that a proxy must understand.
        if !matches!(method, Method::Ack | Method::Cancel)
            && msg.field(HeaderName::ProxyRequire).is_some()
        {
            self.extra.clear();
            self.extra.extend_from_slice(b"Unsupported: ");
            for (i, tag) in msg.option_tags(HeaderName::ProxyRequire).enumerate() {
                if i > 0 {
                    self.extra.extend_from_slice(b", ");
                }
                self.extra.extend_from_slice(tag);
            }
            self.extra.extend_from_slice(b"\r\n");
            return self.reply_extra(msg, src, socket, 420, "Bad Extension");
        }

        // Route processing (RFC 3261 section 16.4).
        let mut routes = RouteSummary::default();
        for r in msg.routes() {
            match r {
                Ok(r) => routes.push(r),
                Err(e) => return self.reply_to(msg, src, socket, e.status(), e.reason()),
            }
        }
        self.edits.clear();
        let mut removed: [Option<(usize, Span)>; 2] = [None, None];
        let mut target_uri = ruri;
        let mut new_ruri: Option<Span> = None;
        // A strict router upstream put our Record-Route URI in the Request-URI and the real
        // target last in Route: restore it.
        if routes.count > 0
            && ruri.user.is_none()
            && ruri
                .host
                .is_some_and(|h| local.is_our_address(&h, ruri.port))
        {
            let last = routes.last.expect("count > 0");
            target_uri = last.uri;
            new_ruri = Some(Span::within(msg.buf(), last.uri.raw, 0));
            removed[0] = Some((last.field, last.span));
            routes.drop_last();
        }
        // Loose routing: the top Route naming us is consumed.
        if let Some(first) = routes.first {
            if first
                .uri
                .host
                .is_some_and(|h| local.is_our_route(&h, first.uri.port))
            {
                removed[1] = Some((first.field, first.span));
                routes.drop_first();
            }
        }

        // Requests we answer ourselves: REGISTER for our domains, OPTIONS to this proxy.
        let target_ours = routes.first.is_none()
            && target_uri
                .host
                .is_some_and(|h| local.is_our_domain(&h, target_uri.port));
        if target_ours && method == Method::Register {
            return self.register(msg, src, socket, now);
        }
        if target_ours && target_uri.user.is_none() && method == Method::Options {
            self.extra.clear();
            self.extra.extend_from_slice(b"Allow: ");
            self.extra.extend_from_slice(ALLOW.as_bytes());
            self.extra
                .extend_from_slice(b"\r\nAccept: application/sdp\r\n");
            return self.reply_extra(msg, src, socket, 200, "OK");
        }
        // Everything else is forwarded, so Max-Forwards is checked first (section 16.3 item 3).
        let max_forwards = match msg.max_forwards() {
            Ok(m) => m,
            Err(e) => return self.reply_to(msg, src, socket, e.status(), e.reason()),
        };
        if max_forwards == Some(0) {
            return self.reply_to(msg, src, socket, 483, "Too Many Hops");
        }
        // Proxy authentication (section 16.3 item 6, section 22.3), before the location service
        // is asked, so an unauthenticated caller learns nothing about registrations.
        let routed_by_us = removed.iter().any(Option::is_some);
        let authenticated = self.needs_proxy_auth(msg, method, routed_by_us);
        if authenticated {
            if let Some(d) = self.authenticate(msg, src, socket, now, Role::Proxy) {
                return d;
            }
        }

        let mut contact: Option<&[u8]> = None;
        let dest = if let Some(next) = routes.first {
            match self.resolve(&next.uri) {
                Some(d) => d,
                None => {
                    return self.reply_to(msg, src, socket, 404, "Not Found - Unresolvable Route")
                }
            }
        } else if target_ours {
            let Some(user) = target_uri.user else {
                return self.reply_to(msg, src, socket, 404, "Not Found");
            };
            let mut key = AorKey::new();
            if !key.build(user, local.aor_domain(target_uri.host)) {
                return self.reply_to(msg, src, socket, 404, "Not Found");
            }
            // ACK and CANCEL cannot be answered with a redirection: they go where the request
            // they belong to would have gone.
            if !matches!(method, Method::Ack | Method::Cancel)
                && cfg.redirect.covers(target_uri.host)
            {
                return self.redirect(msg, src, socket, key.as_bytes(), now);
            }
            match self.table.lookup(key.as_bytes(), now.secs()) {
                Some(b) => {
                    contact = Some(b.contact);
                    b.dest
                }
                None => return self.reply_to(msg, src, socket, 480, "Temporarily Unavailable"),
            }
        } else {
            match self.resolve(&target_uri) {
                Some(d) => d,
                None => return self.reply_to(msg, src, socket, 404, "Not Found"),
            }
        };

        let key = match BranchKey::compute(msg) {
            Ok(k) => k,
            Err(e) => return self.reply_to(msg, src, socket, e.status(), e.reason()),
        };
        for via in msg.vias().flatten() {
            if local.is_our_address(&via.host, via.port)
                && via.branch().and_then(BranchKey::loop_part_of) == Some(key.loop_part)
            {
                return self.reply_to(msg, src, socket, 482, "Loop Detected");
            }
        }
        let Some(out_socket) = local.socket_for(socket, &dest) else {
            return Decision::Drop(DropReason::NoSocket);
        };

        // Edits (section 16.6): Request-URI, Max-Forwards, Route removal, Via, Record-Route.
        let edits = &mut self.edits;
        if let Some(c) = contact {
            edits.replace(msg.request_uri_span().unwrap_or_default(), c);
        } else if let Some(span) = new_ruri {
            let bytes = span.of(msg.buf());
            edits.replace(msg.request_uri_span().unwrap_or_default(), bytes);
        }
        match max_forwards {
            Some(n) => {
                let f = msg.field(HeaderName::MaxForwards).expect("validated");
                edits.replace_with(f.value, |w| {
                    w.num(n as u64 - 1);
                });
            }
            None => edits.insert_with(msg.headers_end, |w| {
                w.bytes(b"Max-Forwards: ")
                    .num(DEFAULT_MAX_FORWARDS as u64)
                    .bytes(b"\r\n");
            }),
        }
        remove_values(edits, msg, &removed);
        if authenticated {
            self.strip_our_credentials(msg);
        }
        let edits = &mut self.edits;

        let adv = local.advertised(out_socket, &dest);
        let mut branch = [0u8; BRANCH_LEN];
        key.write(&mut branch);
        let record_route = cfg.record_route
            && matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
            && msg.to().map(|t| t.tag().is_none()).unwrap_or(false);
        let first_via = msg.field(HeaderName::Via).expect("validated").line.start as usize;
        let existing_rr = msg
            .field(HeaderName::RecordRoute)
            .map(|f| f.line.start as usize);
        if record_route {
            let at = existing_rr.unwrap_or(first_via);
            edits.insert_with(at, |w| {
                w.bytes(b"Record-Route: <sip:")
                    .bytes(adv.as_bytes())
                    .bytes(b";lr>\r\n");
            });
        }
        edits.insert_with(first_via, |w| {
            w.bytes(b"Via: SIP/2.0/")
                .bytes(dest.transport.via_token())
                .bytes(b" ")
                .bytes(adv.as_bytes())
                .bytes(b";branch=")
                .bytes(&branch)
                .bytes(b"\r\n");
        });
        // The previous hop's Via learns where its request really came from (section 18.2.1,
        // RFC 3581).
        if let Ok(top) = msg.top_via() {
            let elem = msg.bytes(top.span);
            if top.rport() == Some(None) {
                if let Some(at) = rport_name_end(&top, elem) {
                    edits.insert_with(top.span.start as usize + at, |w| {
                        w.bytes(b"=").num(src.addr.port() as u64);
                    });
                }
            }
            if top.received().is_none() && (top.rport().is_some() || !host_is(&top, src.addr.ip()))
            {
                edits.insert_with(top.span.end as usize, |w| {
                    w.bytes(b";received=").ip(src.addr.ip());
                });
            }
        }
        self.counters.forwarded_request(method);
        Decision::Forward {
            to: dest,
            socket: out_socket,
            len: msg.framed_len(),
        }
    }

    fn on_response(&mut self, msg: &Message<'_>, socket: usize) -> Decision {
        let local = &self.cfg.local;
        let Ok(top) = msg.top_via() else {
            return Decision::Drop(DropReason::Unparseable);
        };
        let ours = top.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
            && local.is_our_address(&top.host, top.port);
        if !ours {
            return Decision::Drop(DropReason::StrayResponse);
        }
        let next = match msg.second_via() {
            None => return Decision::Drop(DropReason::NoNextVia),
            Some(Err(_)) => return Decision::Drop(DropReason::Unparseable),
            Some(Ok(v)) => v,
        };
        let ip = next
            .received()
            .and_then(parse_ip)
            .or_else(|| next.host.ip());
        let Some(ip) = ip else {
            return Decision::Drop(DropReason::Unresolvable);
        };
        let port = match next.rport() {
            Some(Some(p)) => p,
            _ => next.port_or_default(),
        };
        // The previous hop asked for its responses over the transport its Via names.
        let Some(transport) = Transport::from_token(next.transport) else {
            return Decision::Drop(DropReason::NoSocket);
        };
        let dest = Target::new(transport, SocketAddr::new(ip, port));
        let Some(out_socket) = local.socket_for(socket, &dest) else {
            return Decision::Drop(DropReason::NoSocket);
        };
        self.edits.clear();
        remove_values(&mut self.edits, msg, &[Some((top.field, top.span))]);
        self.counters.forwarded_response(msg.status().unwrap_or(0));
        Decision::Forward {
            to: dest,
            socket: out_socket,
            len: msg.framed_len(),
        }
    }

    fn register(&mut self, msg: &Message<'_>, src: Source, socket: usize, now: Now) -> Decision {
        if self.auth.is_some() {
            if let Some(d) = self.authenticate(msg, src, socket, now, Role::Registrar) {
                return d;
            }
        }
        self.extra.clear();
        let cfg = self.cfg;
        let planned = registrar::plan(&cfg.registrar, &cfg.local, &self.table, msg, src, now);
        // Matched by reference: a plan holds a 256-byte key, not worth a move.
        let (status, reason) = match &planned {
            Ok(plan) => {
                let mut store = registrar::Store {
                    table: &mut self.table,
                    counters: &mut self.counters,
                    outbox: &mut self.outbox,
                };
                registrar::commit(&mut store, plan, &mut self.extra, &mut self.date)
            }
            Err(refusal) => refusal.write(&mut self.extra),
        };
        self.reply_extra(msg, src, socket, status, reason)
    }

    /// Where to send a request whose next hop is `uri` (a Route or a foreign Request-URI):
    /// the first next hop that is up of the static route for its domain or of the default
    /// route, or the literal address.
    ///
    /// Every target is reached over UDP until the stream transports exist: a URI's
    /// `transport` parameter is not yet honoured.
    fn resolve(&self, uri: &Uri<'_>) -> Option<Target> {
        let host = uri.host?;
        if let Some(ip) = host.ip() {
            return Some(Target::udp(SocketAddr::new(ip, uri.port_or_default())));
        }
        let name = uri.host_raw;
        let name = name.strip_suffix(b".").unwrap_or(name);
        self.cfg
            .routes
            .iter()
            .find(|r| r.domain.as_bytes().eq_ignore_ascii_case(name))
            .or_else(|| self.cfg.routes.iter().find(|r| r.domain == "*"))
            .and_then(|r| self.hops.pick(&r.targets))
            .map(Target::udp)
    }

    fn is_ack_for_local_reply(&self, msg: &Message<'_>) -> bool {
        let Some(tag) = msg.to().ok().and_then(|t| t.tag()) else {
            return false;
        };
        if !tag.starts_with(branch::LOCAL_TAG_PREFIX) {
            return false;
        }
        ReplySource::from_message(msg).is_some_and(|rs| rs.local_tag()[..] == *tag)
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
        if msg.method() == Some(Method::Ack) {
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
        rs.compose(&mut self.reply, status, reason, src.addr, &self.extra);
        Decision::Reply { to, socket, status }
    }
}

/// The parts of the Route set the decision needs: how many, the first, second and last.
#[derive(Default)]
struct RouteSummary<'a> {
    count: usize,
    first: Option<NameAddr<'a>>,
    second: Option<NameAddr<'a>>,
    last: Option<NameAddr<'a>>,
}

impl<'a> RouteSummary<'a> {
    fn push(&mut self, r: NameAddr<'a>) {
        match self.count {
            0 => self.first = Some(r),
            1 => self.second = Some(r),
            _ => {}
        }
        self.last = Some(r);
        self.count += 1;
    }

    fn drop_last(&mut self) {
        self.count -= 1;
        if self.count == 0 {
            self.first = None;
        }
        if self.count <= 1 {
            self.second = None;
        }
        // `last` is only used once, by the strict-router fix-up.
        self.last = None;
    }

    fn drop_first(&mut self) {
        self.count -= 1;
        self.first = if self.count > 0 { self.second } else { None };
        self.second = None;
    }
}

/// Remove list values (`(field index, value span)`), each one a whole line when it is alone on
/// it, else by rewriting the line's value without it.
fn remove_values(edits: &mut Edits, msg: &Message<'_>, removed: &[Option<(usize, Span)>]) {
    for (i, entry) in removed.iter().enumerate() {
        let Some((field, _)) = entry else { continue };
        // Two values of one line are handled together, when the line is first seen.
        if removed[..i].iter().flatten().any(|(f, _)| f == field) {
            continue;
        }
        let f = msg.field_at(*field);
        let buf = msg.buf();
        let gone = |s: Span| {
            removed
                .iter()
                .flatten()
                .any(|(fi, sp)| fi == field && *sp == s)
        };
        let kept = CommaSplit::new(buf, f.value).filter(|s| !gone(*s)).count();
        if kept == 0 {
            edits.remove(f.line);
        } else {
            edits.replace_with(f.value, |w| {
                for (i, s) in CommaSplit::new(buf, f.value)
                    .filter(|s| !gone(*s))
                    .enumerate()
                {
                    if i > 0 {
                        w.bytes(b", ");
                    }
                    w.bytes(s.of(buf));
                }
            });
        }
    }
}

/// `received` values: a bare or bracketed IPv6 address, or IPv4 (RFC 5118 section 4.5).
fn parse_ip(v: &[u8]) -> Option<IpAddr> {
    match parse_host(v)? {
        h @ (crate::sip::Host::V4(_) | crate::sip::Host::V6(_)) => h.ip(),
        crate::sip::Host::Name(n) => std::str::from_utf8(n).ok()?.parse().ok(),
    }
}

#[cfg(test)]
mod tests;
