//! Where a request goes (RFC 3261 section 16.5) and with which Request-URI (section 16.6
//! item 2): the next Route, a registered contact of one of our users (or a redirection to
//! them), or the Request-URI's own host.

use std::net::SocketAddr;
use std::ops::ControlFlow;

use crate::location::{AorKey, Binding};
use crate::sip::addr::first_of_list;
use crate::sip::{HeaderName, Method, Scheme, Target, Transport, Uri};

use super::super::closed_flows::ClosedFlows;
use super::route::Routing;
use super::{Core, Incoming, Stage};

impl Core {
    /// The destination; a request for a `sips:` URI only ever leaves over TLS (RFC 3261
    /// sections 19.1 and 26.2.2): one whose next hop is not TLS is refused, never downgraded.
    pub(super) fn target(&mut self, rq: &Incoming<'_, '_>, routing: &Routing<'_>) -> Stage<Target> {
        let dest = self.destination(rq, routing)?;
        if routing.target.scheme == Scheme::Sips && dest.transport != Transport::Tls {
            self.counters.sips_refused += 1;
            return self.refuse(
                rq,
                480,
                "Temporarily Unavailable - sips: target not over TLS",
            );
        }
        ControlFlow::Continue(dest)
    }

    /// Where the request goes. A new Request-URI (the binding's contact, or the real target a strict
    /// router moved into Route) is recorded in `self.edits` here, where it is decided: the
    /// contact borrows the table, so carrying it on to the edit stage would cost a copy or a
    /// second lookup.
    fn destination(&mut self, rq: &Incoming<'_, '_>, routing: &Routing<'_>) -> Stage<Target> {
        match routing.flow {
            Some(Ok(flow)) => {
                self.counters.nat.flow_routed += 1;
                return ControlFlow::Continue(flow);
            }
            Some(Err(_)) => {
                self.counters.nat.flow_forged += 1;
                return self.refuse(rq, 403, "Forbidden - Invalid Flow Token");
            }
            None => {}
        }
        if routing.ours {
            return self.registered(rq, &routing.target);
        }
        let (hop, unresolvable) = match &routing.next {
            Some(next) => (next, "Not Found - Unresolvable Route"),
            None => (&routing.target, "Not Found"),
        };
        // An in-dialog request to a UA behind NAT goes where its alias says (see `alias`).
        if routing.next.is_none() && routing.new_request_uri.is_none() {
            if let Some(dest) = self.follow_alias(rq.msg, &routing.target) {
                return ControlFlow::Continue(dest);
            }
        }
        let Some(dest) = self.resolve(hop) else {
            return self.refuse(rq, 404, unresolvable);
        };
        if let Some(span) = routing.new_request_uri {
            let uri = span.of(rq.msg.buf());
            self.edits
                .replace(rq.msg.request_uri_span().unwrap_or_default(), uri);
        }
        ControlFlow::Continue(dest)
    }

    /// A request for one of our users: to their registered contact, or redirected to all of
    /// them.
    fn registered(&mut self, rq: &Incoming<'_, '_>, target: &Uri<'_>) -> Stage<Target> {
        let Some(user) = target.user else {
            return self.refuse(rq, 404, "Not Found");
        };
        let mut key = AorKey::new();
        if !key.build(user, self.cfg.local.aor_domain(target.host)) {
            return self.refuse(rq, 404, "Not Found");
        }
        // ACK and CANCEL cannot be answered with a redirection: they go where the request they
        // belong to would have gone.
        if !matches!(rq.method, Method::Ack | Method::Cancel)
            && self.cfg.redirect.covers(target.host)
        {
            return ControlFlow::Break(self.redirect(rq, key.as_bytes()));
        }
        let closed = &self.closed_flows;
        let (aor, now) = (key.as_bytes(), rq.now.secs());
        // No connection closed yet (a UDP-only node): nothing to pass over.
        let found = match closed.is_empty() {
            true => self.table.lookup(aor, now),
            false => (self.table).lookup_reachable(aor, now, |b| !is_closed_flow(closed, b)),
        };
        let Some(b) = found else {
            return self.refuse(rq, 480, "Temporarily Unavailable");
        };
        if is_closed_flow(closed, &b) {
            // Every binding is an Outbound flow whose connection is gone (RFC 5626 section 5.3).
            self.counters.nat.flow_failed += 1;
            return self.refuse(rq, 430, "Flow Failed");
        }
        self.edits
            .replace(rq.msg.request_uri_span().unwrap_or_default(), b.contact);
        let flow = b.extra.is_flow();
        if b.extra.path.is_empty() {
            return ControlFlow::Continue(Target { flow, ..b.dest });
        }
        // Registered through an edge proxy (RFC 3327 section 5.3): its Path is the route set
        // towards the contact, and the first hop is where the request goes.
        let first_via = rq
            .msg
            .field(HeaderName::Via)
            .map_or(0, |f| f.line.start as usize);
        let path = b.extra.path;
        self.edits.insert_with(first_via, |w| {
            w.bytes(b"Route: ").bytes(path).bytes(b"\r\n");
        });
        let hop = first_of_list(path).and_then(|a| self.resolve(&a.uri));
        match hop {
            Some(dest) => ControlFlow::Continue(dest),
            None => self.refuse(rq, 404, "Not Found - Unresolvable Path"),
        }
    }

    /// Where to send a request whose next hop is `uri` (a Route or a foreign Request-URI):
    /// the first next hop that is up of the static route for its domain or of the default
    /// route, or the literal address.
    /// A literal address is reached over the transport the URI asks for ([`uri_transport`]);
    /// a static route's next hops over the route's transport.
    fn resolve(&self, uri: &Uri<'_>) -> Option<Target> {
        let host = uri.host?;
        if let Some(ip) = host.ip() {
            let transport = uri_transport(uri);
            let port = uri.port.unwrap_or(transport.default_port());
            return Some(Target::new(transport, SocketAddr::new(ip, port)));
        }
        let name = uri.host_raw;
        let name = name.strip_suffix(b".").unwrap_or(name);
        self.cfg
            .routes
            .iter()
            .find(|r| r.domain.as_bytes().eq_ignore_ascii_case(name))
            .or_else(|| self.cfg.routes.iter().find(|r| r.domain == "*"))
            .and_then(|r| Some(Target::new(r.transport, self.hops.pick(&r.targets)?)))
    }
}

/// The transport a URI asks for (RFC 3263 section 4.1, without DNS): its `transport`
/// parameter, else UDP; a `sips:` URI means TLS whether it says `transport=tcp` or nothing
/// (`transport=udp` stays UDP, which the target stage then refuses).
pub fn uri_transport(uri: &Uri<'_>) -> Transport {
    let asked = uri.param(b"transport").and_then(Transport::from_token);
    match (uri.scheme, asked) {
        (Scheme::Sips, None | Some(Transport::Tcp)) => Transport::Tls,
        (_, Some(t)) => t,
        (_, None) => Transport::Udp,
    }
}

/// An Outbound flow straight to the UA (not through an edge's Path, which is the edge's
/// business) on a connection known closed.
fn is_closed_flow(closed: &ClosedFlows, b: &Binding<'_>) -> bool {
    b.extra.is_flow()
        && b.extra.path.is_empty()
        && b.dest
            .conn
            .is_some_and(|c| closed.contains(b.dest.transport, c))
}
