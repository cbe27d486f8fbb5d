//! The edits of RFC 3261 section 16.6 on the request being forwarded, recorded in
//! `Core::edits` (the Request-URI already is, by the target stage): Max-Forwards (item 3), the
//! Routes we consumed (item 6), our own credentials (RFC 3665 section 3.3), Record-Route
//! (item 4), our Via (item 8), and `received`/`rport` on the previous hop's Via (section 18.2.1,
//! RFC 3581).

use std::convert::Infallible;
use std::ops::ControlFlow;

use crate::counters::DropReason;
use crate::sip::{Edits, HeaderName, Message, Method, Target, Transport};

use super::super::branch::{BranchKey, BRANCH_LEN};
use super::super::remove::remove_values;
use super::super::reply::{host_is, rport_name_end};
use super::super::{Decision, CONN_PARAM, DEFAULT_MAX_FORWARDS};
use super::route::Routing;
use super::{Core, Incoming, Stage};

/// What the earlier stages decided that the edits need.
pub(super) struct Forwarding {
    pub dest: Target,
    /// The request's Max-Forwards (not zero), if it has one.
    pub max_forwards: Option<u8>,
    /// The key of the branch our Via carries.
    pub branch: BranchKey,
    /// Proxy-Authorization was checked, so our credentials are to be removed.
    pub authenticated: bool,
    /// The request is for a `sips:` URI: our Record-Route must be one too (section 16.6
    /// item 4).
    pub sips: bool,
}

/// `Record-Route: <sip:` `;transport=tcp;lr>` CRLF around the advertised address.
const RR_LINE: usize = 20 + 14 + 6;

impl Core {
    /// Pick the listener to send from (the Via names it), record the edits, and forward.
    pub(super) fn edit(
        &mut self,
        rq: &Incoming<'_, '_>,
        routing: &Routing<'_>,
        fwd: &Forwarding,
    ) -> Stage<Infallible> {
        let Some(mut out_socket) = self.cfg.local.socket_for(rq.socket, &fwd.dest) else {
            return ControlFlow::Break(Decision::Drop(DropReason::NoSocket));
        };
        self.edit_max_forwards(rq.msg, fwd.max_forwards);
        remove_values(&mut self.edits, rq.msg, &routing.removed);
        if fwd.authenticated {
            self.strip_our_credentials(rq.msg);
        }
        self.note_source(rq);
        let mut dest = fwd.dest;
        if let Some(tcp_socket) = self.too_large_for_udp(rq, &dest, out_socket) {
            dest = Target {
                transport: Transport::Tcp,
                conn: None,
                fallback_udp: true,
                flow: false,
                ..dest
            };
            out_socket = tcp_socket;
            self.counters.udp_mtu_switches += 1;
        }
        self.add_via(rq, fwd, &dest, out_socket);
        if rq.method == Method::Register && self.cfg.edge_path {
            self.add_path(rq, &dest, out_socket);
        }
        self.counters.forwarded_request(rq.method);
        ControlFlow::Break(Decision::Forward {
            to: dest,
            socket: out_socket,
            len: rq.msg.framed_len(),
        })
    }

    /// RFC 3261 section 18.1.1: a request larger than `--udp-mtu` that would leave over UDP
    /// must take TCP. Returns the TCP listener to send it from, when it must and we have one.
    /// Its size counts every edit made so far and, at most, our Via and Record-Route lines.
    fn too_large_for_udp(
        &self,
        rq: &Incoming<'_, '_>,
        dest: &Target,
        out_socket: usize,
    ) -> Option<usize> {
        let mtu = self.cfg.udp_mtu;
        if mtu == 0 || dest.transport != Transport::Udp {
            return None;
        }
        let adv = self.cfg.local.advertised(out_socket, dest).len();
        // "Via: SIP/2.0/UDP " adv ";branch=" branch ";sc=" id CRLF, and a Record-Route.
        let ours = 17 + adv + 8 + BRANCH_LEN + 24 + 2 + RR_LINE + adv;
        let size = rq.msg.framed_len() as isize + self.edits.growth() + ours as isize;
        if size <= mtu as isize {
            return None;
        }
        let tcp = Target::new(Transport::Tcp, dest.addr);
        self.cfg.local.socket_for(rq.socket, &tcp)
    }

    /// One less, or the default when there is none.
    fn edit_max_forwards(&mut self, msg: &Message<'_>, max_forwards: Option<u8>) {
        match max_forwards {
            Some(n) => {
                let f = msg.field(HeaderName::MaxForwards).expect("validated");
                self.edits.replace_with(f.value, |w| {
                    w.num(n as u64 - 1);
                });
            }
            None => self.edits.insert_with(msg.headers_end, |w| {
                w.bytes(b"Max-Forwards: ")
                    .num(DEFAULT_MAX_FORWARDS as u64)
                    .bytes(b"\r\n");
            }),
        }
    }

    /// Our Via on top, naming the target's transport and the address of the listener we send
    /// from; above it (or above the existing ones) our Record-Route, for requests that start a
    /// dialog when `--record-route` is on.
    fn add_via(
        &mut self,
        rq: &Incoming<'_, '_>,
        fwd: &Forwarding,
        dest: &Target,
        out_socket: usize,
    ) {
        let cfg = self.cfg;
        let msg = rq.msg;
        let adv = cfg.local.advertised(out_socket, dest);
        let mut branch = [0u8; BRANCH_LEN];
        fwd.branch.write(&mut branch);
        let first_via = msg.field(HeaderName::Via).expect("validated").line.start as usize;
        let record_route = cfg.record_route
            && matches!(
                rq.method,
                Method::Invite | Method::Subscribe | Method::Refer
            )
            && msg.to().map(|t| t.tag().is_none()).unwrap_or(false);
        if record_route {
            let at = msg
                .field(HeaderName::RecordRoute)
                .map_or(first_via, |f| f.line.start as usize);
            // Nearest the callee: how it reaches us. When the request changes transport on its
            // way through, a second entry says how the caller reaches us, so in-dialog requests
            // go back over the transport each side used (both are consumed on the way back).
            record_route_line(&mut self.edits, at, adv, dest.transport, fwd.sips);
            if rq.src.transport != dest.transport {
                let inbound = Target::new(rq.src.transport, rq.src.addr);
                let adv_in = cfg.local.advertised(rq.socket, &inbound);
                record_route_line(&mut self.edits, at, adv_in, rq.src.transport, fwd.sips);
            }
            self.alias_contact(msg, rq.src);
        }
        let conn = rq.src.conn;
        self.edits.insert_with(first_via, |w| {
            w.bytes(b"Via: SIP/2.0/")
                .bytes(dest.transport.via_token())
                .bytes(b" ")
                .bytes(adv.as_bytes())
                .bytes(b";branch=")
                .bytes(&branch);
            // A request that came over a connection names it in our Via, so that its response
            // goes back on it from whichever shard receives the response.
            if let Some(c) = conn {
                w.bytes(b";").bytes(CONN_PARAM).bytes(b"=").num(c.0);
            }
            w.bytes(b"\r\n");
        });
    }

    /// A REGISTER we forward to another registrar: our Path on top (RFC 3327 section 5.2), its
    /// URI carrying the flow the REGISTER came on (RFC 5626 section 5.2) and `ob`, so that the
    /// registrar's requests for this contact come back here and go down that flow.
    fn add_path(&mut self, rq: &Incoming<'_, '_>, dest: &Target, out_socket: usize) {
        let msg = rq.msg;
        let first_via = msg
            .field(HeaderName::Via)
            .map_or(0, |f| f.line.start as usize);
        let at = msg
            .fields_by_name(b"Path")
            .next()
            .map_or(first_via, |f| f.line.start as usize);
        let mut token = Vec::with_capacity(80);
        self.cfg.flow_key.token(rq.src, &mut token);
        let adv = self.cfg.local.advertised(out_socket, dest);
        self.edits.insert_with(at, |w| {
            w.bytes(b"Path: <sip:")
                .bytes(&token)
                .bytes(b"@")
                .bytes(adv.as_bytes());
            if dest.transport != Transport::Udp {
                w.bytes(b";transport=")
                    .bytes(dest.transport.name().as_bytes());
            }
            w.bytes(b";lr;ob>\r\n");
        });
        self.counters.nat.path_added += 1;
    }

    /// The previous hop's Via learns where its request really came from: `rport` gets the
    /// source port when it asked for it, `received` the source address when it asked for rport
    /// or its sent-by is not that address.
    fn note_source(&mut self, rq: &Incoming<'_, '_>) {
        let Ok(top) = rq.msg.top_via() else {
            return;
        };
        let src = rq.src.addr;
        if top.rport() == Some(None) {
            if let Some(at) = rport_name_end(&top, rq.msg.bytes(top.span)) {
                self.edits.insert_with(top.span.start as usize + at, |w| {
                    w.bytes(b"=").num(src.port() as u64);
                });
            }
        }
        if top.received().is_none() && (top.rport().is_some() || !host_is(&top, src.ip())) {
            self.edits.insert_with(top.span.end as usize, |w| {
                w.bytes(b";received=").ip(src.ip());
            });
        }
    }
}

/// `Record-Route: <sip:ADV[;transport=tcp];lr>` at `at` (UDP, the default, names none); for
/// a `sips:` request over TLS, `<sips:ADV;lr>` (TLS is what sips: means).
fn record_route_line(edits: &mut Edits, at: usize, adv: &str, transport: Transport, sips: bool) {
    let sips = sips && transport == Transport::Tls;
    edits.insert_with(at, |w| {
        w.bytes(if sips {
            b"Record-Route: <sips:"
        } else {
            b"Record-Route: <sip:"
        })
        .bytes(adv.as_bytes());
        if transport != Transport::Udp && !sips {
            w.bytes(b";transport=").bytes(transport.name().as_bytes());
        }
        w.bytes(b";lr>\r\n");
    });
}
