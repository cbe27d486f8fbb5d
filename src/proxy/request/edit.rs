//! The edits of RFC 3261 section 16.6 on the request being forwarded, recorded in
//! `Core::edits` (the Request-URI already is, by the target stage): Max-Forwards (item 3), the
//! Routes we consumed (item 6), our own credentials (RFC 3665 section 3.3), Record-Route
//! (item 4), our Via (item 8), and `received`/`rport` on the previous hop's Via (section 18.2.1,
//! RFC 3581).

use std::convert::Infallible;
use std::ops::ControlFlow;

use crate::counters::DropReason;
use crate::sip::{HeaderName, Message, Method, Target};

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
}

impl Core {
    /// Pick the listener to send from (the Via names it), record the edits, and forward.
    pub(super) fn edit(
        &mut self,
        rq: &Incoming<'_, '_>,
        routing: &Routing<'_>,
        fwd: &Forwarding,
    ) -> Stage<Infallible> {
        let Some(out_socket) = self.cfg.local.socket_for(rq.socket, &fwd.dest) else {
            return ControlFlow::Break(Decision::Drop(DropReason::NoSocket));
        };
        self.edit_max_forwards(rq.msg, fwd.max_forwards);
        remove_values(&mut self.edits, rq.msg, &routing.removed);
        if fwd.authenticated {
            self.strip_our_credentials(rq.msg);
        }
        self.add_via(rq, fwd, out_socket);
        self.note_source(rq);
        self.counters.forwarded_request(rq.method);
        ControlFlow::Break(Decision::Forward {
            to: fwd.dest,
            socket: out_socket,
            len: rq.msg.framed_len(),
        })
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
    fn add_via(&mut self, rq: &Incoming<'_, '_>, fwd: &Forwarding, out_socket: usize) {
        let cfg = self.cfg;
        let msg = rq.msg;
        let adv = cfg.local.advertised(out_socket, &fwd.dest);
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
            self.edits.insert_with(at, |w| {
                w.bytes(b"Record-Route: <sip:")
                    .bytes(adv.as_bytes())
                    .bytes(b";lr>\r\n");
            });
        }
        let conn = rq.src.conn;
        self.edits.insert_with(first_via, |w| {
            w.bytes(b"Via: SIP/2.0/")
                .bytes(fwd.dest.transport.via_token())
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
